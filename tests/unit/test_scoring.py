"""The scorer and spmamba-evaluate: per-utterance metrics (signals they are undefined for raise
one error that names the problem), rows and the mean row; then scores from a CSV or a folder, the
test stage's figures, report files, errors.

The model is the tiny untrained one of ``test_inference`` (8 kHz, two speakers); the scoring
set is three short mixtures of tones and noise written in ``mix/``, ``s1/``, ``s2/`` and listed
in a CSV with ``$data_root`` paths.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from spmamba_sb import cli
from spmamba_sb.data.audio_io import read_audio
from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.losses import best_permutations
from spmamba_sb.scoring import (CORE_METRICS, UndefinedMetricsError, check_references, mean_scores, optional_metrics,
                                scores_csv, separation_metrics, utterance_metrics)
from spmamba_sb.scoring_sets import read_scoring_set, score_utterance
from tests.conftest import exit_status
from tests.unit.test_inference import RATE, write_tiny_model

ERROR = "spmamba-evaluate: error: "
IDS = ["u0", "u1", "u2"]
LENGTH = 2000


@pytest.fixture
def references():
    return torch.randn(LENGTH, 2, generator=torch.Generator().manual_seed(0))


def test_good_signals_are_scored(references):
    estimates = references + 0.1 * torch.randn(LENGTH, 2)
    metrics = separation_metrics(references.sum(1), references, estimates)
    assert list(metrics) == list(CORE_METRICS)
    assert all(torch.isfinite(torch.tensor(list(metrics.values()))))


def test_a_silent_reference_is_named(references):
    references[:, 1] = 0
    with pytest.raises(UndefinedMetricsError, match="^s2: the reference is silent"):
        separation_metrics(references.sum(1), references, torch.randn(LENGTH, 2))
    with pytest.raises(UndefinedMetricsError, match="^b.wav: the reference is silent"):
        check_references(references, ["a.wav", "b.wav"])


def test_the_mixture_given_as_both_references_is_named(references):
    mix = references.sum(1)
    twice = torch.stack([mix, mix], dim=1)
    with pytest.raises(UndefinedMetricsError, match="^s2: the reference is the same signal as s1"):
        separation_metrics(mix, twice, torch.randn(LENGTH, 2))


@pytest.mark.parametrize("estimates", [torch.zeros(LENGTH, 2), torch.full((LENGTH, 2), float("nan"))],
                         ids=["silent", "nan"])
def test_signals_bss_eval_fails_on_raise_one_error(references, estimates):
    with pytest.raises(UndefinedMetricsError, match=r"^BSS-Eval failed on the signals \(.+\)$"):
        separation_metrics(references.sum(1), references, estimates)


def test_names_must_match_the_references(references):
    with pytest.raises(ValueError, match="names has 1 entries for 2 references"):
        check_references(references, ["a.wav"])


def test_estimates_are_put_in_the_references_order(references):
    estimates = references.flip(1) + 0.1 * torch.randn(LENGTH, 2, generator=torch.Generator().manual_seed(1))
    scores, ordered = utterance_metrics(references.sum(1), references, estimates, RATE)
    torch.testing.assert_close(ordered, estimates.flip(1), rtol=0, atol=0)
    assert scores == separation_metrics(references.sum(1), references, estimates.flip(1))


def test_the_mean_row_covers_the_scored_rows_only():
    rows = [{"ID": "a", "sdr": 1.0, "sar": float("inf")}, {"ID": "b"}, {"ID": "c", "sdr": 4.0, "sar": 2.0}]
    means = mean_scores(rows, ["sdr", "sar"])
    assert means == {"sdr": 2.5, "sar": float("inf")}
    assert scores_csv(rows, ["ID", "sdr", "sar"], means).splitlines() == [
        "ID,sdr,sar", "a,1.0,inf", "b,,", "c,4.0,2.0", "mean,2.5,inf"]
    assert mean_scores([{"ID": "b"}], ["sdr"]) == {}
    assert scores_csv([{"ID": "b"}], ["ID", "sdr"], {}).splitlines() == ["ID,sdr", "b,", "mean,"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def write_scoring_set(folder, frames=RATE // 4, ids=IDS):
    """``folder/mix``, ``s1``, ``s2`` with one file per ID, and ``folder/set.csv`` listing them
    under ``$data_root``; returns the CSV's path."""
    rng = np.random.default_rng(0)
    time = np.arange(frames) / RATE
    rows = []
    for index, utterance_id in enumerate(ids):
        sources = [0.3 * np.sin(2 * np.pi * (150 + 100 * index) * (spk + 1) * time)
                   + 0.05 * rng.standard_normal(frames) for spk in range(2)]
        row = {"ID": utterance_id, "duration": frames / RATE}
        for name, signal in (("mix", sources[0] + sources[1]), ("s1", sources[0]), ("s2", sources[1])):
            os.makedirs(folder / name, exist_ok=True)
            sf.write(str(folder / name / f"{utterance_id}.wav"), signal, RATE, subtype="FLOAT")
            row[f"{name}_wav"] = f"$data_root/{name}/{utterance_id}.wav"
        rows.append(row)
    with open(folder / "set.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "set.csv"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_scoring_set(folder)
    return folder


@pytest.fixture
def without_optional_packages(monkeypatch):
    """pystoi and pesq fail to import, whether installed or not."""
    monkeypatch.setitem(sys.modules, "pystoi", None)
    monkeypatch.setitem(sys.modules, "pesq", None)


def _run(*argv):
    """``spmamba-evaluate argv`` in this process: its exit status."""
    return exit_status(cli.evaluate_main, *argv)


def _read_scores(out):
    with open(out / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _stderr_lines(stderr):
    assert "Traceback" not in stderr
    return stderr.splitlines()


def test_csv_and_folder_give_the_same_report(model_dir, data_dir, tmp_path, capsys, without_optional_packages):
    csv_status = _run(data_dir / "set.csv", "--data-root", data_dir, "--model", model_dir, "--out", tmp_path / "a",
                      "--quiet")
    folder_status = _run(data_dir, "--model", model_dir, "--out", tmp_path / "b", "--quiet")
    out, err = capsys.readouterr()
    assert csv_status == folder_status == 0 and err == ""
    assert out.splitlines()[0].startswith("3 of 3 utterances scored: si-snr ")
    from_csv, from_folder = _read_scores(tmp_path / "a"), _read_scores(tmp_path / "b")
    assert from_csv == from_folder
    assert list(from_csv[0]) == ["ID", *CORE_METRICS]  # SIR and SAR, no STOI or PESQ
    assert [row["ID"] for row in from_csv] == IDS + ["mean"]
    for name in CORE_METRICS:
        values = [float(row[name]) for row in from_csv]
        assert np.isfinite(values).all() and values[-1] == pytest.approx(np.mean(values[:-1]), abs=1e-12)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))
    assert summary["count"] == 3 and summary["failed"] == 0
    assert summary["model"] == str(model_dir) and summary["data"] == str(data_dir / "set.csv")
    assert summary["means"] == {name: float(from_csv[-1][name]) for name in CORE_METRICS}
    assert summary["settings"]["sample_rate"] == RATE and summary["settings"]["chunk_seconds"] == 8.0
    assert (tmp_path / "a" / "si_snri.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _first_channel(path):
    """A file's first channel at its own rate, float32, as the training pipelines read it."""
    return torch.from_numpy(read_audio(path, None, channels="first", dtype="float32"))


def test_scores_are_the_test_stage_figures(model_dir, data_dir, tmp_path, capsys):
    """The test stage reads the first channel of the files at their rate, separates whole
    utterances at the model's rate, aligns with ``best_permutations`` and scores with
    ``separation_metrics``: every core column is the same."""
    assert _run(data_dir, "--model", model_dir, "--out", tmp_path / "out", "--quiet") == 0
    scores = {row["ID"]: row for row in _read_scores(tmp_path / "out")}
    separator = SPMambaSeparation.from_hparams(source=str(model_dir), savedir=str(model_dir))
    for utterance_id in IDS:
        mix = _first_channel(str(data_dir / "mix" / f"{utterance_id}.wav"))
        refs = torch.stack([_first_channel(str(data_dir / f"s{spk}" / f"{utterance_id}.wav")) for spk in (1, 2)], -1)
        estimates = separator.separate_file(str(data_dir / "mix" / f"{utterance_id}.wav"))[0]
        order = best_permutations(refs[None], estimates[None])[0]
        expected = separation_metrics(mix, refs, estimates[:, list(order)])
        assert list(expected) == list(CORE_METRICS)
        assert {name: float(scores[utterance_id][name]) for name in expected} == expected


def test_multi_channel_files_are_scored_at_their_first_channel(model_dir, data_dir, tmp_path):
    """Mixture and references given a second channel of other audio score as the mono files do."""
    separator = SPMambaSeparation.from_hparams(source=str(model_dir), savedir=str(model_dir))
    [utterance] = [u for u in read_scoring_set(str(data_dir), 2).utterances if u.id == "u0"]
    noise = 0.3 * np.random.default_rng(5).standard_normal(RATE // 4)
    paths = []
    for path in (utterance.mix, *utterance.sources):
        stereo = str(tmp_path / f"{os.path.basename(os.path.dirname(path))}.wav")
        sf.write(stereo, np.stack([sf.read(path)[0], noise], 1), RATE, subtype="FLOAT")
        paths.append(stereo)
    two_channels = utterance._replace(mix=paths[0], sources=paths[1:])
    assert score_utterance(separator, two_channels) == score_utterance(separator, utterance)


def test_optional_metrics_appear_when_their_packages_import(model_dir, data_dir, tmp_path, capsys, monkeypatch):
    calls = []
    fake_stoi, fake_pesq = types.ModuleType("pystoi"), types.ModuleType("pesq")
    fake_stoi.stoi = lambda ref, est, rate: 0.5
    fake_pesq.pesq = lambda rate, ref, est, mode: calls.append((rate, mode, ref.shape)) or 2.0
    monkeypatch.setitem(sys.modules, "pystoi", fake_stoi)
    monkeypatch.setitem(sys.modules, "pesq", fake_pesq)
    assert list(optional_metrics()) == ["stoi", "pesq"]
    assert _run(data_dir, "--model", model_dir, "--out", tmp_path / "out", "--quiet") == 0
    rows = _read_scores(tmp_path / "out")
    assert list(rows[0]) == ["ID", *CORE_METRICS, "stoi", "pesq"]
    assert {(row["stoi"], row["pesq"]) for row in rows} == {("0.5", "2.0")}
    assert set(calls) == {(RATE, "nb", (RATE // 4,))}  # narrow-band at 8 kHz, one call per source


def test_optional_metrics_absent_without_their_packages(without_optional_packages):
    assert optional_metrics() == {}


def test_long_mixtures_go_in_the_given_chunks(model_dir, data_dir, tmp_path, capsys, monkeypatch):
    seen = []
    separate_file = SPMambaSeparation.separate_file

    def spy(self, path, chunk_seconds, overlap_seconds, **kwargs):
        seen.append((os.path.basename(path), chunk_seconds, overlap_seconds))
        return separate_file(self, path, chunk_seconds, overlap_seconds, **kwargs)

    monkeypatch.setattr(SPMambaSeparation, "separate_file", spy)
    argv = [data_dir, "--model", model_dir, "--out", tmp_path / "out", "--quiet"]
    assert _run(*argv, "--chunk-seconds", "0.1", "--overlap-seconds", "0.02") == 0
    assert seen == [(f"{utterance_id}.wav", 0.1, 0.02) for utterance_id in IDS]
    assert all(np.isfinite(float(row["si-snr"])) for row in _read_scores(tmp_path / "out"))


def test_progress_bar_over_utterances_unless_quiet(model_dir, data_dir, tmp_path, capsys):
    assert _run(data_dir, "--model", model_dir, "--out", tmp_path / "out") == 0
    assert "scoring: 100%" in capsys.readouterr().err


def test_unscorable_utterances_give_one_line_each_and_exit_1(model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    write_scoring_set(data)
    (data / "s2" / "u1.wav").unlink()
    sf.write(str(data / "s1" / "u2.wav"), np.zeros(RATE // 8), RATE)
    status = _run(data, "--model", model_dir, "--out", tmp_path / "out", "--quiet")
    assert status == 1
    assert _stderr_lines(capsys.readouterr().err) == [
        f"{ERROR}u1: {data / 's2' / 'u1.wav'}: cannot read audio (No such file or directory)",
        f"{ERROR}u2: {data / 's1' / 'u2.wav'}: 1000 samples at the model's rate, "
        f"the mixture {data / 'mix' / 'u2.wav'} has 2000",
    ]
    assert [row["ID"] for row in _read_scores(tmp_path / "out")] == ["u0", "mean"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["failed"] == 2


def _strict_json(path):
    """``path`` read as strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` fail the test."""
    def not_json(constant):
        pytest.fail(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=not_json)


def test_undefined_scores_lose_only_their_utterance(model_dir, tmp_path, capsys):
    """A silent reference or the mixture given as both references made BSS-Eval raise, and the
    whole evaluation ended with nothing written; a silent mixture (the model's estimates silent
    too) fails inside BSS-Eval."""
    data = tmp_path / "data"
    write_scoring_set(data, ids=IDS + ["u3"])
    sf.write(str(data / "s2" / "u1.wav"), np.zeros(RATE // 4), RATE, subtype="FLOAT")
    for name in ("s1", "s2"):
        shutil.copyfile(data / "mix" / "u2.wav", data / name / "u2.wav")
    sf.write(str(data / "mix" / "u3.wav"), np.zeros(RATE // 4), RATE, subtype="FLOAT")
    assert _run(data, "--model", model_dir, "--out", tmp_path / "out", "--quiet") == 1
    captured = capsys.readouterr()
    lines = _stderr_lines(captured.err)
    assert lines[:2] == [
        f"{ERROR}u1: {data / 's2' / 'u1.wav'}: the reference is silent (all zeros), so its scores are undefined",
        f"{ERROR}u2: {data / 's2' / 'u2.wav'}: the reference is the same signal as {data / 's1' / 'u2.wav'}, "
        "so BSS-Eval is undefined",
    ]
    assert len(lines) == 3 and lines[2].startswith(f"{ERROR}u3: {data / 'mix' / 'u3.wav'}: the metrics cannot be "
                                                   "computed ("), lines
    assert captured.out.startswith("1 of 4 utterances scored: ")
    assert [row["ID"] for row in _read_scores(tmp_path / "out")] == ["u0", "mean"]
    assert _strict_json(tmp_path / "out" / "summary.json")["failed"] == 3


def test_scores_that_are_not_finite_are_null_in_summary_json(model_dir, tmp_path, capsys):
    """BSS-Eval's 512-tap filter fits a 300-sample utterance exactly: SAR is infinite."""
    write_scoring_set(tmp_path / "data", frames=300)
    assert _run(tmp_path / "data", "--model", model_dir, "--out", tmp_path / "out", "--quiet") == 0
    scores = _read_scores(tmp_path / "out")
    assert "inf" in {row["sar"] for row in scores}  # the CSV keeps Python's text for it
    summary = _strict_json(tmp_path / "out" / "summary.json")
    assert summary["means"]["sar"] is None
    assert summary["means"]["si-snr"] == pytest.approx(float(scores[-1]["si-snr"]), abs=0)


def test_malformed_rows_give_one_line_each_and_the_others_are_scored(model_dir, tmp_path, capsys):
    """A row with too few fields gave a TypeError traceback."""
    csv_path = write_scoring_set(tmp_path / "data")
    good_row = csv_path.read_text(encoding="utf-8").splitlines()[1]  # u0
    with open(csv_path, "a", encoding="utf-8") as handle:
        handle.write("u4,0.25,$data_root/mix/u0.wav\n")  # line 5
        handle.write(good_row.replace("u0,", "u5,", 1) + ",extra\n")  # line 6
        handle.write(good_row + "\n")  # line 7: u0 again
        handle.write(good_row.replace("u0,", "u7,", 1).replace("$data_root/mix/u0.wav", "") + "\n")  # line 8
    status = _run(csv_path, "--data-root", tmp_path / "data", "--model", model_dir, "--out", tmp_path / "out",
                  "--quiet")
    captured = capsys.readouterr()
    assert status == 1
    assert _stderr_lines(captured.err) == [
        f"{ERROR}{csv_path}: line 5: 3 fields, the header has 5",
        f"{ERROR}{csv_path}: line 6: 6 fields, the header has 5",
        f"{ERROR}{csv_path}: line 7: ID u0 is on line 2 already",
        f"{ERROR}{csv_path}: line 8: empty mix_wav",
    ]
    assert captured.out.startswith("3 of 7 utterances scored: ")
    assert [row["ID"] for row in _read_scores(tmp_path / "out")] == IDS + ["mean"]
    assert _strict_json(tmp_path / "out" / "summary.json")["failed"] == 4


def _no_csv(folder):
    return folder / "nowhere.csv", "nowhere.csv: no such CSV or folder"


def _no_s2_folder(folder):
    write_scoring_set(folder)
    for name in os.listdir(folder / "s2"):
        os.remove(folder / "s2" / name)
    os.rmdir(folder / "s2")
    return folder, "no s2/ subfolder (the model has 2 sources)"


def _no_s2_column(folder):
    folder.mkdir()
    path = folder / "set.csv"
    path.write_text("ID,mix_wav,s1_wav\nu0,a.wav,b.wav\n", encoding="utf-8")
    return path, "missing columns s2_wav (the model has 2 sources)"


def _data_root_not_given(folder):
    return write_scoring_set(folder), "line 2: $data_root/mix/u0.wav uses $data_root, which has no value " \
                                      "(give --data-root)"


def _empty_folder(folder):
    for name in ("mix", "s1", "s2"):
        os.makedirs(folder / name)
    return folder, "no mixtures to score"


@pytest.mark.parametrize("make", [_no_csv, _no_s2_folder, _no_s2_column, _data_root_not_given, _empty_folder])
def test_bad_data_exits_1_with_one_line(model_dir, tmp_path, capsys, make):
    data, problem = make(tmp_path / "data")
    status = _run(data, "--model", model_dir, "--out", tmp_path / "out")
    [line] = _stderr_lines(capsys.readouterr().err)
    assert status == 1 and line.startswith(f"{ERROR}{data}") and problem in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,status,problem", [
    (["--model", "{tmp}/nowhere"], 1, "--model {tmp}/nowhere: no such folder"),
    (["--model", "{model}", "--chunk-seconds", "0"], 2, "chunk_seconds must be at least one STFT frame"),
    (["--model", "{model}", "--out", "{tmp}/file"], 1, "--out {tmp}/file: cannot create the folder (File exists)"),
])
def test_bad_arguments_exit_as_spmamba_separate_does(model_dir, data_dir, tmp_path, capsys, argv, status, problem):
    (tmp_path / "file").write_text("a file")
    argv = [arg.format(tmp=tmp_path, model=model_dir) for arg in argv]
    out = [] if "--out" in argv else ["--out", tmp_path / "out"]
    assert _run(data_dir, *argv, *out) == status
    lines = _stderr_lines(capsys.readouterr().err)
    assert problem.format(tmp=tmp_path) in lines[-1], lines
    assert lines[-1].startswith("spmamba-evaluate: error: "), lines  # argparse's usage error says so too
    assert not (tmp_path / "out").exists()


def test_read_scoring_set_keeps_csv_order(data_dir):
    utterances, malformed = read_scoring_set(str(data_dir / "set.csv"), 2, data_root="/data")
    assert [u.id for u in utterances] == IDS and malformed == []
    assert utterances[1].mix == "/data/mix/u1.wav" and utterances[1].sources == ["/data/s1/u1.wav", "/data/s2/u1.wav"]


@pytest.mark.slow  # the console script in a process of its own
def test_console_script(model_dir, data_dir, tmp_path):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "spmamba-evaluate"), str(data_dir), "--model", str(model_dir),
         "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("3 of 3 utterances scored: ")
    assert sorted(os.listdir(tmp_path / "out")) == ["scores.csv", "si_snri.png", "summary.json"]
