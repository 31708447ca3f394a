"""Dynamic mixing: a reproducible, resumable stream of new mixtures of distinct speakers."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.utils.checkpoints import Checkpointer

from spmamba_sb.data.dynamic_mixing import DynamicMixingDataset, DynamicMixingSampler, SourcePool
from spmamba_sb.data.pipelines import SeparationDataError
from tests.conftest import write_corpus


@pytest.fixture
def noisy_csv(tmp_path):
    """Six rows over four speakers, sources of different lengths, a background per row."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(6):
        row = {"ID": f"r{index}"}
        for source, speaker in enumerate([index % 4, (index + 1) % 4], start=1):
            path = tmp_path / f"r{index}_s{source}.wav"
            sf.write(path, rng.standard_normal(300 + 100 * index).astype(np.float32) * 0.1, 8000)
            row[f"s{source}_wav"], row[f"s{source}_spk"] = str(path), f"spk{speaker}"
        row["noise_wav"] = str(tmp_path / f"r{index}_noise.wav")
        sf.write(row["noise_wav"], rng.standard_normal(900).astype(np.float32) * 0.01, 8000)
        rows.append(row)
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_pool_groups_sources_by_speaker(noisy_csv):
    pool = SourcePool.from_csv(noisy_csv, num_spks=2)
    assert pool.speaker_ids == ["spk0", "spk1", "spk2", "spk3"] and pool.num_sources == 12
    assert len(pool.backgrounds) == 6 and all(frames == 900 for _, frames in pool.backgrounds)
    assert all(path.endswith(".wav") and frames >= 300 for files in pool.speakers.values() for path, frames in files)


def test_same_seed_same_mixtures_and_mixture_is_the_sum_of_its_parts(noisy_csv):
    pool = SourcePool.from_csv(noisy_csv, num_spks=2)
    first, again = (DynamicMixingDataset(pool, 2, length=600, seed=3) for _ in range(2))
    other_seed = DynamicMixingDataset(pool, 2, length=600, seed=4)
    for index in range(20):
        item = first[index]
        assert all(torch.equal(item[key], again[index][key]) for key in ("mix_sig", "s1_sig", "s2_sig", "noise_sig"))
        assert not torch.equal(item["mix_sig"], other_seed[index]["mix_sig"])
        assert torch.allclose(item["mix_sig"], item["s1_sig"] + item["s2_sig"] + item["noise_sig"], atol=1e-6)
        assert item["mix_sig"].shape == (600,) and item["noise_sig"].abs().max() > 0
    assert not torch.equal(first[0]["mix_sig"], first[1]["mix_sig"])


def test_speakers_are_distinct_and_all_get_drawn(noisy_csv):
    pool = SourcePool.from_csv(noisy_csv, num_spks=2)
    dataset = DynamicMixingDataset(pool, 2, length=600, seed=0)
    by_samples = {}  # every source file's samples -> its speaker
    for speaker, files in pool.speakers.items():
        for path, _ in files:
            by_samples[speaker + path] = sf.read(path, dtype="float32")[0]
    seen = set()
    for index in range(40):
        item = dataset[index]
        speakers = []
        for source in ("s1_sig", "s2_sig"):
            signal = item[source].numpy()
            matches = {key[:4] for key, samples in by_samples.items()
                       if _contains_scaled(signal, samples)}
            assert len(matches) == 1, matches
            speakers.append(matches.pop())
        assert speakers[0] != speakers[1]
        seen.update(speakers)
    assert seen == set(pool.speaker_ids)


def _contains_scaled(signal, samples):
    """Whether ``signal`` is a gain times a crop of ``samples`` (or ``samples`` at an offset in zeros)."""
    nonzero = np.flatnonzero(signal)
    if len(nonzero) == 0:
        return False
    start, stop = nonzero[0], nonzero[-1] + 1
    piece = signal[start:stop]
    for offset in range(len(samples) - len(piece) + 1):
        window = samples[offset:offset + len(piece)]
        gain = piece[0] / window[0] if window[0] != 0 else 0.0
        if gain and np.allclose(piece, window * gain, rtol=1e-4, atol=1e-6):
            return 10 ** (-2.5 / 20) < abs(gain) < 10 ** (2.5 / 20)  # within +-2 dB
    return False


def test_each_epoch_brings_new_mixtures_and_a_resumed_loader_continues_the_stream(noisy_csv, tmp_path):
    pool = SourcePool.from_csv(noisy_csv, num_spks=2)
    dataset = DynamicMixingDataset(pool, 2, length=500, seed=0, epoch_size=6)

    def loader():
        sampler = DynamicMixingSampler(6)
        sampler.set_epoch(2)
        return SaveableDataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=PaddedBatch)

    uninterrupted = [(batch.id, batch.mix_sig.data) for batch in loader()]
    assert [ids for ids, _ in uninterrupted] == [[f"dm_{index:09d}" for index in (12 + 2 * b, 13 + 2 * b)]
                                                 for b in range(3)]  # epoch 2: examples 12 ... 17
    interrupted = loader()
    next(iter(interrupted))
    Checkpointer(tmp_path / "ckpt", {"loader": interrupted}).save_checkpoint(end_of_epoch=False)  # one batch in
    resumed = loader()
    Checkpointer(tmp_path / "ckpt", {"loader": resumed}).recover_if_possible()
    continued = [(batch.id, batch.mix_sig.data) for batch in resumed]
    assert [ids for ids, _ in continued] == [ids for ids, _ in uninterrupted[1:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(continued, uninterrupted[1:]))
    epoch_three = DynamicMixingSampler(6)
    epoch_three.set_epoch(3)
    assert list(epoch_three) == list(range(18, 24))


def test_speakers_from_metadata_names_or_a_clear_error(tmp_path):
    corpus = write_corpus(tmp_path / "plain", sizes=(("train", 3),), seconds=0.1)
    with pytest.raises(ValueError, match="s1_spk"):
        SourcePool.from_csv(str(corpus / "train.csv"), num_spks=2)
    labelled = write_corpus(tmp_path / "labelled", sizes=(("train", 3),), seconds=0.1, with_speakers=True)
    assert SourcePool.from_csv(str(labelled / "train.csv"), num_spks=2).speaker_ids == ["v0", "v1", "v2"]
    # SpeechBrain-prepared LibriMix names carry the speakers
    librimix = tmp_path / "librimix"
    librimix.mkdir()
    rows = []
    for index, name in enumerate(["61-70968-0000_8455-210777-0012", "61-70968-0001_1089-134686-0000"]):
        row = {"ID": name}
        for source in (1, 2):
            row[f"s{source}_wav"] = str(librimix / f"s{source}" / f"{name}.wav")
            (librimix / f"s{source}").mkdir(exist_ok=True)
            sf.write(row[f"s{source}_wav"], np.zeros(80, np.float32), 8000)
        rows.append(row)
    with open(librimix / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pool = SourcePool.from_csv(str(librimix / "train.csv"), num_spks=2)
    assert pool.speaker_ids == ["1089", "61", "8455"] and len(pool.speakers["61"]) == 2
    with pytest.raises(ValueError, match="3 distinct speakers"):
        DynamicMixingDataset(SourcePool({"a": [], "b": []}, []), 3, length=10, seed=0)


@pytest.mark.parametrize("length", [200, 2000])  # a crop of a longer file, a shorter file padded
def test_a_bad_source_file_is_named(tmp_path, length):
    files = {}
    for name in ("a", "b"):
        files[name] = [(str(tmp_path / f"{name}.wav"), 800)]
        sf.write(files[name][0][0], np.full(800, 0.1), 8000, subtype="FLOAT")
    sf.write(files["b"][0][0], np.full(800, np.inf), 8000, subtype="FLOAT")
    dataset = DynamicMixingDataset(SourcePool(files, []), num_spks=2, length=length, seed=0)
    with pytest.raises(SeparationDataError, match=f"^{files['b'][0][0]}: contains NaN or Inf samples$"):
        dataset[0]
    (tmp_path / "b.wav").unlink()
    with pytest.raises(SeparationDataError, match=r"b\.wav: cannot read audio \(No such file or directory\)$"):
        dataset[0]


def test_an_unreadable_background_is_named_with_its_row(noisy_csv):
    with open(noisy_csv, newline="", encoding="utf-8") as handle:
        noise = list(csv.DictReader(handle))[2]["noise_wav"]
    os.remove(noise)
    with pytest.raises(SeparationDataError, match=f"row r2: noise_wav='{noise}': cannot read audio \\(No such file"):
        SourcePool.from_csv(str(noisy_csv), 2)



@pytest.mark.parametrize("length", [200, 2000])  # a crop of a longer file, a shorter file padded
def test_multi_channel_sources_give_their_first_channel(tmp_path, length):
    """As the separation CSV pipelines and inference read them: the reference microphone (0.1
    here; the channels' mean would be -0.2)."""
    files = {}
    for name in ("a", "b"):
        files[name] = [(str(tmp_path / f"{name}.wav"), 800)]
        sf.write(files[name][0][0], np.stack([np.full(800, 0.1), np.full(800, -0.5)], 1), 8000, subtype="FLOAT")
    item = DynamicMixingDataset(SourcePool(files, []), num_spks=2, length=length, seed=0)[0]
    for source in ("s1_sig", "s2_sig"):
        values = set(item[source].unique().tolist()) - {0.0}  # the gained first channel, and padding
        assert len(values) == 1 and values.pop() > 0, source
