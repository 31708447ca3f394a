"""Separation CSV datasets: crops, whole utterances, 2 and 3 speakers, bad rows and bad files."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.dataloader import make_dataloader

from spmamba_sb.data.pipelines import SeparationDataError, check_rows, separation_datasets
from tests.conftest import write_corpus


@pytest.mark.parametrize("num_spks", [2, 3])
def test_crops_and_whole_utterances(tmp_path, num_spks):
    root = write_corpus(tmp_path / "c", num_spks=num_spks, seconds=0.5)
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    train, valid, _ = separation_datasets(csvs, num_spks=num_spks, sample_rate=16000, training_signal_len=3000)
    item = train[0]
    assert set(item) == {"id", "mix_sig"} | {f"s{i}_sig" for i in range(1, num_spks + 1)}
    assert item["mix_sig"].shape == (3000,)
    torch.testing.assert_close(item["mix_sig"], sum(item[f"s{i}_sig"] for i in range(1, num_spks + 1)),
                               atol=1e-4, rtol=0)  # the same crop of every signal
    assert valid[0]["mix_sig"].shape == (8000,)
    batch = next(iter(make_dataloader(train, batch_size=2)))
    assert batch.mix_sig.data.shape == (2, 3000)


def _break(root, split, column, index, how):
    path = root / f"{split}.csv"
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    target = rows[index][column]
    if how == "missing":
        (root / target.split("/")[-1]).unlink()
    elif how == "corrupt":
        open(target, "wb").write(b"RIFF\x00\x00not audio")
    elif how == "rate":
        data, _ = sf.read(target)
        sf.write(target, data, 8000)
    return rows[index]["ID"], target


@pytest.mark.parametrize("how", ["missing", "corrupt", "rate"])
def test_bad_rows_fatal_or_skipped(tmp_path, how):
    root = write_corpus(tmp_path / "c")
    bad_id, bad_path = _break(root, "train", "s2_wav", 1, how)
    with pytest.raises(ValueError, match=f"row {bad_id}: s2_wav='{bad_path}'"):
        check_rows(str(root / "train.csv"), 2, 16000, missing_audio="fatal")
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    train, _, _ = separation_datasets(csvs, num_spks=2, sample_rate=16000, missing_audio="skip")
    ids = [train[i]["id"] for i in range(len(train))]
    assert bad_id not in ids and len(ids) == 3


def test_missing_csv_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="no separation CSV"):
        check_rows(str(tmp_path / "nope.csv"), 2, 16000)
    root = write_corpus(tmp_path / "c")
    with pytest.raises(ValueError, match=r"missing columns \['s3_wav'\] \(num_spks=3\)"):
        check_rows(str(root / "train.csv"), 3, 16000)
    with pytest.raises(ValueError, match="missing_audio='ignore'"):
        check_rows(str(root / "train.csv"), 2, 16000, missing_audio="ignore")


def _write_samples(path, samples):
    sf.write(path, samples, 16000, subtype="FLOAT")


@pytest.mark.parametrize("samples,problem", [
    (np.array([0.0, np.nan, 0.0]), "contains NaN or Inf samples"),
    (np.array([0.0, -np.inf]), "contains NaN or Inf samples"),
    (np.zeros(0), "no samples"),
])
def test_reading_samples_finds_empty_and_non_finite_files(tmp_path, samples, problem):
    root = write_corpus(tmp_path / "c")
    bad_id, bad_path = _break(root, "valid", "s1_wav", 1, "missing")
    _write_samples(bad_path, samples)
    assert check_rows(str(root / "valid.csv"), 2, 16000) == []  # the header is fine
    with pytest.raises(SeparationDataError, match=f"row {bad_id}: s1_wav='{bad_path}': {problem}"):
        check_rows(str(root / "valid.csv"), 2, 16000, read_samples=True)
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    with pytest.raises(SeparationDataError, match=f"{root / 'valid.csv'}: 1 row"):
        separation_datasets(csvs, num_spks=2, sample_rate=16000, check_samples=csvs[1:])
    _, valid, _ = separation_datasets(csvs, num_spks=2, sample_rate=16000, missing_audio="skip",
                                      check_samples=csvs[1:])
    assert [valid[i]["id"] for i in range(len(valid))] == ["valid0"]


def test_reading_samples_finds_utterances_shorter_than_one_stft_frame(tmp_path):
    root = write_corpus(tmp_path / "c")
    bad_id, bad_path = _break(root, "test", "mix_wav", 0, "missing")
    _write_samples(bad_path, np.full(100, 0.1))
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    separation_datasets(csvs, num_spks=2, sample_rate=16000, check_samples=csvs[1:], min_samples=100)
    message = f"row {bad_id}: mix_wav='{bad_path}': 100 samples, shorter than one STFT frame \\(101 samples\\)"
    with pytest.raises(SeparationDataError, match=message):
        separation_datasets(csvs, num_spks=2, sample_rate=16000, check_samples=csvs[1:], min_samples=101)


def test_a_missing_file_is_not_a_system_error(tmp_path):
    root = write_corpus(tmp_path / "c")
    _, bad_path = _break(root, "test", "mix_wav", 0, "missing")
    with pytest.raises(SeparationDataError) as error:
        check_rows(str(root / "test.csv"), 2, 16000)
    assert f"mix_wav='{bad_path}': cannot read audio (No such file or directory)" in str(error.value)
    assert "System error" not in str(error.value)


def test_reading_a_bad_training_row_names_the_csv_the_row_and_the_file(tmp_path):
    root = write_corpus(tmp_path / "c")
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    train, _, _ = separation_datasets(csvs, num_spks=2, sample_rate=16000, training_signal_len=3000)
    bad_id, bad_path = _break(root, "train", "s2_wav", 2, "missing")
    _write_samples(bad_path, np.full(8000, np.nan))  # after the check: found when read
    with pytest.raises(SeparationDataError) as error:
        train[2]
    assert str(error.value) == f"{csvs[0]}: row {bad_id}: s2_wav='{bad_path}': contains NaN or Inf samples"
    os.remove(bad_path)
    with pytest.raises(SeparationDataError) as error:
        train[2]
    assert str(error.value) == (f"{csvs[0]}: row {bad_id}: s2_wav='{bad_path}': cannot read audio "
                                "(No such file or directory)")
    assert train[1]["s2_sig"].shape == (3000,)  # the other rows still read


def test_multi_channel_files_are_read_at_their_first_channel(tmp_path):
    """The reference microphone, as dynamic mixing and inference read it; a NaN in another
    channel is never read."""
    root = write_corpus(tmp_path / "c")
    csvs = [str(root / f"{split}.csv") for split in ("train", "valid", "test")]
    rows = list(csv.DictReader(open(csvs[0], encoding="utf-8")))
    for column in ("mix_wav", "s1_wav", "s2_wav"):
        data, rate = sf.read(rows[0][column], dtype="float32")
        sf.write(rows[0][column], np.stack([data, np.full_like(data, np.nan)], 1), rate, subtype="FLOAT")
    assert check_rows(csvs[0], 2, 16000, read_samples=True) == []
    whole, cropped = (separation_datasets(csvs, num_spks=2, sample_rate=16000, training_signal_len=length)[0][0]
                      for length in (None, 3000))
    torch.testing.assert_close(whole["mix_sig"], whole["s1_sig"] + whole["s2_sig"], atol=1e-4, rtol=0)
    assert cropped["mix_sig"].shape == (3000,) and torch.isfinite(cropped["mix_sig"]).all()
