"""The Mamba mixer's inner computation as one PyTorch operator over the Triton kernels.

From the mixer's input to its output: ``in_proj`` (one product for the hidden and gate
halves), the causal convolution and SiLU (:mod:`~spmamba_sb.nnet.conv_triton`), ``x_proj``,
``dt_proj``, the selective scan (:mod:`~spmamba_sb.nnet.scan_triton`) and ``out_proj``, on
time-major activations ([rows * L, channels] storage, channels contiguous). Under autograd it
keeps only the input, the ``in_proj`` output and the ``x_proj`` output (the approach of
mamba-ssm's ``mamba_inner_fn``); the backward recomputes the convolution and the step sizes,
and its scan kernel writes the scan output again for ``out_proj``'s weight gradient. That is
about 1,200 instead of 2,700 saved values per step at the published sizes.

It is registered as ``torch.ops.spmamba_sb.mamba_mixer`` with its backward, so
``torch.compile`` traces the model around it without a graph break. Mixed precision is
the caller's: :func:`mamba_mixer` casts the input and the four projection weights to the
autocast dtype (as autocast would for the products) and the operator runs in that dtype,
with fp32 convolution, scan state and parameters of the scan.
"""

from typing import List

import torch

from spmamba_sb.nnet.conv_triton import conv_silu_backward, conv_silu_forward
from spmamba_sb.nnet.scan_triton import scan_backward, scan_forward


def _channels_view(t: torch.Tensor, rows: int) -> torch.Tensor:
    """[rows * L, X] storage as the scan's [rows, X, L] view."""
    return t.view(rows, -1, t.shape[-1]).transpose(1, 2)


def _inner(x, rows, in_w, conv_w, conv_b, x_w, dt_w, A):
    """Forward up to the scan's inputs; ``x`` [d_model, rows * L]. Returns the ``in_proj``
    output [rows * L, 2 * d_inner], the convolution output [rows, L, d_inner], the ``x_proj``
    output [rows * L, dt_rank + 2 N] and the raw step sizes [rows * L, d_inner]."""
    d_inner = A.shape[0]
    xz = x.t() @ in_w.t()  # [rows*L, 2*d_inner]
    hidden = conv_silu_forward(xz[:, :d_inner].view(rows, -1, d_inner), conv_w, conv_b)  # [rows, L, d_inner]
    steps = hidden.view(-1, d_inner) @ x_w.t()  # [rows*L, dt_rank + 2N]
    delta = steps[:, : dt_w.shape[1]] @ dt_w.t()  # [rows*L, d_inner], bias added in the scan
    return xz, hidden, steps, delta


def _scan_args(xz, hidden, steps, delta, rows, dt_rank, A, D, dt_b):
    """Arguments of the scan kernels (views of the time-major activations)."""
    d_inner, n_state = A.shape
    B, C = steps[:, dt_rank:].split(n_state, dim=1)
    return (_channels_view(hidden.view(-1, d_inner), rows), _channels_view(delta, rows), A,
            _channels_view(B, rows), _channels_view(C, rows), D, _channels_view(xz[:, d_inner:], rows), dt_b, True)


@torch.library.custom_op("spmamba_sb::mamba_mixer", mutates_args=())
def _mixer_op(x: torch.Tensor, rows: int, in_w: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
              x_w: torch.Tensor, dt_w: torch.Tensor, dt_b: torch.Tensor, A: torch.Tensor, D: torch.Tensor,
              out_w: torch.Tensor, split_time: bool) -> List[torch.Tensor]:
    """Output [d_model, rows * L] and the two activations the backward keeps."""
    xz, hidden, steps, delta = _inner(x, rows, in_w, conv_w, conv_b, x_w, dt_w, A)
    y = scan_forward(*_scan_args(xz, hidden, steps, delta, rows, dt_w.shape[1], A, D, dt_b), split_time=split_time)
    out = out_w @ y.transpose(1, 2).reshape(-1, A.shape[0]).t()  # [d_model, rows*L]
    return [out, xz, steps]


@_mixer_op.register_fake
def _(x, rows, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w, split_time):
    n_steps = x.shape[1]
    return [x.new_empty(out_w.shape[0], n_steps), x.new_empty(n_steps, in_w.shape[0]),
            x.new_empty(n_steps, x_w.shape[0])]


@torch.library.custom_op("spmamba_sb::mamba_mixer_backward", mutates_args=())
def _mixer_backward_op(dout: torch.Tensor, x: torch.Tensor, xz: torch.Tensor, steps: torch.Tensor, rows: int,
                       in_w: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, x_w: torch.Tensor,
                       dt_w: torch.Tensor, dt_b: torch.Tensor, A: torch.Tensor, D: torch.Tensor,
                       out_w: torch.Tensor) -> List[torch.Tensor]:
    """Gradients of x and of the ten weights, in their dtypes."""
    d_inner, n_state = A.shape
    dt_rank = dt_w.shape[1]
    compute = x.dtype
    hidden = conv_silu_forward(xz[:, :d_inner].view(rows, -1, d_inner), conv_w, conv_b)  # recomputed
    delta = steps[:, :dt_rank] @ dt_w.t()
    dout = dout.to(compute)
    dy = dout.t() @ out_w  # [rows*L, d_inner]
    du, ddelta, dz, dA, dB, dC, dD, dbias, y = scan_backward(
        *_scan_args(xz, hidden, steps, delta, rows, dt_rank, A, D, dt_b), _channels_view(dy, rows), with_output=True)
    flat = lambda t: t.transpose(1, 2).reshape(-1, d_inner)  # [rows, d_inner, L] (time-major) -> [rows*L, d_inner]
    du, ddelta, dz, y = flat(du), flat(ddelta), flat(dz), flat(y)
    dsteps = torch.cat([ddelta @ dt_w, dB.flatten(0, 1).to(compute), dC.flatten(0, 1).to(compute)], dim=1)
    dhidden = torch.addmm(du, dsteps, x_w)  # [rows*L, d_inner]
    dconv_in, dconv_w, dconv_b = conv_silu_backward(xz[:, :d_inner].view(rows, -1, d_inner), conv_w, conv_b,
                                                    dhidden.view(rows, -1, d_inner))
    dconv_in = dconv_in.view(-1, d_inner)
    dx = (dconv_in @ in_w[:d_inner] + dz @ in_w[d_inner:]).t()  # [d_model, rows*L]
    din_w = torch.cat([dconv_in.t() @ x.t(), dz.t() @ x.t()])  # [2*d_inner, d_model]
    return [dx, din_w, dconv_w.to(conv_w.dtype), dconv_b.to(conv_b.dtype), dsteps.t() @ hidden.view(-1, d_inner),
            ddelta.t() @ steps[:, :dt_rank], dbias.to(dt_b.dtype), dA.to(A.dtype), dD.to(D.dtype),
            dout @ y]


@_mixer_backward_op.register_fake
def _(dout, x, xz, steps, rows, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w):
    return [x.new_empty(x.shape[1], x.shape[0]).t()] + [torch.empty_like(w) for w in
                                                         (in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w)]


def _setup_mixer(ctx, inputs, output):
    x, rows, *weights, _ = inputs
    ctx.rows = rows
    ctx.set_materialize_grads(False)  # the kept activations get no gradient: no zeros made for them
    ctx.save_for_backward(x, output[1], output[2], *weights)


def _mixer_grads(ctx, grads):
    x, xz, steps, *weights = ctx.saved_tensors
    dx, *dweights = _mixer_backward_op(grads[0], x, xz, steps, ctx.rows, *weights)
    return (dx, None, *dweights, None)


_mixer_op.register_autograd(_mixer_grads, setup_context=_setup_mixer)


def mamba_mixer(x: torch.Tensor, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w) -> torch.Tensor:
    """Mamba's inner computation on channel-major sequences, through the Triton kernels.

    Arguments
    ---------
    x : torch.Tensor
        [d_model, rows, L].
    in_w, x_w, dt_w, out_w : torch.Tensor
        Weights of ``in_proj`` [2 d_inner, d_model], ``x_proj``, ``dt_proj``, ``out_proj``.
    conv_w, conv_b : torch.Tensor
        Depthwise convolution weight [d_inner, K] and bias [d_inner].
    dt_b : torch.Tensor
        ``dt_proj`` bias [d_inner] (step-size bias, softplus after it).
    A : torch.Tensor
        [d_inner, N], negative (``-exp(A_log)``).
    D : torch.Tensor
        Skip weights [d_inner].

    Returns
    -------
    torch.Tensor
        [d_model, rows, L], in the autocast dtype under autocast, else ``x``'s.

    Example
    -------
    >>> from spmamba_sb.nnet.mixer import MambaMixer  # doctest: +SKIP
    >>> m = MambaMixer(8, d_state=4, expand=2).cuda()  # doctest: +SKIP
    >>> mamba_mixer(torch.randn(8, 3, 20, device="cuda"), m.in_proj.weight, m.conv1d.weight[:, 0],
    ...             m.conv1d.bias, m.x_proj.weight, m.dt_proj.weight, m.dt_proj.bias,
    ...             -torch.exp(m.A_log), m.D, m.out_proj.weight).shape  # doctest: +SKIP
    torch.Size([8, 3, 20])
    """
    d_model, rows, seq_len = x.shape
    device = x.device.type
    compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    projections = [t.to(compute) for t in (x.flatten(1), in_w, x_w, dt_w, out_w)]
    fp32 = [t.float().contiguous() for t in (conv_w, conv_b, dt_b, A, D)]
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in projections + fp32)
    with torch.autocast(device, enabled=False):
        out, _, _ = _mixer_op(projections[0], rows, projections[1], fp32[0], fp32[1], projections[2], projections[3],
                              fp32[2], fp32[3], fp32[4], projections[4], not tracked)
    return out.view(d_model, rows, seq_len)
