"""TF-GridNet (Wang et al. 2023), the baseline: the same network as SPMamba with BLSTMs."""

from typing import Any

from spmamba_sb.models.spmamba import SPMamba


class TFGridNet(SPMamba):
    """SPMamba's network with a bidirectional LSTM as the sequence layer.

    Takes the arguments of :class:`~spmamba_sb.models.spmamba.SPMamba`; ``sequence_layer``
    is fixed to ``"lstm"`` and ``lstm_hidden_dim`` (or ``lstm_hidden_units``) sets H.

    Example
    -------
    >>> model = TFGridNet(n_fft=32, hop_length=8, emb_dim=4, num_blocks=1, num_heads=2,
    ...                   attention_qk_dim=17, emb_kernel_size=3, lstm_hidden_dim=6)
    >>> model(torch.randn(2, 400)).shape
    torch.Size([2, 2, 400])
    """

    def __init__(self, lstm_hidden_dim: int = 192, **kwargs: Any):
        if "sequence_layer" in kwargs:
            raise TypeError("TFGridNet fixes sequence_layer='lstm'; use SPMamba to choose it")
        super().__init__(sequence_layer="lstm", lstm_hidden_dim=lstm_hidden_dim, **kwargs)
