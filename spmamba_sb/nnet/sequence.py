"""Registry of bidirectional sequence layers used along the frequency and time axes."""

import torch
import torch.nn as nn

from spmamba_sb.nnet.bmamba import BMamba

SEQUENCE_LAYERS = ("mamba", "lstm")


class BLSTM(nn.Module):
    """Bidirectional LSTM that returns only its output sequence (the TF-GridNet layer).

    Arguments
    ---------
    input_dim : int
        Input channels.
    hidden_dim : int
        Hidden units per direction; the output has ``2 * hidden_dim``.

    Example
    -------
    >>> BLSTM(8, 5)(torch.randn(3, 20, 8)).shape
    torch.Size([3, 20, 10])
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.output_dim = 2 * hidden_dim
        self.lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, L, input_dim] -> [rows, L, 2 * hidden_dim]."""
        return self.lstm(x)[0]


def build_sequence_layer(
    kind: str,
    input_dim: int,
    lstm_hidden_dim: int = 192,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 4,
    eps: float = 1e-5,
    scan_backend: str = "auto",
) -> nn.Module:
    """Build a bidirectional sequence layer, [rows, L, input_dim] -> [rows, L, output_dim].

    Every layer has an ``output_dim`` attribute.

    Arguments
    ---------
    kind : str
        ``"mamba"`` (:class:`~spmamba_sb.nnet.bmamba.BMamba`, SPMamba) or ``"lstm"``
        (:class:`BLSTM`, TF-GridNet).
    input_dim : int
        Input channels.
    lstm_hidden_dim : int
        Hidden units per direction of ``"lstm"``.
    d_state, d_conv, expand, eps, scan_backend
        Settings of ``"mamba"``.

    Returns
    -------
    torch.nn.Module
        The layer.

    Raises
    ------
    ValueError
        If ``kind`` is unknown.

    Example
    -------
    >>> build_sequence_layer("lstm", 8, lstm_hidden_dim=5).output_dim
    10
    """
    if kind == "mamba":
        return BMamba(input_dim, d_state, d_conv, expand, eps=eps, scan_backend=scan_backend)
    if kind == "lstm":
        return BLSTM(input_dim, lstm_hidden_dim)
    raise ValueError(f"sequence_layer={kind!r} is not one of {SEQUENCE_LAYERS}")
