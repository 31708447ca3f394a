"""spmamba-separate over awkward inputs: each file gives correct output, or one error line naming it.

Inputs are written in tmp_path with soundfile; the model is the tiny untrained one of
``test_inference`` (8 kHz, two speakers, one STFT frame = 64 samples).
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb import cli
from tests.conftest import exit_status
from tests.unit.test_inference import N_FFT, RATE, write_tiny_model

ERROR = "spmamba-separate: error: "


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def _signal(frames, channels, rate, seed=0):
    """[frames, channels]: a different tone per channel plus a little noise, peak below 0.5."""
    time = np.arange(frames)[:, None] / rate
    tones = 0.3 * np.sin(2 * np.pi * 200 * (1 + np.arange(channels)) * time)
    return tones + 0.05 * np.random.default_rng(seed).standard_normal((frames, channels))


def _audio(frames=RATE // 4, rate=RATE, channels=1, subtype="FLOAT", data=None):
    """A writer of an audio file (``data`` [frames] or [frames, channels], else ``_signal``);
    it returns the number of frames written."""
    def write(path):
        samples = _signal(frames, channels, rate) if data is None else data
        sf.write(path, samples, rate, subtype=subtype)
        return len(samples)
    return write


def _bytes(content):
    def write(path):
        path.write_bytes(content)
    return write


def _edited(writer, edit):
    """A file written by ``writer``, then its bytes changed by ``edit``."""
    def write(path):
        writer(path)
        path.write_bytes(edit(path.read_bytes()))
    return write


def _first_half(content):
    return content[:len(content) // 2]


def _zero_middle(content):
    middle = len(content) // 2
    return content[:middle] + bytes(64) + content[middle + 64:]


def _overwrite(offset, replacement):
    """An edit putting ``replacement`` at ``offset`` (in a wav's header: 20 format code, 22 channels)."""
    return lambda content: content[:offset] + replacement + content[offset + len(replacement):]


def _truncated_wav(path):
    """A valid wav cut in half: libsndfile reads the frames that are there."""
    _edited(_audio(subtype="PCM_16"), _first_half)(path)
    return sf.info(str(path)).frames


# Separated: (name, writer of the input returning its frame count). Together they cover
# every rate (8 / 22.05 / 44.1 / 48 kHz), subtype (int16 / int32 / float32) and channel count (1, 2, 6).
GOOD = [
    ("pcm16_8k_mono.wav", _audio(subtype="PCM_16")),
    ("pcm32_22k_stereo.wav", _audio(RATE // 4 * 3, 22050, 2, "PCM_32")),
    ("float_44k_6ch.wav", _audio(11025, 44100, 6, "FLOAT")),
    ("pcm16_48k_stereo.wav", _audio(12000, 48000, 2, "PCM_16")),
    ("pcm32_8k_6ch.wav", _audio(channels=6, subtype="PCM_32")),
    ("pcm16_22k_mono.flac", _audio(5513, 22050, 1, "PCM_16")),
    ("pcm24_48k_6ch.flac", _audio(12000, 48000, 6, "PCM_24")),
    ("pcm16_44k_stereo.flac", _audio(11025, 44100, 2, "PCM_16")),
    ("all_zero.wav", _audio(data=np.zeros(RATE // 4))),
    ("clipped_full_scale.wav", _audio(data=np.clip(3 * _signal(RATE // 4, 1, RATE), -1, 1), subtype="PCM_16")),
    ("beyond_full_scale_float.wav", _audio(data=np.sign(_signal(RATE // 4, 1, RATE)) * 4)),
    ("one_stft_frame.wav", _audio(frames=N_FFT)),
    ("truncated.wav", _truncated_wav),
]

# Refused: (name, writer or None for a path left missing, the problem the error line must state).
BAD = [
    ("missing.wav", None, "cannot read audio (No such file or directory)"),
    ("folder", lambda path: path.mkdir(), "cannot read audio (Is a directory)"),
    ("notes.txt", _bytes(b"not audio\n" * 20), "cannot read audio (Format not recognised)"),
    ("text_named.wav", _bytes(b"not audio\n" * 20), "cannot read audio (Format not recognised)"),
    ("header_no_channels.wav", _edited(_audio(subtype="PCM_16"), _overwrite(22, b"\0\0")), "Channel count is zero"),
    ("header_bad_format.wav", _edited(_audio(subtype="PCM_16"), _overwrite(20, b"\x99\x99")),
     "Malformed 'fmt ' chunk"),
    ("truncated.flac", _edited(_audio(RATE, subtype="PCM_16"), _first_half), "cannot read audio"),
    ("corrupted.flac", _edited(_audio(RATE, subtype="PCM_16"), _zero_middle), "cannot read audio"),
    ("empty.wav", _bytes(b""), "cannot read audio (empty file)"),
    ("zero_frames.wav", _audio(data=np.zeros(0)), "no samples"),
    ("three_samples.wav", _audio(data=np.array([0.1, -0.2, 0.3])), "input has 3 samples, shorter than one STFT frame"),
    ("short_after_resampling.wav", _audio(100, 48000), "input has 17 samples, shorter than one STFT frame"),
    ("nan.wav", _audio(data=np.where(np.arange(2000) == 7, np.nan, 0.1)), "contains NaN or Inf samples"),
    ("inf.wav", _audio(data=np.where(np.arange(2000) == 7, -np.inf, 0.1)), "contains NaN or Inf samples"),
    ("near_float32_max.wav", _audio(data=np.sign(_signal(2000, 1, RATE)) * 1e38),
     "the separated audio has NaN or Inf samples"),
]


def _run(*argv):
    """``spmamba-separate argv`` in this process: its exit status."""
    return exit_status(cli.separate_main, *argv)


def _stderr_lines(stderr):
    """The lines of ``stderr``, checking it holds no traceback."""
    assert "Traceback" not in stderr
    return stderr.splitlines()


@pytest.mark.parametrize("name,write", GOOD, ids=[name for name, _ in GOOD])
def test_separable_inputs_give_one_finite_float_wav_per_source(model_dir, tmp_path, capsys, name, write):
    path = tmp_path / name
    frames = write(path)
    file_rate = sf.info(str(path)).samplerate
    status = _run(path, "--model", model_dir, "--out", tmp_path / "out")
    out, err = capsys.readouterr()
    assert status == 0 and _stderr_lines(err) == [], err
    assert out.startswith(f"{path}: ")
    stem = os.path.splitext(name)[0]
    assert sorted(os.listdir(tmp_path / "out")) == [f"{stem}_s1.wav", f"{stem}_s2.wav"]
    for index in (1, 2):
        info = sf.info(str(tmp_path / "out" / f"{stem}_s{index}.wav"))
        data, rate = sf.read(str(tmp_path / "out" / f"{stem}_s{index}.wav"), dtype="float32")
        assert rate == RATE and info.subtype == "FLOAT"
        assert data.shape == (math.ceil(frames * RATE / file_rate),) and np.isfinite(data).all()
        if name == "all_zero.wav":
            assert not data.any()


@pytest.mark.parametrize("name,write,problem", BAD, ids=[name for name, _, _ in BAD])
def test_bad_inputs_give_one_error_line_naming_the_file(model_dir, tmp_path, capsys, name, write, problem):
    path = tmp_path / name
    if write is not None:
        write(path)
    status = _run(path, "--model", model_dir, "--out", tmp_path / "out")
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    [line] = _stderr_lines(err)
    assert line.startswith(f"{ERROR}{path}: ") and problem in line, line
    assert os.listdir(tmp_path / "out") == []


def test_one_bad_file_does_not_stop_the_others(model_dir, tmp_path, capsys):
    first, missing, nan, last = (tmp_path / name for name in ("first.wav", "missing.wav", "nan.wav", "last.flac"))
    _audio()(first)
    _audio(data=np.full(RATE // 4, np.nan))(nan)
    _audio(RATE // 4, 16000, 2, "PCM_16")(last)
    status = _run(first, missing, nan, last, "--model", model_dir, "--out", tmp_path / "out")
    out, err = capsys.readouterr()
    assert status == 1
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(first), str(last)]
    assert [line[len(ERROR):].split(": ")[0] for line in _stderr_lines(err)] == [str(missing), str(nan)]
    assert sorted(os.listdir(tmp_path / "out")) == ["first_s1.wav", "first_s2.wav", "last_s1.wav", "last_s2.wav"]


def test_existing_outputs_are_kept_without_overwrite(model_dir, tmp_path, capsys, monkeypatch):
    mix, out_dir = tmp_path / "mix.wav", tmp_path / "out"
    _audio()(mix)
    out_dir.mkdir()
    (out_dir / "mix_s2.wav").write_bytes(b"keep me")

    def must_not_run(*args, **kwargs):
        raise AssertionError("separated although its output exists")

    with monkeypatch.context() as patch:
        patch.setattr(cli.SPMambaSeparation, "separate_file", must_not_run)
        status = _run(mix, "--model", model_dir, "--out", out_dir)
    [line] = _stderr_lines(capsys.readouterr().err)
    assert status == 1
    assert line == f"{ERROR}{mix}: {out_dir / 'mix_s2.wav'} exists already (use --overwrite to replace it)"
    assert (out_dir / "mix_s2.wav").read_bytes() == b"keep me" and not (out_dir / "mix_s1.wav").exists()

    assert _run(mix, "--model", model_dir, "--out", out_dir, "--overwrite") == 0
    assert sf.info(str(out_dir / "mix_s2.wav")).frames == RATE // 4


def test_inputs_with_the_same_name_do_not_replace_each_other(model_dir, tmp_path, capsys):
    first, second = tmp_path / "a.wav", tmp_path / "other" / "a.flac"
    second.parent.mkdir()
    _audio()(first)
    _audio(RATE // 2, subtype="PCM_16")(second)
    status = _run(first, second, "--model", model_dir, "--out", tmp_path / "out", "--overwrite")
    [line] = _stderr_lines(capsys.readouterr().err)
    assert status == 1 and line.startswith(f"{ERROR}{second}: ") and "earlier input of this run" in line
    assert sf.info(str(tmp_path / "out" / "a_s1.wav")).frames == RATE // 4  # the first input's


def _missing(folder):
    return folder / "nowhere"


def _incomplete(folder):
    (folder / "masknet.ckpt").unlink()
    return folder


def _corrupt(folder):
    (folder / "masknet.ckpt").write_bytes(b"junk")
    return folder


@pytest.mark.parametrize("damage,problem", [
    (_missing, "no such folder"),
    (_incomplete, "not a model folder (no masknet.ckpt)"),
    (_corrupt, "cannot load it on device cpu"),
])
def test_bad_model_folder_exits_1_with_one_line(tmp_path, capsys, damage, problem):
    model = damage(write_tiny_model(tmp_path / "model"))
    _audio()(tmp_path / "mix.wav")
    status = _run(tmp_path / "mix.wav", "--model", model, "--out", tmp_path / "out")
    [line] = _stderr_lines(capsys.readouterr().err)
    assert status == 1 and line.startswith(f"{ERROR}--model {model}: ") and problem in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings,problem", [
    (["--chunk-seconds", "0"], "chunk_seconds must be at least one STFT frame"),
    (["--chunk-seconds", "nan"], "chunk_seconds must be at least one STFT frame"),
    (["--overlap-seconds", "0"], "overlap_seconds must be between one sample"),
    (["--chunk-seconds", "4", "--overlap-seconds", "3"], "overlap_seconds must be between one sample"),
])
def test_bad_chunk_settings_exit_2(model_dir, tmp_path, capsys, settings, problem):
    _audio()(tmp_path / "mix.wav")
    status = _run(tmp_path / "mix.wav", "--model", model_dir, "--out", tmp_path / "out", *settings)
    lines = _stderr_lines(capsys.readouterr().err)
    assert status == 2 and lines[0].startswith("usage: spmamba-separate")
    assert lines[-1].startswith(f"{ERROR}--chunk-seconds / --overlap-seconds: ") and problem in lines[-1]
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_exits_1(model_dir, tmp_path, capsys):
    _audio()(tmp_path / "mix.wav")
    (tmp_path / "out").write_text("a file")
    status = _run(tmp_path / "mix.wav", "--model", model_dir, "--out", tmp_path / "out")
    assert status == 1 and _stderr_lines(capsys.readouterr().err) == [
        f"{ERROR}--out {tmp_path / 'out'}: cannot create the folder (File exists)"]


@pytest.mark.slow  # the console script in a process of its own
def test_console_script_with_a_good_and_a_bad_file(model_dir, tmp_path):
    good, bad = tmp_path / "good.flac", tmp_path / "bad.wav"
    _audio(RATE // 2, 16000, 2, "PCM_16")(good)
    bad.write_text("not audio")
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "spmamba-separate"), str(bad), str(good),
         "--model", str(model_dir), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{ERROR}{bad}: cannot read audio (Format not recognised)"]
    assert result.stdout.startswith(f"{good}: ") and "separated into 2 sources" in result.stdout
    data, rate = sf.read(str(tmp_path / "out" / "good_s2.wav"))
    assert rate == RATE and data.shape == (RATE // 4,) and np.isfinite(data).all()
