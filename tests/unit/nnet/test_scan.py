"""The pure-PyTorch selective scan against the step-by-step recurrence, and backend choice."""

import logging
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from spmamba_sb.nnet import scan, scan_torch
from spmamba_sb.nnet.scan import resolve_backend, selective_scan
from spmamba_sb.nnet.scan_torch import selective_scan_reference, selective_scan_torch


def _inputs(batch, length, channels, n_state, delta_scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u, delta, z = (torch.randn(batch, channels, length, generator=gen) for _ in range(3))
    A = -torch.rand(channels, n_state, generator=gen) * 8 - 0.1
    B, C = (torch.randn(batch, n_state, length, generator=gen) for _ in range(2))
    D = torch.randn(channels, generator=gen)
    bias = torch.randn(channels, generator=gen)
    return dict(u=u, delta=delta * delta_scale, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)


def _grads(fn, inputs):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = fn(**leaves, delta_softplus=True)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    grads = torch.autograd.grad((y * weights).sum(), [leaves[k] for k in ("u", "delta", "A", "B", "C", "D", "z")])
    return y.detach(), grads


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, expected.abs().max().item()))


@pytest.mark.parametrize(
    "batch,length,channels,n_state,delta_scale,chunk_size",
    [
        (2, 1, 3, 2, 1.0, None),
        (2, 37, 5, 4, 1.0, 8),
        (1, 2048 + 77, 4, 3, 1.0, None),
        (2, 300, 4, 4, 40.0, 16),  # large steps: decays underflow to 0, must stay finite
        (3, 129, 6, 16, 0.01, 1),
    ],
)
def test_torch_scan_matches_recurrence(batch, length, channels, n_state, delta_scale, chunk_size):
    inputs = _inputs(batch, length, channels, n_state, delta_scale)
    y, grads = _grads(lambda **kw: selective_scan_torch(**kw, chunk_size=chunk_size), inputs)
    y_ref, grads_ref = _grads(selective_scan_reference, inputs)
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    _close(y, y_ref)
    for grad, grad_ref in zip(grads, grads_ref):
        _close(grad, grad_ref)


def _graph_nodes(tensor):
    """Names of the autograd nodes that ``tensor`` depends on."""
    names, stack, seen = [], [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("sequential_min", [0, 1 << 30])  # step by step, log-depth
def test_training_keeps_one_graph_node_per_chunk_not_per_step(monkeypatch, sequential_min):
    """Forward under autograd leaves no per-step graph (what made CPU training use several
    times the memory its tensors need); backward recomputes each chunk (gradients: above)."""
    monkeypatch.setattr(scan_torch, "SEQUENTIAL_MIN_ELEMENTS", sequential_min)
    inputs = {k: v.requires_grad_() for k, v in _inputs(2, 64, 4, 3).items()}
    names = _graph_nodes(selective_scan_torch(**inputs, delta_softplus=True, chunk_size=8))
    assert names.count("RecomputedChunkBackward") == 8
    assert "AddcmulBackward0" not in names and "ExpBackward0" not in names  # the scan's own operations


@pytest.mark.parametrize("with_grad_state", [True, False])
def test_adjoint_recurrence_equals_autograd_through_the_step_loop(with_grad_state):
    """scan_steps_backward gives autograd's gradients of scan_steps for every input, the
    starting state included (fp64, so only rounding separates them)."""
    gen = torch.Generator().manual_seed(3)
    rows, steps, channels, n_state = 3, 11, 5, 4
    u, B, C = (torch.randn(rows, steps, n, generator=gen, dtype=torch.float64)
               for n in (channels, n_state, n_state))
    delta = torch.rand(rows, steps, channels, generator=gen, dtype=torch.float64) * 2
    A = -torch.rand(channels, n_state, generator=gen, dtype=torch.float64) * 4
    state = torch.randn(rows, channels, n_state, generator=gen, dtype=torch.float64)
    grad_y = torch.randn(rows, steps, channels, generator=gen, dtype=torch.float64)
    grad_state = torch.randn(rows, channels, n_state, generator=gen, dtype=torch.float64) if with_grad_state else None
    leaves = [t.clone().requires_grad_() for t in (state, u, delta, A, B, C)]
    y, last = scan_torch.scan_steps(*leaves)
    expected = torch.autograd.grad((y, last) if with_grad_state else y, leaves,
                                   (grad_y, grad_state) if with_grad_state else grad_y)
    actual = scan_torch.scan_steps_backward(state, u, delta, A, B, C, grad_y, grad_state)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_training_steps_through_the_adjoint_recurrence(monkeypatch):
    """Under autograd, the CPU step-by-step path differentiates every chunk with
    scan_steps_backward (gradients against the recurrence: the test below)."""
    calls = []
    adjoint = scan_torch.scan_steps_backward
    monkeypatch.setattr(scan_torch, "SEQUENTIAL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(scan_torch, "scan_steps_backward", lambda *args: calls.append(1) or adjoint(*args))
    inputs = {k: v.requires_grad_() for k, v in _inputs(2, 64, 4, 3).items()}
    selective_scan_torch(**inputs, delta_softplus=True, chunk_size=8).sum().backward()
    assert len(calls) == 8


@pytest.mark.parametrize("block_rows", [None, 2])
def test_step_by_step_path_and_row_blocks_match_recurrence(monkeypatch, block_rows):
    """The CPU step-by-step loop (forced on small states), with and without blocks of rows."""
    batch, channels, n_state = 5, 6, 4
    monkeypatch.setattr(scan_torch, "SEQUENTIAL_MIN_ELEMENTS", 1)
    if block_rows is not None:
        monkeypatch.setattr(scan_torch, "SEQUENTIAL_BLOCK_ELEMENTS", block_rows * channels * n_state)
    inputs = _inputs(batch, 70, channels, n_state)
    y, grads = _grads(lambda **kw: selective_scan_torch(**kw, chunk_size=16), inputs)
    y_ref, grads_ref = _grads(selective_scan_reference, inputs)
    _close(y, y_ref)
    for grad, grad_ref in zip(grads, grads_ref):
        _close(grad, grad_ref)


@pytest.mark.slow  # compiles for about 30 s with a cold inductor cache
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
@pytest.mark.parametrize("sequential_min", [1, None])
def test_compiled_scan_matches_recurrence(monkeypatch, sequential_min):
    """The opt-in torch.compile path, step by step and log-depth, with a padded last chunk."""
    monkeypatch.setattr(scan_torch, "_compiled_cache", {})
    if sequential_min is not None:
        monkeypatch.setattr(scan_torch, "SEQUENTIAL_MIN_ELEMENTS", sequential_min)
    inputs = _inputs(3, 21, 6, 4)
    with torch.no_grad():
        y = selective_scan(**inputs, delta_softplus=True, backend="torch", chunk_size=8, compile_torch_scan=True)
    algorithm = scan_torch.scan_steps if sequential_min is not None else scan_torch.scan_log_depth
    assert scan_torch._compiled_cache[algorithm] is not None
    _close(y, selective_scan_reference(**inputs, delta_softplus=True))


def test_failed_compilation_warns_once_and_runs_eagerly(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(scan_torch, "_compiled_cache", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken)
    inputs = _inputs(2, 21, 4, 3)
    with caplog.at_level(logging.WARNING, logger=scan_torch.__name__), torch.no_grad():
        y = selective_scan_torch(**inputs, delta_softplus=True, chunk_size=8, compiled=True)
        selective_scan_torch(**inputs, delta_softplus=True, chunk_size=8, compiled=True)
    assert sum("torch.compile" in r.getMessage() for r in caplog.records) == 1
    _close(y, selective_scan_reference(**inputs, delta_softplus=True))


def test_bf16_inputs_scan_in_fp32():
    inputs = _inputs(2, 50, 4, 3)
    half = {k: v.bfloat16() for k, v in inputs.items()}
    y = selective_scan_torch(**half, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    y_ref = selective_scan_reference(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-2 * y_ref.abs().max().item())


def test_chunks_are_bounded(monkeypatch):
    seen = []

    def spy(algorithm):
        def run(state, u, *rest):
            seen.append(u.shape[1])
            return algorithm(state, u, *rest)
        return run

    for name in ("scan_steps", "scan_log_depth"):
        monkeypatch.setattr(scan_torch, name, spy(getattr(scan_torch, name)))
    selective_scan_torch(**_inputs(1, 3000, 4, 3), chunk_size=64)
    assert max(seen) == 64 and sum(seen) == 3000
    seen.clear()
    # default chunking keeps one [B, chunk, D, N] tensor near CHUNK_ELEMENTS
    selective_scan_torch(**_inputs(64, 200, 256, 16))
    assert max(seen) * 64 * 256 * 16 <= scan_torch.CHUNK_ELEMENTS["cpu"]


def test_backend_names(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_backend("torch", cpu) == "torch"
    monkeypatch.setenv("SPMAMBA_SCAN_BACKEND", "cuda")  # read where a command starts, never here
    assert resolve_backend("auto", cpu) == "torch"
    with pytest.raises(ValueError, match="is not one of"):
        resolve_backend("gpu", cpu)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        resolve_backend("cuda", cpu)


def test_auto_logs_its_choice_once(caplog, monkeypatch):
    monkeypatch.setattr(scan, "_logged_choices", set())
    with caplog.at_level(logging.INFO, logger=scan.__name__):
        inputs = _inputs(1, 5, 2, 2)
        selective_scan(**inputs)
        selective_scan(**inputs)
    assert [r.getMessage() for r in caplog.records] == [
        "selective scan backend 'auto' -> 'torch' on cpu tensors"
    ]


def _fake_mamba_ssm(tmp_path, body):
    package = tmp_path / "mamba_ssm"
    package.mkdir()
    (package / "__init__.py").write_text(body)
    return str(tmp_path)


def test_missing_kernel_for_explicit_cuda_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(scan, "_kernel_cache", {})
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import fails as if not installed
    monkeypatch.setattr(scan, "_triton_cache", {"fn": None, "error": ModuleNotFoundError("triton")})
    with pytest.raises(ImportError, match=r"pip install 'spmamba-sb\[cuda\]'"):
        resolve_backend("cuda", torch.device("cuda"))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


def test_auto_takes_triton_without_mamba_ssm_and_triton_needs_cuda(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setattr(scan, "_kernel_cache", {})
    monkeypatch.setattr(scan, "_triton_cache", {})
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    with torch.no_grad():
        assert resolve_backend("auto", torch.device("cuda")) == "triton"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("triton", torch.device("cuda")) == "triton"
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        resolve_backend("triton", torch.device("cpu"))
    monkeypatch.setattr(scan, "_triton_cache", {"fn": None, "error": ModuleNotFoundError("triton")})
    with pytest.raises(ImportError, match="Triton is unavailable"):
        resolve_backend("triton", torch.device("cuda"))


def test_auto_prefers_triton_and_falls_back_to_mamba_ssm_on_older_gpus(monkeypatch):
    """Measured on an H200: the Triton kernels train and infer faster than mamba-ssm's."""
    monkeypatch.setattr(scan, "_kernel_cache", {"fn": lambda *args, **kwargs: None})
    monkeypatch.setattr(scan, "_triton_cache", {"fn": lambda *args, **kwargs: None})
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    with torch.no_grad():
        assert resolve_backend("auto", torch.device("cuda")) == "triton"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_backend("auto", torch.device("cuda")) == "cuda"


def test_broken_install_warns_once_and_falls_back(monkeypatch, tmp_path, caplog):
    path = _fake_mamba_ssm(tmp_path, "raise OSError('undefined symbol: selective_scan_fwd')\n")
    monkeypatch.syspath_prepend(path)
    for name in [m for m in sys.modules if m.startswith("mamba_ssm")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(scan, "_kernel_cache", {})
    monkeypatch.setattr(scan, "_triton_cache", {"fn": None, "error": ModuleNotFoundError("triton")})
    with caplog.at_level(logging.WARNING, logger=scan.__name__):
        assert resolve_backend("auto", torch.device("cuda")) == "torch"
        assert resolve_backend("auto", torch.device("cuda")) == "torch"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "undefined symbol" in warnings[0].getMessage()


@pytest.mark.slow  # a fresh interpreter each
@pytest.mark.parametrize("body", [None, "raise OSError('broken build')\n"])
def test_import_never_touches_mamba_ssm(tmp_path, body):
    env_path = _fake_mamba_ssm(tmp_path, body) if body else ""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {env_path!r})
        import torch, spmamba_sb
        assert "mamba_ssm" not in sys.modules
        model = spmamba_sb.SPMamba(n_fft=16, hop_length=4, emb_dim=4, num_blocks=1, num_heads=1,
                                   attention_qk_dim=9, emb_kernel_size=2, d_state=2, expand=1)
        assert model(torch.randn(1, 64)).shape == (1, 2, 64)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("time_major,tracked,mamba_ssm,expected", [
    (False, False, True, "cuda"),  # channel-first inference: the copies would cost more than mamba-ssm
    (False, True, True, "triton"),  # with the backward pass the Triton kernels stay ahead
    (True, False, True, "triton"),  # the kernels' own layout
    (False, False, False, "triton"),  # nothing else installed
])
def test_auto_takes_mamba_ssm_for_channel_first_inference_only(monkeypatch, time_major, tracked, mamba_ssm, expected):
    monkeypatch.setattr(scan, "resolve_backend", lambda requested, device: "triton")
    monkeypatch.setattr(scan, "_load_kernel", lambda: (lambda *args: None) if mamba_ssm else None)
    u = torch.randn(2, 10, 4).transpose(1, 2) if time_major else torch.randn(2, 4, 10)
    assert scan.backend_for("auto", u, tracked) == expected
    assert scan.backend_for("triton", u, tracked) == "triton"  # a backend asked for by name stays
