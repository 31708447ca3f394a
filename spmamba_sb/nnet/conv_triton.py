"""Mamba's causal depthwise convolution and SiLU, fused, as Triton kernels (forward and backward).

``out[r, t, d] = silu(bias[d] + sum_k weight[d, k] x[r, t - K + 1 + k, d])`` with zeros before
the start, on time-major tensors ([R, L, D], channels contiguous): the layout the mixer keeps
for the Triton scan. A program walks ``CHUNK`` steps of one row and ``BLOCK_D`` channels in
order, keeping the last K inputs (and, backward, the last K pre-activation gradients) in
registers as tuples, so every input and output gradient is read once and the backward
recomputes each pre-activation once (no saved output). The backward writes the weight and bias
gradients as per-program partial sums that PyTorch adds up (deterministic).

Imported only with the Triton backend; with ``TRITON_INTERPRET=1`` the kernels run on a CPU.
"""

import torch
import triton
import triton.language as tl

from spmamba_sb.nnet.scan_triton import _on_device

BLOCK_D = 128  # channels per program (one warp: four per thread)
CHUNK = 64  # steps per program; a backward program also runs the K - 1 steps after its chunk
WARPS = 1


@triton.jit
def _program(w_ptr, b_ptr, length, channels, n_blocks, n_chunks, chunk_len, K: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's (row, chunk) index, row (int64), steps [t0, t1), channels [BLOCK_D] with
    their mask, the K weights (a tuple of [BLOCK_D]) and the bias."""
    pid = tl.program_id(0)
    part = pid // n_blocks
    row = (part // n_chunks).to(tl.int64)
    t0 = (part % n_chunks) * chunk_len
    d = (pid % n_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < channels
    weights = ()
    for k in tl.static_range(K):
        weights = weights + (tl.load(w_ptr + d * K + k, mask=d_mask, other=0.0),)
    bias = tl.load(b_ptr + d, mask=d_mask, other=0.0)
    return part, row, t0, tl.minimum(length, t0 + chunk_len), d, d_mask, weights, bias


@triton.jit
def _history(x_p, t0, s_x_t, d_mask, K: tl.constexpr):
    """The K - 1 inputs before step ``t0`` (zeros before the start), oldest first, in fp32."""
    inputs = ()
    for k in tl.static_range(K - 1):
        source = t0 - (K - 1) + k
        inputs = inputs + (tl.load(x_p + source * s_x_t, mask=d_mask & (source >= 0), other=0.0).to(tl.float32),)
    return inputs


@triton.jit
def _pre_activation(window, weights, bias, K: tl.constexpr):
    """``bias + sum_k w_k x[s - K + 1 + k]`` from the window of the last K inputs."""
    pre = bias
    for k in tl.static_range(K):
        pre += weights[k] * window[k]
    return pre


@triton.jit
def _conv_silu_forward_kernel(x_ptr, w_ptr, b_ptr, out_ptr, length, channels, n_blocks, n_chunks, chunk_len,
                              s_x_r, s_x_t, K: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program: one row, ``BLOCK_D`` channels, steps ``[t0, t1)`` in order, the last K
    inputs in registers (each input read once)."""
    _, row, t0, t1, d, d_mask, weights, bias = _program(w_ptr, b_ptr, length, channels, n_blocks, n_chunks,
                                                        chunk_len, K, BLOCK_D)
    x_p = x_ptr + row * s_x_r + d
    inputs = _history(x_p, t0, s_x_t, d_mask, K)
    s = t0
    next_x = tl.load(x_p + s * s_x_t, mask=d_mask & (s < t1), other=0.0)
    while s < t1:
        x_s = next_x  # step s; load step s + 1 while it computes
        next_x = tl.load(x_p + (s + 1) * s_x_t, mask=d_mask & (s + 1 < t1), other=0.0)
        window = inputs + (x_s.to(tl.float32),)
        pre = _pre_activation(window, weights, bias, K)
        tl.store(out_ptr + (row * length + s) * channels + d, (pre * tl.sigmoid(pre)).to(out_ptr.dtype.element_ty),
                 mask=d_mask)
        inputs = window[1:]
        s += 1


@triton.jit
def _conv_silu_backward_kernel(x_ptr, w_ptr, b_ptr, dout_ptr, dx_ptr, dw_ptr, db_ptr,
                               length, channels, n_blocks, n_chunks, chunk_len, s_x_r, s_x_t, s_g_r, s_g_t, s_g_d,
                               K: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program: one row, ``BLOCK_D`` channels, steps ``[t0, t1)`` of one chunk, walked in
    order with the last K inputs and the last K pre-activation gradients held in registers (no
    step is recomputed); the K - 1 steps past ``t1`` are run for their gradients only."""
    part, row, t0, t1, d, d_mask, weights, bias = _program(w_ptr, b_ptr, length, channels, n_blocks, n_chunks,
                                                           chunk_len, K, BLOCK_D)
    x_p = x_ptr + row * s_x_r + d
    g_p = dout_ptr + row * s_g_r + d * s_g_d
    inputs = _history(x_p, t0, s_x_t, d_mask, K)
    zeros = tl.zeros([BLOCK_D], tl.float32)
    grads = (zeros,) * (K - 1)  # d pre[s - K + 1], ..., d pre[s - 1]
    dw = (zeros,) * K
    db = zeros
    s = t0
    next_x = tl.load(x_p + s * s_x_t, mask=d_mask & (s < length), other=0.0)
    next_g = tl.load(g_p + s * s_g_t, mask=d_mask & (s < length), other=0.0)
    while s < t1 + K - 1:
        x_s, g_s = next_x, next_g  # step s; load step s + 1 while it computes
        following = d_mask & (s + 1 < length)
        next_x = tl.load(x_p + (s + 1) * s_x_t, mask=following, other=0.0)
        next_g = tl.load(g_p + (s + 1) * s_g_t, mask=following, other=0.0)
        window = inputs + (x_s.to(tl.float32),)  # x[s - K + 1], ..., x[s]
        pre = _pre_activation(window, weights, bias, K)
        gate = tl.sigmoid(pre)
        dpre = g_s.to(tl.float32) * gate * (1.0 + pre * (1.0 - gate))  # zero past the end (g_s is)
        owned = tl.where(s < t1, dpre, 0.0)  # this chunk's steps give its weight partials
        db += owned
        for k in tl.static_range(K):
            dw = dw[:k] + (dw[k] + owned * window[k],) + dw[k + 1:]
        history = grads + (dpre,)  # d pre[s - K + 1], ..., d pre[s]
        target = s - (K - 1)  # x[target] feeds the outputs target, ..., s through weights K - 1, ..., 0
        dx = zeros
        for j in tl.static_range(K):
            dx += weights[K - 1 - j] * history[j]
        tl.store(dx_ptr + (row * length + target) * channels + d, dx.to(dx_ptr.dtype.element_ty),
                 mask=d_mask & (target >= t0))
        inputs = window[1:]
        grads = history[1:]
        s += 1
    tl.store(db_ptr + part * channels + d, db, mask=d_mask)
    for k in tl.static_range(K):
        tl.store(dw_ptr + (part * K + k) * channels + d, dw[k], mask=d_mask)


def _chunks(x):
    """Grid (one program per row, chunk and channel block of time-major ``x``), channel blocks
    and chunks."""
    rows, length, channels = x.shape
    n_blocks, n_chunks = triton.cdiv(channels, BLOCK_D), triton.cdiv(length, CHUNK)
    return (rows * n_chunks * n_blocks,), n_blocks, n_chunks


def conv_silu_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SiLU of the causal depthwise convolution of time-major ``x`` along time.

    Arguments
    ---------
    x : torch.Tensor
        [R, L, D], channels contiguous (``x.stride(2) == 1``; other strides free).
    weight : torch.Tensor
        [D, K] fp32 contiguous, tap ``K - 1`` on the current step.
    bias : torch.Tensor
        [D] fp32.

    Returns
    -------
    torch.Tensor
        [R, L, D] contiguous, in the dtype of ``x``.

    Example
    -------
    >>> x = torch.randn(2, 10, 8, device="cuda")  # doctest: +SKIP
    >>> conv_silu_forward(x, torch.randn(8, 4, device="cuda"), torch.zeros(8, device="cuda")).shape  # doctest: +SKIP
    torch.Size([2, 10, 8])
    """
    if x.stride(2) != 1:
        raise ValueError(f"the causal convolution needs unit channel stride, got strides {x.stride()}")
    rows, length, channels = x.shape
    out = x.new_empty(rows, length, channels)
    grid, n_blocks, n_chunks = _chunks(x)
    with _on_device(x):
        _conv_silu_forward_kernel[grid](x, weight, bias, out, length, channels, n_blocks, n_chunks, CHUNK,
                                        x.stride(0), x.stride(1), K=weight.shape[1], BLOCK_D=BLOCK_D, num_warps=WARPS)
    return out


def conv_silu_backward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dout: torch.Tensor):
    """Gradients of :func:`conv_silu_forward` (recomputing its pre-activations).

    Arguments
    ---------
    x, weight, bias : torch.Tensor
        As for :func:`conv_silu_forward`.
    dout : torch.Tensor
        [R, L, D], any strides.

    Returns
    -------
    tuple
        ``dx`` [R, L, D] contiguous in ``x``'s dtype, ``dweight`` [D, K] and ``dbias`` [D] in fp32.
    """
    rows, length, channels = x.shape
    kernel_size = weight.shape[1]
    grid, n_blocks, n_chunks = _chunks(x)
    dx = x.new_empty(rows, length, channels)
    dw = x.new_empty(rows * n_chunks, kernel_size, channels, dtype=torch.float32)
    db = x.new_empty(rows * n_chunks, channels, dtype=torch.float32)
    with _on_device(x):
        _conv_silu_backward_kernel[grid](x, weight, bias, dout, dx, dw, db, length, channels, n_blocks, n_chunks, CHUNK,
                                         x.stride(0), x.stride(1), *dout.stride(), K=kernel_size, BLOCK_D=BLOCK_D,
                                         num_warps=WARPS)
    return dx, dw.sum(0).t().contiguous(), db.sum(0)
