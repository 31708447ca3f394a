"""The model folder published in ``pretrained/``: it passes the model-folder check, loads without
trusting its code and separates on the CPU."""

import math
import os

import pytest
import torch

from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.model_trust import check_model_yaml
from spmamba_sb.tensor_files import load_tensor_file

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "pretrained", "spmamba-8k-clean")
RATE = 8000
NUM_PARAMETERS = 6_094_498  # what its model card states


@pytest.fixture(scope="module")
def separator(tmp_path_factory):
    return SPMambaSeparation.from_hparams(source=FOLDER, savedir=str(tmp_path_factory.mktemp("cache")))


def two_voices(seconds):
    """Two harmonic tones with vibrato and their own onsets: [1, L]."""
    time = torch.arange(int(seconds * RATE)) / RATE
    voices = []
    for f0, onset in ((130.0, 0.0), (210.0, 0.05)):
        phase = 2 * math.pi * f0 * torch.cumsum(1 + 0.03 * torch.sin(2 * math.pi * 5 * time), 0) / RATE
        voices.append(0.1 * sum(torch.sin(k * phase) / k for k in range(1, 12)) * (time >= onset))
    return (voices[0] + voices[1])[None]


def test_the_folder_passes_the_model_folder_check():
    check_model_yaml(os.path.join(FOLDER, "hyperparams.yaml"))  # raises UntrustedModelError otherwise


def test_it_loads_its_bfloat16_weights_without_trusting_its_code(separator):
    assert separator.hparams.sample_rate == RATE and separator.hparams.num_spks == 2
    assert sum(parameter.numel() for parameter in separator.mods.parameters()) == NUM_PARAMETERS
    stored = load_tensor_file(os.path.join(FOLDER, "masknet.ckpt"))
    loaded = separator.mods.masknet.state_dict()
    assert stored.keys() == loaded.keys()
    for name, weight in stored.items():
        assert weight.dtype == torch.bfloat16 and loaded[name].dtype == torch.float32
        assert torch.equal(loaded[name], weight.float()), name


@pytest.mark.slow  # the published 8 kHz network on a few seconds of audio
def test_it_separates_into_two_finite_sources_of_the_input_length(separator):
    mix = two_voices(0.25)
    sources = separator.separate_batch(mix)
    assert sources.shape == (1, mix.shape[1], 2)
    assert torch.isfinite(sources).all()
    assert (sources.abs().amax(dim=1) > 0).all()  # neither output is silent
