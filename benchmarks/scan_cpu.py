"""CPU benchmark of the selective scan: our chunked torch scan against two baselines.

Three implementations run on the same random fp32 inputs (fixed seed), with the step-size
bias, softplus, skip term ``D`` and gate ``z`` that the SPMamba mixer passes:

* ``ours``: :func:`spmamba_sb.nnet.scan_torch.selective_scan_torch` (chunked log-depth scan),
* ``reference``: :func:`spmamba_sb.nnet.scan.selective_scan_reference` (one step at a time),
* ``mambapy``: the Blelloch parallel scan ``mambapy.pscan.pscan`` (PyPI ``mambapy``), fed
  full [batch, L, d, n] decay and drive tensors, as ``mambapy.mamba`` does.

Each configuration is timed in two modes: ``forward`` (under ``torch.no_grad``) and
``forward_backward`` (``output.sum().backward()``, gradients w.r.t. u, delta, B and C).
Every implementation is run once as a warm-up, then timed ``--repeats`` times and the median
is reported; when the warm-up alone takes longer than ``--slow-s`` seconds, it is timed once
only (the JSON records the repeats used). The warm-up outputs (or gradients) of ``ours`` and
``mambapy`` are compared with those of ``reference`` (max absolute difference).

On Linux a memory pass follows all the timings, each measurement in a fresh child process
(this script with ``--memory-child``): the run is done once unmeasured, then once more while
the growth of the peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
resident set at its start is recorded. The child first tells glibc (``mallopt``) to serve
every block of 1 MiB or more with mmap and to trim free heap memory beyond 1 MiB, so that
freed tensors leave the resident set and the figure follows live memory rather than what
the allocator keeps. That makes runs slower, so it is not done while timing; and a heap
already shaped by other runs skewed the figures by hundreds of MiB, hence one process per
measurement. Elsewhere the field is null.

The result is one JSON object on stdout. Run it from the repository root::

    python benchmarks/scan_cpu.py [--quick]

``--quick`` runs the smallest configuration only (a smoke test).
"""

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
from mambapy.pscan import pscan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout's package
from spmamba_sb.nnet.scan_torch import selective_scan_reference, selective_scan_torch

# (batch, L, d, n, modes)
BOTH = ("forward", "forward_backward")
CONFIGS = [
    (4, 256, 256, 16, BOTH),
    (4, 1024, 256, 16, BOTH),
    (2, 4096, 128, 16, BOTH),
    (64, 250, 512, 16, ("forward",)),  # model-like size, forward only
]
GRAD_INPUTS = ("u", "delta", "B", "C")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def make_inputs(batch, length, channels, states, seed):
    """Random inputs distributed like the mixer's at initialisation (fp32, CPU), in the scan's
    layout: u, delta, z [batch, d, L]; B, C [batch, n, L]."""
    gen = torch.Generator().manual_seed(seed)
    log_dt = torch.rand(channels, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)
    dt = torch.exp(log_dt)  # softplus(delta_bias), log-uniform in [1e-3, 0.1]
    return {
        "u": torch.randn(batch, channels, length, generator=gen),
        "delta": 0.1 * torch.randn(batch, channels, length, generator=gen),
        "A": -torch.arange(1, states + 1, dtype=torch.float32).repeat(channels, 1),
        "B": torch.randn(batch, states, length, generator=gen),
        "C": torch.randn(batch, states, length, generator=gen),
        "D": torch.ones(channels),
        "z": torch.randn(batch, channels, length, generator=gen),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus, as in the mixer
    }


def scan_mambapy(u, delta, A, B, C, D, z, delta_bias):
    """Selective scan through ``mambapy.pscan.pscan``, finished as our scan finishes.

    pscan only scans power-of-two lengths: for any other L it zero-pads decay and drive to
    the next power of two itself (and its backward pads the gradient likewise), then cuts
    the result back to L. The padding is causal-safe (later steps never feed earlier ones)
    but its work is part of the measured time; the JSON gives the padded length. It works
    time-major: the inputs are transposed to [batch, L, d] / [batch, L, n] and the output back.
    """
    u, delta, z, B, C = (x.transpose(1, 2) for x in (u, delta, z, B, C))
    delta = F.softplus(delta + delta_bias)
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [batch, L, d, n]
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # [batch, L, d, n]
    states = pscan(decay, drive)  # [batch, L, d, n]
    y = (states @ C.unsqueeze(-1)).squeeze(-1) + D * u  # [batch, L, d]
    return (y * F.silu(z)).transpose(1, 2)


# "reference" first: the others are compared with its output
IMPLEMENTATIONS = {
    "reference": lambda **x: selective_scan_reference(**x, delta_softplus=True),
    "ours": lambda **x: selective_scan_torch(**x, delta_softplus=True),
    "mambapy": scan_mambapy,
}


def run_once(impl, inputs, mode):
    """Run one implementation once; return (seconds, [output] or gradients)."""
    if mode == "forward":
        with torch.no_grad():
            start = time.perf_counter()
            out = impl(**inputs)
            return time.perf_counter() - start, [out]
    leaves = {k: v.clone().requires_grad_(k in GRAD_INPUTS) for k, v in inputs.items()}
    start = time.perf_counter()
    impl(**leaves).sum().backward()
    elapsed = time.perf_counter() - start
    return elapsed, [leaves[k].grad for k in GRAD_INPUTS]


def measure_time(impl, inputs, mode, repeats, slow_s):
    """Warm up once, then time ``repeats`` runs (one only when the warm-up exceeds ``slow_s``).

    Returns the timing entry and the warm-up's output or gradients.
    """
    warmup_s, result = run_once(impl, inputs, mode)
    repeats = repeats if warmup_s <= slow_s else 1
    times = [run_once(impl, inputs, mode)[0] for _ in range(repeats)]
    entry = {
        "median_s": round(statistics.median(times), 5),
        "times_s": [round(t, 4) for t in times],
        "repeats": repeats,
        "warmup_s": round(warmup_s, 4),
    }
    return entry, result


def _status_kib(field):
    """Read one ``Vm*`` field of /proc/self/status, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth_mib(impl, inputs, mode, libc):
    """Peak resident-set growth of one run, in MiB, after an unmeasured run."""
    run_once(impl, inputs, mode)
    gc.collect()
    libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # reset VmHWM to the current resident set
    base = _status_kib("VmRSS")
    run_once(impl, inputs, mode)
    return round((_status_kib("VmHWM") - base) / 1024, 1)


def memory_child(batch, length, channels, states, mode, name, seed):
    """Print the peak RSS growth of one implementation on one configuration and mode."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 20)
    inputs = make_inputs(batch, length, channels, states, seed)
    print(json.dumps(peak_rss_growth_mib(IMPLEMENTATIONS[name], inputs, mode, libc)))


def memory_pass(results, seed):
    """Fill in ``peak_rss_growth_mib`` for every result, one child process each (null off Linux)."""
    for row in results:
        for name, entry in row["implementations"].items():
            entry["peak_rss_growth_mib"] = None
            if platform.system() == "Linux":
                job = [row["batch"], row["L"], row["d"], row["n"], row["mode"], name]
                command = [sys.executable, __file__, "--memory-child", json.dumps(job)]
                command += ["--seed", str(seed), "--threads", str(torch.get_num_threads())]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                entry["peak_rss_growth_mib"] = json.loads(output)


def max_abs_diff(tensors, reference):
    """Largest absolute difference over matching lists of tensors."""
    return max((a - b).abs().max().item() for a, b in zip(tensors, reference))


def timing_pass(configs, repeats, slow_s, seed):
    """Time every implementation on every configuration and mode; return the result rows."""
    results = []
    for batch, length, channels, states, modes in configs:
        inputs = make_inputs(batch, length, channels, states, seed)
        for mode in modes:
            row = {
                "batch": batch,
                "L": length,
                "d": channels,
                "n": states,
                "mode": mode,
                "mambapy_padded_L": 2 ** math.ceil(math.log2(length)),
                "implementations": {},
            }
            for name, impl in IMPLEMENTATIONS.items():
                entry, result = measure_time(impl, inputs, mode, repeats, slow_s)
                if name == "reference":
                    expected = result
                entry["max_abs_diff_vs_reference"] = max_abs_diff(result, expected)
                row["implementations"][name] = entry
            results.append(row)
    return results


def machine_info():
    """Platform, CPU, library versions and thread count."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mambapy": version("mambapy"),
        "torch_threads": torch.get_num_threads(),
    }


def main():
    """Parse arguments, run the timing and memory passes and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smallest configuration only")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads (default: torch's default)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation")
    parser.add_argument("--slow-s", type=float, default=20.0, help="time only once when the warm-up exceeds this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-child", metavar="JOB_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*json.loads(args.memory_child), seed=args.seed)
        return
    started = time.perf_counter()
    results = timing_pass(CONFIGS[:1] if args.quick else CONFIGS, args.repeats, args.slow_s, args.seed)
    memory_pass(results, args.seed)
    report = {
        "machine": machine_info(),
        "settings": {
            "dtype": "float32",
            "seed": args.seed,
            "warmup_runs": 1,
            "repeats": args.repeats,
            "slow_s": args.slow_s,
            "scan_options": "delta_bias, delta_softplus=True, D, z",
            "grad_inputs": list(GRAD_INPUTS),
            "peak_rss": "second run, one child process each, glibc mmap threshold 1 MiB",
        },
        "results": results,
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
