"""The public scan at both layouts on a GPU: ``backend="auto"`` never picks a backend slower
than another one installed, at either layout, with or without the backward pass (published
intra-frame shape, bf16), and the Triton backend's output follows the input's layout."""

import pytest
import torch

from spmamba_sb.nnet.scan import backend_for, resolve_backend, selective_scan

pytestmark = pytest.mark.gpu
ROWS, CHANNELS, N_STATE, LENGTH = 501, 512, 16, 250
SLACK = 1.15  # timing noise allowed between two medians of one process


def _inputs(layout):
    generator = torch.Generator(device="cuda").manual_seed(0)

    def tensor(features, scale=1.0, shift=0.0):
        shape = (ROWS, features, LENGTH) if layout == "channel-first" else (ROWS, LENGTH, features)
        data = torch.randn(*shape, device="cuda", generator=generator) * scale + shift
        data = data.to(torch.bfloat16)
        return (data if layout == "channel-first" else data.transpose(1, 2)).requires_grad_()

    u, delta, z = tensor(CHANNELS), tensor(CHANNELS, 0.5, -1.0), tensor(CHANNELS)
    B, C = tensor(N_STATE), tensor(N_STATE)
    A = (-torch.arange(1, N_STATE + 1, device="cuda", dtype=torch.float32).repeat(CHANNELS, 1)).requires_grad_()
    D = torch.ones(CHANNELS, device="cuda", requires_grad=True)
    bias = torch.full((CHANNELS,), -2.0, device="cuda", requires_grad=True)
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias, delta_softplus=True)


def _installed_backends():
    backends = ["triton"]
    try:
        resolve_backend("cuda", torch.device("cuda"))
        backends.append("cuda")
    except ImportError:
        pass
    return backends


def _median_ms(backend, inputs, with_backward):
    from triton.testing import do_bench

    def call():
        out = selective_scan(**inputs, backend=backend)
        if with_backward:
            out.backward(torch.ones_like(out))

    if with_backward:
        return do_bench(call, grad_to_none=[t for t in inputs.values() if isinstance(t, torch.Tensor)],
                        return_mode="median")
    with torch.no_grad():
        return do_bench(call, return_mode="median")


@pytest.mark.parametrize("with_backward", [False, True], ids=["forward", "forward+backward"])
@pytest.mark.parametrize("layout", ["channel-first", "time-major"])
def test_auto_is_the_fastest_installed_backend_at_either_layout(layout, with_backward):
    inputs = _inputs(layout)
    times = {backend: _median_ms(backend, inputs, with_backward) for backend in _installed_backends()}
    chosen = backend_for("auto", inputs["u"], tracked=with_backward)
    print(layout, "forward+backward" if with_backward else "forward", {k: round(v, 3) for k, v in times.items()},
          "auto ->", chosen)
    assert times[chosen] <= SLACK * min(times.values()), times


@pytest.mark.parametrize("layout", ["channel-first", "time-major"])
def test_triton_output_layout_follows_the_input(layout):
    inputs = _inputs(layout)
    with torch.no_grad():
        out = selective_scan(**inputs, backend="triton")
    assert out.shape == (ROWS, CHANNELS, LENGTH)
    assert out.is_contiguous() == (layout == "channel-first")
    assert out.stride(1) == (1 if layout == "time-major" else LENGTH)
