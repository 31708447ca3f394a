"""Registry of bidirectional sequence layers used along the frequency and time axes.

Every layer maps channel-major sequences [input_dim, rows, L] to [output_dim, rows, L]: the
layout in which Mamba's projections are single matrix products (see
:class:`~spmamba_sb.nnet.mixer.MambaMixer`). Its ``inference_elements`` sizes the groups of rows
that inference runs at a time (:class:`~spmamba_sb.nnet.gridnet_block.SequencePath`): about that
many input elements per group, looked up by device type (``"cpu"`` for any type not listed).
"""

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
    >>> BLSTM(8, 5)(torch.randn(8, 3, 20)).shape
    torch.Size([10, 3, 20])
    """

    # Rows per inference group, by device type: about this many input elements. An LSTM pays
    # its L sequential steps once per group. CPU, 8 s: 2^26 was 7 % slower than 2^23 with twice
    # the memory. H100, 60 s: 2^23 / 2^26 / 2^27 / 2^28 took 127 / 5.9 / 3.0 / 1.7 s with
    # 1.2 / 9.2 / 17.9 / 32.6 GiB; 2^26 keeps TF-GridNet within 12 GB GPUs.
    inference_elements = {"cpu": 1 << 23, "cuda": 1 << 26}

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.output_dim = 2 * hidden_dim
        self.lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[input_dim, rows, L] -> [2 * hidden_dim, rows, L]."""
        return self.lstm(x.permute(1, 2, 0))[0].permute(2, 0, 1)


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
    """Build a bidirectional sequence layer, [input_dim, rows, L] -> [output_dim, rows, L].

    Every layer has ``output_dim`` and ``inference_elements`` attributes.

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
