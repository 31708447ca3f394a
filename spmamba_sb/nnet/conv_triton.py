"""Mamba's causal depthwise convolution and SiLU, fused, as Triton kernels (forward and backward).

``out[r, t, d] = silu(bias[d] + sum_k weight[d, k] x[r, t - K + 1 + k, d])`` with zeros before
the start, on time-major tensors ([R, L, D], channels contiguous): the layout the mixer keeps
for the Triton scan. One program takes ``BLOCK_T`` steps x ``BLOCK_D`` channels of one row.
The backward recomputes the pre-activations it needs (no saved output) and writes the weight
and bias gradients as per-program partial sums that PyTorch adds up (deterministic).

Imported only with the Triton backend; with ``TRITON_INTERPRET=1`` the kernels run on a CPU.
"""

import torch
import triton
import triton.language as tl

from spmamba_sb.nnet.scan_triton import _on_device

BLOCK_T = 32
BLOCK_D = 128


@triton.jit
def _tile(pid_rt, pid_d, length, channels, n_time_blocks, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's row (int64), steps [BLOCK_T] and channels [BLOCK_D] with their masks."""
    row = (pid_rt // n_time_blocks).to(tl.int64)
    t = (pid_rt % n_time_blocks) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    return row, t, d, t < length, d < channels


@triton.jit
def _pre_activation(x_ptr, w_ptr, b_ptr, row, t, d, d_mask, length, s_x_r, s_x_t, K: tl.constexpr):
    """``bias + sum_k w_k x[t - K + 1 + k]`` for steps ``t`` [BLOCK_T] (zeros past the end)."""
    acc = tl.zeros([t.shape[0], d.shape[0]], tl.float32) + tl.load(b_ptr + d, mask=d_mask, other=0.0)[None, :]
    for k in tl.static_range(K):
        source = t - (K - 1) + k
        mask = ((source >= 0) & (source < length))[:, None] & d_mask[None, :]
        x = tl.load(x_ptr + row * s_x_r + source[:, None] * s_x_t + d[None, :], mask=mask, other=0.0)
        acc += tl.load(w_ptr + d * K + k, mask=d_mask, other=0.0)[None, :] * x.to(tl.float32)
    return acc


@triton.jit
def _conv_silu_forward_kernel(x_ptr, w_ptr, b_ptr, out_ptr, length, channels, n_time_blocks, s_x_r, s_x_t,
                              K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    row, t, d, t_mask, d_mask = _tile(tl.program_id(0), tl.program_id(1), length, channels, n_time_blocks,
                                      BLOCK_T, BLOCK_D)
    pre = _pre_activation(x_ptr, w_ptr, b_ptr, row, t, d, d_mask, length, s_x_r, s_x_t, K)
    out = pre * tl.sigmoid(pre)
    offsets = (row * length + t[:, None]) * channels + d[None, :]
    tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=t_mask[:, None] & d_mask[None, :])


@triton.jit
def _conv_silu_backward_kernel(x_ptr, w_ptr, b_ptr, dout_ptr, dx_ptr, dw_ptr, db_ptr,
                               length, channels, n_time_blocks, s_x_r, s_x_t, s_g_r, s_g_t, s_g_d,
                               K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_rt, pid_d = tl.program_id(0), tl.program_id(1)
    row, t, d, t_mask, d_mask = _tile(pid_rt, pid_d, length, channels, n_time_blocks, BLOCK_T, BLOCK_D)
    dx = tl.zeros([BLOCK_T, BLOCK_D], tl.float32)
    for j in tl.static_range(K):  # x[t] feeds the outputs t + j through weight K - 1 - j
        target = t + j
        target_mask = (target < length)[:, None] & d_mask[None, :]
        pre = _pre_activation(x_ptr, w_ptr, b_ptr, row, target, d, d_mask, length, s_x_r, s_x_t, K)
        gate = tl.sigmoid(pre)
        dout = tl.load(dout_ptr + row * s_g_r + target[:, None] * s_g_t + d[None, :] * s_g_d, mask=target_mask,
                       other=0.0).to(tl.float32)
        dpre = tl.where(target_mask, dout * gate * (1.0 + pre * (1.0 - gate)), 0.0)
        dx += tl.load(w_ptr + d * K + (K - 1 - j), mask=d_mask, other=0.0)[None, :] * dpre
        if j == 0:  # this tile's outputs: weight and bias partial sums
            tl.store(db_ptr + pid_rt * channels + d, tl.sum(dpre, axis=0), mask=d_mask)
            for k in tl.static_range(K):
                source = t - (K - 1) + k
                mask = ((source >= 0) & (source < length))[:, None] & d_mask[None, :]
                x = tl.load(x_ptr + row * s_x_r + source[:, None] * s_x_t + d[None, :], mask=mask, other=0.0)
                tl.store(dw_ptr + (pid_rt * K + k) * channels + d, tl.sum(dpre * x.to(tl.float32), axis=0),
                         mask=d_mask)
    offsets = (row * length + t[:, None]) * channels + d[None, :]
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=t_mask[:, None] & d_mask[None, :])


def _grid(rows, length, channels):
    n_time_blocks = triton.cdiv(length, BLOCK_T)
    return (rows * n_time_blocks, triton.cdiv(channels, BLOCK_D)), n_time_blocks


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
    grid, n_time_blocks = _grid(rows, length, channels)
    with _on_device(x):
        _conv_silu_forward_kernel[grid](x, weight, bias, out, length, channels, n_time_blocks, x.stride(0), x.stride(1),
                                        K=weight.shape[1], BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D)
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
    grid, n_time_blocks = _grid(rows, length, channels)
    dx = x.new_empty(rows, length, channels)
    dw = x.new_empty(grid[0], kernel_size, channels, dtype=torch.float32)
    db = x.new_empty(grid[0], channels, dtype=torch.float32)
    with _on_device(x):
        _conv_silu_backward_kernel[grid](x, weight, bias, dout, dx, dw, db, length, channels, n_time_blocks,
                                         x.stride(0), x.stride(1), *dout.stride(),
                                         K=kernel_size, BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D)
    return dx, dw.sum(0).t().contiguous(), db.sum(0)
