"""Selective scan of Mamba as Triton kernels (forward and backward), for CUDA tensors.

Same recurrence, arguments and layouts as :func:`spmamba_sb.nnet.scan.selective_scan`
(``u``, ``delta``, ``z``: [R, D, L]; ``A``: [D, N]; ``B``, ``C``: [R, N, L]; only the last
dimension needs unit stride). One program takes one row and ``block_d`` channels and walks
the sequence in chunks of ``chunk`` steps. Inside a chunk, each state ``n`` is one
``tl.associative_scan`` over the [block_d, chunk] tile with the operator
``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`` (so ``h_t = a_t h_{t-1} + b_t``), and the
state after the chunk carries into the next one. Arithmetic is fp32 whatever the input type.

The backward kernel recomputes the states from the ones saved at chunk starts, so autograd
keeps only the inputs (no output, no per-step state). Its reverse recurrence for the states'
gradient is ``g_t = C_t dy_t + a_{t+1} g_{t+1}``; with ``a_t h_{t-1} = h_t - b_t`` the other
gradients need no shifted states::

    d delta_t = sum_n g_t (A_n (h_t - b_t) + B_t u_t)      dA_n = sum_t g_t delta_t (h_t - b_t)
    du_t = D dy_t + sum_n g_t delta_t B_t                  dB_t = sum_d g_t delta_t u_t
    dC_t = sum_d dy_t h_t                                  with dy = d out * silu(z)

Triton is imported by this module only; :mod:`spmamba_sb.nnet.scan` imports it lazily.
With ``TRITON_INTERPRET=1`` the kernels run on a CPU (slowly), which the tests use.
"""

import torch
import triton
import triton.language as tl

# Elements of one [block_d, chunk] tile and warps per program: the fastest of nine tilings
# swept on an H100 at the published sizes (rows x channels x L = 501 x 512 x 250 and
# 257 x 512 x 494, bf16 and fp32), forward and backward alike.
TILE_ELEMENTS = 1024
MAX_CHUNK = 256
NUM_WARPS = 4


@triton.jit
def _combine(a1, b1, a2, b2):
    """Compose two steps of ``h -> a h + b`` (first ``(a1, b1)``, then ``(a2, b2)``)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _step_sizes(raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """``softplus(raw + bias)`` as mamba-ssm computes it (linear above 20), and its slope."""
    if HAS_BIAS:
        raw = raw + bias[:, None]
    if SOFTPLUS:
        delta = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(raw)), raw)
        slope = tl.where(raw <= 20.0, tl.sigmoid(raw), 1.0)
    else:
        delta = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return delta, slope


@triton.jit
def _pick(tile, selector):
    """The entries of a 2-D tile where ``selector`` (broadcast) holds, summed along axis 1."""
    return tl.sum(tl.where(selector, tile, 0.0), axis=1)


@triton.jit
def _program_channels(D_ptr, bias_ptr, channels, BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """This program's channels [BLOCK_D], their mask, skip weights and step-size biases (zeros
    where absent)."""
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < channels
    skip = tl.zeros([BLOCK_D], tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d, mask=d_mask, other=0.0)
    bias = tl.zeros([BLOCK_D], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0)
    return d, d_mask, skip, bias


@triton.jit
def _scan_forward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr,
    length, channels,
    s_u_r, s_u_d, s_dt_r, s_dt_d, s_B_r, s_B_n, s_C_r, s_C_n, s_z_r, s_z_d, s_o_r, s_o_d,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, N_CHUNKS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    d, d_mask, skip, bias = _program_channels(D_ptr, bias_ptr, channels, BLOCK_D, HAS_D, HAS_BIAS)
    state_index = tl.arange(0, N_PAD)  # [N_PAD]
    step = tl.arange(0, CHUNK)  # [CHUNK]
    carry = tl.zeros([BLOCK_D, N_PAD], tl.float32)  # state before the chunk
    for chunk in range(N_CHUNKS):
        t = chunk * CHUNK + step
        mask = d_mask[:, None] & (t < length)[None, :]  # [BLOCK_D, CHUNK]
        u = tl.load(u_ptr + row * s_u_r + d[:, None] * s_u_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
        raw = tl.load(delta_ptr + row * s_dt_r + d[:, None] * s_dt_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
        delta, _ = _step_sizes(raw, bias, HAS_BIAS, SOFTPLUS)
        delta = tl.where(mask, delta, 0.0)  # steps past the end keep the state
        if SAVE_STATES and N_CHUNKS > 1:
            offsets = ((row * channels + d[:, None]) * N_CHUNKS + chunk) * N + state_index[None, :]
            tl.store(states_ptr + offsets, carry, mask=d_mask[:, None] & (state_index < N)[None, :])
        drive = delta * u
        y = tl.zeros([BLOCK_D, CHUNK], tl.float32)
        for n in range(N):
            A_n = tl.load(A_ptr + d * N + n, mask=d_mask, other=0.0)  # [BLOCK_D]
            B_n = tl.load(B_ptr + row * s_B_r + n * s_B_n + t, mask=t < length, other=0.0).to(tl.float32)
            C_n = tl.load(C_ptr + row * s_C_r + n * s_C_n + t, mask=t < length, other=0.0).to(tl.float32)
            decay = tl.exp(delta * A_n[:, None])
            prod, h = tl.associative_scan((decay, drive * B_n[None, :]), 1, _combine)
            if N_CHUNKS > 1:  # carry the state across chunks
                selected = (state_index == n)[None, :]
                h = h + prod * _pick(carry, selected)[:, None]  # [BLOCK_D, CHUNK]
                carry = tl.where(selected, _pick(h, (step == CHUNK - 1)[None, :])[:, None], carry)
            y += h * C_n[None, :]
        if HAS_D:
            y += u * skip[:, None]
        if HAS_Z:
            z = tl.load(z_ptr + row * s_z_r + d[:, None] * s_z_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + row * s_o_r + d[:, None] * s_o_d + t[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _scan_backward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, states_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    length, channels,
    s_u_r, s_u_d, s_dt_r, s_dt_d, s_B_r, s_B_n, s_C_r, s_C_n, s_z_r, s_z_d, s_g_r, s_g_d,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr, N_CHUNKS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    d, d_mask, skip, bias = _program_channels(D_ptr, bias_ptr, channels, BLOCK_D, HAS_D, HAS_BIAS)
    state_index = tl.arange(0, N_PAD)
    state_mask = d_mask[:, None] & (state_index < N)[None, :]
    step = tl.arange(0, CHUNK)
    carry = tl.zeros([BLOCK_D, N_PAD], tl.float32)  # state gradient at the next chunk's start
    dA = tl.zeros([BLOCK_D, N_PAD], tl.float32)
    dD = tl.zeros([BLOCK_D], tl.float32)
    dbias = tl.zeros([BLOCK_D], tl.float32)
    for reverse_chunk in range(N_CHUNKS):
        chunk = N_CHUNKS - 1 - reverse_chunk
        t = chunk * CHUNK + step
        t_mask = t < length
        mask = d_mask[:, None] & t_mask[None, :]
        next_mask = d_mask[:, None] & (t + 1 < length)[None, :]
        u = tl.load(u_ptr + row * s_u_r + d[:, None] * s_u_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
        delta_offsets = delta_ptr + row * s_dt_r + d[:, None] * s_dt_d + t[None, :]
        delta, slope = _step_sizes(tl.load(delta_offsets, mask=mask, other=0.0).to(tl.float32), bias, HAS_BIAS, SOFTPLUS)
        delta = tl.where(mask, delta, 0.0)
        next_delta, _ = _step_sizes(tl.load(delta_offsets + 1, mask=next_mask, other=0.0).to(tl.float32), bias, HAS_BIAS, SOFTPLUS)
        dout = tl.load(dout_ptr + row * s_g_r + d[:, None] * s_g_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + row * s_z_r + d[:, None] * s_z_d + t[None, :], mask=mask, other=0.0).to(tl.float32)
            gate = tl.sigmoid(z)
            dy = dout * z * gate
        else:
            dy = dout
        if N_CHUNKS > 1:
            start = tl.load(
                states_ptr + ((row * channels + d[:, None]) * N_CHUNKS + chunk) * N + state_index[None, :],
                mask=state_mask, other=0.0,
            )  # [BLOCK_D, N_PAD]
        drive = delta * u
        y = tl.zeros([BLOCK_D, CHUNK], tl.float32)
        du = dy * skip[:, None]
        ddelta = tl.zeros([BLOCK_D, CHUNK], tl.float32)
        for n in range(N):
            A_n = tl.load(A_ptr + d * N + n, mask=d_mask, other=0.0)
            B_n = tl.load(B_ptr + row * s_B_r + n * s_B_n + t, mask=t_mask, other=0.0).to(tl.float32)
            C_n = tl.load(C_ptr + row * s_C_r + n * s_C_n + t, mask=t_mask, other=0.0).to(tl.float32)
            selected = (state_index == n)[None, :]
            b = drive * B_n[None, :]
            prod, h = tl.associative_scan((tl.exp(delta * A_n[:, None]), b), 1, _combine)
            if N_CHUNKS > 1:
                h = h + prod * _pick(start, selected)[:, None]
            y += h * C_n[None, :]
            next_decay = tl.where(next_mask, tl.exp(next_delta * A_n[:, None]), 0.0)
            prod, g = tl.associative_scan((next_decay, dy * C_n[None, :]), 1, _combine, reverse=True)
            if N_CHUNKS > 1:
                g = g + prod * _pick(carry, selected)[:, None]  # [BLOCK_D, CHUNK]
                carry = tl.where(selected, _pick(g, (step == 0)[None, :])[:, None], carry)
            tl.atomic_add(dC_ptr + (row * N + n) * length + t, tl.sum(dy * h, axis=0), mask=t_mask)
            g_delta = g * delta
            tl.atomic_add(dB_ptr + (row * N + n) * length + t, tl.sum(g_delta * u, axis=0), mask=t_mask)
            before = h - b  # a_t h_{t-1}
            ddelta += g * (A_n[:, None] * before + B_n[None, :] * u)
            du += g_delta * B_n[None, :]
            dA = tl.where(selected, dA + tl.sum(g_delta * before, axis=1)[:, None], dA)
        if HAS_D:
            y += u * skip[:, None]
            dD += tl.sum(dy * u, axis=1)
        if HAS_Z:
            dz = dout * y * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_ptr + row * s_g_r + d[:, None] * s_g_d + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
        ddelta = tl.where(mask, ddelta * slope, 0.0)
        dbias += tl.sum(ddelta, axis=1)
        tl.store(du_ptr + row * s_g_r + d[:, None] * s_g_d + t[None, :], du.to(du_ptr.dtype.element_ty), mask=mask)
        tl.store(ddelta_ptr + row * s_g_r + d[:, None] * s_g_d + t[None, :], ddelta.to(ddelta_ptr.dtype.element_ty), mask=mask)
    tl.store(dA_ptr + (row * channels + d[:, None]) * N + state_index[None, :], dA, mask=state_mask)
    if HAS_D:
        tl.store(dD_ptr + row * channels + d, dD, mask=d_mask)
    if HAS_BIAS:
        tl.store(dbias_ptr + row * channels + d, dbias, mask=d_mask)


def _tiling(length: int, channels: int, chunk=None, block_d=None):
    """Steps per chunk and channels per program: a [block_d, chunk] tile of about
    ``TILE_ELEMENTS`` elements."""
    if chunk is None:
        chunk = min(MAX_CHUNK, max(16, triton.next_power_of_2(length)))
    if block_d is None:
        block_d = min(max(1, TILE_ELEMENTS // chunk), triton.next_power_of_2(channels))
    return chunk, block_d


def _channel_major_like(u: torch.Tensor, dtype=None) -> torch.Tensor:
    """An empty [R, D, L] tensor stored as [D, R, L] (the layout the mixer reads next)."""
    rows, channels, length = u.shape
    return u.new_empty(channels, rows, length, dtype=dtype or u.dtype).transpose(0, 1)


def _on_device(t: torch.Tensor):
    """Make ``t``'s GPU the current one while kernels launch (-1, for the interpreter's CPU
    tensors, changes nothing)."""
    return torch.cuda.device(t.device.index if t.is_cuda else -1)


def _unit_stride(t):
    """``t`` itself when its last dimension has unit stride (or it is None), else a contiguous copy."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block_d, num_warps):
        u, delta, B, C, z = (_unit_stride(t) for t in (u, delta, B, C, z))
        rows, channels, length = u.shape
        n_state = A.shape[1]
        chunk, block_d = _tiling(length, channels, chunk, block_d)
        n_chunks = triton.cdiv(length, chunk)
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        needs_grad = any(ctx.needs_input_grad[:8])
        states = None  # state at each chunk's start, for the backward pass
        if needs_grad and n_chunks > 1:
            states = u.new_empty(rows, channels, n_chunks, n_state, dtype=torch.float32)
        out = _channel_major_like(u)
        grid = (rows, triton.cdiv(channels, block_d))
        with _on_device(u):
            _scan_forward_kernel[grid](
                u, delta, A32, B, C, D32, z, bias32, out, states,
                length, channels,
                u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), B.stride(0), B.stride(1),
                C.stride(0), C.stride(1), *(z.stride()[:2] if z is not None else (0, 0)), out.stride(0), out.stride(1),
                N=n_state, N_PAD=triton.next_power_of_2(n_state), BLOCK_D=block_d, CHUNK=chunk, N_CHUNKS=n_chunks,
                HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                SOFTPLUS=bool(delta_softplus), SAVE_STATES=needs_grad, num_warps=num_warps,
            )
        if needs_grad:
            ctx.save_for_backward(u, delta, A32, B, C, D32, z, bias32, states)
            ctx.param_dtypes = (A.dtype, None if D is None else D.dtype, None if delta_bias is None else delta_bias.dtype)
            ctx.settings = (bool(delta_softplus), chunk, block_d, num_warps, n_chunks)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A32, B, C, D32, z, bias32, states = ctx.saved_tensors
        softplus, chunk, block_d, num_warps, n_chunks = ctx.settings
        rows, channels, length = u.shape
        n_state = A32.shape[1]
        du, ddelta = _channel_major_like(u), _channel_major_like(u, delta.dtype)
        dz = None if z is None else _channel_major_like(u, z.dtype)
        if dout.stride() != du.stride():  # the kernel addresses dout with the gradients' strides
            dout = dout.transpose(0, 1).contiguous().transpose(0, 1)
        dB = u.new_zeros(rows, n_state, length, dtype=torch.float32)
        dC = torch.zeros_like(dB)
        dA = u.new_empty(rows, channels, n_state, dtype=torch.float32)
        dD = None if D32 is None else u.new_empty(rows, channels, dtype=torch.float32)
        dbias = None if bias32 is None else u.new_empty(rows, channels, dtype=torch.float32)
        grid = (rows, triton.cdiv(channels, block_d))
        with _on_device(u):
            _scan_backward_kernel[grid](
                u, delta, A32, B, C, D32, z, bias32, dout, states,
                du, ddelta, dz, dB, dC, dA, dD, dbias,
                length, channels,
                u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), B.stride(0), B.stride(1),
                C.stride(0), C.stride(1), *(z.stride()[:2] if z is not None else (0, 0)), du.stride(0), du.stride(1),
                N=n_state, N_PAD=triton.next_power_of_2(n_state), BLOCK_D=block_d, CHUNK=chunk, N_CHUNKS=n_chunks,
                HAS_D=D32 is not None, HAS_Z=z is not None, HAS_BIAS=bias32 is not None, SOFTPLUS=softplus,
                num_warps=num_warps,
            )
        A_dtype, D_dtype, bias_dtype = ctx.param_dtypes
        return (
            du,
            ddelta,
            dA.sum(0).to(A_dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            None if dD is None else dD.sum(0).to(D_dtype),
            dz,
            None if dbias is None else dbias.sum(0).to(bias_dtype),
            None, None, None, None,
        )


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          chunk=None, block_d=None, num_warps=NUM_WARPS):
    """Selective scan through the Triton kernels; arguments and shapes as
    :func:`spmamba_sb.nnet.scan.selective_scan`.

    Arguments
    ---------
    chunk : int, optional
        Steps per chunk (a power of two); None: the sequence length rounded up to a power of
        two, at most ``MAX_CHUNK``.
    block_d : int, optional
        Channels per program (a power of two); None: ``TILE_ELEMENTS // chunk``.
    num_warps : int
        Warps per program.

    Returns
    -------
    torch.Tensor
        [R, D, L] in the dtype of ``u``, a view of a [D, R, L] tensor.

    Example
    -------
    >>> u, delta, z = torch.randn(3, 2, 4, 10, device="cuda").unbind(0)  # doctest: +SKIP
    >>> B, C = torch.randn(2, 2, 3, 10, device="cuda").unbind(0)  # doctest: +SKIP
    >>> selective_scan_triton(u, delta, -torch.rand(4, 3, device="cuda"), B, C).shape  # doctest: +SKIP
    torch.Size([2, 4, 10])
    """
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block_d, num_warps)
