"""The GPU scans (mamba-ssm's CUDA kernel, this package's Triton kernels) against the pure-PyTorch
scan, on a GPU with mamba-ssm installed."""

import copy

import pytest
import torch

from spmamba_sb import SPMamba
from spmamba_sb.environment import avoid_mix_order_reduction
from spmamba_sb.nnet.mixer import MambaMixer

pytestmark = pytest.mark.gpu
RTOL = 1e-4  # fp32, relative to the largest magnitude of the compared tensor
PARAM_GRAD_RTOL = 1e-2  # one parameter's gradient, relative L2 norm


@pytest.fixture(autouse=True)
def _exact_fp32():
    """Compare true fp32: TF32 convolutions would round the two paths' inputs differently."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _assert_close(actual, expected):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-6))


def _run(module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    weights = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(3), device=y.device)
    (y * weights).sum().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


def _pair(module, backend="cuda"):
    """The same module twice: one on a GPU kernel (``backend``), one on the torch scan."""
    torch_copy = copy.deepcopy(module)
    for m in torch_copy.modules():
        if isinstance(m, MambaMixer):
            m.scan_backend = "torch"
    for m in module.modules():
        if isinstance(m, MambaMixer):
            m.scan_backend = backend
    return module, torch_copy


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("rows,length", [(4, 64), (3, 1000), (16, 250)])
def test_mixer_cuda_equals_torch(rows, length, backend):
    torch.manual_seed(0)
    cuda_mixer, torch_mixer = _pair(MambaMixer(128, d_state=16, expand=4).cuda(), backend)
    x = torch.randn(128, rows, length, device="cuda")
    y_cuda, gx_cuda, gp_cuda = _run(cuda_mixer, x)
    y_torch, gx_torch, gp_torch = _run(torch_mixer, x)
    assert cuda_mixer.last_scan_backend == backend and torch_mixer.last_scan_backend == "torch"
    _assert_close(y_cuda, y_torch)
    _assert_close(gx_cuda, gx_torch)
    for name in gp_torch:
        _assert_close(gp_cuda[name], gp_torch[name])


def test_mamba_ssm_state_dict_round_trip():
    from mamba_ssm.modules.mamba_simple import Mamba

    torch.manual_seed(0)
    theirs = Mamba(d_model=64, d_state=16, d_conv=4, expand=4).cuda()
    ours = MambaMixer(64, d_state=16, d_conv=4, expand=4, scan_backend="cuda").cuda()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 300, 64, device="cuda")  # mamba-ssm's [batch, L, d_model]
    with torch.no_grad():
        _assert_close(ours(x.permute(2, 0, 1)).permute(1, 2, 0), theirs(x))


def _relative_l2(actual, expected):
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_full_model_cuda_equals_torch(backend):
    """Outputs agree to RTOL elementwise; gradients through two blocks accumulate fp32
    reduction-order differences, so they are compared by relative L2 norm (RTOL), and both
    fp32 paths are measured against an fp64 run of the torch path.

    The attention PReLUs get slope 1 here. With their initial slope of 0.25 a few
    pre-activations of a random input lie within rounding distance of the kink at 0, and the
    side they land on flips with the last bits of the inputs: on an H100 either backend's
    gradients then came out 1e-5 or 1.4e-4 from the fp64 run, from run to run, identically for
    both (also with the math SDPA backend). That is the kink, not the scan; without it the
    comparison measures the backends alone.
    """
    torch.manual_seed(0)
    model = SPMamba(num_blocks=2).cuda()
    for module in model.modules():
        if isinstance(module, torch.nn.PReLU):
            torch.nn.init.ones_(module.weight)
    cuda_model, torch_model = _pair(model, backend)
    exact_model = copy.deepcopy(torch_model).double()
    mix = torch.randn(2, 16000, device="cuda")
    y_cuda, gx_cuda, gp_cuda = _run(cuda_model, mix)
    y_torch, gx_torch, gp_torch = _run(torch_model, mix)
    y_exact, gx_exact, gp_exact = _run(exact_model, mix.double())
    _assert_close(y_cuda, y_torch)
    input_error = _relative_l2(gx_cuda, gx_torch)
    all_cuda, all_torch, all_exact = (torch.cat([g[n].flatten().double() for n in gp_torch])
                                      for g in (gp_cuda, gp_torch, gp_exact))
    total_error = _relative_l2(all_cuda, all_torch)
    # Some gradients are zero in exact arithmetic (e.g. the key norm's bias: softmax ignores a
    # shift shared by all keys); their relative error is meaningless, so they are held to the
    # overall scale instead.
    floor = 1e-4 * all_torch.norm()
    per_param = {n: ((gp_cuda[n] - gp_torch[n]).norm() / torch.maximum(gp_torch[n].norm(), floor)).item()
                 for n in gp_torch}
    worst = max(per_param, key=per_param.get)
    errors_vs_fp64 = {name: (_relative_l2(gx.double(), gx_exact), _relative_l2(all_g, all_exact))
                      for name, gx, all_g in (("cuda", gx_cuda, all_cuda), ("torch", gx_torch, all_torch))}
    print(f"{backend}: output max diff {(y_cuda - y_torch).abs().max().item():.2e}; gradients, relative L2: "
          f"input {input_error:.2e}, all parameters {total_error:.2e}, worst parameter {worst} "
          f"{per_param[worst]:.2e}; vs fp64 (input, parameters): {errors_vs_fp64}")
    assert input_error < RTOL and total_error < RTOL and per_param[worst] < PARAM_GRAD_RTOL
    assert max(errors_vs_fp64["torch"]) < RTOL and max(errors_vs_fp64["cuda"]) < RTOL


@pytest.mark.parametrize("backend", ["cuda", "triton", "torch"])
def test_bf16_autocast_published_model(backend):
    torch.manual_seed(0)
    model = SPMamba(scan_backend=backend).cuda()
    mix = torch.randn(1, 4 * 16000, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(mix)
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        reference = model(mix)
    error = (out.detach() - reference).norm() / reference.norm()
    print(f"bf16 autocast vs fp32 ({backend}): relative L2 error {error:.3e}")
    assert error < 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,length", [(501, 250), (257, 494)])
def test_triton_scan_equals_mamba_ssm_at_published_sizes(rows, length, dtype):
    """The Triton kernels against mamba-ssm's on the published model's scan shapes (the
    intra- and inter-frame paths of 4 s), inputs as strided channel-major views."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    from spmamba_sb.nnet.scan_triton import selective_scan_triton

    generator = torch.Generator(device="cuda").manual_seed(0)
    channels, n_state = 512, 16

    def view(*shape, scale=1.0, shift=0.0):  # [R, X, L] view of a [X, R, L] tensor
        data = torch.randn(shape[1], shape[0], shape[2], device="cuda", generator=generator)
        return (data * scale + shift).to(dtype).transpose(0, 1).requires_grad_()

    u, delta, z = view(rows, channels, length), view(rows, channels, length, 0.5, -1.0), view(rows, channels, length)
    B, C = view(rows, n_state, length), view(rows, n_state, length)
    A = (-torch.arange(1, n_state + 1, device="cuda", dtype=torch.float32).repeat(channels, 1)).requires_grad_()
    skip = torch.randn(channels, device="cuda", generator=generator).requires_grad_()
    bias = (torch.randn(channels, device="cuda", generator=generator) * 0.3 - 2).requires_grad_()
    inputs = [u, delta, A, B, C, skip, z, bias]
    ours = selective_scan_triton(*inputs, delta_softplus=True)
    theirs = selective_scan_fn(*inputs, delta_softplus=True)
    grad = torch.randn(theirs.shape, device="cuda", generator=generator, dtype=dtype)
    tolerance = RTOL if dtype == torch.float32 else 1e-2  # bf16 inputs and outputs: 8-bit mantissa
    for name, a, b in zip(["out", *"u delta A B C D z bias".split()],
                          [ours, *torch.autograd.grad(ours, inputs, grad)],
                          [theirs, *torch.autograd.grad(theirs, inputs, grad)]):
        error = ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
        assert error < tolerance, (name, error)


def test_triton_fast_math_equals_exact_math_over_the_whole_softplus_range(monkeypatch):
    """The compiled kernels' approximate log and divisions (softplus and its slope) against the
    same kernels with exact ones, raw step sizes from -60 to 60: tiny, ordinary and linear-range
    steps, and decays that underflow to 0."""
    from spmamba_sb.nnet import scan_triton
    from spmamba_sb.nnet.scan_triton import selective_scan_triton

    generator = torch.Generator(device="cuda").manual_seed(0)
    rows, channels, n_state, length = 6, 96, 16, 300

    def randn(*shape):
        return torch.randn(*shape, device="cuda", generator=generator)

    u, z = randn(rows, channels, length), randn(rows, channels, length)
    delta = torch.linspace(-60, 60, rows * channels * length, device="cuda")
    delta = delta[torch.randperm(delta.numel(), device="cuda", generator=generator)].view(rows, channels, length)
    B, C = randn(rows, n_state, length), randn(rows, n_state, length)
    A = -torch.rand(channels, n_state, device="cuda", generator=generator) * 3 - 0.1
    inputs = [t.requires_grad_() for t in (u, delta, A, B, C, randn(channels), z, randn(channels))]
    grad = randn(rows, channels, length)

    def run():
        out = selective_scan_triton(*inputs, delta_softplus=True)
        return [out, *torch.autograd.grad(out, inputs, grad)]

    assert scan_triton._launch_meta(A, None, None, None, True, 64)["FAST_MATH"]
    fast = run()
    exact_meta = scan_triton._launch_meta
    monkeypatch.setattr(scan_triton, "_launch_meta", lambda *args: dict(exact_meta(*args), FAST_MATH=False))
    for name, a, b in zip(["out", *"u delta A B C D z bias".split()], fast, run()):
        error = ((a - b).abs().max() / b.abs().max()).item()
        assert error < RTOL, (name, error)


def test_triton_inference_split_along_time_equals_torch():
    """Without autograd a long sequence in few rows runs in chunks along time (here 8 rows x 8
    channel blocks x 8 chunks); it must equal the unsplit torch scan."""
    from spmamba_sb.nnet import scan_triton

    torch.manual_seed(0)
    triton_mixer, torch_mixer = _pair(MambaMixer(128, d_state=16, expand=4).cuda(), "triton")
    x = torch.randn(128, 8, 6000, device="cuda")
    assert scan_triton._time_chunks(8, 8, 6000)[0] > 1
    with torch.no_grad():
        _assert_close(triton_mixer(x), torch_mixer(x))


def test_compiled_model_on_triton_has_no_graph_break():
    """The Triton scan and mixer are PyTorch operators: ``torch.compile`` takes the whole model in
    one graph (with ``scan_backend="auto"`` too), and the compiled model's output and gradients
    equal the eager model's."""
    torch.manual_seed(0)
    model = SPMamba(num_blocks=1, scan_backend="triton").cuda()
    mix = torch.randn(1, 8000, device="cuda")
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(mix)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    automatic = SPMamba(num_blocks=1, scan_backend="auto").cuda()  # the recipes' setting, resolved while tracing
    explanation = torch._dynamo.explain(automatic)(mix)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model)
    y_eager, gx_eager, gp_eager = _run(model, mix)
    y_compiled, gx_compiled, gp_compiled = _run(compiled, mix)
    _assert_close(y_compiled, y_eager)
    for name in gp_eager:  # the compiled module's parameter names carry its wrapper's prefix
        assert _relative_l2(gp_compiled["_orig_mod." + name], gp_eager[name]) < 1e-3, name


def test_the_16khz_model_trains_compiled_at_batch_8():
    """Batch 8 x 2 s at 16 kHz puts 8.3 M elements through each channel norm: compiled with
    Inductor's mix-order reduction on, PyTorch 2.10 and 2.11 return the norm gain's gradient in the
    wrong shape at the first backward (pytorch/pytorch#178080). With the pass off, as ``--compile``
    sets it, the bf16 step runs and every gradient is finite and shaped as its parameter."""
    from torch._inductor import config

    torch.manual_seed(0)
    model = SPMamba(num_blocks=1, scan_backend="triton").cuda()  # the published 16 kHz STFT
    mix = torch.randn(8, 32000, device="cuda")
    torch._dynamo.reset()
    with config.patch({"triton.mix_order_reduction": True}):
        assert avoid_mix_order_reduction({})
        compiled = torch.compile(model, dynamic=False)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(mix).float().pow(2).mean()
        loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.shape == parameter.shape, name
        assert torch.isfinite(parameter.grad).all(), name
