"""GPU speed and peak memory of SPMamba (CUDA, Triton and torch scan backends) and the TF-GridNet baseline.

Measures, at the published 16 kHz configuration, a training step (forward, backward and
Adam) on random 4 s mixtures and inference on mixtures of several lengths, each as the
median of a few timed repeats after a warm-up (one run where a run takes over 10 s), with
peak allocated GPU memory and throughput in seconds of audio per second.
Prints one JSON object per line: the machine first, then one per measurement as it ends.

    python benchmarks/gpu_model.py [--models spmamba-cuda spmamba-torch tfgridnet spmamba-cuda-ckpt ...]
"""

import argparse
import json
import statistics
import sys
import time

import torch

from spmamba_sb import SPMamba, TFGridNet
from spmamba_sb.environment import avoid_mix_order_reduction
from spmamba_sb.nnet.bmamba import BMamba

SAMPLE_RATE = 16000


def compiled_spmamba():
    """The whole model through ``torch.compile`` (the Triton scan and mixer are PyTorch operators),
    as ``train.py --compile`` runs it: Inductor's mix-order reduction off (pytorch#178080; batch 4 x
    4 s puts 8.2 M elements through each norm, above the pass's 5 Mi)."""
    avoid_mix_order_reduction()
    return torch.compile(SPMamba(scan_backend="triton"), dynamic=False)


MODELS = {
    "spmamba-cuda": lambda: SPMamba(scan_backend="cuda"),
    "spmamba-triton": lambda: SPMamba(scan_backend="triton"),
    "spmamba-torch": lambda: SPMamba(scan_backend="torch"),
    "spmamba-triton-compile": compiled_spmamba,
    "tfgridnet": lambda: TFGridNet(lstm_hidden_dim=256),
    # the same with activation checkpointing of every block (training memory)
    "spmamba-cuda-ckpt": lambda: SPMamba(scan_backend="cuda", checkpoint_blocks=True),
    "spmamba-triton-ckpt": lambda: SPMamba(scan_backend="triton", checkpoint_blocks=True),
    "spmamba-torch-ckpt": lambda: SPMamba(scan_backend="torch", checkpoint_blocks=True),
    "tfgridnet-ckpt": lambda: TFGridNet(lstm_hidden_dim=256, checkpoint_blocks=True),
}


def timed(fn, repeats, slow_seconds=10.0, warmups=1):
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmups`` untimed ones, the
    number of timed runs, and peak GiB. A last warm-up longer than ``slow_seconds`` is itself
    the measurement (one run): start-up costs are negligible against it, and repeating
    minutes-long runs would not fit the machine's time limit."""
    for _ in range(warmups - 1):  # a compiled model compiles here
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    if first > slow_seconds:
        return first, 1, torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), repeats, torch.cuda.max_memory_allocated() / 2**30


def train_step(model, optimizer, batch, seconds, precision):
    """One optimisation step on random mixtures with a mean-squared-error loss."""
    mix = torch.randn(batch, int(seconds * SAMPLE_RATE), device="cuda")
    target = torch.randn(batch, 2, mix.shape[1], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = (model(mix) - target).pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def emit(record):
    """Print one measurement as a JSON line, at once."""
    print(json.dumps(record), flush=True)


def measure(name, batches, train_seconds, infer_seconds, repeats):
    """All figures of one model, printed as they are taken."""
    torch.manual_seed(0)
    model = MODELS[name]().cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the recipes
    emit({"model": name, "params": sum(p.numel() for p in model.parameters())})
    compiled = name.endswith("-compile")
    if not compiled:  # a compiled model compiles once per shape and precision, in its warm-ups
        train_step(model, optimizer, 1, 1.0, "fp32")  # start-up (library loading, kernel builds), not timed
    for precision in ("bf16", "fp32") if compiled else ("fp32", "bf16"):
        for batch in batches:
            entry = {"model": name, "work": "train", "precision": precision, "batch": batch, "seconds": train_seconds}
            try:
                step, runs, peak = timed(lambda: train_step(model, optimizer, batch, train_seconds, precision), repeats,
                                         warmups=2 if compiled else 1)
                entry.update(step_ms=round(step * 1e3, 1), runs=runs, peak_gib=round(peak, 2),
                             audio_s_per_s=round(batch * train_seconds / step, 2))
            except torch.OutOfMemoryError:
                entry["error"] = "out of memory"
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            emit(entry)
    model.eval()
    for seconds in infer_seconds:
        mix = torch.randn(1, int(seconds * SAMPLE_RATE), device="cuda")
        entry = {"model": name, "work": "inference", "precision": "fp32", "seconds": seconds}
        try:
            with torch.no_grad():
                elapsed, runs, peak = timed(lambda: model(mix), repeats)
            entry.update(time_s=round(elapsed, 3), runs=runs, peak_gib=round(peak, 2),
                         audio_s_per_s=round(seconds / elapsed, 2))
        except torch.OutOfMemoryError:
            entry["error"] = "out of memory"
        torch.cuda.empty_cache()
        emit(entry)


def parse_args(argv=None):
    """The command line's options (``argv``: ``sys.argv[1:]`` where None)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4], help="training batch sizes (none: no training)")
    parser.add_argument("--train-seconds", type=float, default=4.0)
    parser.add_argument("--infer-seconds", nargs="*", type=float, default=[1, 4, 16, 60, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inference-elements", type=int, default=None,
                        help="input elements per row group of SPMamba's inference on CUDA (BMamba.inference_elements)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.inference_elements:
        BMamba.inference_elements = dict(BMamba.inference_elements, cuda=args.inference_elements)
    emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "command": " ".join(sys.argv)})
    for name in args.models:
        measure(name, args.batches, args.train_seconds, args.infer_seconds, args.repeats)


if __name__ == "__main__":
    main()
