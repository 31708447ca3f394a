"""Selective scan of Mamba (S6): a pure-PyTorch implementation and the mamba-ssm CUDA kernel.

The recurrence, per channel ``d`` and state ``n`` (Gu & Dao 2023, Alg. 2)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t,        then   y_t = y_t * silu(z_t)

Layouts are mamba-ssm's, channel-first: ``u``, ``delta``, ``z``: [B, D, L]; ``A``: [D, N];
``B``, ``C``: [B, N, L]; ``D``: [D]. Here L is the sequence length, D the inner channels and
N the state size. Only the last (sequence) dimension needs unit stride, so the mixer passes
slices and transposed views of its channel-major projections without copying them.

Backends
--------
``"torch"``: pure PyTorch, any device. The sequence is processed in chunks (by default
as many steps as keep one [B, chunk, D, N] tensor near ``CHUNK_ELEMENTS[device type]``
elements, at most ``MAX_CHUNK_SIZE``): step by step inside a chunk on a CPU when the
state is large (``SEQUENTIAL_MIN_ELEMENTS``), then over blocks of rows whose state fits
in the processor's cache (``SEQUENTIAL_BLOCK_ELEMENTS``), with a log-depth (Hillis-Steele)
scan otherwise. Only one chunk's [B, chunk, D, N]
tensors exist at a time, and under autograd each chunk is
recomputed in the backward pass (activation checkpointing), so memory is bounded by the
chunk size, not by L. Arithmetic is fp32 for fp32 and lower-precision inputs, fp64 for fp64.

``"cuda"``: ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` on CUDA tensors.

``"triton"``: this package's Triton kernels (:mod:`spmamba_sb.nnet.scan_triton`) on CUDA
tensors; Triton comes with PyTorch's CUDA builds, so no compiled extension is needed.

``"auto"``: for CUDA tensors, by what was measured on an H200 (``benchmarks/gpu_model.py``):
``"triton"`` when Triton imports and the GPU's compute capability is at least
``TRITON_AUTO_MIN_CAPABILITY`` (training: a bf16 step of the published model in 250 ms and
12.9 GiB against 362 ms and 26.8 GiB with mamba-ssm, 168 ms under ``torch.compile``;
inference: 60 s of audio in 1.35 s against 2.11 s); else ``"cuda"`` when mamba-ssm imports;
``"torch"`` otherwise.
The environment variable ``SPMAMBA_SCAN_BACKEND`` overrides ``"auto"``.
With ``SPMAMBA_COMPILE_SCAN=1`` the ``"torch"`` backend runs its chunks through
``torch.compile`` on a CPU when autograd is off (opt-in: the first call compiles
for tens of seconds, then it runs about 2x faster; see :func:`_compiled_scan_chunk`).
mamba-ssm is imported lazily, the first time a CUDA tensor asks for it, and nowhere else
in the package.
"""

import logging
import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

SCAN_BACKENDS = ("auto", "cuda", "triton", "torch")
BACKEND_ENV_VAR = "SPMAMBA_SCAN_BACKEND"
MAX_CHUNK_SIZE = 64
# Elements of one [B, chunk, D, N] tensor the torch scan aims for: small on a CPU, where a
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
COMPILE_ENV_VAR = "SPMAMBA_COMPILE_SCAN"
# Steps per chunk of the compiled scan (unless the caller sets one): one length whatever the
# rows, so that compiled code is reused: 2x faster than eager at the published model's sizes.
COMPILED_CHUNK_SIZE = 32
# "auto" takes the Triton kernels on GPUs of at least this compute capability (Ampere on; they
# are tested on Hopper); older GPUs get them only when "triton" is asked for by name.
TRITON_AUTO_MIN_CAPABILITY = (8, 0)
_INSTALL_HINT = "install the CUDA extra: pip install 'spmamba-sb[cuda]' (mamba-ssm>=2.2)"

_kernel_cache: dict = {}
_triton_cache: dict = {}
_compiled_cache: dict = {}
_logged_choices: set = set()


def _load_kernel() -> Optional[Callable]:
    """Return mamba-ssm's ``selective_scan_fn``, or None when it is missing or broken.

    A missing package is silent; a package that is installed but fails to import warns
    once, with the error.
    """
    if "fn" not in _kernel_cache:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except ModuleNotFoundError as error:
            _kernel_cache["error"] = error
            selective_scan_fn = None
        except Exception as error:  # a broken build raises anything from OSError up
            _kernel_cache["error"] = error
            logger.warning(
                "mamba-ssm is installed but failed to import (%s: %s); "
                "using the pure-PyTorch selective scan.",
                type(error).__name__,
                error,
            )
            selective_scan_fn = None
        _kernel_cache["fn"] = selective_scan_fn
    return _kernel_cache["fn"]


def _load_triton() -> Optional[Callable]:
    """Return :func:`~spmamba_sb.nnet.scan_triton.selective_scan_triton`, or None (with the
    error kept) when Triton is missing or fails to import."""
    if "fn" not in _triton_cache:
        try:
            from spmamba_sb.nnet.scan_triton import selective_scan_triton
        except Exception as error:  # ModuleNotFoundError, or a broken install
            _triton_cache["error"] = error
            selective_scan_triton = None
        _triton_cache["fn"] = selective_scan_triton
    return _triton_cache["fn"]


def check_backend(name: str) -> str:
    """Validate a backend name.

    Arguments
    ---------
    name : str
        One of ``"auto"``, ``"cuda"``, ``"triton"``, ``"torch"``.

    Returns
    -------
    str
        ``name`` itself.

    Raises
    ------
    ValueError
        If ``name`` is not a known backend.

    Example
    -------
    >>> check_backend("torch")
    'torch'
    """
    if name not in SCAN_BACKENDS:
        raise ValueError(f"scan_backend={name!r} is not one of {SCAN_BACKENDS}")
    return name


def resolve_backend(requested: str, device: torch.device) -> str:
    """Decide which backend runs a scan on ``device``.

    Arguments
    ---------
    requested : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"``. ``"auto"`` is first replaced
        by the value of ``SPMAMBA_SCAN_BACKEND`` when that variable is set.
    device : torch.device
        Device of the tensors to scan.

    Returns
    -------
    str
        ``"cuda"``, ``"triton"`` or ``"torch"``.

    Raises
    ------
    ImportError
        If ``"cuda"`` is requested and mamba-ssm cannot be imported, or ``"triton"`` and
        Triton cannot.
    ValueError
        If ``"cuda"`` or ``"triton"`` is requested for tensors that are not on a CUDA
        device, or a name is unknown.

    Example
    -------
    >>> resolve_backend("auto", torch.device("cpu"))
    'torch'
    """
    check_backend(requested)
    if requested == "auto" and os.environ.get(BACKEND_ENV_VAR):
        requested = check_backend(os.environ[BACKEND_ENV_VAR].strip().lower())
    if requested == "torch":
        return "torch"
    if requested in ("cuda", "triton"):
        load, cache, library, hint = {
            "cuda": (_load_kernel, _kernel_cache, "mamba-ssm", _INSTALL_HINT),
            "triton": (_load_triton, _triton_cache, "Triton", "install a CUDA build of PyTorch, which brings Triton"),
        }[requested]
        if device.type != "cuda":
            raise ValueError(f"scan_backend={requested!r} needs CUDA tensors, got device {device}")
        if load() is None:
            raise ImportError(
                f"scan_backend={requested!r} but {library} is unavailable ({cache.get('error')}); {hint}"
            )
        return requested
    choice = "torch"
    if device.type == "cuda":
        if _load_triton() is not None and torch.cuda.get_device_capability(device) >= TRITON_AUTO_MIN_CAPABILITY:
            choice = "triton"
        elif _load_kernel() is not None:
            choice = "cuda"
    if (device.type, choice) not in _logged_choices:
        _logged_choices.add((device.type, choice))
        logger.info("selective scan backend 'auto' -> %r on %s tensors", choice, device.type)
    return choice


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    backend: str = "auto",
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Run the selective scan with the chosen backend.

    Arguments
    ---------
    u : torch.Tensor
        Input, [B, D, L].
    delta : torch.Tensor
        Step sizes before ``delta_bias`` and softplus, [B, D, L].
    A : torch.Tensor
        State matrix (negative), [D, N].
    B : torch.Tensor
        Input projection per step, [B, N, L].
    C : torch.Tensor
        Output projection per step, [B, N, L].
    D : torch.Tensor, optional
        Skip connection, [D].
    z : torch.Tensor, optional
        Gate, [B, D, L]; the output is multiplied by ``silu(z)``.
    delta_bias : torch.Tensor, optional
        Added to ``delta``, [D].
    delta_softplus : bool
        Apply softplus to ``delta`` (after the bias).
    backend : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"`` (see :func:`resolve_backend`).
    chunk_size : int, optional
        Steps per chunk of the ``"torch"`` backend; None picks it from ``CHUNK_ELEMENTS``.

    Returns
    -------
    torch.Tensor
        Output, [B, D, L], in the dtype of ``u``.

    Example
    -------
    >>> u, delta, z = torch.randn(3, 2, 4, 10).unbind(0)
    >>> A = -torch.rand(4, 3)
    >>> B, C = torch.randn(2, 2, 3, 10).unbind(0)
    >>> selective_scan(u, delta, A, B, C, delta_softplus=True, backend="torch").shape
    torch.Size([2, 4, 10])
    """
    backend = resolve_backend(backend, u.device)
    if backend == "triton":
        return _load_triton()(u, delta, A, B, C, D, z, delta_bias, delta_softplus)  # [B, D, L]
    if backend == "cuda":
        return _load_kernel()(
            u,
            delta,
            A.contiguous(),
            B,
            C,
            D=None if D is None else D.float(),
            z=z,
            delta_bias=None if delta_bias is None else delta_bias.float(),
            delta_softplus=delta_softplus,
        )  # [B, D, L]
    return selective_scan_torch(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size=chunk_size
    )


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


def _scan_chunk(
    state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    sequential: bool,
):
    """Scan one chunk from ``state`` [B, D, N]; inputs are fp32 with length c <= chunk size.

    ``sequential`` steps through the chunk (fewest operations: best on a CPU); otherwise a
    log-depth Hillis-Steele scan runs (fewest kernel launches: best on a GPU).
    Returns the chunk's output [B, c, D] and the state after its last step [B, D, N].
    """
    if sequential:  # step by step on cache-sized [B, D, N] tensors
        step_delta = delta.transpose(0, 1).unsqueeze(-1)  # [c, B, D, 1]
        step_input = (delta * u).transpose(0, 1).unsqueeze(-1)  # [c, B, D, 1]
        step_B = B.transpose(0, 1).unsqueeze(2)  # [c, B, 1, N]
        readout = C.transpose(0, 1).unsqueeze(-1)  # [c, B, N, 1]
        outputs = []
        for t in range(step_delta.shape[0]):
            state = torch.addcmul(step_input[t] * step_B[t], torch.exp(step_delta[t] * A), state)  # [B, D, N]
            outputs.append(torch.matmul(state, readout[t]))  # [B, D, 1]
        return torch.cat(outputs, dim=-1).transpose(1, 2), state  # [B, c, D], [B, D, N]
    else:
        decay = torch.exp(delta.unsqueeze(-1) * A)  # [B, c, D, N], in (0, 1]
        drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # [B, c, D, N]
        # After the loop `drive` holds the states from a zero start and `decay` the
        # running product of decays.
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


def _compiled_scan_chunk(*args):
    """Run :func:`_scan_chunk` compiled by ``torch.compile``; the rows may vary without
    recompiling. If compilation fails (e.g. no C++ compiler), warn once and run eagerly.
    """
    if "fn" not in _compiled_cache:
        _compiled_cache["fn"] = torch.compile(_scan_chunk, dynamic=True)
    if _compiled_cache["fn"] is not None:
        try:
            return _compiled_cache["fn"](*args)
        except Exception as error:  # compiler errors come in many types
            _compiled_cache["fn"] = None
            logger.warning(
                "torch.compile of the selective scan failed (%s: %s); running it eagerly.",
                type(error).__name__,
                error,
            )
    return _scan_chunk(*args)


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
) -> torch.Tensor:
    """Chunked pure-PyTorch selective scan; arguments and shapes as :func:`selective_scan`.

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
        # each block's output goes straight into a channel-major buffer ([D, B, L], returned as
        # a [B, D, L] view), the layout the mixers read next: no concatenation, no later copy
        out = u.new_empty(channels, batch, length).transpose(0, 1)  # [B, D, L]
        for start in range(0, batch, block):
            rows = slice(start, start + block)
            out[rows] = selective_scan_torch(
                u[rows], delta[rows], A, B[rows], C[rows], D, None if z is None else z[rows],
                delta_bias, delta_softplus, chunk_size,
            )
        return out
    compiled = (
        os.environ.get(COMPILE_ENV_VAR) == "1" and u.device.type == "cpu" and not torch.is_grad_enabled()
    )
    if chunk_size is None and compiled:
        chunk_size = COMPILED_CHUNK_SIZE
    elif chunk_size is None:
        budget = CHUNK_ELEMENTS.get(u.device.type, CHUNK_ELEMENTS["cpu"])
        chunk_size = max(1, min(MAX_CHUNK_SIZE, budget // (batch * channels * A.shape[1])))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = u.dtype
    with torch.autocast(u.device.type, enabled=False):
        u32, delta32, A32, B32, C32 = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
        state = u32.new_zeros(batch, channels, A32.shape[1])  # [B, D, N]
        use_checkpoint = torch.is_grad_enabled() and any(
            t.requires_grad for t in (u32, delta32, A32, B32, C32)
        )
        if compiled:  # pad to whole chunks, so every chunk has one length; delta = 0 keeps the state
            padding = (0, 0, 0, -length % chunk_size)
            u32, delta32, B32, C32 = (F.pad(t, padding) for t in (u32, delta32, B32, C32))
        outputs = []
        for start in range(0, length, chunk_size):
            window = slice(start, start + chunk_size)
            args = (state, u32[:, window], delta32[:, window], A32, B32[:, window], C32[:, window], sequential)
            if use_checkpoint:
                y, state = checkpoint(_scan_chunk, *args, use_reentrant=False)
            elif compiled:
                y, state = _compiled_scan_chunk(*args)
            else:
                y, state = _scan_chunk(*args)
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

    Arguments and shapes as :func:`selective_scan`.

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
