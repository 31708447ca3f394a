"""Selective scan of Mamba as fused-recurrence Triton kernels (forward and backward), for CUDA tensors.

Same recurrence, arguments and shapes as :func:`spmamba_sb.nnet.scan.selective_scan`
(``u``, ``delta``, ``z``: [R, D, L]; ``A``: [D, N]; ``B``, ``C``: [R, N, L]), with any strides:
the kernels read every tensor through its own row, channel and time strides. They are fastest
on time-major tensors (channel stride 1, as [R, L, D] storage), where each step's loads and
stores are contiguous: the mixer hands them that layout, and :func:`selective_scan_triton`
copies inputs in any other layout to it.

One program owns one row and ``BLOCK_D`` channels and walks the sequence step by step, the
[BLOCK_D, N] states in registers (fp32 whatever the input type); no scan primitive, no
stored per-step states. Exponentials are ``exp2(delta * A log2 e)``. Everything state-shaped
in memory is stored channels-fastest (``A`` is passed transposed, [N, D]; the checkpointed and
chunk states are [..., N, D]), so that Triton spreads the channels over a warp's threads and
keeps each channel's N states in one thread: sums over N then take no shuffles between threads
(compiled for sm_90, the backward kernel's PTX has 160 instead of 642 shuffles, the forward's
none instead of 128).

The backward kernel is two sweeps in one program, deterministic (no atomics):

- a forward sweep recomputes the states ``h`` and, in the same loop, ``dz``, the partial sums
  of ``dC_t = sum_d dy_t h_t`` over the program's channels, ``dD``, and ``dA`` by forward-mode
  differentiation: the tangent ``T_t = dh_t / dA = a_t (T_{t-1} + delta_t h_{t-1})`` gives
  ``dA = sum_t dy_t C_t T_t`` without any subtraction. It writes one scalar per channel and
  step, ``P_t = sum_n A C_t a_t h_{t-1}`` (fp32), and the states every ``CHECKPOINT`` steps;
- a reverse sweep runs the state gradient ``g_t = a_{t+1} g_{t+1} + C_t dy_t`` and gets
  ``d delta_t = u_t sum_n g_t B_t + Q_t`` with ``Q_t = sum_n A g_t a_t h_{t-1}`` from the
  running sum ``Q_t = Q_{t+1} + dy_t P_t - sum_n A b_t a_{t+1} g_{t+1}`` (``b_t = delta_t B_t
  u_t``), which is restarted exactly from the saved states at every checkpoint, so rounding
  cannot build up over long sequences; ``du``, the partial sums of ``dB`` and ``d bias``
  come in the same loop. ``h_{t-1}`` is never recovered by dividing by ``a_t`` (which
  underflows for large steps).

Partial sums over channel blocks (``dB``, ``dC``) and rows (``dA``, ``dD``, ``d bias``) are
added up in PyTorch.

Triton is imported only here and in :mod:`~spmamba_sb.nnet.conv_triton`; :mod:`spmamba_sb.nnet.scan` imports it lazily.
With ``TRITON_INTERPRET=1`` the kernels run on a CPU (slowly), which the tests use; the loops
over time are ``while`` loops because the interpreter cannot take a runtime bound in ``range``.
"""

import math
from typing import List, Optional

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

# (channels per program, warps per program) of each kernel; read at every launch
TILING = {"forward": (64, 1), "backward": (64, 1)}
# Register cap of each kernel (Triton's ``maxnreg`` launch option; None: the compiler's choice).
# Capped at 128, more of the forward's one-warp programs share an SM: on an H200, bf16 at the
# model's shapes (benchmarks/scan_gpu.py), 0.532 / 0.553 ms at the intra / inter shapes against
# 0.565 / 0.676 uncapped. The backward needs its ~250 registers: capped, it spills and slows down.
MAX_REGISTERS = {"forward": 128, "backward": None}
CHECKPOINT = 64  # steps between the states the backward pass restarts its running sum from
# A forward pass without autograd splits time into chunks of at least MIN_CHUNK steps when
# its rows and channel blocks give at most SPLIT_PROGRAMS / MIN_CHUNKS programs (an H200 keeps
# thousands of one-warp programs resident: 132 SMs, up to 64 warps each).
SPLIT_PROGRAMS = 4096
MIN_CHUNK = 64
MIN_CHUNKS = 4


@triton.jit
def _step_sizes(raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST_MATH: tl.constexpr):
    """``softplus(raw + bias)`` and its slope, ``sigmoid(raw + bias)``, as ``max(x, 0) +
    log1p(e)`` and ``(1 or e) / (1 + e)`` with ``e = exp(-|x|)``; ``log1p`` is written as
    ``log(1 + e) * e / ((1 + e) - 1)``, accurate for small ``e``. With ``FAST_MATH`` the log and
    the divisions are the GPU's approximate instructions (``lg2.approx``, ``div.approx``;
    absolute error about 1e-7), which the interpreter does not have."""
    if HAS_BIAS:
        raw = raw + bias
    if SOFTPLUS:
        e = tl.exp2(tl.abs(raw) * -1.4426950408889634)
        one_plus = 1.0 + e
        if FAST_MATH:
            log_one_plus = libdevice.fast_log2f(one_plus) * 0.6931471805599453
            correction = libdevice.fast_dividef(e, one_plus - 1.0)
            inverse = libdevice.fast_dividef(1.0, one_plus)
        else:
            log_one_plus = tl.log(one_plus)
            correction = e / (one_plus - 1.0)
            inverse = 1.0 / one_plus
        delta = tl.maximum(raw, 0.0) + tl.where(one_plus == 1.0, e, log_one_plus * correction)
        slope = tl.where(raw >= 0.0, 1.0, e) * inverse
    else:
        delta = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return delta, slope


@triton.jit
def _program(A_ptr, D_ptr, bias_ptr, channels, n_blocks, N: tl.constexpr, N_PAD: tl.constexpr,
             BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """This program's row (int64), block, channels [BLOCK_D] and their mask, state indices
    [N_PAD] and their mask, ``A log2 e`` [N_PAD, BLOCK_D] (zeros in padding; ``A_ptr`` holds A
    transposed, [N, D]), skip weights and step-size biases (zeros where absent)."""
    pid = tl.program_id(0)
    row = (pid // n_blocks).to(tl.int64)
    block = pid % n_blocks
    d = block * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < channels
    n = tl.arange(0, N_PAD)
    n_mask = n < N
    A2 = tl.load(A_ptr + n[:, None] * channels + d[None, :], mask=n_mask[:, None] & d_mask[None, :],
                 other=0.0) * 1.4426950408889634
    skip = tl.zeros([BLOCK_D], tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d, mask=d_mask, other=0.0)
    bias = tl.zeros([BLOCK_D], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0)
    return row, block, d, d_mask, n, n_mask, A2, skip, bias


@triton.jit
def _load_step(u_ptr, delta_ptr, z_ptr, dout_ptr, B_ptr, C_ptr, row, d, n, t, valid, d_mask, n_mask,
               s_u_r, s_u_d, s_u_t, s_dt_r, s_dt_d, s_dt_t, s_z_r, s_z_d, s_z_t, s_g_r, s_g_d, s_g_t,
               s_B_r, s_B_n, s_B_t, s_C_r, s_C_n, s_C_t, HAS_Z: tl.constexpr, HAS_DOUT: tl.constexpr):
    """Step ``t``'s u, raw step sizes, gate and output gradient [BLOCK_D] (the gate and the
    gradient are ``u`` where absent) and B, C [N_PAD], in their stored types; zeros where
    ``valid`` is false (the prefetch past either end)."""
    m = d_mask & valid
    u = tl.load(u_ptr + row * s_u_r + d * s_u_d + t * s_u_t, mask=m, other=0.0)
    raw = tl.load(delta_ptr + row * s_dt_r + d * s_dt_d + t * s_dt_t, mask=m, other=0.0)
    B_t = tl.load(B_ptr + row * s_B_r + n * s_B_n + t * s_B_t, mask=n_mask & valid, other=0.0)
    C_t = tl.load(C_ptr + row * s_C_r + n * s_C_n + t * s_C_t, mask=n_mask & valid, other=0.0)
    z = u
    if HAS_Z:
        z = tl.load(z_ptr + row * s_z_r + d * s_z_d + t * s_z_t, mask=m, other=0.0)
    dout = u
    if HAS_DOUT:
        dout = tl.load(dout_ptr + row * s_g_r + d * s_g_d + t * s_g_t, mask=m, other=0.0)
    return u, raw, z, dout, B_t, C_t


@triton.jit
def _scan_forward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, h0_ptr, hT_ptr, dsum_ptr,
    length, channels, n_blocks, n_chunks, chunk_len,
    s_u_r, s_u_d, s_u_t, s_dt_r, s_dt_d, s_dt_t, s_z_r, s_z_d, s_z_t, s_o_r, s_o_d, s_o_t,
    s_B_r, s_B_n, s_B_t, s_C_r, s_C_n, s_C_t,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, STATES_ONLY: tl.constexpr, FAST_MATH: tl.constexpr,
):
    """One program: one row, ``BLOCK_D`` channels, steps ``[chunk * chunk_len, (chunk + 1) *
    chunk_len)``, from the state in ``h0`` (HAS_H0) or zero. ``STATES_ONLY`` writes no output,
    only the chunk's final state to ``hT`` and its summed step sizes to ``dsum``."""
    row, block, d, d_mask, n, n_mask, A2, skip, bias = _program(
        A_ptr, D_ptr, bias_ptr, channels, n_blocks, N, N_PAD, BLOCK_D, HAS_D, HAS_BIAS)
    chunk = row % n_chunks  # the program's row index counts (row, chunk) pairs
    row = row // n_chunks
    chunk_state = ((row * n_chunks + chunk) * N + n[:, None]) * channels + d[None, :]  # [R, chunks, N, D]
    state_mask = n_mask[:, None] & d_mask[None, :]
    o_p = out_ptr + row * s_o_r + d * s_o_d
    strides = (s_u_r, s_u_d, s_u_t, s_dt_r, s_dt_d, s_dt_t, s_z_r, s_z_d, s_z_t, 0, 0, 0,
               s_B_r, s_B_n, s_B_t, s_C_r, s_C_n, s_C_t)
    if HAS_H0:
        h = tl.load(h0_ptr + chunk_state, mask=state_mask, other=0.0)
    else:
        h = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    dsum = tl.zeros([BLOCK_D], tl.float32)
    t = chunk * chunk_len
    stop = tl.minimum(length, t + chunk_len)
    next_step = _load_step(u_ptr, delta_ptr, z_ptr, u_ptr, B_ptr, C_ptr, row, d, n, t, t < stop, d_mask, n_mask,
                           *strides, HAS_Z, False)
    while t < stop:
        u, raw, z, _, B_t, C_t = next_step  # step t; load step t + 1 while it computes
        next_step = _load_step(u_ptr, delta_ptr, z_ptr, u_ptr, B_ptr, C_ptr, row, d, n, t + 1, t + 1 < stop,
                               d_mask, n_mask, *strides, HAS_Z, False)
        u = u.to(tl.float32)
        delta, _ = _step_sizes(raw.to(tl.float32), bias, HAS_BIAS, SOFTPLUS, FAST_MATH)
        h = tl.exp2(delta[None, :] * A2) * h + (delta * u)[None, :] * B_t.to(tl.float32)[:, None]
        if STATES_ONLY:
            dsum += delta
        else:
            y = tl.sum(h * C_t.to(tl.float32)[:, None], axis=0) + skip * u
            if HAS_Z:
                z = z.to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(o_p + t * s_o_t, y.to(out_ptr.dtype.element_ty), mask=d_mask)
        t += 1
    if STATES_ONLY:
        tl.store(hT_ptr + chunk_state, h, mask=state_mask)
        tl.store(dsum_ptr + (row * n_chunks + chunk) * channels + d, dsum, mask=d_mask)


@triton.jit
def _scan_backward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
    P_ptr, states_ptr, out_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,
    length, channels, n_blocks, n_checkpoints,
    s_u_r, s_u_d, s_u_t, s_dt_r, s_dt_d, s_dt_t, s_z_r, s_z_d, s_z_t, s_g_r, s_g_d, s_g_t,
    s_du_r, s_du_d, s_du_t, s_ddt_r, s_ddt_d, s_ddt_t, s_dz_r, s_dz_d, s_dz_t, s_o_r, s_o_d, s_o_t,
    s_B_r, s_B_n, s_B_t, s_C_r, s_C_n, s_C_t,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CHECKPOINT: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_OUT: tl.constexpr, FAST_MATH: tl.constexpr,
):
    """The two sweeps (module docstring); with ``HAS_OUT`` the forward sweep also writes the
    scan's output, for callers that recompute it rather than keep it."""
    row, block, d, d_mask, n, n_mask, A2, skip, bias = _program(
        A_ptr, D_ptr, bias_ptr, channels, n_blocks, N, N_PAD, BLOCK_D, HAS_D, HAS_BIAS)
    state_mask = n_mask[:, None] & d_mask[None, :]
    if HAS_Z:
        dz_p = dz_ptr + row * s_dz_r + d * s_dz_d
    P_p = P_ptr + row * length * channels + d  # P: [R, L, D] fp32
    part_p = (row * n_blocks + block) * length * N + n  # dB, dC partials: [R, n_blocks, L, N] fp32
    state_p = states_ptr + row * n_checkpoints * channels * N + n[:, None] * channels + d[None, :]  # [R, K, N, D]
    strides = (s_u_r, s_u_d, s_u_t, s_dt_r, s_dt_d, s_dt_t, s_z_r, s_z_d, s_z_t, s_g_r, s_g_d, s_g_t,
               s_B_r, s_B_n, s_B_t, s_C_r, s_C_n, s_C_t)

    # Forward sweep: states, tangent, dz, dC partials, dA, dD, P and checkpoints.
    h = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    tangent = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    dA = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    dD = tl.zeros([BLOCK_D], tl.float32)
    next_step = _load_step(u_ptr, delta_ptr, z_ptr, dout_ptr, B_ptr, C_ptr, row, d, n, 0, length > 0, d_mask, n_mask,
                           *strides, HAS_Z, True)
    t = 0
    while t < length:
        u, raw, z, dout, B_t, C_t = next_step
        next_step = _load_step(u_ptr, delta_ptr, z_ptr, dout_ptr, B_ptr, C_ptr, row, d, n, t + 1, t + 1 < length,
                               d_mask, n_mask, *strides, HAS_Z, True)
        u, dout, B_t, C_t = u.to(tl.float32), dout.to(tl.float32), B_t.to(tl.float32), C_t.to(tl.float32)
        delta, _ = _step_sizes(raw.to(tl.float32), bias, HAS_BIAS, SOFTPLUS, FAST_MATH)
        a = tl.exp2(delta[None, :] * A2)
        carried = a * h  # a_t h_{t-1}
        tangent = a * tangent + delta[None, :] * carried
        h = carried + (delta * u)[None, :] * B_t[:, None]
        if HAS_Z or HAS_OUT:
            y = tl.sum(h * C_t[:, None], axis=0) + skip * u
        if HAS_Z:
            z = z.to(tl.float32)
            gate = tl.sigmoid(z)
            dy = dout * z * gate
            dz = dout * y * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_p + t * s_dz_t, dz.to(dz_ptr.dtype.element_ty), mask=d_mask)
            if HAS_OUT:
                y = y * z * gate
        else:
            dy = dout
        if HAS_OUT:
            tl.store(out_ptr + row * s_o_r + d * s_o_d + t * s_o_t, y.to(out_ptr.dtype.element_ty), mask=d_mask)
        dA += (dy[None, :] * C_t[:, None]) * tangent
        dD += dy * u
        tl.store(P_p + t * channels, tl.sum(A2 * C_t[:, None] * carried, axis=0), mask=d_mask)
        tl.store(dC_ptr + part_p + t * N, tl.sum(dy[None, :] * h, axis=1), mask=n_mask)
        if (t + 1) % CHECKPOINT == 0:
            if t + 1 < length:
                tl.store(state_p + ((t + 1) // CHECKPOINT - 1) * channels * N, h, mask=state_mask)
        t += 1
    tl.store(dA_ptr + (row * N + n[:, None]) * channels + d[None, :], dA, mask=state_mask)  # [R, N, D]
    if HAS_D:
        tl.store(dD_ptr + row * channels + d, dD, mask=d_mask)

    # Reverse sweep: state gradient, d delta (through Q), du, dB partials, d bias.
    g = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    a_next = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    Q = tl.zeros([BLOCK_D], tl.float32)  # sum_n A_n g_t a_t h_{t-1}, in units of log2 e
    dbias = tl.zeros([BLOCK_D], tl.float32)
    t = length - 1
    next_step = _load_step(u_ptr, delta_ptr, z_ptr, dout_ptr, B_ptr, C_ptr, row, d, n, t, t >= 0, d_mask, n_mask,
                           *strides, HAS_Z, True)
    next_P = tl.load(P_p + t * channels, mask=d_mask & (t >= 0), other=0.0)
    while t >= 0:
        u, raw, z, dout, B_t, C_t = next_step
        P = next_P
        next_step = _load_step(u_ptr, delta_ptr, z_ptr, dout_ptr, B_ptr, C_ptr, row, d, n, t - 1, t > 0,
                               d_mask, n_mask, *strides, HAS_Z, True)
        next_P = tl.load(P_p + (t - 1) * channels, mask=d_mask & (t > 0), other=0.0)
        if (t + 1) % CHECKPOINT == 0:
            if t + 1 < length:  # restart Q exactly from h_t, the state saved after this step
                saved = tl.load(state_p + ((t + 1) // CHECKPOINT - 1) * channels * N, mask=state_mask, other=0.0)
                Q = tl.sum(A2 * g * a_next * saved, axis=0)
        u, dout, B_t, C_t = u.to(tl.float32), dout.to(tl.float32), B_t.to(tl.float32), C_t.to(tl.float32)
        delta, slope = _step_sizes(raw.to(tl.float32), bias, HAS_BIAS, SOFTPLUS, FAST_MATH)
        if HAS_Z:
            z = z.to(tl.float32)
            dy = dout * z * tl.sigmoid(z)
        else:
            dy = dout
        drive = delta * u
        carried = a_next * g  # a_{t+1} g_{t+1}
        g = carried + dy[None, :] * C_t[:, None]
        Q += dy * P - drive * tl.sum(A2 * B_t[:, None] * carried, axis=0)
        gB = tl.sum(g * B_t[:, None], axis=0)
        ddelta = (u * gB + Q * 0.6931471805599453) * slope
        dbias += ddelta
        du = skip * dy + delta * gB
        tl.store(du_ptr + row * s_du_r + d * s_du_d + t * s_du_t, du.to(du_ptr.dtype.element_ty), mask=d_mask)
        tl.store(ddelta_ptr + row * s_ddt_r + d * s_ddt_d + t * s_ddt_t, ddelta.to(ddelta_ptr.dtype.element_ty), mask=d_mask)
        tl.store(dB_ptr + part_p + t * N, tl.sum(drive[None, :] * g, axis=1), mask=n_mask)
        a_next = tl.exp2(delta[None, :] * A2)
        t -= 1
    if HAS_BIAS:
        tl.store(dbias_ptr + row * channels + d, dbias, mask=d_mask)


@triton.jit
def _chain_chunks_kernel(states_ptr, dsum_ptr, A_ptr, channels, n_blocks, n_chunks,
                         N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr):
    """Turn each chunk's final state from a zero start (``states``, [R, chunks, N, D]) into its
    initial state, in place: ``h0[c] = exp2(A log2 e sum delta[c - 1]) h0[c - 1] + hT[c - 1]``."""
    row, block, d, d_mask, n, n_mask, A2, _, _ = _program(
        A_ptr, A_ptr, A_ptr, channels, n_blocks, N, N_PAD, BLOCK_D, False, False)
    state_mask = n_mask[:, None] & d_mask[None, :]
    offsets = (row * n_chunks * N + n[:, None]) * channels + d[None, :]
    carried = tl.zeros([N_PAD, BLOCK_D], tl.float32)
    c = 0
    while c < n_chunks:
        final = tl.load(states_ptr + offsets + c * channels * N, mask=state_mask, other=0.0)
        summed = tl.load(dsum_ptr + (row * n_chunks + c) * channels + d, mask=d_mask, other=0.0)
        tl.store(states_ptr + offsets + c * channels * N, carried, mask=state_mask)
        carried = tl.exp2(summed[None, :] * A2) * carried + final
        c += 1


def _dense_like(t: torch.Tensor, dtype=None) -> torch.Tensor:
    """An empty tensor shaped like ``t`` whose dimensions are stored in ``t``'s stride order
    (a time-major view for a time-major ``t``), dense even when ``t`` is a slice."""
    order = sorted(range(t.ndim), key=lambda i: -t.stride(i))
    storage = t.new_empty([t.shape[i] for i in order], dtype=dtype or t.dtype)
    return storage.permute([order.index(i) for i in range(t.ndim)])


def _strides(t):
    """Row, channel (or state) and time strides of a [R, X, L] tensor; zeros for None."""
    return t.stride() if t is not None else (0, 0, 0)


def _on_device(t: torch.Tensor):
    """Make ``t``'s GPU the current one while kernels launch (-1, for the interpreter's CPU
    tensors, changes nothing)."""
    return torch.cuda.device(t.device.index if t.is_cuda else -1)


def _launch_meta(A, D, z, delta_bias, delta_softplus, block_d):
    """Compile-time settings of both kernels; approximate log and divisions except in Triton's
    interpreter (``TRITON_INTERPRET=1``), which has no such instructions."""
    return dict(N=A.shape[1], N_PAD=triton.next_power_of_2(A.shape[1]), BLOCK_D=block_d, HAS_D=D is not None,
                HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                FAST_MATH=not triton.knobs.runtime.interpret)


def _time_chunks(rows, n_blocks, length):
    """Chunks along time for a forward pass with ``rows * n_blocks`` programs: enough to reach
    ``SPLIT_PROGRAMS`` programs, none shorter than ``MIN_CHUNK`` steps and no more than
    sqrt(L) of them (the chunks' states are chained one after another); no split at all when
    that gives fewer than ``MIN_CHUNKS``. Returns the number of chunks and their length."""
    n_chunks = max(1, min(triton.cdiv(SPLIT_PROGRAMS, rows * n_blocks), length // MIN_CHUNK, math.isqrt(length)))
    if n_chunks < MIN_CHUNKS:  # the GPU is nearly full already: twice the work would not pay
        n_chunks = 1
    chunk_len = max(1, triton.cdiv(length, n_chunks))
    return max(1, triton.cdiv(length, chunk_len)), chunk_len


def scan_forward(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, split_time=False):
    """Run the forward kernel; arguments as :func:`selective_scan_triton`, ``A``, ``D`` and
    ``delta_bias`` fp32 and contiguous.

    With ``split_time``, when the rows and channel blocks give fewer than ``SPLIT_PROGRAMS``
    programs (a long input in small row groups), the sequence is also split into chunks:
    a first launch gets each chunk's final state from a zero start and its summed step sizes,
    a second chains them into initial states (``h0[c] = exp(A sum delta[c - 1]) h0[c - 1] +
    hT[c - 1]``), and a third runs every chunk from its true initial state. Twice the
    arithmetic, but parallel over time: about sqrt(L) chunks of sqrt(L) steps.

    Returns
    -------
    torch.Tensor
        [R, D, L] in ``u``'s dtype and dimension order.
    """
    rows, channels, length = u.shape
    block_d, num_warps = TILING["forward"]
    n_blocks = triton.cdiv(channels, block_d)
    out = _dense_like(u)
    meta = _launch_meta(A, D, z, delta_bias, delta_softplus, block_d)
    n_chunks, chunk_len = _time_chunks(rows, n_blocks, length) if split_time else (1, max(1, length))
    strides = (*u.stride(), *delta.stride(), *_strides(z), *out.stride(), *B.stride(), *C.stride())
    grid = (rows * n_chunks * n_blocks,)
    A_t = A.t().contiguous()  # [N, D]: channels fastest, as the kernels' state tiles
    h0 = None
    with _on_device(u):
        if n_chunks > 1:
            f32 = dict(dtype=torch.float32)
            final = u.new_empty(rows, n_chunks, A.shape[1], channels, **f32)
            summed = u.new_empty(rows, n_chunks, channels, **f32)
            _scan_forward_kernel[grid](
                u, delta, A_t, B, C, D, None, delta_bias, out, None, final, summed,
                length, channels, n_blocks, n_chunks, chunk_len, *strides,
                num_warps=num_warps, maxnreg=MAX_REGISTERS["forward"], **dict(meta, HAS_Z=False), HAS_H0=False,
                STATES_ONLY=True,
            )
            _chain_chunks_kernel[(rows * n_blocks,)](final, summed, A_t, channels, n_blocks, n_chunks, N=meta["N"],
                                                     N_PAD=meta["N_PAD"], BLOCK_D=block_d, num_warps=num_warps)
            h0 = final  # now the chunks' initial states
        _scan_forward_kernel[grid](
            u, delta, A_t, B, C, D, z, delta_bias, out, h0, None, None,
            length, channels, n_blocks, n_chunks, chunk_len, *strides,
            num_warps=num_warps, maxnreg=MAX_REGISTERS["forward"], **meta, HAS_H0=h0 is not None, STATES_ONLY=False,
        )
    return out


def scan_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dout, with_output=False):
    """Run the backward kernel; arguments as :func:`scan_forward`, ``dout`` [R, D, L].

    Returns
    -------
    tuple
        ``du``, ``d delta``, ``dz`` (None without ``z``) in the inputs' dtypes and dimension
        orders; ``dA`` [D, N], ``dB``, ``dC`` [R, L, N], ``dD``, ``d bias`` [D] (None where
        absent), all fp32; and with ``with_output`` the forward output (else None).
    """
    rows, channels, length = u.shape
    n_state = A.shape[1]
    block_d, num_warps = TILING["backward"]
    n_blocks = triton.cdiv(channels, block_d)
    n_checkpoints = max(1, (length - 1) // CHECKPOINT)
    f32 = dict(dtype=torch.float32)
    du, ddelta = _dense_like(u), _dense_like(delta)
    dz = None if z is None else _dense_like(z)
    out = _dense_like(u) if with_output else None
    P = u.new_empty(rows, length, channels, **f32)
    states = u.new_empty(rows, n_checkpoints, n_state, channels, **f32)
    dB = u.new_empty(rows, n_blocks, length, n_state, **f32)
    dC = torch.empty_like(dB)
    dA = u.new_empty(rows, n_state, channels, **f32)
    dD = None if D is None else u.new_empty(rows, channels, **f32)
    dbias = None if delta_bias is None else u.new_empty(rows, channels, **f32)
    with _on_device(u):
        _scan_backward_kernel[(rows * n_blocks,)](
            u, delta, A.t().contiguous(), B, C, D, z, delta_bias, dout, P, states, out,
            du, ddelta, dz, dB, dC, dA, dD, dbias,
            length, channels, n_blocks, n_checkpoints,
            *u.stride(), *delta.stride(), *_strides(z), *dout.stride(),
            *du.stride(), *ddelta.stride(), *_strides(dz), *_strides(out), *B.stride(), *C.stride(),
            CHECKPOINT=CHECKPOINT, num_warps=num_warps, maxnreg=MAX_REGISTERS["backward"], HAS_OUT=with_output,
            **_launch_meta(A, D, z, delta_bias, delta_softplus, block_d),
        )
    dA, dD, dbias = (None if t is None else t.sum(0) for t in (dA, dD, dbias))  # over rows
    dA = dA.t().contiguous()  # [D, N]
    return du, ddelta, dz, dA, dB.sum(1), dC.sum(1), dD, dbias, out


def time_major(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``t`` [R, X, L] as a view of time-major storage ([R, L, X], unit stride along X), the
    layout the kernels read fastest; copied only when it is not one already (None stays None).

    Example
    -------
    >>> time_major(torch.randn(2, 3, 5)).stride()
    (15, 1, 3)
    """
    if t is None or t.stride(1) == 1:
        return t
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def _fp32(t):
    return None if t is None else t.float().contiguous()


@torch.library.custom_op("spmamba_sb::selective_scan", mutates_args=())
def _scan_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
             delta_softplus: bool, split_time: bool) -> torch.Tensor:
    return scan_forward(u, delta, _fp32(A), B, C, _fp32(D), z, _fp32(delta_bias), delta_softplus, split_time)


@_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, split_time):
    return _dense_like(u)


@torch.library.custom_op("spmamba_sb::selective_scan_backward", mutates_args=())
def _scan_backward_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                      D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                      delta_softplus: bool, dout: torch.Tensor) -> List[torch.Tensor]:
    """Gradients of the eight inputs in their dtypes; an empty tensor for each absent one."""
    du, ddelta, dz, dA, dB, dC, dD, dbias, _ = scan_backward(
        u, delta, _fp32(A), B, C, _fp32(D), z, _fp32(delta_bias), delta_softplus, dout)
    def empty():  # a distinct one each time: operator outputs must not alias
        return u.new_empty(0)

    return [du, ddelta, dA.to(A.dtype), dB.to(B.dtype).transpose(1, 2), dC.to(C.dtype).transpose(1, 2),
            empty() if D is None else dD.to(D.dtype), empty() if z is None else dz,
            empty() if delta_bias is None else dbias.to(delta_bias.dtype)]


@_scan_backward_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dout):
    def empty():
        return u.new_empty(0)

    rows, _, length = u.shape
    return [_dense_like(u), _dense_like(delta), torch.empty_like(A), B.new_empty(rows, length, B.shape[1]).transpose(1, 2),
            C.new_empty(rows, length, C.shape[1]).transpose(1, 2), empty() if D is None else torch.empty_like(D),
            empty() if z is None else _dense_like(z), empty() if delta_bias is None else torch.empty_like(delta_bias)]


def _setup_scan(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])
    ctx.softplus = inputs[8]


def _scan_grads(ctx, dout):
    saved = ctx.saved_tensors
    grads = _scan_backward_op(*saved, ctx.softplus, dout)
    grads = [None if t is None else grad for t, grad in zip(saved, grads)]
    return (*grads, None, None)


_scan_op.register_autograd(_scan_grads, setup_context=_setup_scan)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan through the fused-recurrence Triton kernels; arguments and shapes as
    :func:`spmamba_sb.nnet.scan.selective_scan`, any strides.

    The kernels run on time-major storage: inputs in another layout (mamba-ssm's channel-first
    [R, D, L] with unit time stride, for one) are copied to it first (:func:`time_major`), and
    the output is then returned contiguous in the channel-first layout. A copy is a few memory
    passes; the kernels on channel-first storage were 2-4x slower than mamba-ssm's.

    It runs as the PyTorch operator ``torch.ops.spmamba_sb.selective_scan`` (with its
    backward registered), so ``torch.compile`` traces through it without a graph break.
    Without autograd, long sequences in few rows are also split along time (see
    :func:`scan_forward`).

    The kernels' tilings are ``TILING`` (channels per program, a power of two, and warps).

    Returns
    -------
    torch.Tensor
        [R, D, L] in the dtype of ``u``: time-major storage for a time-major ``u``, else
        contiguous.

    Example
    -------
    >>> u, delta, z = torch.randn(3, 2, 10, 4, device="cuda").transpose(2, 3).unbind(0)  # doctest: +SKIP
    >>> B, C = torch.randn(2, 2, 3, 10, device="cuda").unbind(0)  # doctest: +SKIP
    >>> selective_scan_triton(u, delta, -torch.rand(4, 3, device="cuda"), B, C).shape  # doctest: +SKIP
    torch.Size([2, 4, 10])
    """
    channel_first = u.stride(1) != 1
    inputs = (*map(time_major, (u, delta)), A, *map(time_major, (B, C)), D, time_major(z), delta_bias)
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    out = _scan_op(*inputs, bool(delta_softplus), not tracked)
    return out.contiguous() if channel_first else out
