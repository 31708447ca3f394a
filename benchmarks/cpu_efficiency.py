#!/usr/bin/env python3
"""CPU inference cost of the published SPMamba (``torch`` scan backend): seconds per second of
16 kHz audio, and the model's achieved FLOP/s as a share of this machine's fp32 matrix-product
FLOP/s, measured in the same run. Prints JSON.

    python benchmarks/cpu_efficiency.py [--seconds 1] [--repeats 2] [--matmul-size 2048] [--profile]

FLOPs are 2 x the MACs of ``benchmarks/macs.py`` (selective scan included). The reference
FLOP/s is the median of square fp32 ``torch.mm`` products of size ``--matmul-size`` (2048) on
the same threads.
The model is timed twice: with the C allocator's defaults, then after
:func:`spmamba_sb.cli.keep_freed_memory` (the figures without a suffix).
``--profile`` adds the operators that take the most CPU time.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from macs import counted_macs, recurrence_macs  # noqa: E402

from spmamba_sb import SPMamba  # noqa: E402
from spmamba_sb.cli import keep_freed_memory  # noqa: E402


def median_seconds(fn, repeats):
    """Median wall-clock seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(size=2048, repeats=10):
    """fp32 FLOP/s of a square matrix product on the current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: torch.mm(a, b), repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio length per inference call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the reference matrix products")
    parser.add_argument("--profile", action="store_true", help="also list the most expensive operators")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = SPMamba(scan_backend="torch").eval()
    audio = torch.randn(1, int(16000 * args.seconds))
    flops = 2 * (counted_macs(model, audio) + recurrence_macs(model, audio))
    peak = matmul_flops(args.matmul_size)
    with torch.no_grad():
        elapsed_default = median_seconds(lambda: model(audio), args.repeats)
        kept = keep_freed_memory()  # from here on, for the rest of the process
        elapsed = median_seconds(lambda: model(audio), args.repeats)
    report = {
        "inference_s_per_audio_s_default_allocator": round(elapsed_default / args.seconds, 2),
        "keep_freed_memory": kept,
        "threads": torch.get_num_threads(),
        "audio_seconds": args.seconds,
        "inference_s": round(elapsed, 2),
        "inference_s_per_audio_s": round(elapsed / args.seconds, 2),
        "model_gflop": round(flops / 1e9, 1),
        "achieved_gflop_s": round(flops / elapsed / 1e9, 2),
        "matmul_gflop_s": round(peak / 1e9, 1),
        "share_of_matmul_flop_s": round(flops / elapsed / peak, 4),
    }
    if args.profile:
        with torch.no_grad(), torch.profiler.profile() as profiler:
            model(audio)
        averages = sorted(profiler.key_averages(), key=lambda event: -event.self_cpu_time_total)[:12]
        report["top_operators_self_cpu_s"] = {e.key: round(e.self_cpu_time_total / 1e6, 2) for e in averages}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
