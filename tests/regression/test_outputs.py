"""No number changes: the models, the trio, file separation, a short train.py run and the commands
give the outputs saved in ``outputs.pt`` (fp32, to 1e-6 of each tensor's largest value)."""

import pytest
import torch

from tests.regression.outputs import SAVED, current_outputs


@pytest.fixture(scope="module")
def outputs():
    return current_outputs()


@pytest.mark.parametrize("name", sorted(torch.load(SAVED)))
def test_output_is_unchanged(outputs, name):
    saved = torch.load(SAVED)[name]
    now = outputs[name]
    assert now.shape == saved.shape
    error = ((now - saved).abs().max() / saved.abs().max()).item()
    assert error <= 1e-6, f"{name}: relative difference {error:.2e}"


def test_every_saved_output_is_computed(outputs):
    assert sorted(outputs) == sorted(torch.load(SAVED))
