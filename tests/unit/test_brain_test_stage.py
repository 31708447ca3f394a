"""SeparationBrain's test stage: it scores with spmamba-evaluate's scorer (the same columns and
figures), one utterance that cannot be scored costs only itself, and ``test_results.csv`` is
written whole or not at all; a validation utterance shorter than one STFT frame is named."""

import csv
import errno
import logging
import os

import pytest
import soundfile as sf
import speechbrain as sb
import torch

import spmamba_sb.brain
import spmamba_sb.outputs
from spmamba_sb.data.pipelines import SeparationDataError, separation_datasets
from spmamba_sb.scoring import CORE_METRICS, utterance_metrics
from tests.unit.test_brain import _batch, _brain, _hparams

SAMPLE_RATE = 16000
LENGTH = 800  # samples of a scorable utterance (longer than the 512-tap BSS-Eval filter)
SHORT = 40  # samples, fewer than the tiny model's n_fft (64)


def _write_test_set(folder):
    """A test CSV with a good row, a silent reference, the mixture given as both references and a
    mixture shorter than one STFT frame."""
    generator = torch.Generator().manual_seed(0)
    s1, s2 = torch.randn(2, LENGTH, generator=generator) * 0.2
    rows = {
        "good": (s1 + s2, s1, s2),
        "silent": (s1, s1, torch.zeros(LENGTH)),
        "twice": (s1 + s2, s1 + s2, s1 + s2),
        "short": (s1[:SHORT] + s2[:SHORT], s1[:SHORT], s2[:SHORT]),
    }
    folder.mkdir(parents=True)
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "duration", "mix_wav", "s1_wav", "s2_wav"])
        for row_id, signals in rows.items():
            paths = [str(folder / f"{row_id}_{name}.wav") for name in ("mix", "s1", "s2")]
            for path, signal in zip(paths, signals):
                sf.write(path, signal.numpy(), SAMPLE_RATE, subtype="FLOAT")
            writer.writerow([row_id, signals[0].shape[0] / SAMPLE_RATE, *paths])
    return str(folder / "test.csv")


def _read_results(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_unscorable_utterances_cost_only_themselves(tmp_path, caplog):
    hparams = _hparams(tmp_path, num_test_plots=4)
    (test_data,) = separation_datasets([_write_test_set(tmp_path / "data")], 2, SAMPLE_RATE)
    brain = _brain(hparams)
    with caplog.at_level(logging.WARNING, logger="spmamba_sb.brain"):
        brain.evaluate(test_data, test_loader_kwargs={"batch_size": 1})

    results = _read_results(os.path.join(hparams["output_folder"], "test_results.csv"))
    assert list(results[0]) == ["ID", *CORE_METRICS]  # spmamba-evaluate's scores.csv columns
    rows = {row["ID"]: row for row in results}
    assert list(rows) == ["good", "silent", "twice", "short", "mean"]
    good = [float(rows["good"][key]) for key in CORE_METRICS]
    assert all(torch.isfinite(torch.tensor(good)))
    assert [float(rows["mean"][key]) for key in CORE_METRICS] == good  # the mean covers the scored row only
    for row_id in ("silent", "twice", "short"):
        assert [rows[row_id][key] for key in CORE_METRICS] == [""] * len(CORE_METRICS)
    warnings = {record.getMessage() for record in caplog.records if record.name == "spmamba_sb.brain"}
    assert warnings == {
        "test utterance silent left out of the means: s2: the reference is silent (all zeros), "
        "so its scores are undefined",
        "test utterance twice left out of the means: s2: the reference is the same signal as s1, "
        "so BSS-Eval is undefined",
        f"test utterance short left out of the means: {SHORT} samples, shorter than one STFT frame (n_fft=64)",
    }
    assert os.listdir(os.path.join(hparams["output_folder"], "test_plots")) == ["good.png"]
    with open(os.path.join(hparams["output_folder"], "train_log.txt"), encoding="utf-8") as handle:
        test_line = handle.read().splitlines()[-1]
    assert "test scored: 1" in test_line and "test left_out: 3" in test_line, test_line


def test_a_short_utterance_padded_in_a_test_batch_is_left_out(tmp_path, monkeypatch, caplog):
    brain = _brain(_hparams(tmp_path, num_test_plots=0))
    batch = _batch(lengths=(SHORT, 3000))
    sources = torch.stack([batch.s1_sig.data, batch.s2_sig.data], dim=-1)
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda mix, *modules: sources + 0.1 * torch.randn_like(sources))
    brain.on_stage_start(sb.Stage.TEST)
    with caplog.at_level(logging.WARNING, logger="spmamba_sb.brain"):
        brain.evaluate_batch(batch, sb.Stage.TEST)
    assert [sorted(row) for row in brain.test_rows] == [["ID"], sorted(["ID", *CORE_METRICS])]
    assert [record.getMessage() for record in caplog.records if record.name == "spmamba_sb.brain"] == [
        f"test utterance u0 left out of the means: {SHORT} samples, shorter than one STFT frame (n_fft=64)"
    ]


def test_with_no_utterance_scored_the_mean_row_is_empty(tmp_path, monkeypatch):
    hparams = _hparams(tmp_path)
    brain = _brain(hparams)
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda *args: pytest.fail("a too short batch was separated"))
    brain.on_stage_start(sb.Stage.TEST)
    assert torch.isnan(brain.evaluate_batch(_batch(lengths=(SHORT,)), sb.Stage.TEST))
    brain.on_stage_end(sb.Stage.TEST, float("nan"))
    results = _read_results(os.path.join(hparams["output_folder"], "test_results.csv"))
    empty = dict.fromkeys(CORE_METRICS, "")
    assert results == [{"ID": "u0", **empty}, {"ID": "mean", **empty}]


def test_rows_are_the_scorers_figures_per_utterance(tmp_path, monkeypatch):
    """A padded batch is scored utterance by utterance, each trimmed to its length, exactly as
    ``utterance_metrics`` (spmamba-evaluate's scorer) scores it alone."""
    brain = _brain(_hparams(tmp_path, num_test_plots=0))
    batch = _batch(lengths=(2000, 3000))
    sources = torch.stack([batch.s1_sig.data, batch.s2_sig.data], dim=-1)
    estimates = sources.flip(-1) + 0.1 * torch.randn(sources.shape, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda mix, *modules: estimates)
    brain.on_stage_start(sb.Stage.TEST)
    brain.evaluate_batch(batch, sb.Stage.TEST)
    for index, (row, length) in enumerate(zip(brain.test_rows, (2000, 3000))):
        alone = utterance_metrics(batch.mix_sig.data[index, :length], sources[index, :length],
                                  estimates[index, :length], SAMPLE_RATE)
        assert row == {"ID": f"u{index}", **alone.scores}


def test_a_failed_write_leaves_the_previous_results_intact(tmp_path, monkeypatch):
    hparams = _hparams(tmp_path, num_test_plots=0)
    path = os.path.join(hparams["output_folder"], "test_results.csv")
    with open(path, "wb") as handle:
        handle.write(b"ID,si-snr,si-snr_i,sdr,sdr_i\r\nold,1,2,3,4\r\nmean,1,2,3,4\r\n")
    before, files_before = open(path, "rb").read(), sorted(os.listdir(hparams["output_folder"]))
    brain = _brain(hparams)
    batch = _batch(lengths=(3000,))
    sources = torch.stack([batch.s1_sig.data, batch.s2_sig.data], dim=-1)
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda mix, *modules: sources + 0.1 * torch.randn_like(sources))
    brain.on_stage_start(sb.Stage.TEST)
    brain.evaluate_batch(batch, sb.Stage.TEST)

    def disk_full(partial, content):
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(content[:10])
        raise OSError(errno.ENOSPC, "No space left on device", str(partial))

    monkeypatch.setattr(spmamba_sb.outputs, "write_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        brain.on_stage_end(sb.Stage.TEST, 0.0)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(hparams["output_folder"])) == files_before  # no partial file left


def test_a_validation_utterance_shorter_than_one_frame_is_named(tmp_path, monkeypatch):
    brain = _brain(_hparams(tmp_path))
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda *args: pytest.fail("a too short batch was separated"))
    brain.on_stage_start(sb.Stage.VALID)
    with pytest.raises(SeparationDataError,
                       match=f"^validation utterance u0: {SHORT} samples, shorter than one STFT frame \\(n_fft=64\\)$"):
        brain.evaluate_batch(_batch(lengths=(SHORT,)), sb.Stage.VALID)
