"""TF-GridNet (Wang et al. 2023), the baseline: SPMamba's network with BLSTMs as the sequence layer."""

from typing import Any

from spmamba_sb.models.reference_keywords import to_our_keywords
from spmamba_sb.models.separator import GridNetSeparator
from spmamba_sb.nnet.sequence import sequence_layer_factory

#: The reference's keywords that its TF-GridNet accepts and does not use.
IGNORED_REFERENCE_KEYWORDS = ("input_dim",)


class TFGridNet(GridNetSeparator):
    """TF-GridNet speech separation: waveform mixture in, one waveform per source out.

    :class:`~spmamba_sb.models.separator.GridNetSeparator` with
    :class:`~spmamba_sb.nnet.sequence.BLSTM` as the sequence layer, and otherwise the
    defaults of :class:`~spmamba_sb.models.spmamba.SPMamba`.

    Arguments
    ---------
    lstm_hidden_dim : int
        Hidden units H per direction of every BLSTM (the reference's ``lstm_hidden_units``;
        default: that of :class:`~spmamba_sb.nnet.sequence.BLSTM`, 192).
    **settings
        STFT and mask-net settings (see :class:`~spmamba_sb.models.separator.GridNetSeparator`)
        but ``sequence_layer``; also under the reference implementation's keywords (see
        :func:`~spmamba_sb.models.reference_keywords.to_our_keywords`), where ``input_dim`` is
        accepted and ignored, as there.

    Raises
    ------
    TypeError
        On ``sequence_layer``, a Mamba setting (``d_state``, ...) or another keyword this model
        does not take.
    ValueError
        As :func:`~spmamba_sb.models.reference_keywords.to_our_keywords`, or on a bad setting.

    Example
    -------
    >>> model = TFGridNet(n_fft=32, hop_length=8, emb_dim=4, num_blocks=1, num_heads=2,
    ...                   attention_qk_dim=17, emb_kernel_size=3, lstm_hidden_dim=6)
    >>> model(torch.randn(2, 400)).shape
    torch.Size([2, 2, 400])
    """

    def __init__(self, **settings: Any):
        settings = to_our_keywords(settings, ignored=IGNORED_REFERENCE_KEYWORDS)
        if "sequence_layer" in settings:
            raise TypeError("TFGridNet's sequence layer is a BLSTM; use SPMamba for BMamba, or GridNetSeparator "
                            "to choose the sequence_layer")
        lstm = {"hidden_dim": settings.pop("lstm_hidden_dim")} if "lstm_hidden_dim" in settings else {}
        super().__init__(sequence_layer=sequence_layer_factory("lstm", **lstm), **settings)
