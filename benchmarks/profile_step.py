"""Where a training step's GPU time goes: CUDA kernel time by group, under the torch profiler.

SPMamba (the published 16 kHz model; ``--n-fft 256 --hop-length 64 --sample-rate 8000`` the
8 kHz one), one training step (forward, backward, Adam) at each ``--batches`` size x
``--seconds``, bf16 autocast, for each scan backend asked for; mean of ``--steps`` profiled steps
after two warm-up steps (Adam fused, as in the recipes). Each record also has the step's wall
time (median of ``--timed`` steps without the profiler) and the share of it the GPU spends in
kernels (``gpu_busy``): below 1, the GPU waits on the host (kernel launches, Python) and a larger
batch costs little more. ``--compile`` runs the model under ``torch.compile``, as ``train.py
--compile`` does (Inductor's mix-order reduction off unless ``TORCHINDUCTOR_MIX_ORDER_REDUCTION``
is set: :func:`spmamba_sb.environment.avoid_mix_order_reduction`). Only kernels
count: a range such as ``Optimizer.step`` also shows on the GPU's timeline, as the span from its
first to its last kernel with the gaps between them, and is left out. Kernels are grouped by
name (the scan, matrix products, the causal convolution, element-wise work, copies, norms and
reductions, other). Prints one JSON object per backend and batch, and a table. With
``--shapes`` it also lists the operators (``aten::mm``, the Triton operators, ...) that launched
the most GPU time, with their input shapes, to tell apart the products that share one kernel
name.

    python benchmarks/profile_step.py [--backends cuda triton] [--steps 3] [--shapes]
    python benchmarks/profile_step.py --backends triton --n-fft 256 --hop-length 64 \
        --sample-rate 8000 --seconds 2 --batches 4 8 16 --compile   # the quick recipe's step
"""

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from spmamba_sb import SPMamba
from spmamba_sb.environment import avoid_mix_order_reduction

GROUPS = [  # first match wins; names are lower-cased kernel names
    ("selective scan", ("selective_scan", "_scan_forward", "_scan_backward")),
    ("causal conv", ("conv_depthwise", "_conv_silu", "conv2d", "convolution")),
    ("matrix products", ("gemm", "gemv", "cutlass", "sm90_xmma", "nvjet", "matmul", "dot_kernel")),
    ("copies and layout", ("copy", "cat", "flip", "transpose", "memcpy", "fill")),
    ("norms and reductions", ("norm", "reduce", "softmax", "sum")),
    ("element-wise", ("elementwise", "vectorized", "unrolled", "pointwise", "triton_")),
]


def group(name):
    lowered = name.lower()
    for label, keys in GROUPS:
        if any(key in lowered for key in keys):
            return label
    return "other"


def step(model, optimizer, batch, samples):
    mix = torch.randn(batch, samples, device="cuda")
    target = torch.randn(batch, 2, samples, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = (model(mix) - target).pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def profile_one(args, backend, batch, samples):
    """One record: kernel time by group, wall time and GPU share of one step at ``batch``."""
    torch.manual_seed(0)
    model = SPMamba(scan_backend=backend, n_fft=args.n_fft, hop_length=args.hop_length).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the recipes
    run = torch.compile(model, dynamic=False) if args.compile else model
    for _ in range(2):
        step(run, optimizer, batch, samples)
    torch.cuda.synchronize()
    walls = []
    for _ in range(args.timed):
        start = time.perf_counter()
        step(run, optimizer, batch, samples)
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.shapes else [])
    with profile(activities=activities, record_shapes=args.shapes) as profiler:
        for _ in range(args.steps):
            step(run, optimizer, batch, samples)
        torch.cuda.synchronize()
    totals, kernels = defaultdict(float), defaultdict(float)
    for event in profiler.key_averages():
        ms = event.device_time_total / 1e3 / args.steps
        if ms > 0 and event.device_type == torch.autograd.DeviceType.CUDA and not event.is_user_annotation:
            totals[group(event.key)] += ms
            kernels[event.key[:70]] += ms
    wall_ms = statistics.median(walls) * 1e3
    total_ms = sum(totals.values())
    record = {"backend": backend, "batch": batch, "seconds": args.seconds, "sample_rate": args.sample_rate,
              "compiled": args.compile, "wall_ms": round(wall_ms, 1), "total_ms": round(total_ms, 1),
              "gpu_busy": round(total_ms / wall_ms, 2), "examples_per_s": round(1e3 * batch / wall_ms, 1),
              "groups_ms": {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
              "top_kernels_ms": {k: round(v, 2) for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[:12]}}
    if args.shapes:
        operators = [event for event in profiler.key_averages(group_by_input_shape=True)
                     if event.device_type == torch.autograd.DeviceType.CPU and event.self_device_time_total > 0]
        operators.sort(key=lambda event: -event.self_device_time_total)
        record["top_operators_ms"] = [
            {"operator": event.key, "shapes": str(event.input_shapes)[:120], "calls": event.count // args.steps,
             "ms": round(event.self_device_time_total / 1e3 / args.steps, 2)} for event in operators[:20]]
    return record


def parse_args(argv=None):
    """The command line's options (``argv``: ``sys.argv[1:]`` where None)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["cuda", "triton"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timed", type=int, default=10, help="steps timed without the profiler")
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--hop-length", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--shapes", action="store_true", help="also the top operators by GPU time, with input shapes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.compile:
        avoid_mix_order_reduction()
    samples = round(args.seconds * args.sample_rate)
    tables = {}
    for backend in args.backends:
        for batch in args.batches:
            record = profile_one(args, backend, batch, samples)
            print(json.dumps(record), flush=True)
            tables[f"{backend} b{batch}"] = record
            torch.cuda.empty_cache()
    labels = [label for label, _ in GROUPS] + ["other"]
    print(f"{'group':22}" + "".join(f"{b:>12}" for b in tables))
    for label in labels + ["total"]:
        values = [t["total_ms"] if label == "total" else t["groups_ms"].get(label, 0.0) for t in tables.values()]
        print(f"{label:22}" + "".join(f"{v:12.1f}" for v in values))
    for label in ("wall_ms", "gpu_busy", "examples_per_s"):
        print(f"{label:22}" + "".join(f"{t[label]:12}" for t in tables.values()))


if __name__ == "__main__":
    main()
