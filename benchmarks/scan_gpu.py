"""The selective scan alone on a GPU: mamba-ssm's CUDA kernel against this package's Triton kernels.

Shapes are the published model's (rows x 512 channels x L, 16 states) for the intra-frame
(501 x 250) and inter-frame (257 x 494) paths of 4 s, with bf16 inputs as under autocast,
timed forward (no autograd) and forward + backward; then the inter-frame path of 60 s
(257 x 7,501) in fp32, forward only. Inputs are strided channel-major views, as the mixer
passes them. Medians of CUDA-event times after 3 warm-up calls. Prints one JSON object per
line: the machine first, then one per shape and backend, with the largest difference between
the two backends' outputs (relative to the largest value). Without mamba-ssm only the Triton
rows are printed.

    python benchmarks/scan_gpu.py [--repeats 10]
"""

import argparse
import json
import statistics

import torch

from spmamba_sb.nnet.scan_triton import selective_scan_triton

CHANNELS, N_STATE = 512, 16
SHAPES = [  # rows, L, dtype, with backward
    (501, 250, torch.bfloat16, True),
    (257, 494, torch.bfloat16, True),
    (257, 7501, torch.float32, False),
]


def emit(record):
    """Print one measurement as a JSON line, at once."""
    print(json.dumps(record), flush=True)


def scan_inputs(rows, length, dtype, requires_grad):
    """Random scan inputs at the model's scales, as [rows, X, L] views of [X, rows, L] tensors."""
    generator = torch.Generator(device="cuda").manual_seed(0)

    def view(channels, scale=1.0, shift=0.0):
        data = torch.randn(channels, rows, length, device="cuda", generator=generator) * scale + shift
        return data.to(dtype).transpose(0, 1).requires_grad_(requires_grad)

    u, delta, z = view(CHANNELS), view(CHANNELS, 0.5, -1.0), view(CHANNELS)
    B, C = view(N_STATE), view(N_STATE)
    A = -torch.arange(1, N_STATE + 1, device="cuda", dtype=torch.float32).repeat(CHANNELS, 1)
    skip = torch.randn(CHANNELS, device="cuda", generator=generator)
    bias = torch.randn(CHANNELS, device="cuda", generator=generator) * 0.3 - 2
    return [u, delta, A.requires_grad_(requires_grad), B, C, skip.requires_grad_(requires_grad), z,
            bias.requires_grad_(requires_grad)]


def median_ms(fn, repeats):
    """Median CUDA-event milliseconds of ``fn`` after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    backends = {"triton": selective_scan_triton}
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        backends = {"mamba-ssm": selective_scan_fn, **backends}
    except ImportError as error:
        emit({"mamba-ssm": f"unavailable ({error})"})
    emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__})
    for rows, length, dtype, backward in SHAPES:
        inputs = scan_inputs(rows, length, dtype, backward)
        grad = torch.randn(rows, CHANNELS, length, device="cuda", dtype=dtype)
        outputs = {}
        for name, scan in backends.items():
            def forward():
                return scan(*inputs, delta_softplus=True)

            def forward_backward():
                torch.autograd.grad(forward(), inputs, grad)

            record = {"backend": name, "shape": [rows, CHANNELS, N_STATE, length], "dtype": str(dtype)}
            with torch.no_grad():
                record["forward_ms"] = round(median_ms(forward, args.repeats), 3)
                outputs[name] = forward().float()
            if backward:
                record["forward_backward_ms"] = round(median_ms(forward_backward, args.repeats), 3)
            if name == "triton" and "mamba-ssm" in outputs:
                reference = outputs["mamba-ssm"]
                record["max_diff_vs_mamba_ssm"] = ((outputs[name] - reference).abs().max() / reference.abs().max()).item()
            emit(record)


if __name__ == "__main__":
    main()
