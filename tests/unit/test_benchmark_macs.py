"""benchmarks/macs.py counts the Mamba layer's products by hand-checkable rules, leaves the scan and
the LSTM to its formulas, and prints MACs per second of audio for both models."""

import json

import pytest
import torch

from spmamba_sb.nnet.mixer import MambaMixer
from spmamba_sb.nnet.sequence import BLSTM
from tests.conftest import load_benchmark


def test_a_mamba_layer_counts_its_products_and_its_scan_by_the_formula():
    macs = load_benchmark("macs")
    mixer = MambaMixer(d_model=8, d_state=4, expand=2, scan_backend="torch")
    rows, length, d_inner, d_conv = 3, 10, 16, 4
    x = torch.randn(8, rows, length)  # [d_model, rows, L]
    products = rows * length * (8 * 2 * d_inner  # in_proj
                                + d_inner * (mixer.dt_rank + 2 * 4)  # x_proj
                                + mixer.dt_rank * d_inner  # dt_proj
                                + d_inner * 8)  # out_proj
    convolution = d_inner * d_conv * rows * (length + d_conv - 1)  # the causal padding's outputs included
    assert macs.counted_macs(mixer, x) == products + convolution  # nothing of the scan
    assert macs.recurrence_macs(mixer, x) == rows * length * d_inner * (4 * 4 + 3)


def test_an_lstm_is_counted_by_the_formula_only():
    macs = load_benchmark("macs")
    lstm = BLSTM(8, hidden_dim=5)
    x = torch.randn(8, 3, 20)  # [input_dim, rows, L]
    assert macs.counted_macs(lstm, x) == 0
    assert macs.recurrence_macs(lstm, x) == 2 * 3 * 20 * 4 * 5 * (8 + 5)


@pytest.mark.slow  # builds both published models and runs each twice: about 4 s on one thread
def test_both_models_get_a_figure_per_second_of_audio(capsys):
    load_benchmark("macs").main(["--seconds", "0.05"])
    report = json.loads(capsys.readouterr().out)
    assert report["seconds"] == 0.05 and report["sample_rate"] == 16000
    spmamba, tfgridnet = report["models"].values()
    assert spmamba["parameters"] == 6141826 and tfgridnet["parameters"] == 10427266
    for model in (spmamba, tfgridnet):
        assert model["counted_GMACs_per_s"] > 0 and model["scan_or_lstm_GMACs_per_s"] > 0
        assert model["GMACs_per_s"] == pytest.approx(model["counted_GMACs_per_s"] + model["scan_or_lstm_GMACs_per_s"],
                                                     abs=0.02)
