"""spmamba-separate's reporting and output rate: a progress bar over the chunks of a long file on
stderr (none with --quiet), a result line with the real-time factor on stdout, and outputs
at the model's rate or resampled back to the input's.

The model is the tiny untrained one of ``test_inference`` (8 kHz, two speakers).
"""

import re
import types

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb import cli
from spmamba_sb.data.audio_io import resample
from tests.unit.test_cli_inputs import _audio, _run
from tests.unit.test_inference import RATE, write_tiny_model

# 0.25 s chunks with 0.05 s overlap: a 1 s file at 8 kHz goes in chunks starting at 0, 0.2, 0.4, 0.6, 0.75 s
SMALL_CHUNKS = ("--chunk-seconds", "0.25", "--overlap-seconds", "0.05")
NUM_CHUNKS = 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def test_long_file_shows_a_bar_over_its_chunks_on_stderr(model_dir, tmp_path, capsys):
    mix = tmp_path / "long.wav"
    _audio(RATE)(mix)
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "out", *SMALL_CHUNKS) == 0
    out, err = capsys.readouterr()
    assert f"{mix}:" in err and f"/{NUM_CHUNKS} [" in err and "chunk/s" in err
    assert "spmamba-separate: error" not in err
    [line] = out.splitlines()  # stdout holds only the result line
    assert line.startswith(f"{mix}: 1.0 s separated into 2 sources in ")


def test_quiet_prints_no_progress(model_dir, tmp_path, capsys):
    mix = tmp_path / "long.wav"
    _audio(RATE)(mix)
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "out", *SMALL_CHUNKS, "--quiet") == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"{mix}: 1.0 s separated")


def test_file_in_one_chunk_shows_no_bar(model_dir, tmp_path, capsys):
    mix = tmp_path / "short.wav"
    _audio(RATE // 4)(mix)
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "out", *SMALL_CHUNKS) == 0
    assert capsys.readouterr().err == ""


def test_result_line_gives_the_real_time_factor(model_dir, tmp_path, capsys, monkeypatch):
    mix = tmp_path / "two_seconds.wav"
    _audio(2 * RATE)(mix)
    clock = iter([100.0, 100.5])  # the file's start and end: 0.5 s for 2 s of audio
    monkeypatch.setattr(cli, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "out", "--quiet") == 0
    assert capsys.readouterr().out == f"{mix}: 2.0 s separated into 2 sources in 0.5 s (0.25x real time)\n"


def test_real_time_factor_is_time_over_duration(model_dir, tmp_path, capsys):
    mix = tmp_path / "mix.flac"
    _audio(RATE, 16000, 2, "PCM_16")(mix)  # 0.5 s
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "out", "--output-rate", "input", "--quiet") == 0
    line = capsys.readouterr().out
    found = re.fullmatch(rf"{re.escape(str(mix))}: 0\.5 s separated into 2 sources in (\d+\.\d) s "
                         r"\((\d+\.\d\d)x real time\)\n", line)
    assert found, line
    elapsed, factor = float(found[1]), float(found[2])
    assert abs(factor - elapsed / 0.5) <= 0.05 / 0.5 + 0.005  # both are rounded


@pytest.mark.parametrize("file_rate,frames,chunks", [
    (16000, 8001, ()),  # odd length: the model's 4001 samples resample back to 8002
    (44100, 22051, ()),
    (16000, 16001, SMALL_CHUNKS),  # chunked
])
def test_output_rate_input_writes_at_the_input_rate_and_length(model_dir, tmp_path, capsys, file_rate, frames,
                                                               chunks):
    mix = tmp_path / "mix.wav"
    _audio(frames, file_rate)(mix)
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "model", *chunks, "--quiet") == 0
    assert _run(mix, "--model", model_dir, "--out", tmp_path / "input", *chunks, "--quiet",
                "--output-rate", "input") == 0
    for index in (1, 2):
        at_model, model_rate = sf.read(str(tmp_path / "model" / f"mix_s{index}.wav"), dtype="float32")
        at_input, input_rate = sf.read(str(tmp_path / "input" / f"mix_s{index}.wav"), dtype="float32")
        assert model_rate == RATE and at_model.shape == (-(-frames * RATE // file_rate),)  # today's outputs
        assert input_rate == file_rate and at_input.shape == (frames,)
        np.testing.assert_allclose(at_input, resample(at_model, RATE, file_rate)[:frames], atol=1e-6)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" separated")[0] for line in lines] == [f"{mix}: {frames / file_rate:.1f} s"] * 2


def test_bad_output_rate_exits_2(model_dir, tmp_path, capsys):
    _audio()(tmp_path / "mix.wav")
    status = _run(tmp_path / "mix.wav", "--model", model_dir, "--out", tmp_path / "out", "--output-rate", "44100")
    assert status == 2 and "--output-rate: invalid choice: '44100'" in capsys.readouterr().err
