"""SPMamba (Li et al. 2024): TF-GridNet with bidirectional Mamba in place of its BLSTMs."""

from typing import Any

from spmamba_sb.models.reference_keywords import to_our_keywords
from spmamba_sb.models.separator import GridNetSeparator
from spmamba_sb.nnet.sequence import MAMBA_SETTINGS, sequence_layer_factory

#: The reference's keywords that its SPMamba accepts and does not use.
IGNORED_REFERENCE_KEYWORDS = ("input_dim", "lstm_hidden_units")


class SPMamba(GridNetSeparator):
    """SPMamba speech separation: waveform mixture in, one waveform per source out.

    :class:`~spmamba_sb.models.separator.GridNetSeparator` with
    :class:`~spmamba_sb.nnet.bmamba.BMamba` as the sequence layer. Defaults are the published
    16 kHz (Echo2Mix) configuration, 6,141,826 parameters; ``n_fft=256, hop_length=64`` gives
    the 8 kHz one (6,094,498).

    Arguments
    ---------
    d_state, d_conv, expand, scan_backend
        Settings of every BMamba layer (see :class:`~spmamba_sb.nnet.bmamba.BMamba`); its
        RMSNorm epsilon is ``eps``, the mask net's.
    **settings
        STFT and mask-net settings (see :class:`~spmamba_sb.models.separator.GridNetSeparator`)
        but ``sequence_layer``; also under the reference implementation's keywords (``n_srcs``,
        ``stride``, ``n_layers``, ``activation``, ...: see
        :func:`~spmamba_sb.models.reference_keywords.to_our_keywords`), where ``input_dim`` and
        ``lstm_hidden_units`` are accepted and ignored, as there.

    Raises
    ------
    TypeError
        On ``sequence_layer`` or another keyword this model does not take.
    ValueError
        As :func:`~spmamba_sb.models.reference_keywords.to_our_keywords`, or on a bad setting.

    Example
    -------
    >>> model = SPMamba(n_fft=32, hop_length=8, emb_dim=4, num_blocks=1, num_heads=2,
    ...                 attention_qk_dim=17, emb_kernel_size=3, d_state=4, expand=2,
    ...                 scan_backend="torch")
    >>> model(torch.randn(2, 400)).shape
    torch.Size([2, 2, 400])
    """

    def __init__(self, **settings: Any):
        settings = to_our_keywords(settings, ignored=IGNORED_REFERENCE_KEYWORDS)
        if "sequence_layer" in settings:
            raise TypeError("SPMamba's sequence layer is BMamba; use TFGridNet for BLSTMs, or GridNetSeparator "
                            "to choose the sequence_layer")
        mamba = {name: settings.pop(name) for name in MAMBA_SETTINGS if name in settings}
        if "eps" in mamba:  # the mask net's epsilon is BMamba's RMSNorm epsilon too
            settings["eps"] = mamba["eps"]
        super().__init__(sequence_layer=sequence_layer_factory("mamba", **mamba), **settings)
