"""The selective scan alone on a GPU: mamba-ssm's CUDA kernel against this package's Triton kernels.

Shapes are the published model's (rows x 512 channels x 16 states x L) for the intra-frame
(501 x 250) and inter-frame (257 x 494) paths of 4 s, in bf16 and fp32, timed forward (no
autograd) and forward + backward (all eight gradients) with ``triton.testing.do_bench``
(medians; the L2 cache is flushed before each call). mamba-ssm gets channel-first inputs
([rows, D, L] with unit time stride, its layout); the Triton kernels get time-major ones
(unit channel stride), the layout the mixer hands them (``--layouts`` adds channel-first).

Each row carries the achieved bandwidth (the fewest bytes the call must move: every input
read once, every output written once) and exponentials per second (one per state and step
forward, three forward + backward), next to the ceilings measured first: a device-to-device
copy and a Triton kernel that does nothing but ``exp2``. Also printed: the largest difference
from mamba-ssm (output and gradients, relative to the largest value) and whether two backward
passes give bit-identical gradients. One JSON object per line; a summary table last.

    python benchmarks/scan_gpu.py [--sweep] [--layouts time-major channel-first] [--dtypes bf16 fp32]
"""

import argparse
import json

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

from spmamba_sb.nnet import scan_triton
from spmamba_sb.nnet.scan_triton import selective_scan_triton

CHANNELS, N_STATE = 512, 16
SHAPES = {"intra": (501, 250), "inter": (257, 494)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GRAD_NAMES = "u delta A B C D z delta_bias".split()


def emit(record):
    """Print one measurement as a JSON line, at once."""
    print(json.dumps(record), flush=True)


@triton.jit
def _exp2_kernel(x_ptr, steps, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets)
    a, b, c, d = x, x + 0.1, x + 0.2, x + 0.3
    for _ in range(steps):  # four independent chains of exp2
        a = tl.exp2(a * -0.5)
        b = tl.exp2(b * -0.5)
        c = tl.exp2(c * -0.5)
        d = tl.exp2(d * -0.5)
    tl.store(x_ptr + offsets, a + b + c + d)


def ceilings():
    """Measured device-to-device copy bandwidth (bytes read + written per second) and exp2 rate."""
    data = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(data)
    copy_s = do_bench(lambda: target.copy_(data), return_mode="median") / 1e3
    del data, target
    threads, steps = 132 * 2048 * 8, 1024
    x = torch.rand(threads, device="cuda")
    exp_s = do_bench(lambda: _exp2_kernel[(threads // 256,)](x, steps, BLOCK=256), return_mode="median") / 1e3
    return 2 * (1 << 30) / copy_s, threads * steps * 4 / exp_s


def scan_inputs(rows, length, dtype, time_major, seed=0):
    """Random scan inputs at the model's scales, as [rows, X, L] views of time-major ([rows, L, X])
    or channel-first ([rows, X, L]) storage; the same values either way."""
    generator = torch.Generator(device="cuda").manual_seed(seed)

    def view(channels, scale=1.0, shift=0.0):
        data = torch.randn(rows, channels, length, device="cuda", generator=generator) * scale + shift
        data = data.to(dtype)  # the same values in either layout
        return (data.transpose(1, 2).contiguous().transpose(1, 2) if time_major else data).requires_grad_()

    u, delta, z = view(CHANNELS), view(CHANNELS, 0.5, -1.0), view(CHANNELS)
    B, C = view(N_STATE), view(N_STATE)
    A = -torch.rand(CHANNELS, N_STATE, device="cuda", generator=generator) * 4 - 0.5
    skip = torch.randn(CHANNELS, device="cuda", generator=generator)
    bias = torch.randn(CHANNELS, device="cuda", generator=generator) * 0.3 - 2
    return [u, delta, A.requires_grad_(), B, C, skip.requires_grad_(), z, bias.requires_grad_()]


def minimum_bytes(rows, length, dtype, backward):
    """Bytes a call must move: inputs read once, outputs written once (fp32 parameters ignored)."""
    size = torch.finfo(dtype).bits // 8
    channel_steps, state_steps = rows * CHANNELS * length, rows * N_STATE * length
    forward = (4 * channel_steps + 2 * state_steps) * size  # u, delta, z, out; B, C
    if not backward:
        return forward
    # forward, then the backward: reads u, delta, z, dout, B, C; writes du, ddelta, dz, dB, dC
    return forward + (7 * channel_steps + 4 * state_steps) * size


def relative_max(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def measure(name, scan, inputs, grad, rows, length, dtype, bandwidth, exp_rate):
    """Forward and forward + backward medians, with rates; returns the record and the outputs."""
    def forward():
        return scan(*inputs, delta_softplus=True)

    def forward_backward():
        return torch.autograd.grad(forward(), inputs, grad)

    with torch.no_grad():
        forward_ms = do_bench(forward, return_mode="median")
        out = forward()
    both_ms = do_bench(forward_backward, return_mode="median")
    grads = forward_backward()
    exps = rows * CHANNELS * length * N_STATE
    record = {
        "backend": name, "shape": [rows, CHANNELS, length, N_STATE], "dtype": str(dtype).split(".")[-1],
        "forward_ms": round(forward_ms, 3), "forward_backward_ms": round(both_ms, 3),
        "forward_GBps": round(minimum_bytes(rows, length, dtype, False) / forward_ms / 1e6),
        "forward_backward_GBps": round(minimum_bytes(rows, length, dtype, True) / both_ms / 1e6),
        "copy_GBps_ceiling": round(bandwidth / 1e9),
        "forward_Gexp_per_s": round(exps / forward_ms / 1e6),
        "forward_backward_Gexp_per_s": round(3 * exps / both_ms / 1e6),
        "exp2_Gexp_per_s_ceiling": round(exp_rate / 1e9),
        "deterministic": all(torch.equal(a, b) for a, b in zip(grads, forward_backward())),
    }
    return record, out, grads


def parse_args(argv=None):
    """The command line's options (``argv``: ``sys.argv[1:]`` where None)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["time-major"], choices=["time-major", "channel-first"])
    parser.add_argument("--sweep", action="store_true",
                        help="also time other tilings (channels x warps per program) of the forward and backward kernels")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    backends = {}
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        backends["mamba-ssm"] = (selective_scan_fn, False)
    except ImportError as error:
        emit({"mamba-ssm": f"unavailable ({error})"})
    default_tiling = dict(scan_triton.TILING)
    for layout in args.layouts:
        backends[f"triton {layout}"] = (selective_scan_triton, layout == "time-major", default_tiling)
    if args.sweep:
        for forward, backward in [((32, 1), (32, 1)), ((64, 1), (32, 1)), ((64, 1), (64, 2)), ((64, 1), (32, 2)),
                                  ((128, 2), (128, 2))]:
            name = f"triton time-major fwd {forward[0]}x{forward[1]} bwd {backward[0]}x{backward[1]}"
            backends[name] = (selective_scan_triton, True, {"forward": forward, "backward": backward})
    bandwidth, exp_rate = ceilings()
    emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
          "copy_GBps": round(bandwidth / 1e9), "exp2_Gexp_per_s": round(exp_rate / 1e9),
          "tiling": {kernel: f"{d}x{w}" for kernel, (d, w) in default_tiling.items()}})
    table = []
    for shape_name, (rows, length) in SHAPES.items():
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            reference = None
            for name, (scan, time_major, *tiling) in backends.items():
                scan_triton.TILING = dict(tiling[0]) if tiling else default_tiling
                inputs = scan_inputs(rows, length, dtype, time_major)
                grad = torch.randn(rows, length, CHANNELS, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
                grad = grad.to(dtype).transpose(1, 2)
                record, out, grads = measure(name, scan, inputs, grad, rows, length, dtype, bandwidth, exp_rate)
                if reference is None:
                    reference = (record, out, grads)
                else:
                    base, ref_out, ref_grads = reference
                    record["forward_speedup"] = round(base["forward_ms"] / record["forward_ms"], 2)
                    record["forward_backward_speedup"] = round(base["forward_backward_ms"] / record["forward_backward_ms"], 2)
                    record["max_diff_vs_" + base["backend"]] = {
                        "out": relative_max(out, ref_out),
                        **{n: relative_max(a, b) for n, a, b in zip(GRAD_NAMES, grads, ref_grads)},
                    }
                emit(record)
                table.append((shape_name, dtype_name, name, record["forward_ms"], record["forward_backward_ms"],
                              record.get("forward_speedup", 1.0), record.get("forward_backward_speedup", 1.0)))
                del inputs, out, grads
    print(f"{'shape':6} {'dtype':5} {'backend':34} {'fwd ms':>8} {'fwd+bwd':>8} {'x fwd':>6} {'x both':>6}")
    for row in table:
        print(f"{row[0]:6} {row[1]:5} {row[2]:34} {row[3]:8.3f} {row[4]:8.3f} {row[5]:6.2f} {row[6]:6.2f}")


if __name__ == "__main__":
    main()
