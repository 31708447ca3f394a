"""The sequence-layer factory: one function builds either layer and checks its settings."""

import inspect

import pytest
import torch

from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.sequence import BLSTM, SEQUENCE_LAYERS, sequence_layer_factory


@pytest.mark.parametrize("kind", sorted(SEQUENCE_LAYERS))
def test_the_settings_are_the_layers_keywords_but_the_input_channels(kind):
    layer, settings = SEQUENCE_LAYERS[kind]
    assert set(settings) == set(list(inspect.signature(layer).parameters)[1:])


@pytest.mark.parametrize("kind,settings,layer,output_dim", [
    ("mamba", dict(d_state=4, expand=2, scan_backend="torch", eps=1e-6), BMamba, 16),
    ("lstm", dict(hidden_dim=5), BLSTM, 10),
    ("lstm", {}, BLSTM, 2 * 192),
])
def test_the_factory_builds_the_layer_with_its_settings(kind, settings, layer, output_dim):
    factory = sequence_layer_factory(kind, **settings)
    assert factory.func is layer and factory.keywords == settings
    built = factory(8)
    assert isinstance(built, layer) and built.output_dim == output_dim
    assert built(torch.randn(8, 3, 6)).shape == (output_dim, 3, 6)


def test_the_factory_names_a_bad_kind_or_keyword():
    with pytest.raises(ValueError, match="kind must be one of \\('mamba', 'lstm'\\), got 'gru'"):
        sequence_layer_factory("gru")
    with pytest.raises(TypeError, match="'lstm' sequence layer \\(BLSTM\\) got an unexpected keyword argument "
                                        "'d_state'; it takes hidden_dim"):
        sequence_layer_factory("lstm", d_state=4)
    with pytest.raises(TypeError, match="'mamba' sequence layer \\(BMamba\\) got an unexpected keyword argument "
                                        "'hidden_dim'"):
        sequence_layer_factory("mamba", hidden_dim=4)
