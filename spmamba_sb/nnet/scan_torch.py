"""Mamba's selective scan in pure PyTorch, on any device; the ``"torch"`` backend of
:mod:`spmamba_sb.nnet.scan`, and the step-by-step reference the tests hold every backend to.

Shapes and arguments as :func:`spmamba_sb.nnet.scan.selective_scan`. The sequence is processed
in chunks (by default as many steps as keep one [B, chunk, D, N] tensor near
``CHUNK_ELEMENTS[device type]`` elements, at most ``MAX_CHUNK_SIZE``), each by one of two
algorithms:

- :func:`scan_steps`, step by step: fewest operations, best on a CPU when the state is large
  (``SEQUENTIAL_MIN_ELEMENTS``); the rows then go in blocks whose state fits in the
  processor's cache (``SEQUENTIAL_BLOCK_ELEMENTS``);
- :func:`scan_log_depth`, a log-depth (Hillis-Steele) scan: fewest kernel launches, best on
  a GPU.

Only one chunk's [B, chunk, D, N] tensors exist at a time, and under autograd each chunk is
recomputed in the backward pass (activation checkpointing, :class:`RecomputedChunk`; the
step-by-step chunks then run their adjoint recurrence, :func:`scan_steps_backward`), so memory
is bounded by the chunk size, not by L. With ``compiled`` (for a CPU without autograd) the
chunks run through ``torch.compile``: the first call compiles for tens of seconds, then it runs
about 2x faster.
Arithmetic is fp32 for fp32 and lower-precision inputs, fp64 for fp64.
"""

import functools
import logging
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

MAX_CHUNK_SIZE = 64
# Elements of one [B, chunk, D, N] tensor the scan aims for: small on a CPU, where a
# step-by-step loop is fastest, larger on a GPU, where each step costs kernel launches.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}
# On a CPU, states of at least this many elements ([B, D, N]) are stepped through one step
# at a time (memory-bound work dominates); smaller ones use the log-depth scan, which needs
# far fewer Python-level operations.
SEQUENTIAL_MIN_ELEMENTS = 1 << 13
# The step-by-step loop takes the rows (B) in blocks whose state [rows, D, N] has about this
# many elements (2 MiB in fp32), so each step's tensors stay in cache: 1.5x faster than all
# rows at once at the published model's sizes on a 2-core AMD EPYC.
SEQUENTIAL_BLOCK_ELEMENTS = 1 << 19
# Steps per chunk of the compiled scan (unless the caller sets one): one length whatever the
# rows, so that compiled code is reused: 2x faster than eager at the published model's sizes.
COMPILED_CHUNK_SIZE = 32

_compiled_cache: dict = {}


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Upcast to fp32 (fp64 stays fp64), make the inputs sequence-major ([B, L, D] and
    [B, L, N], contiguous, so each step reads adjacent channels) and apply the step-size
    bias and softplus."""
    dtype = torch.promote_types(u.dtype, torch.float32)
    A = A.to(dtype)
    u, delta, B, C = (t.transpose(1, 2).to(dtype).contiguous() for t in (u, delta, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)
    if delta_softplus:
        delta = F.softplus(delta)
    return u, delta, A, B, C


def _finish(y, u, D, z, dtype):
    """Add the skip term, apply the gate and cast back: sequence-major ``y`` and ``u``
    [B, L, D], channel-first ``z`` [B, D, L], output channel-first [B, D, L]."""
    if D is not None:
        y = y + u * D.to(u.dtype)
    if z is not None:
        y = y * F.silu(z.transpose(1, 2).to(u.dtype))
    return y.to(dtype).transpose(1, 2)


def _step_major(*tensors):
    """Each [B, c, ...] tensor as a contiguous [c, B, ...] one, so that every step of a loop
    reads one block of memory (strided steps cost the step loops a copy each)."""
    return [t.transpose(0, 1).contiguous() for t in tensors]


def scan_steps(state, u, delta, A, B, C) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scan one chunk step by step from ``state`` [B, D, N]; inputs sequence-major, fp32,
    length c. Returns the chunk's output [B, c, D] and the state after its last step."""
    step_delta, step_input, step_B, readout = _step_major(delta, delta * u, B, C)
    step_delta, step_input = step_delta.unsqueeze(-1), step_input.unsqueeze(-1)  # [c, B, D, 1]
    step_B, readout = step_B.unsqueeze(2), readout.unsqueeze(-1)  # [c, B, 1, N], [c, B, N, 1]
    outputs = []
    for t in range(step_delta.shape[0]):
        state = torch.addcmul(step_input[t] * step_B[t], torch.exp(step_delta[t] * A), state)  # [B, D, N]
        outputs.append(torch.matmul(state, readout[t]))  # [B, D, 1]
    return torch.cat(outputs, dim=-1).transpose(1, 2), state  # [B, c, D], [B, D, N]


def scan_steps_backward(state, u, delta, A, B, C, grad_y, grad_state) -> Tuple[torch.Tensor, ...]:
    """Gradients of :func:`scan_steps` over one chunk, by the adjoint recurrence run backwards:
    the chunk's states are recomputed without autograd, then one reverse loop carries the
    state's gradient ``g`` [B, D, N] from the last step to the first.

    With ``x = delta * u``, the forward step is ``h_t = exp(delta_t A) h_(t-1) + x_t B_t`` and
    ``y_t = h_t C_t``; backwards, ``g += y'_t C_t`` gives ``C'_t = y'_t h_t``, ``x'_t = g B_t``,
    ``B'_t = x_t g``, ``g *= exp(delta_t A)`` steps back, and the decay's share
    ``q = g h_(t-1)`` gives ``delta'_t += q A`` and ``A' += q delta_t``. No graph, and fewer
    operations than differentiating the recomputed loop.

    Arguments as :func:`scan_steps`, plus the gradients of its two results (``grad_state``
    may be None). Returns the gradients of ``state, u, delta, A, B, C``.

    Example
    -------
    >>> u, delta = torch.randn(2, 1, 5, 4).unbind(0)
    >>> B, C = torch.randn(2, 1, 5, 3).unbind(0)
    >>> grads = scan_steps_backward(torch.zeros(1, 4, 3), u, delta, -torch.rand(4, 3), B, C,
    ...                             torch.ones(1, 5, 4), None)
    >>> [tuple(g.shape) for g in grads]
    [(1, 4, 3), (1, 5, 4), (1, 5, 4), (4, 3), (1, 5, 3), (1, 5, 3)]
    """
    length = u.shape[1]
    step_delta, step_x, step_B, step_C, step_grad_y = _step_major(delta, delta * u, B, C, grad_y)
    step_delta, step_grad_y = step_delta.unsqueeze(-1), step_grad_y.unsqueeze(-1)  # [c, B, D, 1]
    step_B, step_C = step_B.unsqueeze(2), step_C.unsqueeze(2)  # [c, B, 1, N]
    states, decays = [state], []  # h_(-1), h_0, ..., h_(c-1) and exp(delta_t A)
    for t in range(length):
        decays.append(torch.exp(step_delta[t] * A))
        states.append(torch.addcmul(step_x[t].unsqueeze(-1) * step_B[t], decays[t], states[t]))
    g = torch.zeros_like(state) if grad_state is None else grad_state.clone()  # [B, D, N]
    grad_A_rows = torch.zeros_like(state)  # [B, D, N], summed over the rows at the end
    grad_delta = torch.empty_like(step_x)  # [c, B, D], first the decay's share
    grad_x = torch.empty_like(step_x)
    grad_B = torch.empty_like(B.transpose(0, 1))  # [c, B, N]
    grad_C = torch.empty_like(grad_B)
    for t in range(length - 1, -1, -1):
        g.addcmul_(step_grad_y[t], step_C[t])
        grad_C[t] = torch.matmul(step_grad_y[t].transpose(1, 2), states[t + 1]).squeeze(1)
        grad_x[t] = torch.matmul(g, step_B[t].transpose(1, 2)).squeeze(-1)
        grad_B[t] = torch.matmul(step_x[t].unsqueeze(1), g).squeeze(1)
        g.mul_(decays[t])  # now the gradient of h_(t-1)
        share = g * states[t]  # q, [B, D, N]
        grad_delta[t] = (share * A).sum(-1)
        grad_A_rows.addcmul_(share, step_delta[t])
    grad_x = grad_x.transpose(0, 1)  # [B, c, D]
    grad_delta = grad_delta.transpose(0, 1) + grad_x * u
    return g, grad_x * delta, grad_delta, grad_A_rows.sum(0), grad_B.transpose(0, 1), grad_C.transpose(0, 1)


def scan_log_depth(state, u, delta, A, B, C) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scan one chunk with a log-depth (Hillis-Steele) scan; arguments and results as
    :func:`scan_steps`."""
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [B, c, D, N], in (0, 1]
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # [B, c, D, N]
    # After the loop `drive` holds the states from a zero start and `decay` the running
    # product of decays.
    offset = 1
    while offset < decay.shape[1]:
        drive = torch.cat(
            [drive[:, :offset], torch.addcmul(drive[:, offset:], decay[:, offset:], drive[:, :-offset])],
            dim=1,
        )
        decay = torch.cat([decay[:, :offset], decay[:, offset:] * decay[:, :-offset]], dim=1)
        offset *= 2
    states = torch.addcmul(drive, decay, state.unsqueeze(1))  # [B, c, D, N]
    y = torch.matmul(states, C.unsqueeze(-1)).squeeze(-1)  # [B, c, D]
    return y, states[:, -1].clone()  # a copy, so the chunk's states can be freed


def _run_compiled(algorithm: Callable, *args):
    """Run ``algorithm`` through ``torch.compile`` (the rows may vary without recompiling). If
    compilation fails (e.g. no C++ compiler), warn once and run it eagerly from then on."""
    if algorithm not in _compiled_cache:
        _compiled_cache[algorithm] = torch.compile(algorithm, dynamic=True)
    if _compiled_cache[algorithm] is not None:
        try:
            return _compiled_cache[algorithm](*args)
        except Exception as error:  # compiler errors come in many types
            _compiled_cache[algorithm] = None
            logger.warning("torch.compile of the selective scan failed (%s: %s); running it eagerly.",
                           type(error).__name__, error)
    return algorithm(*args)


class RecomputedChunk(torch.autograd.Function):
    """One chunk of the scan whose forward keeps no graph: ``algorithm`` runs without autograd,
    and the backward pass differentiates it from the saved inputs, by ``adjoint`` (the
    algorithm's analytic gradients, :func:`scan_steps_backward` for :func:`scan_steps`) or,
    where that is None, by running it again under autograd.

    This is activation checkpointing without any per-step autograd state in the forward pass:
    on a CPU, the small graph nodes that a checkpointed step-by-step loop would leave behind
    scatter the allocator's heap between the steps' freed [B, D, N] tensors, and training used
    several times the memory that the live tensors need. Works with ``backward()`` and
    ``torch.autograd.grad`` alike (not twice differentiable). ``torch.compile`` cannot trace
    its backward pass, so under the compiler the chunks go through ``torch.utils.checkpoint``
    instead, which it takes into the model's one graph.

    Example
    -------
    >>> u, delta = torch.randn(2, 1, 5, 4).unbind(0)
    >>> B, C = torch.randn(2, 1, 5, 3).unbind(0)
    >>> A = (-torch.rand(4, 3)).requires_grad_()
    >>> y, state = RecomputedChunk.apply(scan_steps, scan_steps_backward, torch.zeros(1, 4, 3),
    ...                                  u, delta, A, B, C)
    >>> y.sum().backward(); A.grad.shape
    torch.Size([4, 3])
    """

    @staticmethod
    def forward(ctx, algorithm, adjoint, state, u, delta, A, B, C):
        ctx.algorithm, ctx.adjoint = algorithm, adjoint
        ctx.save_for_backward(state, u, delta, A, B, C)
        return algorithm(state, u, delta, A, B, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_state):
        wanted = ctx.needs_input_grad[2:]
        if ctx.adjoint is not None:
            grads = ctx.adjoint(*ctx.saved_tensors, grad_y, grad_state)
            return (None, None, *(grad if needed else None for grad, needed in zip(grads, wanted)))
        inputs = [t.detach().requires_grad_(needed) for t, needed in zip(ctx.saved_tensors, wanted)]
        with torch.enable_grad():
            y, state = ctx.algorithm(*inputs)
        differentiable = [t for t in inputs if t.requires_grad]
        grads = iter(torch.autograd.grad((y, state), differentiable, (grad_y, grad_state), allow_unused=True))
        return (None, None, *(next(grads) if needed else None for needed in wanted))


def _in_row_blocks(scan: Callable, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, compiled, block):
    """``scan`` over blocks of ``block`` rows, each block's output written straight into a
    channel-major buffer ([D, B, L], returned as a [B, D, L] view): the layout the mixers read
    next, with no concatenation and no later copy."""
    batch, channels, length = u.shape
    out = u.new_empty(channels, batch, length).transpose(0, 1)  # [B, D, L]
    for start in range(0, batch, block):
        rows = slice(start, start + block)
        out[rows] = scan(u[rows], delta[rows], A, B[rows], C[rows], D, None if z is None else z[rows],
                         delta_bias, delta_softplus, chunk_size, compiled)
    return out


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    chunk_size: Optional[int] = None,
    compiled: bool = False,
) -> torch.Tensor:
    """Chunked pure-PyTorch selective scan; arguments and shapes as
    :func:`spmamba_sb.nnet.scan.selective_scan`.

    Arguments
    ---------
    chunk_size : int, optional
        Steps per chunk; None picks it from ``CHUNK_ELEMENTS`` (``COMPILED_CHUNK_SIZE`` when
        compiled).
    compiled : bool
        Run the chunks through ``torch.compile`` (without autograd only).

    Example
    -------
    >>> u, delta = torch.randn(2, 1, 4, 100).unbind(0)
    >>> B, C = torch.randn(2, 1, 3, 100).unbind(0)
    >>> selective_scan_torch(u, delta, -torch.rand(4, 3), B, C, chunk_size=16).shape
    torch.Size([1, 4, 100])
    """
    batch, channels, length = u.shape
    state_elements = channels * A.shape[1]
    sequential = u.device.type == "cpu" and batch * state_elements >= SEQUENTIAL_MIN_ELEMENTS
    block = max(1, SEQUENTIAL_BLOCK_ELEMENTS // state_elements)
    if sequential and batch > block:
        return _in_row_blocks(selective_scan_torch, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              chunk_size, compiled, block)
    compiled = compiled and not torch.is_grad_enabled()
    if chunk_size is None and compiled:
        chunk_size = COMPILED_CHUNK_SIZE
    elif chunk_size is None:
        budget = CHUNK_ELEMENTS.get(u.device.type, CHUNK_ELEMENTS["cpu"])
        chunk_size = max(1, min(MAX_CHUNK_SIZE, budget // (batch * channels * A.shape[1])))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    algorithm = scan_steps if sequential else scan_log_depth
    dtype = u.dtype
    with torch.autocast(u.device.type, enabled=False):
        u32, delta32, A32, B32, C32 = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
        state = u32.new_zeros(batch, channels, A32.shape[1])  # [B, D, N]
        use_checkpoint = torch.is_grad_enabled() and any(
            t.requires_grad for t in (u32, delta32, A32, B32, C32)
        )
        run = functools.partial(_run_compiled, algorithm) if compiled else algorithm
        if compiled:  # pad to whole chunks, so every chunk has one length; delta = 0 keeps the state
            padding = (0, 0, 0, -length % chunk_size)
            u32, delta32, B32, C32 = (F.pad(t, padding) for t in (u32, delta32, B32, C32))
        outputs = []
        for start in range(0, length, chunk_size):
            window = slice(start, start + chunk_size)
            args = (state, u32[:, window], delta32[:, window], A32, B32[:, window], C32[:, window])
            if use_checkpoint and torch.compiler.is_compiling():  # the compiler traces this one, in one graph
                y, state = checkpoint(run, *args, use_reentrant=False)
            elif use_checkpoint:
                y, state = RecomputedChunk.apply(run, scan_steps_backward if sequential else None, *args)
            else:
                y, state = run(*args)
            outputs.append(y)
        y = torch.cat(outputs, dim=1)[:, :length]  # [B, L, D]
        return _finish(y, u32[:, :length], D, z, dtype)  # [B, D, L]


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The recurrence written step by step; slow, kept as the ground truth for tests.

    Arguments and shapes as :func:`spmamba_sb.nnet.scan.selective_scan`.

    Example
    -------
    >>> u, delta = torch.randn(2, 1, 4, 5).unbind(0)
    >>> B, C = torch.randn(2, 1, 3, 5).unbind(0)
    >>> selective_scan_reference(u, delta, -torch.rand(4, 3), B, C).shape
    torch.Size([1, 4, 5])
    """
    dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)  # [B, L, D], [B, L, N]
    state = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # [B, D, N]
    outputs = []
    for t in range(u.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * A)  # [B, D, N]
        drive = (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]  # [B, D, N]
        state = decay * state + drive
        outputs.append((state * C[:, t, None, :]).sum(-1))  # [B, D]
    y = torch.stack(outputs, dim=1)  # [B, L, D]
    return _finish(y, u, D, z, dtype)
