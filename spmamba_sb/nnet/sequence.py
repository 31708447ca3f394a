"""The sequence layers of the GridNet blocks, and the factory form in which the mask net takes them.

A sequence layer maps channel-major sequences [input_dim, rows, L] to [output_dim, rows, L]: the
layout in which Mamba's projections are single matrix products (see
:class:`~spmamba_sb.nnet.mixer.MambaMixer`). It has two attributes: ``output_dim``, and
``inference_elements``, which sizes the groups of rows that inference runs at a time
(:class:`~spmamba_sb.nnet.gridnet_block.SequencePath`): about that many input elements per group,
looked up by device type (``"cpu"`` for any type not listed).

The mask net takes a factory: a callable that builds one fresh layer from its input channels,
``factory(input_dim)``, such as :class:`~spmamba_sb.nnet.bmamba.BMamba` (SPMamba), :class:`BLSTM`
(TF-GridNet) or a ``functools.partial`` of either with its settings; HyperPyYAML's ``!name:`` tag
writes such a partial. :func:`sequence_layer_factory` builds the factory of either layer from its
kind and settings, checking the settings: the one place the package does.
"""

from functools import partial
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn as nn

from spmamba_sb.nnet.bmamba import BMamba

#: Builds one sequence layer from its input channels.
SequenceLayerFactory = Callable[[int], nn.Module]


class BLSTM(nn.Module):
    """Bidirectional LSTM that returns only its output sequence (the TF-GridNet layer).

    Arguments
    ---------
    input_dim : int
        Input channels.
    hidden_dim : int
        Hidden units H per direction; the output has ``2 * hidden_dim``. The default is
        TF-GridNet's published 192.

    Example
    -------
    >>> BLSTM(8, hidden_dim=5)(torch.randn(8, 3, 20)).shape
    torch.Size([10, 3, 20])
    """

    # Rows per inference group, by device type: about this many input elements. An LSTM pays
    # its L sequential steps once per group. CPU, 8 s: 2^26 was 7 % slower than 2^23 with twice
    # the memory. H100, 60 s: 2^23 / 2^26 / 2^27 / 2^28 took 127 / 5.9 / 3.0 / 1.7 s with
    # 1.2 / 9.2 / 17.9 / 32.6 GiB; 2^26 keeps TF-GridNet within 12 GB GPUs.
    inference_elements = {"cpu": 1 << 23, "cuda": 1 << 26}

    def __init__(self, input_dim: int, hidden_dim: int = 192):
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.output_dim = 2 * hidden_dim
        self.lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[input_dim, rows, L] -> [2H, rows, L]."""
        return self.lstm(x.permute(1, 2, 0))[0].permute(2, 0, 1)


#: The settings of a :class:`~spmamba_sb.nnet.bmamba.BMamba` layer: its keywords but ``d_model``.
MAMBA_SETTINGS = ("d_state", "d_conv", "expand", "scan_backend", "eps")
#: The settings of a :class:`BLSTM` layer: its keywords but ``input_dim``.
LSTM_SETTINGS = ("hidden_dim",)
#: Kind -> (the layer, its settings).
SEQUENCE_LAYERS: Dict[str, Tuple[Callable[..., nn.Module], Tuple[str, ...]]] = {
    "mamba": (BMamba, MAMBA_SETTINGS),
    "lstm": (BLSTM, LSTM_SETTINGS),
}


def sequence_layer_factory(kind: str, **settings: Any) -> SequenceLayerFactory:
    """The factory of a sequence layer of one kind with its settings, ``factory(input_dim)``.

    Arguments
    ---------
    kind : str
        ``"mamba"``: :class:`~spmamba_sb.nnet.bmamba.BMamba` (SPMamba), settings
        :data:`MAMBA_SETTINGS`; ``"lstm"``: :class:`BLSTM` (TF-GridNet), settings
        :data:`LSTM_SETTINGS`.
    **settings
        The layer's keywords; those left out take the layer's defaults.

    Returns
    -------
    functools.partial
        The layer's class with ``settings``; called with the input channels D it builds a
        layer mapping [D, rows, L] to [output_dim, rows, L].

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`SEQUENCE_LAYERS`.
    TypeError
        On a keyword the layer does not take, naming it and those it takes.

    Example
    -------
    >>> factory = sequence_layer_factory("lstm", hidden_dim=5)
    >>> factory
    functools.partial(<class 'spmamba_sb.nnet.sequence.BLSTM'>, hidden_dim=5)
    >>> factory(8)(torch.randn(8, 3, 20)).shape
    torch.Size([10, 3, 20])
    >>> sequence_layer_factory("mamba", d_sate=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    TypeError: the 'mamba' sequence layer (BMamba) got an unexpected keyword argument 'd_sate'; it takes ...
    """
    if kind not in SEQUENCE_LAYERS:
        raise ValueError(f"kind must be one of {tuple(SEQUENCE_LAYERS)}, got {kind!r}")
    layer, allowed = SEQUENCE_LAYERS[kind]
    unknown = [name for name in settings if name not in allowed]
    if unknown:
        raise TypeError(f"the {kind!r} sequence layer ({layer.__name__}) got an unexpected keyword argument "
                        f"{unknown[0]!r}; it takes {', '.join(allowed)}")
    return partial(layer, **settings)
