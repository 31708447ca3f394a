"""A training step of the quick 8 kHz model on a CPU: time and peak memory, with the chunked
scan's three ways of recomputing its chunks side by side.

Each measurement runs in a fresh child process (this script with ``--child``), which builds
the encoder, mask net and decoder of ``hparams/spmamba-8k-quick.yaml`` (the published 8 kHz
model), runs one warm-up step (forward through ``spmamba_sb.trio.separate``, train.py's flow,
and backward of a mean-square loss on a random batch-1 crop of L samples) and then times
``--steps`` more. It reports their median wall time and the process's peak resident set
(VmHWM: what the operating system sees, memory that the allocator holds included).

* ``recomputed_chunk``: the package's scan (:class:`spmamba_sb.nnet.scan_torch.RecomputedChunk`:
  no autograd state in the forward pass, each chunk recomputed in backward and differentiated
  by its adjoint recurrence, :func:`spmamba_sb.nnet.scan_torch.scan_steps_backward`);
* ``recomputed_autograd``: the same, but each recomputed chunk differentiated by autograd;
* ``torch_checkpoint``: the same chunks under ``torch.utils.checkpoint`` (non-reentrant), which
  builds every step's graph in the forward pass and drops only the tensors it saves.

The result is one JSON object on stdout. Run it from the repository root (Linux)::

    python benchmarks/train_step_cpu.py [--lengths 2000 4000] [--threads 2] [--steps 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAYS = ("recomputed_chunk", "recomputed_autograd", "torch_checkpoint")


def peak_resident_mib() -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(way: str, length: int, threads: int, steps: int) -> dict:
    """One warm-up step and ``steps`` timed steps in this process."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from torch.utils.checkpoint import checkpoint

    from spmamba_sb.nnet import scan_torch
    from spmamba_sb.trio import separate

    torch.set_num_threads(threads)
    if way == "recomputed_autograd":
        scan_torch.scan_steps_backward = None  # RecomputedChunk then differentiates under autograd
    if way == "torch_checkpoint":
        scan_torch.RecomputedChunk = types.SimpleNamespace(
            apply=lambda run, adjoint, *args: checkpoint(run, *args, use_reentrant=False))
    with open(REPO / "hparams" / "spmamba-8k-quick.yaml") as handle:
        hparams = load_hyperpyyaml(handle, {"data_folder": "unused", "output_folder": "/tmp/train_step_cpu"})
    trio = hparams["Encoder"], hparams["MaskNet"], hparams["Decoder"]
    mix = torch.randn(1, length, generator=torch.Generator().manual_seed(0))
    seconds = []
    for _ in range(1 + steps):
        start = time.perf_counter()
        separate(mix, *trio).pow(2).mean().backward()  # train.py's forward flow
        seconds.append(time.perf_counter() - start)
        hparams["MaskNet"].zero_grad(set_to_none=True)
    return {"way": way, "samples": length, "frames": length // hparams["hop_length"] + 1,
            "step_s": round(statistics.median(seconds[1:]), 2), "peak_resident_mib": round(peak_resident_mib())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2000, 4000], help="crop lengths (samples)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up one")
    parser.add_argument("--child", nargs=4, metavar=("WAY", "LENGTH", "THREADS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, length, threads, steps = args.child
        print(json.dumps(child(way, int(length), int(threads), int(steps))))
        return
    results = []
    for length in args.lengths:
        for way in WAYS:
            command = [sys.executable, __file__, "--child", way, str(length), str(args.threads), str(args.steps)]
            output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps({"model": "hparams/spmamba-8k-quick.yaml", "batch": 1, "threads": args.threads,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
