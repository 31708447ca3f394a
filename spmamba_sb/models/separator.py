"""A waveform separation model: STFT, a GridNet mask net with any sequence layer, iSTFT."""

import inspect
import os
from typing import Any, Mapping, Union

import torch
import torch.nn as nn

from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.pipeline import as_multichannel, separate
from spmamba_sb.models.reference_weights import load_reference_weights, read_reference_checkpoint
from spmamba_sb.nnet.stft import STFT_SETTINGS, ISTFTDecoder, STFTEncoder


class GridNetSeparator(nn.Module):
    """Separate a mixture waveform into one waveform per source: [B, L] -> [B, S, L].

    The flow is :func:`~spmamba_sb.models.pipeline.separate`: divide by the mixture's std,
    STFT (``encoder``), :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (``masknet``, direct
    complex spectral mapping), iSTFT to the input length (``decoder``), multiply by the std.
    :class:`~spmamba_sb.models.spmamba.SPMamba` and :class:`~spmamba_sb.models.tfgridnet.TFGridNet`
    are this model with their sequence layer chosen.

    Arguments
    ---------
    **settings
        The STFT settings ``n_fft``, ``hop_length``, ``win_length``, ``window`` (see
        :class:`~spmamba_sb.nnet.stft.STFTConfig`) and the mask net's, its ``sequence_layer``
        included (see :class:`~spmamba_sb.models.gridnet.GridNetMaskNet`, which gets the same
        ``n_fft``).

    Raises
    ------
    TypeError
        On a keyword that is neither.

    Example
    -------
    >>> from functools import partial
    >>> from spmamba_sb.nnet.sequence import BLSTM
    >>> model = GridNetSeparator(sequence_layer=partial(BLSTM, hidden_dim=6), n_fft=32, hop_length=8,
    ...                          emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17)
    >>> model(torch.randn(2, 400)).shape
    torch.Size([2, 2, 400])
    """

    def __init__(self, **settings: Any):
        super().__init__()
        known = set(STFT_SETTINGS) | set(inspect.signature(GridNetMaskNet).parameters)
        unknown = [key for key in settings if key not in known]
        if unknown:
            raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {unknown[0]!r}")
        stft = {name: settings.pop(name) for name in STFT_SETTINGS if name in settings}
        self.encoder = STFTEncoder(**stft)
        self.decoder = ISTFTDecoder(**stft)
        self.masknet = GridNetMaskNet(n_fft=self.encoder.n_fft, **settings)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """Separate a mixture.

        Arguments
        ---------
        mix : torch.Tensor
            [L], [B, L] or [B, L, M] samples at the model's rate; at least ``n_fft`` long.

        Returns
        -------
        torch.Tensor
            [B, S, L] (B = 1 for a 1-D input).

        Raises
        ------
        ValueError
            On a wrong rank or microphone count, fewer than ``n_fft`` samples, or NaN/Inf.
        """
        mix = as_multichannel(mix, min_length=self.encoder.n_fft)  # [B, M, L]
        if mix.shape[1] != self.masknet.num_mics:
            raise ValueError(f"model expects {self.masknet.num_mics} microphone(s), input has {mix.shape[1]}")
        return separate(mix, self.encoder, self.masknet, self.decoder)

    def load_reference_state_dict(self, obj: Union[str, os.PathLike, Mapping[str, Any]]) -> None:
        """Load weights saved by the reference implementation (strict).

        Arguments
        ---------
        obj : str, os.PathLike or Mapping
            A raw reference state dict, a released checkpoint dict ``{model_name,
            state_dict, ...}``, a Lightning checkpoint (``audio_model.`` prefix), or a path
            to a file holding any of them.

        Raises
        ------
        KeyError, ValueError
            As :func:`~spmamba_sb.models.reference_weights.load_reference_weights`.
        """
        load_reference_weights(self.masknet, read_reference_checkpoint(obj))
