"""Single-direction Mamba (v1) layer with mamba-ssm's parameter names and initialisation."""

import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.nnet.scan import check_backend, resolve_backend, run_scan


class DtProjection(nn.Linear):
    """Step-size projection ``dt_rank -> d_inner`` whose ``reset_parameters`` is Mamba's.

    The weight is uniform in +-dt_rank^-0.5 and the bias is the inverse softplus of step
    sizes drawn log-uniformly in [dt_min, dt_max] (floored at ``dt_init_floor``), so code
    that re-initialises layers through ``reset_parameters`` (as SpeechBrain's separation
    recipes do) keeps Mamba's initialisation.

    Example
    -------
    >>> projection = DtProjection(8, 32)
    >>> bool(torch.nn.functional.softplus(projection.bias).max() <= 0.1 + 1e-6)
    True
    """

    def __init__(self, dt_rank: int, d_inner: int, dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4):
        self.dt_min, self.dt_max, self.dt_init_floor = dt_min, dt_max, dt_init_floor
        super().__init__(dt_rank, d_inner, bias=True)

    def reset_parameters(self) -> None:
        """Mamba's step-size initialisation."""
        bound = self.in_features**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        log_min, log_max = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand(self.out_features) * (log_max - log_min) + log_min)
        dt = dt.clamp(min=self.dt_init_floor)
        with torch.no_grad():
            self.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


class MambaMixer(nn.Module):
    """Mamba selective state-space layer (Gu & Dao 2023), [d_model, rows, L] to the same.

    Parameter names, shapes and initialisation follow ``mamba_ssm.modules.mamba_simple.Mamba``
    (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so a
    state dict of that module loads here with ``strict=True`` and the other way round.

    Arguments
    ---------
    d_model : int
        Input and output channels.
    d_state : int
        SSM state size N.
    d_conv : int
        Kernel size of the causal depthwise convolution.
    expand : int
        Inner channels are ``expand * d_model``.
    dt_rank : int or "auto"
        Rank of the step-size projection; "auto" is ``ceil(d_model / 16)``.
    dt_min, dt_max : float
        Range of the log-uniform initial step sizes.
    dt_init_floor : float
        Smallest initial step size.
    scan_backend : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"`` (see :mod:`spmamba_sb.nnet.scan`).

    The attribute ``compile_torch_scan`` (False; set through :func:`configure_scan`) runs the
    ``"torch"`` backend through ``torch.compile`` on a CPU when autograd is off.

    Example
    -------
    >>> mixer = MambaMixer(d_model=8, d_state=4, expand=2, scan_backend="torch")
    >>> mixer(torch.randn(8, 3, 20)).shape
    torch.Size([8, 3, 20])
    >>> mixer.last_scan_backend
    'torch'
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: Union[int, str] = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_backend: str = "auto",
    ):
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.scan_backend = check_backend(scan_backend)
        self.last_scan_backend: Optional[str] = None
        self.compile_torch_scan = False

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = DtProjection(self.dt_rank, self.d_inner, dt_min, dt_max, dt_init_floor)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ``A_log`` and ``D`` as mamba-ssm does (children reset themselves)."""
        with torch.no_grad():
            self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
            self.D.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix along the sequence.

        Tensors are channel-major, [channels, rows, L], throughout: every projection is one
        matrix product over all rows and steps, the halves of ``in_proj``'s output are
        contiguous, and the scan reads its inputs as strided views, without copies.

        Arguments
        ---------
        x : torch.Tensor
            [d_model, rows, L].

        Returns
        -------
        torch.Tensor
            [d_model, rows, L].
        """
        if x.ndim != 3 or x.shape[0] != self.d_model:
            raise ValueError(f"expected input [{self.d_model}, rows, L], got {tuple(x.shape)}")
        backend = resolve_backend(self.scan_backend, x.device)
        self.last_scan_backend = backend
        if backend == "triton":  # the whole layer as one operator on time-major activations
            from spmamba_sb.nnet.mixer_triton import mamba_mixer  # Triton: imported only for this backend

            return mamba_mixer(x, self.in_proj.weight, self.conv1d.weight[:, 0], self.conv1d.bias, self.x_proj.weight,
                               self.dt_proj.weight, self.dt_proj.bias, -torch.exp(self.A_log.float()), self.D,
                               self.out_proj.weight)
        _, rows, seq_len = x.shape
        projected = self.in_proj.weight @ x.flatten(1)  # [2*d_inner, rows*L]
        hidden, gate = projected.view(2, self.d_inner, rows, seq_len).unbind(0)  # [d_inner, rows, L]
        hidden = F.conv2d(  # the causal depthwise conv1d along L, on one [d_inner, rows, L] image
            hidden.unsqueeze(0),
            self.conv1d.weight.unsqueeze(2),
            self.conv1d.bias,
            padding=(0, self.conv1d.padding[0]),
            groups=self.d_inner,
        )
        hidden = F.silu(hidden[0, ..., :seq_len])  # [d_inner, rows, L]
        steps = self.x_proj.weight @ hidden.flatten(1)  # [dt_rank + 2*d_state, rows*L]
        dt, B, C = steps.view(-1, rows, seq_len).split([self.dt_rank, self.d_state, self.d_state])
        delta = (self.dt_proj.weight @ dt.flatten(1)).view(self.d_inner, rows, seq_len)  # bias added in the scan
        y = run_scan(
            backend,
            hidden.transpose(0, 1),  # [rows, d_inner, L] views
            delta.transpose(0, 1),
            -torch.exp(self.A_log.float()),
            B.transpose(0, 1),  # [rows, d_state, L]
            C.transpose(0, 1),
            D=self.D,
            z=gate.transpose(0, 1),
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            compile_torch_scan=self.compile_torch_scan,
        ).transpose(0, 1)  # [d_inner, rows, L]
        return (self.out_proj.weight @ y.reshape(self.d_inner, -1)).view(self.d_model, rows, seq_len)


def configure_scan(module: nn.Module, backend: Optional[str] = None, compile_torch_scan: Optional[bool] = None) -> int:
    """Set the scan of every :class:`MambaMixer` in ``module``, once, before it runs (and before
    ``torch.compile``, which keeps the backend it traced).

    Arguments
    ---------
    module : torch.nn.Module
        A model, or any module holding Mamba layers.
    backend : str, optional
        Replaces the backend of the layers that have ``"auto"``; a layer given a backend by name
        keeps it. None changes nothing.
    compile_torch_scan : bool, optional
        The layers' ``compile_torch_scan``; None changes nothing.

    Returns
    -------
    int
        How many Mamba layers ``module`` holds.

    Example
    -------
    >>> from spmamba_sb.nnet.bmamba import BMamba
    >>> layer = BMamba(d_model=8, d_state=4, expand=2)
    >>> configure_scan(layer, backend="torch"), layer.forward_mixer.scan_backend
    (2, 'torch')
    """
    if backend is not None:
        check_backend(backend)
    mixers = [layer for layer in module.modules() if isinstance(layer, MambaMixer)]
    for mixer in mixers:
        if backend is not None and mixer.scan_backend == "auto":
            mixer.scan_backend = backend
        if compile_torch_scan is not None:
            mixer.compile_torch_scan = compile_torch_scan
    return len(mixers)
