"""SPMamba (Li et al. 2024): TF-GridNet with bidirectional Mamba in place of its BLSTMs."""

import logging
import os
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn as nn

from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.pipeline import as_multichannel, separate
from spmamba_sb.models.reference_weights import load_reference_weights, read_reference_checkpoint
from spmamba_sb.nnet.stft import ISTFTDecoder, STFTEncoder

logger = logging.getLogger(__name__)

# Keywords of the reference implementation's constructor -> ours.
REFERENCE_KEYWORDS = {
    "n_srcs": "num_spks",
    "stride": "hop_length",
    "n_imics": "num_mics",
    "n_layers": "num_blocks",
    "attn_n_head": "num_heads",
    "attn_approx_qk_dim": "attention_qk_dim",
    "emb_ks": "emb_kernel_size",
    "emb_hs": "emb_hop_size",
    "lstm_hidden_units": "lstm_hidden_dim",
}
IGNORED_REFERENCE_KEYWORDS = ("input_dim",)


class SPMamba(nn.Module):
    """SPMamba speech separation: waveform mixture in, one waveform per source out.

    Defaults are the published 16 kHz (Echo2Mix) configuration, 6,141,826 parameters;
    ``n_fft=256, hop_length=64`` gives the 8 kHz one (6,094,498). The flow is
    :func:`~spmamba_sb.models.pipeline.separate`: divide by the mixture's std, STFT,
    :class:`~spmamba_sb.models.gridnet.GridNetMaskNet` (direct complex spectral mapping),
    iSTFT to the input length, multiply by the std.

    The reference implementation's keywords are accepted too (``n_srcs``, ``stride``,
    ``n_imics``, ``n_layers``, ``attn_n_head``, ``attn_approx_qk_dim``, ``emb_ks``, ``emb_hs``,
    ``lstm_hidden_units``; ``input_dim`` is accepted and ignored, as there).

    Arguments
    ---------
    num_spks : int
        Sources S.
    n_fft, hop_length, win_length, window
        STFT settings (see :class:`~spmamba_sb.nnet.stft.STFTConfig`).
    num_mics : int
        Microphones M of the input.
    num_blocks, num_heads, attention_qk_dim, emb_dim, emb_kernel_size, emb_hop_size, eps
        Mask-net settings (see :class:`~spmamba_sb.models.gridnet.GridNetMaskNet`).
    activation : str
        Activation of the attention projections; only ``"prelu"`` (as published).
    sequence_layer : str
        ``"mamba"`` (SPMamba) or ``"lstm"`` (TF-GridNet).
    lstm_hidden_dim : int
        Hidden units per direction for ``"lstm"``.
    d_state, d_conv, expand : int
        Mamba settings.
    scan_backend : str
        ``"auto"``, ``"cuda"``, ``"triton"`` or ``"torch"``.
    checkpoint_blocks : bool
        Recompute block activations in the backward pass to save training memory (see
        :class:`~spmamba_sb.models.gridnet.GridNetMaskNet`).

    Example
    -------
    >>> model = SPMamba(n_fft=32, hop_length=8, emb_dim=4, num_blocks=1, num_heads=2,
    ...                 attention_qk_dim=17, emb_kernel_size=3, d_state=4, expand=2,
    ...                 scan_backend="torch")
    >>> model(torch.randn(2, 400)).shape
    torch.Size([2, 2, 400])
    """

    def __init__(
        self,
        num_spks: int = 2,
        n_fft: int = 512,
        hop_length: int = 128,
        win_length: Optional[int] = None,
        window: str = "hann",
        num_mics: int = 1,
        num_blocks: int = 6,
        num_heads: int = 4,
        attention_qk_dim: int = 512,
        emb_dim: int = 16,
        emb_kernel_size: int = 8,
        emb_hop_size: int = 1,
        activation: str = "prelu",
        eps: float = 1e-5,
        sequence_layer: str = "mamba",
        lstm_hidden_dim: int = 192,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 4,
        scan_backend: str = "auto",
        checkpoint_blocks: bool = False,
        **reference_kwargs: Any,
    ):
        super().__init__()
        ours = dict(num_spks=num_spks, hop_length=hop_length, num_mics=num_mics, num_blocks=num_blocks,
                    num_heads=num_heads, attention_qk_dim=attention_qk_dim,
                    emb_kernel_size=emb_kernel_size, emb_hop_size=emb_hop_size,
                    lstm_hidden_dim=lstm_hidden_dim)
        for key, value in reference_kwargs.items():
            if key in IGNORED_REFERENCE_KEYWORDS:
                continue
            if key not in REFERENCE_KEYWORDS:
                raise TypeError(f"SPMamba got an unexpected keyword argument {key!r}")
            ours[REFERENCE_KEYWORDS[key]] = value
        if activation != "prelu":
            raise ValueError(f"activation={activation!r} is not supported; only 'prelu' (as published)")
        self.encoder = STFTEncoder(n_fft, ours["hop_length"], win_length, window)
        self.decoder = ISTFTDecoder(n_fft, ours["hop_length"], win_length, window)
        self.masknet = GridNetMaskNet(
            num_spks=ours["num_spks"],
            n_fft=n_fft,
            num_mics=ours["num_mics"],
            emb_dim=emb_dim,
            emb_kernel_size=ours["emb_kernel_size"],
            emb_hop_size=ours["emb_hop_size"],
            num_blocks=ours["num_blocks"],
            num_heads=ours["num_heads"],
            attention_qk_dim=ours["attention_qk_dim"],
            eps=eps,
            sequence_layer=sequence_layer,
            lstm_hidden_dim=ours["lstm_hidden_dim"],
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            scan_backend=scan_backend,
            checkpoint_blocks=checkpoint_blocks,
        )

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
