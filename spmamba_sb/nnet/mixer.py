"""Single-direction Mamba (v1) layer with mamba-ssm's parameter names and initialisation."""

import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.nnet.scan import check_backend, resolve_backend, selective_scan


class MambaMixer(nn.Module):
    """Mamba selective state-space layer (Gu & Dao 2023), [rows, L, d_model] to the same.

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
        ``"auto"``, ``"cuda"`` or ``"torch"`` (see :mod:`spmamba_sb.nnet.scan`).

    Example
    -------
    >>> mixer = MambaMixer(d_model=8, d_state=4, expand=2, scan_backend="torch")
    >>> mixer(torch.randn(3, 20, 8)).shape
    torch.Size([3, 20, 8])
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

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    def _init_dt(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """Initialise ``dt_proj`` so that softplus(bias) is log-uniform in [dt_min, dt_max]."""
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def no_weight_decay(self) -> set:
        """Names of parameters to exclude from weight decay (as mamba-ssm marks them)."""
        return {"A_log", "D"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix along the sequence.

        Arguments
        ---------
        x : torch.Tensor
            [rows, L, d_model].

        Returns
        -------
        torch.Tensor
            [rows, L, d_model].
        """
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected input [rows, L, {self.d_model}], got {tuple(x.shape)}")
        seq_len = x.shape[1]
        hidden, gate = self.in_proj(x).chunk(2, dim=-1)  # 2 x [rows, L, d_inner]
        hidden = self.conv1d(hidden.transpose(1, 2))[..., :seq_len]  # [rows, d_inner, L]
        hidden = F.silu(hidden).transpose(1, 2)  # [rows, L, d_inner]
        dt, B, C = self.x_proj(hidden).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # [rows, L, d_inner]; bias added in the scan
        backend = resolve_backend(self.scan_backend, x.device)
        self.last_scan_backend = backend
        y = selective_scan(
            hidden,
            delta,
            -torch.exp(self.A_log.float()),
            B,
            C,
            D=self.D,
            z=gate,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            backend=backend,
        )  # [rows, L, d_inner]
        return self.out_proj(y)  # [rows, L, d_model]
