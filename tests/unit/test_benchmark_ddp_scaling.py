"""benchmarks/ddp_scaling.py's parts that need no second process: the commands it runs and what it
reads from a finished run. tests/integration/test_train.py runs it whole (1 and 2 processes, gloo)."""

import os
import sys

import pytest

from tests.conftest import ROOT, load_benchmark


def _epoch(number, minutes, valid, improvement):
    """One epoch's line of train.py's train_log.txt."""
    return (f"epoch: {number}, lr: 1.00e-03, train_minutes: {minutes} - train snr: -2.0e+00, "
            f"train nonfinite_batches: 0 - valid si-snr: {valid}, valid si-snr_i: {improvement}\n")


LOG = (_epoch(1, "1.00e+00", "-4.0e+00", "1.0e+00") + _epoch(2, "2.00e+00", "-3.0e+00", "2.0e+00")
       + _epoch(3, "3.00e+00", "-2.5e+00", "2.5e+00")
       + "epoch loaded: 3 - test si-snr: -2.6e+00, test si-snr_i: 2.4e+00\n")  # the test stage's line


def test_one_process_runs_train_py_and_more_run_it_through_torchrun():
    ddp = load_benchmark("ddp_scaling")
    hparams = os.path.join(ROOT, "hparams", "spmamba.yaml")
    single = ddp.train_command(1, hparams, "data", "out", ["--seed", "1"])
    assert single == [sys.executable, os.path.join(ROOT, "train.py"), hparams, "--data_folder", "data",
                      "--output_folder", "out", "--seed", "1"]
    assert ddp._readable(single) == ("python train.py hparams/spmamba.yaml --data_folder data --output_folder out "
                                     "--seed 1")
    double = ddp.train_command(2, hparams, "data", "out", [])
    assert double[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=2"]
    assert double[4] == "--master_port" and double[5].isdigit() and double[6:] == single[1:-2]


def test_throughput_leaves_out_the_first_epoch_and_validation_follows_the_mixtures(tmp_path):
    ddp = load_benchmark("ddp_scaling")
    (tmp_path / "train_log.txt").write_text(LOG, encoding="utf-8")
    (tmp_path / "hyperparams.yaml").write_text("sample_rate: 16000\ntraining_signal_len: 32000\n", encoding="utf-8")
    assert [epoch["epoch"] for epoch in ddp.epochs_logged(str(tmp_path))] == ["1", "2", "3"]
    summary = ddp.summarise(str(tmp_path), epoch_size=10)
    assert summary["train_minutes"] == 3.0
    # epochs 2 and 3: 20 crops of 2 s in 2 minutes
    assert summary["audio_seconds_per_second"] == pytest.approx(40 / 120)
    assert summary["valid"] == [{"mixtures": 10, "si-snr": -4.0, "si-snr_i": 1.0},
                                {"mixtures": 20, "si-snr": -3.0, "si-snr_i": 2.0},
                                {"mixtures": 30, "si-snr": -2.5, "si-snr_i": 2.5}]
    assert ddp.epochs_logged(str(tmp_path / "never_ran")) == []


@pytest.mark.parametrize("arguments,message", [(["--world-sizes", "2"], "must include 1"), ([], "exists")])
def test_a_run_without_its_baseline_or_over_an_old_one_is_refused(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        load_benchmark("ddp_scaling").main(["--data", "data", "--out", str(tmp_path), *arguments])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
