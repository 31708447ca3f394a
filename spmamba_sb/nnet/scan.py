"""Selective scan of Mamba (S6): which backend runs it, and the call that dispatches to it.

The recurrence, per channel ``d`` and state ``n`` (Gu & Dao 2023, Alg. 2)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t,        then   y_t = y_t * silu(z_t)

Layouts are mamba-ssm's, channel-first: ``u``, ``delta``, ``z``: [B, D, L]; ``A``: [D, N];
``B``, ``C``: [B, N, L]; ``D``: [D]. Here L is the sequence length, D the inner channels and
N the state size. Only the last (sequence) dimension needs unit stride, so the mixer passes
slices and transposed views of its channel-major projections without copying them.

Backends
--------
``"torch"``: pure PyTorch, any device, chunked with bounded memory
(:mod:`spmamba_sb.nnet.scan_torch`).

``"cuda"``: ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` on CUDA tensors.

``"triton"``: this package's Triton kernels (:mod:`spmamba_sb.nnet.scan_triton`) on CUDA
tensors; Triton comes with PyTorch's CUDA builds, so no compiled extension is needed. They run
on time-major storage (unit channel stride); channel-first inputs are copied to it and the
output copied back, which keeps them ahead of mamba-ssm at either layout.

``"auto"``: for CUDA tensors, by what was measured on an H200 (``benchmarks/gpu_model.py``):
``"triton"`` when Triton imports and the GPU's compute capability is at least
``TRITON_AUTO_MIN_CAPABILITY`` (training: a bf16 step of the published model in 201 ms and
12.7 GiB against 348 ms and 26.8 GiB with mamba-ssm, 171 ms under ``torch.compile`` with earlier
kernels; inference: 60 s of audio in 1.34 s against 2.13 s); else ``"cuda"`` when mamba-ssm imports;
``"torch"`` otherwise. A call of :func:`selective_scan` on channel-first inputs without
autograd is the exception (:func:`backend_for`): there "auto" takes mamba-ssm when it imports.

Nothing here reads the environment: the backend is an argument, and the variables that choose
it for a command (``SPMAMBA_SCAN_BACKEND``, ``SPMAMBA_COMPILE_SCAN``) are read once where the
command starts (:mod:`spmamba_sb.environment`).
mamba-ssm is imported lazily, the first time a CUDA tensor asks for it, and nowhere else
in the package.
"""

import logging
from typing import Callable, Optional

import torch

from spmamba_sb.nnet.scan_torch import selective_scan_torch

logger = logging.getLogger(__name__)

SCAN_BACKENDS = ("auto", "cuda", "triton", "torch")
# "auto" takes the Triton kernels on GPUs of at least this compute capability (Ampere on; they
# are tested on Hopper); older GPUs get them only when "triton" is asked for by name.
TRITON_AUTO_MIN_CAPABILITY = (8, 0)
_INSTALL_HINT = "install the CUDA extra: pip install 'spmamba-sb[cuda]' (mamba-ssm>=2.2)"

_kernel_cache: dict = {}
_triton_cache: dict = {}
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


@torch.compiler.assume_constant_result
def resolve_backend(requested: str, device: torch.device) -> str:
    """Decide which backend runs a scan on ``device``.

    ``torch.compile`` calls it while tracing and keeps its answer as a constant: traced, its
    logging call would split a compiled model at every Mamba layer.

    Arguments
    ---------
    requested : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"``.
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


def backend_for(requested: str, u: torch.Tensor, tracked: bool) -> str:
    """The backend a call of :func:`selective_scan` runs: :func:`resolve_backend`'s, except that
    ``"auto"`` takes mamba-ssm's kernel, when it imports, for channel-first inputs (``u`` without
    unit channel stride) that autograd does not track. There the copies to the Triton kernels'
    layout cost more than mamba-ssm's whole forward pass (H100, bf16, 501 x 512 x 250 x 16:
    2.27 against 2.03 ms; 257 x 512 x 494: 2.33 against 1.93 ms), while forward and backward
    the Triton kernels stay ahead with the copies (4.67 against 8.91 ms; 4.71 against 7.48 ms).

    Arguments
    ---------
    requested : str
        As :func:`resolve_backend`.
    u : torch.Tensor
        The scan's input, [B, D, L].
    tracked : bool
        Whether autograd records the call.

    Returns
    -------
    str
        ``"cuda"``, ``"triton"`` or ``"torch"``.

    Example
    -------
    >>> backend_for("auto", torch.randn(2, 4, 10), tracked=False)
    'torch'
    """
    backend = resolve_backend(requested, u.device)
    if requested == "auto" and backend == "triton" and not tracked and u.stride(1) != 1 and _load_kernel() is not None:
        return "cuda"
    return backend


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
    compile_torch_scan: bool = False,
) -> torch.Tensor:
    """Run the selective scan with the backend ``backend`` resolves to (:func:`resolve_backend`).

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
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"`` (see :func:`backend_for`).
    chunk_size : int, optional
        Steps per chunk of the ``"torch"`` backend; None picks it
        (see :func:`~spmamba_sb.nnet.scan_torch.selective_scan_torch`).
    compile_torch_scan : bool
        Run the ``"torch"`` backend's chunks through ``torch.compile`` on a CPU when autograd
        is off (opt-in: the first call compiles for tens of seconds, then it runs about 2x
        faster).

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
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return run_scan(backend_for(backend, u, tracked), u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                    chunk_size, compile_torch_scan)


def run_scan(backend: str, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
             chunk_size=None, compile_torch_scan=False) -> torch.Tensor:
    """Run the scan on ``backend``, a name :func:`resolve_backend` returned (not checked
    again: callers that resolve once per forward pass call this); arguments and result as
    :func:`selective_scan`.

    Example
    -------
    >>> u, delta = torch.randn(2, 1, 4, 10).unbind(0)
    >>> B, C = torch.randn(2, 1, 3, 10).unbind(0)
    >>> run_scan("torch", u, delta, -torch.rand(4, 3), B, C).shape
    torch.Size([1, 4, 10])
    """
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
    compiled = u.device.type == "cpu" and compile_torch_scan
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, compiled)
