"""Bidirectional Mamba: a pre-norm residual Mamba on the sequence and on its reverse."""

import torch
import torch.nn as nn

from spmamba_sb.nnet.mixer import MambaMixer
from spmamba_sb.nnet.norms import ChannelRMSNorm


class BMamba(nn.Module):
    """Two independent pre-norm residual Mamba layers, one per direction, concatenated.

    ``forward = x + Mamba_f(RMSNorm_f(x))``; ``backward = flip(y + Mamba_b(RMSNorm_b(y)))``
    with ``y = flip(x)`` along the sequence; the output is ``cat([forward, backward])`` on
    channels. Sequences are channel-major, [d_model, rows, L] (see
    :class:`~spmamba_sb.nnet.mixer.MambaMixer`).

    Arguments
    ---------
    d_model : int
        Input channels; the output has ``2 * d_model``.
    d_state, d_conv, expand : int
        Mamba settings (see :class:`~spmamba_sb.nnet.mixer.MambaMixer`).
    eps : float
        RMSNorm epsilon.
    scan_backend : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"``.

    Example
    -------
    >>> layer = BMamba(d_model=8, d_state=4, expand=2, scan_backend="torch")
    >>> layer(torch.randn(8, 3, 20)).shape
    torch.Size([16, 3, 20])
    """

    # Rows per inference group, by device type: about this many input elements (the scan's
    # intermediates are a small multiple of it; 2^23 measured fastest within 4 GiB at 60 s on
    # an H100).
    inference_elements = {"cpu": 1 << 23, "cuda": 1 << 23}

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 4,
        eps: float = 1e-5,
        scan_backend: str = "auto",
    ):
        super().__init__()
        self.output_dim = 2 * d_model
        self.forward_norm = ChannelRMSNorm(d_model, eps=eps)
        self.forward_mixer = MambaMixer(d_model, d_state, d_conv, expand, scan_backend=scan_backend)
        self.backward_norm = ChannelRMSNorm(d_model, eps=eps)
        self.backward_mixer = MambaMixer(d_model, d_state, d_conv, expand, scan_backend=scan_backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run both directions.

        Arguments
        ---------
        x : torch.Tensor
            [d_model, rows, L].

        Returns
        -------
        torch.Tensor
            [2 * d_model, rows, L].
        """
        forward = x + self.forward_mixer(self.forward_norm(x))  # [d_model, rows, L]
        reverse = x.flip(-1)  # [d_model, rows, L], time reversed
        backward = reverse + self.backward_mixer(self.backward_norm(reverse))
        return torch.cat([forward, backward.flip(-1)])  # [2*d_model, rows, L]
