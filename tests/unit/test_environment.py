"""The environment variables of the scan: read once where a command starts, recorded in the
experiment's overrides, applied to the model's Mamba layers; a bad value is one error line."""

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from torch._inductor import config as inductor_config

from spmamba_sb import cli
from spmamba_sb.environment import (MIX_ORDER_REDUCTION_VAR, ScanEnvironment, apply_scan_environment,
                                   avoid_mix_order_reduction, scan_environment, with_scan_backend)
from spmamba_sb.nnet import mixer as mixer_module
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.mixer import MambaMixer, configure_scan
from spmamba_sb.settings import SettingsError
from tests.conftest import exit_status
from tests.unit.test_inference import RATE, write_tiny_model


@pytest.mark.parametrize("environ,expected", [
    ({}, ScanEnvironment(None, False)),
    ({"SPMAMBA_SCAN_BACKEND": " Torch ", "SPMAMBA_COMPILE_SCAN": "1"}, ScanEnvironment("torch", True)),
    ({"SPMAMBA_SCAN_BACKEND": "", "SPMAMBA_COMPILE_SCAN": "0"}, ScanEnvironment(None, False)),
])
def test_variables_are_read(environ, expected):
    assert scan_environment(environ) == expected


@pytest.mark.parametrize("environ,message", [
    ({"SPMAMBA_SCAN_BACKEND": "fast"}, "SPMAMBA_SCAN_BACKEND='fast' is not one of"),
    ({"SPMAMBA_COMPILE_SCAN": "yes"}, "SPMAMBA_COMPILE_SCAN='yes' must be 0 or 1"),
])
def test_a_bad_value_names_the_variable(environ, message):
    with pytest.raises(SettingsError, match=message):
        scan_environment(environ)


@pytest.mark.parametrize("file_value,overrides,expected", [
    ("auto", "", "scan_backend: torch\n"),
    ("auto", "batch_size: 2\n", "batch_size: 2\nscan_backend: torch\n"),
    ("auto", "scan_backend: triton\n", "scan_backend: triton\n"),  # the command line's choice stands
    ("cuda", "", ""),  # so does the file's
    (None, "", ""),  # a file without the key (TF-GridNet's) is left alone
])
def test_the_backend_becomes_an_override_of_auto_only(tmp_path, file_value, overrides, expected):
    path = tmp_path / "train.yaml"
    path.write_text("batch_size: 1\n" + (f"scan_backend: {file_value}\n" if file_value else ""))
    assert with_scan_backend(str(path), overrides, ScanEnvironment("torch", False)) == expected
    assert with_scan_backend(str(path), overrides, ScanEnvironment(None, True)) == overrides


def test_layers_given_a_backend_by_name_keep_it():
    model = torch.nn.ModuleList([BMamba(8, d_state=4, expand=2), BMamba(8, d_state=4, expand=2, scan_backend="cuda")])
    assert configure_scan(model, backend="torch", compile_torch_scan=True) == 4
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    assert [m.scan_backend for m in mixers] == ["torch", "torch", "cuda", "cuda"]
    assert all(m.compile_torch_scan for m in mixers)
    with pytest.raises(ValueError, match="is not one of"):
        configure_scan(model, backend="gpu")


def test_the_compile_flag_reaches_the_scan(monkeypatch):
    layer = BMamba(8, d_state=4, expand=2)
    seen = []
    real_scan = mixer_module.run_scan

    def spy(*args, **kwargs):
        seen.append(kwargs["compile_torch_scan"])
        return real_scan(*args, **{**kwargs, "compile_torch_scan": False})

    monkeypatch.setattr(mixer_module, "run_scan", spy)
    apply_scan_environment([layer], ScanEnvironment(None, True))
    with torch.no_grad():
        layer(torch.randn(8, 2, 10))
    assert seen == [True, True]


def test_separate_applies_the_environment_and_rejects_a_bad_value(tmp_path, monkeypatch, capsys, caplog):
    model = write_tiny_model(tmp_path / "model")
    sf.write(str(tmp_path / "mix.wav"), 0.1 * np.random.default_rng(0).standard_normal(RATE // 4), RATE)
    monkeypatch.setenv("SPMAMBA_SCAN_BACKEND", "fast")
    status = exit_status(cli.separate_main, tmp_path / "mix.wav", "--model", model, "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert status == 2 and err.strip().splitlines()[-1].startswith("spmamba-separate: error: SPMAMBA_SCAN_BACKEND=")
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("SPMAMBA_SCAN_BACKEND", "torch")
    with caplog.at_level(logging.INFO, logger="spmamba_sb.environment"):
        status = exit_status(cli.separate_main, tmp_path / "mix.wav", "--model", model, "--out", tmp_path / "out")
    assert status == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mix_s1.wav", "mix_s2.wav"]
    assert any("backend torch" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("environ,expected_on", [({}, False), ({MIX_ORDER_REDUCTION_VAR: "1"}, True),
                                                 ({MIX_ORDER_REDUCTION_VAR: "0"}, True)])
def test_mix_order_reduction_is_turned_off_unless_the_environment_decides(caplog, environ, expected_on):
    """Unset, the pass goes off (pytorch/pytorch#178080) and the log says so; set, PyTorch's reading stands."""
    with inductor_config.patch({"triton.mix_order_reduction": True}), \
            caplog.at_level(logging.INFO, logger="spmamba_sb.environment"):
        turned_off = avoid_mix_order_reduction(environ)
        assert inductor_config.triton.mix_order_reduction is expected_on
    assert turned_off is not expected_on
    assert any(MIX_ORDER_REDUCTION_VAR in r.getMessage() for r in caplog.records) is not expected_on
