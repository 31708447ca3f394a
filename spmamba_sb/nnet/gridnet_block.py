"""One TF-GridNet block: intra-frame and inter-frame sequence modelling, then full-band attention."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.nnet.attention import FullBandAttention
from spmamba_sb.nnet.norms import LayerNorm4D
from spmamba_sb.nnet.sequence import SequenceLayerFactory


class SequencePath(nn.Module):
    """Residual sequence modelling along the last axis of [B, D, R, S].

    Norm over channels, unfold K neighbours with hop ``emb_hop_size`` into D * K features,
    run the sequence layer over the S' unfolded steps of each of the B * R rows, and map
    back to D channels at the original positions with a transposed 1-D convolution.
    S must equal ``(S' - 1) * emb_hop_size + K`` (the block pads to that).

    Arguments
    ---------
    emb_dim : int
        Channels D.
    sequence_layer : callable
        Builds the sequence layer from its input channels D * K (see :mod:`spmamba_sb.nnet.sequence`).
    emb_kernel_size : int
        Unfold kernel K.
    emb_hop_size : int
        Unfold hop.
    eps : float
        Norm epsilon.

    Raises
    ------
    TypeError
        If the layer built lacks ``output_dim`` or ``inference_elements``.

    Example
    -------
    >>> from spmamba_sb.nnet.sequence import BLSTM
    >>> path = SequencePath(4, BLSTM, emb_kernel_size=3, emb_hop_size=1)
    >>> path(torch.randn(2, 4, 6, 7)).shape
    torch.Size([2, 4, 6, 7])
    """

    def __init__(self, emb_dim: int, sequence_layer: SequenceLayerFactory, emb_kernel_size: int, emb_hop_size: int,
                 eps: float = 1e-5):
        super().__init__()
        self.emb_kernel_size = emb_kernel_size
        self.emb_hop_size = emb_hop_size
        self.norm = LayerNorm4D(emb_dim, eps)
        self.sequence = sequence_layer(emb_dim * emb_kernel_size)
        missing = [name for name in ("output_dim", "inference_elements") if not hasattr(self.sequence, name)]
        if missing:
            raise TypeError(f"sequence_layer={sequence_layer!r} built a {type(self.sequence).__name__} without "
                            f"{' and '.join(missing)} (see spmamba_sb.nnet.sequence)")
        self.project = nn.ConvTranspose1d(
            self.sequence.output_dim, emb_dim, emb_kernel_size, stride=emb_hop_size
        )

    def _rows(self, y: torch.Tensor) -> torch.Tensor:
        """Sequence layer and projection for independent rows: [rows, D, S] -> [rows, D, S]."""
        y = y.unfold(-1, self.emb_kernel_size, self.emb_hop_size)  # [rows, D, S', K]
        y = y.permute(1, 3, 0, 2).flatten(0, 1)  # [D*K, rows, S'], feature index d*K + k
        y = self.sequence(y)  # [output_dim, rows, S']
        return self.project(y.transpose(0, 1))  # [rows, D, S]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, R, S] -> [B, D, R, S].

        Without autograd, rows are processed in groups of about ``inference_elements / (S * D * K)``
        (the sequence layer's ``inference_elements`` for the device; each row is independent, so
        the output is the same) to bound memory.
        """
        batch, channels, n_rows, seq_len = x.shape
        y = self.norm(x).transpose(1, 2).reshape(batch * n_rows, channels, seq_len)  # [B*R, D, S]
        if torch.is_grad_enabled():
            y = self._rows(y)
        else:
            budget = self.sequence.inference_elements  # {device type: elements}
            elements = budget.get(y.device.type, budget["cpu"])
            group = max(1, elements // (seq_len * channels * self.emb_kernel_size))
            y = torch.cat([self._rows(rows) for rows in y.split(group)])  # [B*R, D, S]
        return x + y.view(batch, n_rows, channels, seq_len).transpose(1, 2)  # [B, D, R, S]


class GridNetBlock(nn.Module):
    """TF-GridNet block with a configurable sequence layer: [B, D, T, F] -> [B, D, T, F].

    T and F are zero-padded up to lengths the unfolding covers exactly (at least K),
    the intra-frame path runs along F (rows B * T) and the inter-frame path along T
    (rows B * F), the padding is cropped, and full-band attention across frames follows.

    Arguments
    ---------
    emb_dim : int
        Channels D.
    n_freqs : int
        Frequency bins F.
    sequence_layer : callable
        Builds each path's sequence layer from its input channels D * K (called twice: a
        fresh layer per path; see :mod:`spmamba_sb.nnet.sequence`).
    emb_kernel_size : int
        Unfold kernel K.
    emb_hop_size : int
        Unfold hop.
    num_heads : int
        Attention heads.
    attention_qk_dim : int
        Approximate query/key width per head.
    eps : float
        Norm epsilon.

    Example
    -------
    >>> from functools import partial
    >>> from spmamba_sb.nnet.bmamba import BMamba
    >>> block = GridNetBlock(4, n_freqs=9, sequence_layer=partial(BMamba, d_state=4, expand=2, scan_backend="torch"),
    ...                      emb_kernel_size=3, num_heads=2, attention_qk_dim=18)
    >>> block(torch.randn(2, 4, 6, 9)).shape
    torch.Size([2, 4, 6, 9])
    """

    def __init__(
        self,
        emb_dim: int,
        n_freqs: int,
        sequence_layer: SequenceLayerFactory,
        emb_kernel_size: int = 8,
        emb_hop_size: int = 1,
        num_heads: int = 4,
        attention_qk_dim: int = 512,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.emb_kernel_size = emb_kernel_size
        self.emb_hop_size = emb_hop_size
        self.intra = SequencePath(emb_dim, sequence_layer, emb_kernel_size, emb_hop_size, eps)
        self.inter = SequencePath(emb_dim, sequence_layer, emb_kernel_size, emb_hop_size, eps)
        self.attention = FullBandAttention(emb_dim, n_freqs, num_heads, attention_qk_dim, eps)

    def _padded_length(self, length: int) -> int:
        steps = max(0, math.ceil((length - self.emb_kernel_size) / self.emb_hop_size))
        return steps * self.emb_hop_size + self.emb_kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T, F] -> [B, D, T, F]."""
        n_frames, n_freqs = x.shape[-2:]
        x = F.pad(x, (0, self._padded_length(n_freqs) - n_freqs, 0, self._padded_length(n_frames) - n_frames))
        x = self.intra(x)  # [B, D, T, F] padded, sequences along F
        x = self.inter(x.transpose(2, 3)).transpose(2, 3)  # [B, D, T, F] padded, sequences along T
        return self.attention(x[..., :n_frames, :n_freqs])  # [B, D, T, F]
