"""The Triton scan kernels against the step-by-step reference, run by Triton's interpreter on
the CPU (the same kernels the GPU compiles; ``tests/gpu`` compares them on a GPU)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

CHECK = textwrap.dedent(
    """
    import json, sys
    import torch
    from spmamba_sb.nnet.scan import selective_scan_reference
    from spmamba_sb.nnet.scan_triton import selective_scan_triton

    rows, channels, n_state, length, options, full = json.loads(sys.argv[1])
    torch.manual_seed(0)
    def view(*shape):  # [rows, X, L] view of a [X, rows, L] tensor: the mixer's layout
        return torch.randn(shape[1], shape[0], shape[2]).transpose(0, 1).requires_grad_()
    u, delta, z = (view(rows, channels, length) for _ in range(3))
    B, C = view(rows, n_state, length), view(rows, n_state, length)
    A = (-torch.rand(channels, n_state) * 3).requires_grad_()
    skip, bias = torch.randn(channels).requires_grad_(), torch.randn(channels).requires_grad_()
    inputs = [u, delta, A, B, C] + ([skip, z, bias] if full else [None, None, None])
    ours = selective_scan_triton(*inputs, delta_softplus=full, **options)
    expected = selective_scan_reference(*inputs, delta_softplus=full)
    used = [t for t in inputs if t is not None]
    grad = torch.randn(expected.shape)
    with torch.no_grad():
        untracked = selective_scan_triton(*inputs, delta_softplus=full, **options)
    errors = {"out": ours, "no_grad": untracked}
    errors = {k: ((v - expected).abs().max() / expected.abs().max()).item() for k, v in errors.items()}
    for name, a, b in zip("u delta A B C D z bias".split(),
                          torch.autograd.grad(ours, used, grad), torch.autograd.grad(expected, used, grad)):
        errors[name] = ((a - b).abs().max() / b.abs().max()).item()
    errors["channel_major"] = ours.transpose(0, 1).is_contiguous()
    print(json.dumps(errors))
    """
)


@pytest.mark.parametrize(
    "rows,channels,n_state,length,options,full",
    [
        (3, 12, 5, 37, {"chunk": 16, "block_d": 8}, True),  # 3 chunks, a partial channel block, N padded
        (2, 8, 4, 20, {}, False),  # one chunk; no skip, gate, bias or softplus
    ],
)
def test_triton_scan_matches_reference_in_the_interpreter(rows, channels, n_state, length, options, full):
    environment = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps([rows, channels, n_state, length, options, full])],
        env=environment, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors.pop("channel_major") is True
    assert all(error < 1e-5 for error in errors.values()), errors
