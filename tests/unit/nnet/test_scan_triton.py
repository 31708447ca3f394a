"""The Triton kernels (selective scan; causal convolution and SiLU) against step-by-step
references, run by Triton's interpreter on the CPU (the same kernels the GPU compiles;
``tests/gpu`` compares them with mamba-ssm on a GPU at the published sizes)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")
pytestmark = pytest.mark.slow  # each check runs the interpreter in a process of its own

SCAN_CHECK = textwrap.dedent(
    """
    import json, sys
    import torch
    from spmamba_sb.nnet import scan_triton
    from spmamba_sb.nnet.scan_torch import selective_scan_reference
    from spmamba_sb.nnet.scan_triton import selective_scan_triton

    rows, channels, n_state, length, full, time_major, large_delta, checkpoint, min_chunk, fast_math = json.loads(
        sys.argv[1])
    if fast_math:  # the GPU's branch, with the interpreter's exact log and division standing in for the approximate ones
        import types
        import triton.language as tl
        scan_triton.libdevice = types.SimpleNamespace(fast_log2f=lambda x: tl.log2(x), fast_dividef=lambda a, b: a / b)
        exact_meta = scan_triton._launch_meta
        scan_triton._launch_meta = lambda *args: dict(exact_meta(*args), FAST_MATH=True)
    scan_triton.CHECKPOINT = checkpoint
    scan_triton.MIN_CHUNK = min_chunk  # without autograd, chunks along time of this many steps
    scan_triton.TILING = {"forward": (8, 1), "backward": (8, 1)}  # several channel blocks, partial ones
    torch.manual_seed(0)
    def view(size, scale=1.0, shift=0.0):  # [rows, size, L] view of time-major or channel-first storage
        data = torch.randn(rows, size, length) * scale + shift
        return data.transpose(1, 2).contiguous().transpose(1, 2) if time_major else data
    u, z = view(channels), view(channels)
    delta = view(channels, 0.5, -1.0) if full else view(channels).abs() * 0.5
    if large_delta:  # half the steps decay to exactly 0 (exp(-30 A) underflows)
        delta = delta + (torch.rand(delta.shape) < 0.5) * 40.0
    B, C = view(n_state), view(n_state)
    A = -torch.rand(channels, n_state) * 3 - 0.1
    skip, bias = torch.randn(channels), torch.randn(channels) * 0.3 - 2
    inputs = [u, delta, A, B, C] + ([skip, z, bias] if full else [None, None, None])
    used = [t.requires_grad_() for t in inputs if t is not None]
    ours = selective_scan_triton(*inputs, delta_softplus=full)
    expected = selective_scan_reference(*[None if t is None else t.double() for t in inputs], delta_softplus=full)
    grad = torch.randn(expected.shape)
    ours_grads = torch.autograd.grad(ours, used, grad)
    again = torch.autograd.grad(selective_scan_triton(*inputs, delta_softplus=full), used, grad)
    with torch.no_grad():
        untracked = selective_scan_triton(*inputs, delta_softplus=full)
    n_chunks = scan_triton._time_chunks(rows, -(-channels // 8), length)[0]
    def error(a, b):
        return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
    errors = {"out": error(ours, expected), "no_grad": error(untracked, expected)}
    names = [n for n, t in zip("u delta A B C D z bias".split(), inputs) if t is not None]
    for name, a, b in zip(names, ours_grads, torch.autograd.grad(expected, used, grad.double())):
        errors[name] = error(a, b)
    report = {"errors": errors, "deterministic": all(torch.equal(a, b) for a, b in zip(ours_grads, again)),
              "same_layout": ours.stride() == u.stride() if time_major else ours.is_contiguous(),
              "chunks": n_chunks}
    print(json.dumps(report))
    """
)

CONV_CHECK = textwrap.dedent(
    """
    import json
    import torch
    import torch.nn.functional as F
    from spmamba_sb.nnet import conv_triton
    from spmamba_sb.nnet import scan_triton
    from spmamba_sb.nnet.conv_triton import conv_silu_backward, conv_silu_forward
    from spmamba_sb.nnet.mixer import MambaMixer
    from spmamba_sb.nnet.mixer_triton import mamba_mixer

    # several chunks and channel blocks, partial ones
    conv_triton.BLOCK_D, conv_triton.CHUNK = 16, 5
    torch.manual_seed(0)
    errors = {}
    for rows, length, channels, taps in [(2, 19, 20, 4), (1, 2, 5, 4), (3, 9, 16, 2), (1, 16, 5, 4)]:
        x = torch.randn(rows, length, 2 * channels)[..., :channels].requires_grad_()  # strided rows and steps
        weight, bias = torch.randn(channels, taps, requires_grad=True), torch.randn(channels, requires_grad=True)
        conv = F.conv1d(x.transpose(1, 2), weight[:, None], bias, padding=taps - 1, groups=channels)
        expected = F.silu(conv[..., :length]).transpose(1, 2)
        grad = torch.randn(expected.shape)
        pairs = zip(["out", "x", "weight", "bias"],
                    [conv_silu_forward(x, weight, bias), *conv_silu_backward(x, weight, bias, grad)],
                    [expected, *torch.autograd.grad(expected, (x, weight, bias), grad)])
        for name, a, b in pairs:
            errors[f"{rows}x{length}x{channels}x{taps} {name}"] = ((a - b).abs().max() / b.abs().max()).item()
    # the mixer as one operator (these kernels and the scan's) against the torch mixer in fp64:
    # output, the input's and every parameter's gradient, and the output without autograd
    # (split along time into 4 chunks)
    mixer = MambaMixer(8, d_state=4, expand=2, scan_backend="torch")
    with torch.no_grad():
        mixer.D.normal_(), mixer.conv1d.bias.normal_()
    x = torch.randn(8, 3, 17, requires_grad=True)
    def operator(x):
        m = mixer
        return mamba_mixer(x, m.in_proj.weight, m.conv1d.weight[:, 0], m.conv1d.bias, m.x_proj.weight,
                           m.dt_proj.weight, m.dt_proj.bias, -torch.exp(m.A_log.float()), m.D, m.out_proj.weight)
    ours = operator(x)
    grad = torch.randn(ours.shape)
    ours_grads = torch.autograd.grad(ours, [x, *mixer.parameters()], grad)
    scan_triton.MIN_CHUNK = 4
    with torch.no_grad():
        untracked = operator(x)
    mixer.double()
    x64 = x.detach().double().requires_grad_()
    expected = mixer(x64)
    expected_grads = torch.autograd.grad(expected, [x64, *mixer.parameters()], grad.double())
    names = ["out", "out without autograd", "x"] + [name for name, _ in mixer.named_parameters()]
    for name, a, b in zip(names, [ours, untracked, *ours_grads], [expected, expected, *expected_grads]):
        errors[f"mixer {name}"] = ((a.double() - b).abs().max() / b.abs().max()).item()
    print(json.dumps(errors))
    """
)


def _run(script, argument=""):
    environment = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", script, argument], env=environment, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "rows,channels,n_state,length,full,time_major,large_delta,checkpoint,min_chunk,fast_math,chunks",
    [
        (3, 12, 5, 37, True, True, False, 64, 8, False, 4),  # a partial channel block, N padded to 8
        (2, 9, 1, 1, True, False, False, 64, 64, False, 1),  # one step, one state, channel-first storage
        (2, 10, 16, 150, True, True, True, 32, 16, False, 9),  # decays that underflow to 0; four checkpoints
        (2, 8, 4, 20, False, False, False, 4, 3, False, 4),  # no skip, gate, bias or softplus; four checkpoints
        (1, 4, 4, 512, True, True, False, 16, 75, False, 6),  # a training-length sequence: 31 checkpoints
        (3, 12, 5, 37, True, True, True, 8, 8, True, 4),  # the GPU's fast-math step sizes, both softplus branches
    ],
)
def test_triton_scan_matches_reference_in_the_interpreter(rows, channels, n_state, length, full, time_major,
                                                          large_delta, checkpoint, min_chunk, fast_math, chunks):
    report = _run(SCAN_CHECK, json.dumps([rows, channels, n_state, length, full, time_major, large_delta, checkpoint,
                                          min_chunk, fast_math]))
    assert report["deterministic"] and report["same_layout"] and report["chunks"] == chunks, report
    assert all(error < 1e-4 for error in report["errors"].values()), report["errors"]


def test_triton_conv_and_mixer_operator_match_torch_in_the_interpreter():
    errors = _run(CONV_CHECK)
    assert all(error < 1e-5 for error in errors.values()), errors
    assert len([name for name in errors if name.startswith("mixer")]) == 12
