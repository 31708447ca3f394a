"""The dataset on disk: CSVs, metadata, speaker-disjoint splits, determinism, parallel workers, resume."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb.outputs import PARTIAL_SUFFIX
from spmamba_sb.data.corpora import SPLITS, Corpora
from spmamba_sb.data.mixing import MixtureSimulator
from spmamba_sb.data.prepare import CONFIG_FILE, SKIPPED_FILE, mixture_counts, prepare_echo2mix

#: 2 s mixtures: 5 train, 2 valid, 2 test.
HOURS = {"train": 10 / 3600, "valid": 4 / 3600, "test": 4 / 3600}


@pytest.fixture(scope="module")
def corpora(fake_corpora):
    return Corpora.from_folders(str(fake_corpora["librispeech"]), str(fake_corpora["wham"]),
                                str(fake_corpora["dnr"]), str(fake_corpora["dnr"]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, corpora, make_config):
    """A dataset made by two worker processes."""
    output = tmp_path_factory.mktemp("echo2mix") / "parallel"
    result = prepare_echo2mix(str(output), corpora, make_config(), hours=HOURS, seed=7, num_workers=2,
                              show_progress=False)
    return output, result


def _files(root: Path):
    """Every wav and JSON below the split folders, by relative path -> bytes."""
    return {str(path.relative_to(root)): path.read_bytes() for split in SPLITS
            for path in sorted((root / split).rglob("*")) if path.is_file()}


def test_csvs_list_every_mixture_in_speechbrain_format(dataset):
    output, result = dataset
    assert result["num_mixtures"] == {"train": 5, "valid": 2, "test": 2} and result["made"] == 9
    for split, count in result["num_mixtures"].items():
        with open(output / f"{split}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == ["ID", "duration", "mix_wav", "mix_wav_format", "mix_wav_opts", "s1_wav",
                                 "s1_wav_format", "s1_wav_opts", "s2_wav", "s2_wav_format", "s2_wav_opts",
                                 "noise_wav", "noise_wav_format", "noise_wav_opts", "s1_spk", "s2_spk"]
        assert [row["ID"] for row in rows] == [f"{split}_{index:06d}" for index in range(count)]
        for row in rows:
            assert float(row["duration"]) == 2.0 and row["mix_wav_format"] == "wav"
            metadata = json.loads((output / split / "metadata" / f"{row['ID']}.json").read_text())
            assert [row["s1_spk"], row["s2_spk"]] == [speaker["speaker"] for speaker in metadata["speakers"]]
            assert row["s1_spk"] != row["s2_spk"]
            for stream in ("mix", "s1", "s2", "noise"):
                assert os.path.isabs(row[f"{stream}_wav"]) and sf.info(row[f"{stream}_wav"]).samplerate == 8000


def test_files_sum_up_and_metadata_rebuilds_them(dataset, make_config):
    output, _ = dataset
    simulator = MixtureSimulator(make_config())
    for metadata_path in sorted(output.glob("*/metadata/*.json")):
        metadata = json.loads(metadata_path.read_text())
        audio = {stream: sf.read(output / metadata[f"{stream}_wav"], dtype="float64", always_2d=True)[0].T
                 for stream in ("mix", "s1", "s2", "noise")}
        assert np.max(np.abs(audio["mix"] - audio["s1"] - audio["s2"] - audio["noise"])) < 1e-5
        assert max(np.max(np.abs(signal)) for signal in audio.values()) <= 0.95 + 1e-6
        if metadata_path.stem.endswith("000000"):
            rebuilt = simulator.rebuild(metadata)
            assert all(np.array_equal(rebuilt[stream].astype(np.float64), audio[stream]) for stream in audio)


def test_splits_are_speaker_disjoint(dataset):
    output, _ = dataset
    used = {split: set() for split in SPLITS}
    for metadata_path in output.glob("*/metadata/*.json"):
        metadata = json.loads(metadata_path.read_text())
        used[metadata["split"]].update(speaker["speaker"] for speaker in metadata["speakers"])
    assert all(used.values())
    assert used["train"].isdisjoint(used["valid"]) and used["train"].isdisjoint(used["test"])
    assert used["valid"].isdisjoint(used["test"])
    settings = json.loads((output / CONFIG_FILE).read_text())
    for split in SPLITS:
        assert used[split] <= set(settings["speakers"][split])


def test_unreadable_files_are_counted(dataset, fake_corpora):
    output, result = dataset
    assert str(fake_corpora["corrupt_noise"]) in result["skipped_files"]
    assert str(fake_corpora["corrupt_noise"]) in (output / SKIPPED_FILE).read_text().splitlines()


def test_output_does_not_depend_on_the_number_of_workers(dataset, tmp_path, corpora, make_config):
    output, _ = dataset
    prepare_echo2mix(str(tmp_path), corpora, make_config(), hours=HOURS, seed=7, num_workers=1, show_progress=False)
    assert _files(tmp_path) == _files(output)
    other_seed = tmp_path / "other_seed"
    prepare_echo2mix(str(other_seed), corpora, make_config(), hours={"train": 2 / 3600, "valid": 0, "test": 0},
                     seed=8, num_workers=1, show_progress=False)
    assert (other_seed / "train" / "mix" / "train_000000.wav").read_bytes() != \
        (output / "train" / "mix" / "train_000000.wav").read_bytes()


def test_resume_after_a_kill_redoes_only_unfinished_mixtures(dataset, tmp_path, corpora, make_config):
    output, _ = dataset
    resumed = tmp_path / "resumed"
    shutil.copytree(output, resumed)
    for name in ("train.csv", "valid.csv", "test.csv"):
        (resumed / name).unlink()
    # killed after writing some wavs but before the metadata JSON (the completion marker)
    (resumed / "train" / "metadata" / "train_000001.json").unlink()
    (resumed / "train" / "s2" / "train_000001.wav").unlink()
    # killed while writing a wav: only a half-written temporary file exists
    (resumed / "valid" / "metadata" / "valid_000000.json").unlink()
    partial = resumed / "valid" / "mix" / f"valid_000000.wav{PARTIAL_SUFFIX}"
    (resumed / "valid" / "mix" / "valid_000000.wav").rename(partial)
    with open(partial, "r+b") as handle:
        handle.truncate(100)
    # a wav that looks complete but whose mixture has no JSON is not trusted
    (resumed / "test" / "metadata" / "test_000001.json").unlink()
    untouched = resumed / "train" / "mix" / "train_000002.wav"
    before = untouched.stat().st_mtime_ns
    result = prepare_echo2mix(str(resumed), corpora, make_config(), hours=HOURS, seed=7, num_workers=1,
                              show_progress=False)
    assert result["made"] == 3
    assert untouched.stat().st_mtime_ns == before
    assert not list(resumed.rglob(f"*{PARTIAL_SUFFIX}"))
    assert _files(resumed) == _files(output)
    assert all((resumed / f"{split}.csv").is_file() for split in SPLITS)
    again = prepare_echo2mix(str(resumed), corpora, make_config(), hours=HOURS, seed=7, num_workers=1,
                             show_progress=False)
    assert again["made"] == 0


def test_other_settings_in_the_same_folder_are_refused(dataset, corpora, make_config):
    output, _ = dataset
    with pytest.raises(ValueError, match=r"holds a dataset made with other settings \(differing: seed"):
        prepare_echo2mix(str(output), corpora, make_config(), hours=HOURS, seed=8, show_progress=False)
    with pytest.raises(ValueError, match="differing: .*simulation"):
        prepare_echo2mix(str(output), corpora, make_config(duration=3.0), hours=HOURS, seed=7, show_progress=False)


def test_sizes_are_checked():
    assert mixture_counts({"train": 57, "valid": 8, "test": 3}, 60.0) == {"train": 3420, "valid": 480, "test": 180}
    assert mixture_counts({"train": 0.0001, "valid": 0, "test": 0}, 60.0) == {"train": 1, "valid": 0, "test": 0}
    with pytest.raises(ValueError, match="hours for split 'valid' must be >= 0"):
        mixture_counts({"train": 1, "valid": -1, "test": 0}, 60.0)
    with pytest.raises(ValueError, match="unknown splits"):
        mixture_counts({"dev": 1}, 60.0)
    with pytest.raises(ValueError, match="positive for at least one split"):
        mixture_counts({"train": 0, "valid": 0, "test": 0}, 60.0)


def test_multichannel_dataset(tmp_path, corpora, make_config):
    config = make_config(num_channels=2, audio_subtype="PCM_24")
    prepare_echo2mix(str(tmp_path), corpora, config, hours={"train": 2 / 3600, "valid": 0, "test": 0}, seed=0,
                     show_progress=False)
    mix, rate = sf.read(tmp_path / "train" / "mix" / "train_000000.wav", always_2d=True)
    assert mix.shape == (2 * rate, 2) and sf.info(tmp_path / "train" / "mix" / "train_000000.wav").subtype == "PCM_24"
    parts = sum(sf.read(tmp_path / "train" / stream / "train_000000.wav", always_2d=True)[0]
                for stream in ("s1", "s2", "noise"))
    assert np.max(np.abs(mix - parts)) < 1e-5


def test_data_root_csvs_load_with_the_training_datasets(dataset, tmp_path, corpora, make_config):
    from spmamba_sb.data.pipelines import separation_datasets

    output, _ = dataset
    moved = tmp_path / "moved"
    shutil.copytree(output, moved)
    prepare_echo2mix(str(moved), corpora, make_config(), hours=HOURS, seed=7, show_progress=False,
                     csv_paths="data_root")
    with open(moved / "valid.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["mix_wav"] == "$data_root/valid/mix/valid_000000.wav"
    train, valid, _ = separation_datasets([str(moved / f"{split}.csv") for split in SPLITS], num_spks=2,
                                          sample_rate=8000, training_signal_len=4000, data_root=str(moved))
    item = valid[0]
    assert item["mix_sig"].shape == item["s1_sig"].shape == (16000,)
    assert train[0]["s2_sig"].shape == (4000,)
    with pytest.raises(ValueError, match="csv_paths='relative' must be one of"):
        prepare_echo2mix(str(moved), corpora, make_config(), hours=HOURS, seed=7, csv_paths="relative")
