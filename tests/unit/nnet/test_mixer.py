"""MambaMixer: mamba-ssm's parameter layout and initialisation, shapes and gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from spmamba_sb.nnet.mixer import MambaMixer


def mamba_ssm_shapes(d_model, d_state=16, d_conv=4, expand=2):
    """Names and shapes of ``mamba_ssm.modules.mamba_simple.Mamba`` parameters (v2.x)."""
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    return {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("d_model,d_state,d_conv,expand", [(128, 16, 4, 4), (16, 8, 3, 2)])
def test_state_dict_matches_mamba_ssm(d_model, d_state, d_conv, expand):
    mixer = MambaMixer(d_model, d_state, d_conv, expand)
    shapes = mamba_ssm_shapes(d_model, d_state, d_conv, expand)
    assert {k: tuple(v.shape) for k, v in mixer.state_dict().items()} == shapes
    foreign = {k: torch.randn(s) for k, s in shapes.items()}
    mixer.load_state_dict(foreign, strict=True)
    assert torch.equal(mixer.x_proj.weight, foreign["x_proj.weight"])


def test_initialisation_follows_mamba():
    mixer = MambaMixer(d_model=32, d_state=16, expand=4, dt_min=0.001, dt_max=0.1)
    assert torch.allclose(mixer.A_log, torch.log(torch.arange(1, 17.0)).expand(128, 16))
    assert torch.equal(mixer.D, torch.ones(128))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    bound = mixer.dt_rank**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound
    assert mixer.in_proj.bias is None and mixer.x_proj.bias is None and mixer.out_proj.bias is None


def test_forward_shape_backend_and_gradients():
    mixer = MambaMixer(8, d_state=4, expand=2, scan_backend="torch")
    x = torch.randn(8, 3, 21, requires_grad=True)
    y = mixer(x)
    assert y.shape == (8, 3, 21) and mixer.last_scan_backend == "torch"
    y.pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mixer.parameters())
    assert torch.isfinite(x.grad).all()


def test_mixer_is_causal():
    mixer = MambaMixer(8, d_state=4, expand=2, scan_backend="torch")
    x = torch.randn(8, 2, 30)
    changed = x.clone()
    changed[:, 1, 20:] += 1.0
    with torch.no_grad():
        y, y_changed = mixer(x), mixer(changed)
    torch.testing.assert_close(y[:, :, :20], y_changed[:, :, :20])
    torch.testing.assert_close(y[:, 0], y_changed[:, 0])  # rows are independent
    assert not torch.allclose(y[:, 1, 20:], y_changed[:, 1, 20:])


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_model=0), "d_model"), (dict(d_model=8, d_state=-1), "d_state"),
    (dict(d_model=8, scan_backend="mamba"), "scan_backend"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MambaMixer(**kwargs)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expected input \[8, rows, L\]"):
        MambaMixer(8)(torch.randn(7, 2, 5))


def test_scan_inputs_are_views_of_the_projections(monkeypatch):
    """The channel-major layout hands the scan strided views in mamba-ssm's [rows, channels, L]
    layout, unit stride along L, without copying the projections."""
    from spmamba_sb.nnet import mixer as mixer_module

    mixer = MambaMixer(8, d_state=4, expand=2, scan_backend="torch")
    seen = {}
    real_scan = mixer_module.run_scan

    def spy(backend, u, delta, A, B, C, D=None, z=None, **kwargs):
        seen.update(u=u, delta=delta, B=B, C=C, z=z)
        return real_scan(backend, u, delta, A, B, C, D=D, z=z, **kwargs)

    monkeypatch.setattr(mixer_module, "run_scan", spy)
    rows, length = 3, 11
    mixer(torch.randn(8, rows, length))
    assert seen["u"].shape == seen["delta"].shape == seen["z"].shape == (rows, 16, length)
    assert seen["B"].shape == seen["C"].shape == (rows, 4, length)
    assert all(t.stride(-1) == 1 for t in seen.values())
    # B and C are slices of one x_proj output; z is the second half of in_proj's output
    assert seen["B"].untyped_storage().data_ptr() == seen["C"].untyped_storage().data_ptr()
    assert seen["z"].storage_offset() == 16 * rows * length
    assert not seen["u"].is_contiguous()  # a transposed view of [d_inner, rows, L], not a copy


def test_backend_is_resolved_once_per_forward(monkeypatch):
    import spmamba_sb.nnet.mixer as mixer_module
    import spmamba_sb.nnet.scan as scan_module

    calls = []
    real = scan_module.resolve_backend

    def counting(requested, device):
        calls.append(requested)
        return real(requested, device)

    monkeypatch.setattr(mixer_module, "resolve_backend", counting)
    monkeypatch.setattr(scan_module, "resolve_backend", counting)
    MambaMixer(8, d_state=4, expand=2)(torch.randn(8, 3, 21))
    assert calls == ["auto"]
