"""train.py on bad settings and bad data: one line ``train.py: error: ...`` naming the key, the row
or the file, exit status 2 (settings) or 1 (data), and no traceback.

Settings are checked before anything is written, so those cases call ``train.main`` in this
process. The data cases run train.py as a command; on stderr SpeechBrain may log a warning (for
example that torchvision is missing) and tqdm draws its bars before the error, so those tests
check that the last line is the only line of ours and that no traceback is there.
"""

import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TINY_OVERRIDES, exit_status, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HPARAMS = os.path.join(ROOT, "hparams", "spmamba.yaml")


def _train_module():
    spec = importlib.util.spec_from_file_location("train", os.path.join(ROOT, "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _train_module()


def _settings_error(capsys, tmp_path, *argv):
    """Exit status and the stderr line of train.main on ``argv``; nothing may have been written."""
    status = exit_status(TRAIN.main, *argv, "--output_folder", tmp_path / "exp", "--device", "cpu")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert not (tmp_path / "exp").exists()
    return status, lines[0]


@pytest.mark.parametrize("argv,expected", [
    (["hparams/spmamba.yam"], "train.py: error: no hparams file 'hparams/spmamba.yam'; did you mean "
                              "hparams/spmamba.yaml"),
    ([HPARAMS, "--batch_sise", "3"], f"train.py: error: --batch_sise: {HPARAMS} has no such key; "
                                     "did you mean --batch_size?"),
    ([HPARAMS, "--batch_size", "-2"], "train.py: error: batch_size=-2 must be a whole number >= 1"),
    ([HPARAMS, "--N_epochs", "0"], "train.py: error: N_epochs=0 must be a whole number >= 1"),
    ([HPARAMS, "--lr", ".nan"], "train.py: error: lr=nan must be a number >= 0"),
    ([HPARAMS, "--train_epoch_size", "2.5"], "train.py: error: train_epoch_size=2.5 must be a whole number >= 1 "
                                             "(or null)"),
    ([HPARAMS, "--emb_dim", "3", "--num_heads", "2"], f"train.py: error: {HPARAMS}: emb_dim=3 is not divisible by "
                                                      "num_heads=2"),
])
def test_a_bad_setting_is_one_line_and_status_2(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(ROOT)
    data = write_corpus(tmp_path / "data", sizes=(("train", 1), ("valid", 1), ("test", 1)), seconds=0.1)
    status, line = _settings_error(capsys, tmp_path, *argv, "--data_folder", data)
    assert status == 2
    assert line.startswith(expected), line


def test_an_unknown_key_names_the_closest_keys_not_all_of_them(capsys, tmp_path):
    status, line = _settings_error(capsys, tmp_path, HPARAMS, "--data_folder", tmp_path, "--num_block", "2")
    assert status == 2
    assert line == f"train.py: error: --num_block: {HPARAMS} has no such key; did you mean --num_blocks?"


def test_errors_of_this_package_are_one_line_and_other_errors_keep_their_traceback(capsys, monkeypatch):
    from spmamba_sb.data.pipelines import SeparationDataError

    def fails_with(error):
        def train(argv):
            raise error
        return train

    monkeypatch.setattr(TRAIN, "train", fails_with(SeparationDataError("test.csv: row a: bad")))
    assert exit_status(TRAIN.main) == 1
    assert capsys.readouterr().err == "train.py: error: test.csv: row a: bad\n"
    # as a DataLoader worker raises it again in the main process: the worker's traceback as message
    worker_message = ("Caught SeparationDataError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                      "call last):\n  File \"x.py\", line 1, in f\nspmamba_sb.data.pipelines.SeparationDataError: "
                      "train.csv: row b: bad\n")
    monkeypatch.setattr(TRAIN, "train", fails_with(SeparationDataError(worker_message)))
    assert exit_status(TRAIN.main) == 1
    assert capsys.readouterr().err == "train.py: error: train.csv: row b: bad\n"
    monkeypatch.setattr(TRAIN, "train", fails_with(KeyboardInterrupt()))
    assert exit_status(TRAIN.main) == 130
    assert capsys.readouterr().err.strip() == "train.py: interrupted"
    for bug in (ValueError("a bug"), KeyError("a bug"), RuntimeError("a bug")):
        monkeypatch.setattr(TRAIN, "train", fails_with(bug))
        with pytest.raises(type(bug)):
            TRAIN.main([])


def _run(data, out, *extra):
    command = [sys.executable, os.path.join(ROOT, "train.py"), HPARAMS, "--data_folder", str(data),
               "--output_folder", str(out), "--device", "cpu", *TINY_OVERRIDES, *extra]
    return subprocess.run(command, cwd=str(out.parent), capture_output=True, text=True, timeout=300)


def _error_line(result):
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("train.py:")] == lines[-1:], result.stderr[-3000:]
    return lines[-1]


def _row_file(data, split, row, column):
    with open(data / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))[row][column]


def _checkpoints(out):
    save = out / "save"
    return sorted(save.glob("CKPT+*")) if save.is_dir() else []


@pytest.mark.slow  # train.py reads the corpus
@pytest.mark.parametrize("split,column", [("test", "s1_wav"), ("valid", "mix_wav")])
def test_nan_in_a_valid_or_test_row_stops_before_training(tmp_path, split, column):
    data = write_corpus(tmp_path / "data", sizes=(("train", 2), ("valid", 2), ("test", 2)), seconds=0.3)
    path = _row_file(data, split, 1, column)
    samples, rate = sf.read(path)
    samples[100] = np.inf if split == "valid" else np.nan
    sf.write(path, samples, rate, subtype="FLOAT")
    out = tmp_path / "exp"
    result = _run(data, out)
    assert result.returncode == 1
    line = _error_line(result)
    assert line.startswith(f"train.py: error: {data / split}.csv: 1 row(s) with bad audio, e.g. row {split}1: "
                           f"{column}='{path}': contains NaN or Inf samples"), line
    assert not _checkpoints(out)  # no training was done


@pytest.mark.slow  # train.py reads the corpus
def test_a_missing_file_is_said_to_be_missing(tmp_path):
    data = write_corpus(tmp_path / "data", sizes=(("train", 2), ("valid", 1), ("test", 1)), seconds=0.3)
    path = _row_file(data, "train", 0, "s2_wav")
    os.remove(path)
    result = _run(data, tmp_path / "exp")
    assert result.returncode == 1
    line = _error_line(result)
    assert f"row train0: s2_wav='{path}': cannot read audio (No such file or directory)" in line, line
    assert "System error" not in result.stderr + result.stdout


@pytest.mark.slow  # train.py reads the corpus
def test_nan_in_a_training_row_names_the_row_and_the_file(tmp_path):
    data = write_corpus(tmp_path / "data", sizes=(("train", 2), ("valid", 1), ("test", 1)), seconds=0.3)
    path = _row_file(data, "train", 1, "s2_wav")
    samples, rate = sf.read(path)
    sf.write(path, np.full_like(samples, np.nan), rate, subtype="FLOAT")  # in every crop
    result = _run(data, tmp_path / "exp")
    assert result.returncode == 1
    line = _error_line(result)
    assert line == f"train.py: error: {data / 'train.csv'}: row train1: s2_wav='{path}': contains NaN or Inf samples"


def test_a_bad_scan_variable_is_one_line_and_status_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPMAMBA_SCAN_BACKEND", "fast")
    status, line = _settings_error(capsys, tmp_path, HPARAMS, "--data_folder", tmp_path)
    assert status == 2
    assert line.startswith("train.py: error: SPMAMBA_SCAN_BACKEND='fast' is not one of"), line
