"""SPMamba as SpeechBrain's encoder / mask net / decoder trio.

SpeechBrain's separation recipes and ``SepformerSeparation`` run::

    mix_w = Encoder(mix)                        # here [B, 4, T, F]
    est_mask = MaskNet(mix_w)                   # [S, B, 4, T, F]
    sep_h = torch.stack([mix_w] * S) * est_mask
    est = Decoder(sep_h[i])                     # [B, T * hop_length], then cropped to L

SPMamba maps spectra directly (no mask) and normalises its input by the mixture's std, so
the trio carries both through that flow with one convention, kept in this module alone:

* channels 0, 1 of ``mix_w`` hold the real and imaginary STFT of the normalised mixture
  (what the mask net reads); channels 2, 3 hold the mixture's std, broadcast over (T, F);
* the "mask" is zero on channels 0, 1 and holds a source's estimated real and imaginary
  spectrum on channels 2, 3, so ``sep_h`` = that spectrum times the std;
* the decoder inverts channels 2, 3, giving ``T * hop_length`` samples (at least L: the
  caller's crop to L yields exactly ``SPMamba``'s output).

The STFT runs in fp32 whatever autocast is active. Only mono input ([B, L]) is supported,
as in SpeechBrain's recipes.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.pipeline import as_multichannel, normalise
from spmamba_sb.nnet.stft import ISTFTDecoder, STFTEncoder

SPECTRUM = slice(0, 2)  # channels the mask net reads
CARRIER = slice(2, 4)  # channels that carry the scale in, and the estimate out
NUM_CHANNELS = 4


class Encoder(STFTEncoder):
    """Mixture waveform to the trio's feature map: [B, L] -> [B, 4, T, F].

    Arguments
    ---------
    n_fft, hop_length, win_length, window
        STFT settings (see :class:`~spmamba_sb.nnet.stft.STFTConfig`); the decoder's must match.

    Example
    -------
    >>> Encoder(n_fft=32, hop_length=8)(torch.randn(2, 400)).shape
    torch.Size([2, 4, 51, 17])
    """

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, 4, T, F]: normalised spectrum (re, im), then the std twice."""
        mix = as_multichannel(mix, min_length=self.n_fft)  # [B, 1, L]
        if mix.shape[1] != 1:
            raise ValueError(f"the trio takes mono mixtures [B, L], got {mix.shape[1]} channels")
        normalised, scale = normalise(mix)  # [B, 1, L], [B, 1, 1]
        spec = super().forward(normalised[:, 0])  # [B, 2, T, F]
        carrier = scale[..., None].expand(-1, 2, *spec.shape[-2:])  # [B, 2, T, F]
        return torch.cat([spec, carrier.to(spec.dtype)], dim=1)  # [B, 4, T, F]


class MaskNet(GridNetMaskNet):
    """GridNet mask net in the trio's layout: [B, 4, T, F] -> [S, B, 4, T, F].

    Takes the arguments of :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (mono:
    ``num_mics`` must stay 1); its state dict is that of ``SPMamba.masknet``.

    Example
    -------
    >>> masknet = MaskNet(num_spks=2, n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1,
    ...                   num_heads=2, attention_qk_dim=17, d_state=4, expand=2, scan_backend="torch")
    >>> masknet(torch.randn(1, 4, 51, 17)).shape
    torch.Size([2, 1, 4, 51, 17])
    """

    def __init__(self, **kwargs):
        if kwargs.get("num_mics", 1) != 1:
            raise ValueError("the trio is mono: num_mics must be 1")
        super().__init__(**kwargs)
        self.config = dict(kwargs)  # the arguments it was built with, written out on export

    def forward(self, mix_w: torch.Tensor) -> torch.Tensor:
        """[B, 4, T, F] -> [S, B, 4, T, F]: zeros on channels 0, 1, the estimate on 2, 3."""
        if mix_w.ndim != 4 or mix_w.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected the Encoder's output [B, {NUM_CHANNELS}, T, F], got {tuple(mix_w.shape)}")
        estimate = super().forward(mix_w[:, SPECTRUM])  # [B, S, 2, T, F]
        estimate = estimate.transpose(0, 1)  # [S, B, 2, T, F]
        return torch.cat([torch.zeros_like(estimate), estimate], dim=2)  # [S, B, 4, T, F]


class Decoder(ISTFTDecoder):
    """One source's masked feature map to a waveform: [B, 4, T, F] -> [B, T * hop_length].

    Example
    -------
    >>> Decoder(n_fft=32, hop_length=8)(torch.randn(2, 4, 51, 17)).shape
    torch.Size([2, 408])
    """

    def forward(self, sep_h: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        """[B, 4, T, F] -> [B, length], ``length`` defaulting to ``T * hop_length``."""
        if sep_h.ndim != 4 or sep_h.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected [B, {NUM_CHANNELS}, T, F], got {tuple(sep_h.shape)}")
        length = sep_h.shape[2] * self.hop_length if length is None else length
        return super().forward(sep_h[:, CARRIER], length=length)


def separate(mix: torch.Tensor, encoder: nn.Module, masknet: nn.Module, decoder: nn.Module) -> torch.Tensor:
    """SpeechBrain's separation flow with the trio, sources last.

    Arguments
    ---------
    mix : torch.Tensor
        [B, L].
    encoder, masknet, decoder : torch.nn.Module
        :class:`Encoder`, :class:`MaskNet`, :class:`Decoder` (possibly DDP-wrapped).

    Returns
    -------
    torch.Tensor
        [B, L, S], SpeechBrain's layout.

    Example
    -------
    >>> trio = (Encoder(32, 8), MaskNet(n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1,
    ...         num_heads=2, attention_qk_dim=17, d_state=4, expand=2), Decoder(32, 8))
    >>> separate(torch.randn(2, 400), *trio).shape
    torch.Size([2, 400, 2])
    """
    mix_w = encoder(mix)  # [B, 4, T, F]
    est_mask = masknet(mix_w)  # [S, B, 4, T, F]
    sep_h = torch.stack([mix_w] * est_mask.shape[0]) * est_mask  # [S, B, 4, T, F]
    est = torch.stack([decoder(h) for h in sep_h], dim=-1)  # [B, T*hop, S]
    length = mix.shape[-1]
    if est.shape[1] < length:
        return F.pad(est, (0, 0, 0, length - est.shape[1]))
    return est[:, :length]  # [B, L, S]


def to_sb_layout(sources: torch.Tensor) -> torch.Tensor:
    """[B, S, L] (this package) -> [B, L, S] (SpeechBrain's losses and interfaces).

    Example
    -------
    >>> to_sb_layout(torch.zeros(2, 3, 100)).shape
    torch.Size([2, 100, 3])
    """
    return sources.transpose(1, 2)
