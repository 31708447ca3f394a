"""SPMamba as SpeechBrain's encoder / mask net / decoder trio: a thin adapter over
:class:`~spmamba_sb.models.separator.GridNetSeparator`.

The modules are that model's parts (:class:`Encoder` its STFT, :class:`MaskNet` its
``GridNetMaskNet``, whose state dict loads into ``GridNetSeparator.masknet``, :class:`Decoder`
its iSTFT) in SpeechBrain's stock layout, and :func:`separate` is the flow of SpeechBrain's
separation recipes and ``SepformerSeparation``::

    mix_w = Encoder(mix)                        # [B, L] -> [B, 4, T, F]
    est_mask = MaskNet(mix_w)                   # [S, B, 4, T, F]
    sep_h = torch.stack([mix_w] * S) * est_mask
    est = Decoder(sep_h[i])                     # [B, T * hop_length], then cropped to L

SPMamba maps spectra directly (no mask) and normalises its input by the mixture's std, so
the modules carry both through one convention, kept in this module:

* channels 0, 1 of ``mix_w`` hold the real and imaginary STFT of the normalised mixture
  (what the mask net reads); channels 2, 3 hold the mixture's std, broadcast over (T, F);
* the "mask" is zero on channels 0, 1 and holds a source's estimated real and imaginary
  spectrum on channels 2, 3, so ``sep_h`` = that spectrum times the std;
* the decoder inverts channels 2, 3, giving ``T * hop_length`` samples (at least L: the
  recipe's crop to L yields ``GridNetSeparator``'s output, transposed to [B, L, S]).

Each forward converts that layout in, calls the parent class's forward and converts out; any
other shape raises ``ValueError``. The STFT runs in fp32 whatever autocast is active. Only
mono input is supported, as in SpeechBrain's recipes.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.model_folder import upgrade_masknet_arguments
from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.pipeline import as_multichannel, normalise
from spmamba_sb.nnet.stft import ISTFTDecoder, STFTEncoder

SPECTRUM = slice(0, 2)  # channels the mask net reads
CARRIER = slice(2, 4)  # channels that carry the scale in, and the estimate out
NUM_CHANNELS = 4  # of the feature map


def check_mixture(mix: torch.Tensor, min_length: int = 1) -> torch.Tensor:
    """Check a batch of mono mixtures [B, L] and return it as [B, 1, L].

    Arguments
    ---------
    mix : torch.Tensor
        [B, L].
    min_length : int
        Fewest samples accepted.

    Returns
    -------
    torch.Tensor
        [B, 1, L].

    Raises
    ------
    ValueError
        On another shape, a non-floating-point tensor, fewer than ``min_length`` samples, or
        NaN/Inf samples (in eager mode, see :func:`~spmamba_sb.models.pipeline.as_multichannel`).

    Example
    -------
    >>> check_mixture(torch.zeros(2, 100)).shape
    torch.Size([2, 1, 100])
    """
    if torch.is_tensor(mix) and mix.ndim != 2:
        raise ValueError(f"the trio takes mono mixtures [B, L], got shape {tuple(mix.shape)}")
    return as_multichannel(mix, min_length=min_length)  # [B, 1, L]


class Encoder(STFTEncoder):
    """Mixture waveform to the feature map: [B, L] -> [B, 4, T, F].

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
        normalised, scale = normalise(check_mixture(mix, min_length=self.n_fft))  # [B, 1, L], [B, 1, 1]
        spec = super().forward(normalised[:, 0])  # [B, 2, T, F]
        carrier = scale[..., None].expand(-1, 2, *spec.shape[-2:])  # [B, 2, T, F]
        return torch.cat([spec, carrier.to(spec.dtype)], dim=1)  # [B, 4, T, F]


class MaskNet(GridNetMaskNet):
    """GridNet mask net on the feature map: [B, 4, T, F] -> [S, B, 4, T, F].

    Takes the arguments of :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (mono:
    ``num_mics`` must stay 1), and those of older model folders (see
    :func:`~spmamba_sb.model_folder.upgrade_masknet_arguments`); its state dict is that of
    ``GridNetSeparator.masknet``.

    Example
    -------
    >>> from spmamba_sb.nnet.sequence import sequence_layer_factory
    >>> bmamba = sequence_layer_factory("mamba", d_state=4, expand=2, scan_backend="torch")
    >>> masknet = MaskNet(num_spks=2, n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2,
    ...                   attention_qk_dim=17, sequence_layer=bmamba)
    >>> masknet(torch.randn(1, 4, 51, 17)).shape
    torch.Size([2, 1, 4, 51, 17])
    """

    def __init__(self, **kwargs: Any):
        if kwargs.get("num_mics", 1) != 1:
            raise ValueError("the trio is mono: num_mics must be 1")
        arguments = upgrade_masknet_arguments(kwargs)
        super().__init__(**arguments)
        self.config = arguments  # the arguments it was built with, written out on export

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

    def forward(self, sep_h: torch.Tensor) -> torch.Tensor:
        """[B, 4, T, F] -> [B, T * hop_length]: the iSTFT of channels 2, 3."""
        if sep_h.ndim != 4 or sep_h.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected one source's feature map [B, {NUM_CHANNELS}, T, F], got {tuple(sep_h.shape)}")
        return super().forward(sep_h[:, CARRIER], length=sep_h.shape[-2] * self.hop_length)


def separate(mix: torch.Tensor, encoder: nn.Module, masknet: nn.Module, decoder: nn.Module) -> torch.Tensor:
    """SpeechBrain's stock separation flow with the trio: ``GridNetSeparator``'s output as [B, L, S].

    Arguments
    ---------
    mix : torch.Tensor
        [B, L].
    encoder, masknet, decoder : torch.nn.Module
        :class:`Encoder`, :class:`MaskNet`, :class:`Decoder` (possibly wrapped by DDP or
        ``torch.compile``: only their forward is called).

    Returns
    -------
    torch.Tensor
        [B, L, S], SpeechBrain's layout.

    Raises
    ------
    ValueError
        On input that is not [B, L], shorter than one STFT frame or not finite.

    Example
    -------
    >>> trio = (Encoder(32, 8), MaskNet(n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1,
    ...         num_heads=2, attention_qk_dim=17), Decoder(32, 8))
    >>> separate(torch.randn(2, 400), *trio).shape
    torch.Size([2, 400, 2])
    """
    check_mixture(mix)  # here too, in eager mode, so the sample check runs even if the encoder is compiled
    mix_w = encoder(mix)  # [B, 4, T, F]
    est_mask = masknet(mix_w)  # [S, B, 4, T, F]
    sep_h = torch.stack([mix_w] * est_mask.shape[0]) * est_mask  # [S, B, 4, T, F]
    est_source = torch.cat([decoder(source).unsqueeze(-1) for source in sep_h], dim=-1)  # [B, T * hop_length, S]
    missing = mix.shape[1] - est_source.shape[1]
    if missing > 0:
        return F.pad(est_source, (0, 0, 0, missing))  # [B, L, S]
    return est_source[:, :mix.shape[1]]  # [B, L, S]
