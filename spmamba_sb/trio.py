"""SPMamba as SpeechBrain's encoder / mask net / decoder trio.

The package's own training, validation, test and inference run the one forward flow,
:func:`~spmamba_sb.models.pipeline.separate` (normalise, STFT, mask net, iSTFT to the input
length, de-normalise), with these modules in its layout: :func:`separate` below.

SpeechBrain's stock separation recipes and ``SepformerSeparation`` run instead::

    mix_w = Encoder(mix)                        # here [B, 4, T, F]
    est_mask = MaskNet(mix_w)                   # [S, B, 4, T, F]
    sep_h = torch.stack([mix_w] * S) * est_mask
    est = Decoder(sep_h[i])                     # [B, T * hop_length], then cropped to L

SPMamba maps spectra directly (no mask) and normalises its input by the mixture's std, so
for that flow alone the modules carry both through one convention, kept in this module:

* channels 0, 1 of ``mix_w`` hold the real and imaginary STFT of the normalised mixture
  (what the mask net reads); channels 2, 3 hold the mixture's std, broadcast over (T, F);
* the "mask" is zero on channels 0, 1 and holds a source's estimated real and imaginary
  spectrum on channels 2, 3, so ``sep_h`` = that spectrum times the std;
* the decoder inverts channels 2, 3, giving ``T * hop_length`` samples (at least L: the
  recipe's crop to L yields the output of :func:`separate`).

Each module tells the two layouts apart by its input: the encoder by rank ([B, L] stock,
[B, 1, L] the pipeline's), the mask net by channels (4 stock, 2 the pipeline's), the decoder
by rank ([B, 4, T, F] stock, [B, S, 2, T, F] the pipeline's). The weights are the same.
The STFT runs in fp32 whatever autocast is active. Only mono input is supported, as in
SpeechBrain's recipes.
"""

from typing import Any, Optional

import torch
import torch.nn as nn

from spmamba_sb.model_folder import upgrade_masknet_arguments
from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models import pipeline
from spmamba_sb.models.pipeline import as_multichannel, normalise
from spmamba_sb.nnet.stft import ISTFTDecoder, STFTEncoder

SPECTRUM = slice(0, 2)  # channels the mask net reads
CARRIER = slice(2, 4)  # channels that carry the scale in, and the estimate out
NUM_CHANNELS = 4  # of the stock flow's feature map; the pipeline's spectrum has 2


class Encoder(STFTEncoder):
    """Mixture waveform to the stock flow's feature map [B, L] -> [B, 4, T, F], or a normalised
    waveform to the pipeline's spectrum [B, 1, L] -> [B, 1, 2, T, F].

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
        """[B, L] -> [B, 4, T, F]: normalised spectrum (re, im), then the std twice.
        [B, 1, L] (normalised) -> [B, 1, 2, T, F]: the spectrum alone."""
        if mix.ndim == 3 and mix.shape[1] == 1:  # the pipeline's layout
            if mix.shape[-1] < self.n_fft:
                raise ValueError(f"input has {mix.shape[-1]} samples, shorter than one STFT frame ({self.n_fft} samples)")
            return super().forward(mix)  # [B, 1, 2, T, F]
        mix = as_multichannel(mix, min_length=self.n_fft)  # [B, 1, L]
        if mix.shape[1] != 1:
            raise ValueError(f"the trio takes mono mixtures [B, L], got {mix.shape[1]} channels")
        normalised, scale = normalise(mix)  # [B, 1, L], [B, 1, 1]
        spec = super().forward(normalised[:, 0])  # [B, 2, T, F]
        carrier = scale[..., None].expand(-1, 2, *spec.shape[-2:])  # [B, 2, T, F]
        return torch.cat([spec, carrier.to(spec.dtype)], dim=1)  # [B, 4, T, F]


class MaskNet(GridNetMaskNet):
    """GridNet mask net in the stock flow's layout [B, 4, T, F] -> [S, B, 4, T, F], or in the
    pipeline's [B, 2, T, F] -> [B, S, 2, T, F].

    Takes the arguments of :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (mono:
    ``num_mics`` must stay 1), and those of older model folders (see
    :func:`~spmamba_sb.model_folder.upgrade_masknet_arguments`); its state dict is that of
    ``SPMamba.masknet``.

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
        """[B, 4, T, F] -> [S, B, 4, T, F]: zeros on channels 0, 1, the estimate on 2, 3.
        [B, 2, T, F] -> [B, S, 2, T, F]: the estimate alone."""
        if mix_w.ndim == 4 and mix_w.shape[1] == 2:  # the pipeline's layout
            return super().forward(mix_w)  # [B, S, 2, T, F]
        if mix_w.ndim != 4 or mix_w.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected the Encoder's output [B, {NUM_CHANNELS}, T, F] or a spectrum [B, 2, T, F], "
                             f"got {tuple(mix_w.shape)}")
        estimate = super().forward(mix_w[:, SPECTRUM])  # [B, S, 2, T, F]
        estimate = estimate.transpose(0, 1)  # [S, B, 2, T, F]
        return torch.cat([torch.zeros_like(estimate), estimate], dim=2)  # [S, B, 4, T, F]


class Decoder(ISTFTDecoder):
    """One source's masked feature map to a waveform [B, 4, T, F] -> [B, T * hop_length] (stock
    flow), or the pipeline's estimates [B, S, 2, T, F] -> [B, S, length].

    Example
    -------
    >>> Decoder(n_fft=32, hop_length=8)(torch.randn(2, 4, 51, 17)).shape
    torch.Size([2, 408])
    """

    def forward(self, sep_h: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        """[B, 4, T, F] -> [B, length], or [B, S, 2, T, F] -> [B, S, length]; ``length``
        defaults to ``T * hop_length``."""
        length = sep_h.shape[-2] * self.hop_length if length is None else length
        if sep_h.ndim == 5 and sep_h.shape[2] == 2:  # the pipeline's layout
            return super().forward(sep_h, length=length)  # [B, S, length]
        if sep_h.ndim != 4 or sep_h.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected [B, {NUM_CHANNELS}, T, F] or [B, S, 2, T, F], got {tuple(sep_h.shape)}")
        return super().forward(sep_h[:, CARRIER], length=length)


def separate(mix: torch.Tensor, encoder: nn.Module, masknet: nn.Module, decoder: nn.Module) -> torch.Tensor:
    """The package's forward flow (:func:`~spmamba_sb.models.pipeline.separate`) with the trio.

    Arguments
    ---------
    mix : torch.Tensor
        [B, L].
    encoder, masknet, decoder : torch.nn.Module
        :class:`Encoder`, :class:`MaskNet`, :class:`Decoder` (possibly wrapped by DDP or
        ``torch.compile``: they are called, not unwrapped).

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
    if mix.ndim != 2:
        raise ValueError(f"the trio takes mono mixtures [B, L], got shape {tuple(mix.shape)}")
    return to_sb_layout(pipeline.separate(as_multichannel(mix), encoder, masknet, decoder))  # [B, L, S]


def to_sb_layout(sources: torch.Tensor) -> torch.Tensor:
    """[B, S, L] (this package) -> [B, L, S] (SpeechBrain's losses and interfaces).

    Example
    -------
    >>> to_sb_layout(torch.zeros(2, 3, 100)).shape
    torch.Size([2, 100, 3])
    """
    return sources.transpose(1, 2)
