"""GridNetMaskNet takes its sequence layer as a factory, so YAML swaps it with ``!name:``."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.sequence import BLSTM

MASKNET_YAML = """\
masknet: !new:spmamba_sb.models.gridnet.GridNetMaskNet
    n_fft: 16
    emb_dim: 4
    emb_kernel_size: 3
    num_blocks: 2
    num_heads: 2
    attention_qk_dim: 18
    sequence_layer: {layer}
"""
LAYERS = {
    "bmamba": ("!name:spmamba_sb.nnet.bmamba.BMamba\n        d_state: 4\n        d_conv: 3\n        expand: 2\n"
               "        scan_backend: torch", BMamba),
    "blstm": ("!name:spmamba_sb.nnet.sequence.BLSTM\n        hidden_dim: 5", BLSTM),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_yaml_swaps_the_sequence_layer(name):
    text, layer_class = LAYERS[name]
    masknet = load_hyperpyyaml(MASKNET_YAML.format(layer=text))["masknet"]
    layers = [path.sequence for block in masknet.blocks for path in (block.intra, block.inter)]
    assert len(layers) == 4 and len({id(layer) for layer in layers}) == 4  # a fresh layer per path
    assert all(type(layer) is layer_class for layer in layers)
    output_dim = 2 * 12 if name == "bmamba" else 2 * 5  # 2 * D * K, or 2H
    assert all(layer.output_dim == output_dim for layer in layers)
    assert masknet(torch.randn(1, 2, 5, 9)).shape == (1, 2, 2, 5, 9)


def test_yaml_settings_reach_the_layer():
    masknet = load_hyperpyyaml(MASKNET_YAML.format(layer=LAYERS["bmamba"][0]))["masknet"]
    mixer = masknet.blocks[1].inter.sequence.backward_mixer
    assert (mixer.d_state, mixer.conv1d.kernel_size[0], mixer.d_inner, mixer.scan_backend) == (4, 3, 24, "torch")
    blstm = load_hyperpyyaml(MASKNET_YAML.format(layer="!name:spmamba_sb.nnet.sequence.BLSTM"))["masknet"]
    assert blstm.blocks[0].intra.sequence.lstm.hidden_size == 192  # BLSTM's default


def test_default_is_spmamba_published_layer():
    layer = GridNetMaskNet(n_fft=16, num_blocks=1).blocks[0].intra.sequence
    assert isinstance(layer, BMamba) and layer.forward_mixer.d_state == 16 and layer.forward_mixer.d_inner == 4 * 128
