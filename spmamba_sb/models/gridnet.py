"""GridNet mask net: conv embedding, a stack of GridNet blocks, and a deconv to spectra."""

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.gridnet_block import GridNetBlock
from spmamba_sb.nnet.sequence import SequenceLayerFactory


class GridNetMaskNet(nn.Module):
    """Map a mixture spectrum to each source's complex spectrum (spectral mapping, no mask).

    ``[B, 2M, T, F] -> [B, S, 2, T, F]``: Conv2d (3x3) + GroupNorm to D channels,
    ``num_blocks`` GridNet blocks, ConvTranspose2d (3x3) to 2S channels read as
    (source, real/imaginary). The blocks' sequence layer comes in as an argument, much as
    SpeechBrain's ``Dual_Path_Model`` takes its ``intra_model``, here as a factory so that each
    path gets a fresh layer: the default, the class :class:`~spmamba_sb.nnet.bmamba.BMamba`,
    makes SPMamba's mask net; ``functools.partial(BLSTM, hidden_dim=H)`` makes TF-GridNet's.

    Arguments
    ---------
    num_spks : int
        Sources S.
    n_fft : int
        FFT size of the spectra; F = ``n_fft // 2 + 1`` bins.
    num_mics : int
        Input microphones M.
    emb_dim : int
        Channels D.
    emb_kernel_size, emb_hop_size : int
        Unfold kernel K and hop of the sequence paths.
    num_blocks : int
        GridNet blocks.
    num_heads : int
        Attention heads; must divide ``emb_dim``.
    attention_qk_dim : int
        Approximate query/key width per head.
    eps : float
        Norm epsilon (of the mask net's own norms; the sequence layer's are its own setting).
    sequence_layer : callable
        ``sequence_layer(input_dim)`` builds one sequence layer, [input_dim, rows, L] ->
        [output_dim, rows, L], with ``input_dim`` = D * K; it is called once per path, 2 *
        ``num_blocks`` times (see :mod:`spmamba_sb.nnet.sequence`). In YAML, for example
        ``!name:spmamba_sb.nnet.bmamba.BMamba`` with ``d_state``, ``d_conv``, ``expand`` and
        ``scan_backend`` under it, or ``!name:spmamba_sb.nnet.sequence.BLSTM`` with ``hidden_dim``.
    checkpoint_blocks : bool
        Activation checkpointing: keep only each block's input and recompute its activations
        in the backward pass (``torch.utils.checkpoint``). Training memory drops to about one
        block's worth for roughly one more forward pass of time; outputs and gradients are
        unchanged, and inference (no autograd) is unaffected.

    Raises
    ------
    TypeError
        If ``sequence_layer`` is not callable.

    Example
    -------
    >>> from functools import partial
    >>> from spmamba_sb.nnet.bmamba import BMamba
    >>> from spmamba_sb.nnet.sequence import BLSTM
    >>> masknet = GridNetMaskNet(num_spks=2, n_fft=16, emb_dim=4, emb_kernel_size=3,
    ...                          num_blocks=1, num_heads=2, attention_qk_dim=18,
    ...                          sequence_layer=partial(BMamba, d_state=4, expand=2, scan_backend="torch"))
    >>> masknet(torch.randn(1, 2, 6, 9)).shape
    torch.Size([1, 2, 2, 6, 9])
    >>> GridNetMaskNet(n_fft=16, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2,
    ...                sequence_layer=partial(BLSTM, hidden_dim=5)).blocks[0].inter.sequence.output_dim
    10
    """

    def __init__(
        self,
        num_spks: int = 2,
        n_fft: int = 512,
        num_mics: int = 1,
        emb_dim: int = 16,
        emb_kernel_size: int = 8,
        emb_hop_size: int = 1,
        num_blocks: int = 6,
        num_heads: int = 4,
        attention_qk_dim: int = 512,
        eps: float = 1e-5,
        sequence_layer: SequenceLayerFactory = BMamba,
        checkpoint_blocks: bool = False,
    ):
        super().__init__()
        positive = dict(num_spks=num_spks, n_fft=n_fft, num_mics=num_mics, emb_dim=emb_dim,
                        emb_kernel_size=emb_kernel_size, emb_hop_size=emb_hop_size,
                        num_blocks=num_blocks, num_heads=num_heads, attention_qk_dim=attention_qk_dim)
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if emb_dim % num_heads:
            raise ValueError(f"emb_dim={emb_dim} is not divisible by num_heads={num_heads}")
        if n_fft % 2:
            raise ValueError(f"n_fft must be even, got {n_fft}")
        if not callable(sequence_layer):
            raise TypeError(f"sequence_layer={sequence_layer!r} is not callable: give a class that builds a layer "
                            "from its input channels (BMamba, BLSTM) or a functools.partial of one")
        n_freqs = n_fft // 2 + 1
        self.num_spks = num_spks
        self.n_fft = n_fft
        self.num_mics = num_mics
        self.checkpoint_blocks = checkpoint_blocks
        self.embed = nn.Sequential(
            nn.Conv2d(2 * num_mics, emb_dim, kernel_size=3, padding=1),
            nn.GroupNorm(1, emb_dim, eps=eps),
        )
        self.blocks = nn.ModuleList(
            GridNetBlock(emb_dim, n_freqs, sequence_layer, emb_kernel_size, emb_hop_size, num_heads,
                         attention_qk_dim, eps)
            for _ in range(num_blocks)
        )
        self.deconv = nn.ConvTranspose2d(emb_dim, 2 * num_spks, kernel_size=3, padding=1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, 2M, T, F] -> [B, S, 2, T, F]."""
        if spec.ndim != 4 or spec.shape[1] != 2 * self.num_mics:
            raise ValueError(f"expected a spectrum [B, {2 * self.num_mics}, T, F], got {tuple(spec.shape)}")
        x = self.embed(spec)  # [B, D, T, F]
        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)  # [B, D, T, F]
        x = self.deconv(x)  # [B, 2S, T, F]
        return x.unflatten(1, (self.num_spks, 2))  # [B, S, 2, T, F]
