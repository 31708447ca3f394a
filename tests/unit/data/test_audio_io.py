"""Reading with resampling, crops and the two channel rules, unreadable files, atomic audio writes."""

import errno
import logging
import os

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb.data import audio_io
from spmamba_sb.data.audio_io import (UnreadableAudioError, audio_info, read_audio, resample, write_audio,
                                      write_audio_atomic)
from spmamba_sb.outputs import PARTIAL_SUFFIX, write_file, write_text_atomic

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (a device always full)")


def _peak_frequency(signal, rate):
    spectrum = np.abs(np.fft.rfft(signal))
    return np.fft.rfftfreq(signal.shape[0], 1 / rate)[np.argmax(spectrum)]


@pytest.mark.parametrize("file_rate", [8000, 22050, 44100])
def test_read_audio_resamples_to_the_requested_rate(tmp_path, file_rate):
    time = np.arange(file_rate) / file_rate  # 1 s
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * time), file_rate, subtype="FLOAT")
    audio = read_audio(path, 16000)
    assert audio.dtype == np.float64 and audio.shape == (16000,)
    assert abs(_peak_frequency(audio, 16000) - 440) <= 1.0
    assert abs(np.max(np.abs(audio[1000:-1000])) - 0.5) < 0.01


def test_read_audio_averages_channels_by_default(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([np.full(100, 0.2), np.full(100, 0.4)], 1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path, 8000), 0.3, atol=1e-7)
    np.testing.assert_allclose(read_audio(path, 8000, channels="mean"), 0.3, atol=1e-7)


def test_read_audio_takes_the_first_channel_of_a_crop_at_the_files_rate(tmp_path):
    path = tmp_path / "array.wav"
    ramp = np.arange(300) / 1000
    sf.write(path, np.stack([ramp, -ramp, np.full(300, np.nan)], 1), 8000, subtype="FLOAT")
    first = read_audio(path, None, channels="first", start=100, stop=250, dtype="float32")
    assert first.dtype == np.float32 and first.flags.c_contiguous
    np.testing.assert_array_equal(first, ramp[100:250].astype(np.float32))  # a NaN in another channel is not read
    assert read_audio(path, 16000, channels="first", stop=100).shape == (200,)
    with pytest.raises(UnreadableAudioError, match="NaN") as error:
        read_audio(path, None, channels="mean")
    assert error.value.problem == "contains NaN or Inf samples"
    with pytest.raises(UnreadableAudioError, match="no samples"):
        read_audio(path, None, channels="first", start=300)
    with pytest.raises(ValueError, match="channels must be one of 'first', 'mean', got 'last'"):
        read_audio(path, None, channels="last")


def test_each_rule_is_logged_once_for_the_first_multi_channel_file(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(audio_io, "_RULES_LOGGED", set())
    sf.write(tmp_path / "mono.wav", np.zeros(10), 8000)
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", np.zeros((10, 4)), 8000)
    with caplog.at_level(logging.INFO, logger="spmamba_sb.data.audio_io"):
        for name in ("mono", "a", "b"):
            read_audio(tmp_path / f"{name}.wav", 8000, channels="first")
            read_audio(tmp_path / f"{name}.wav", 8000, channels="mean")
    assert [record.getMessage() for record in caplog.records] == [
        f"multi-channel audio is read as {audio_io.CHANNEL_RULES[rule]} (channels='{rule}'); first such file: "
        f"{tmp_path / 'a.wav'} (4 channels); logged once" for rule in ("first", "mean")
    ]


def test_audio_info_names_an_unreadable_file(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros((10, 2)), 8000)
    assert (audio_info(tmp_path / "a.wav").frames, audio_info(tmp_path / "a.wav").channels) == (10, 2)
    with pytest.raises(UnreadableAudioError) as error:
        audio_info(tmp_path / "missing.wav")
    assert str(error.value) == f"{tmp_path / 'missing.wav'}: cannot read audio (No such file or directory)"
    assert error.value.problem == "cannot read audio (No such file or directory)"


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"fLaC garbage" * 20])
def test_undecodable_files_raise_unreadable(tmp_path, content):
    path = tmp_path / "bad.flac"
    path.write_bytes(content)
    with pytest.raises(UnreadableAudioError, match="bad.flac"):
        read_audio(path, 16000)


def test_missing_empty_and_nan_files_raise_unreadable(tmp_path):
    with pytest.raises(UnreadableAudioError, match="cannot read"):
        read_audio(tmp_path / "missing.wav", 16000)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 8000)
    with pytest.raises(UnreadableAudioError, match="no samples"):
        read_audio(tmp_path / "empty.wav", 8000)
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.0]), 8000, subtype="FLOAT")
    with pytest.raises(UnreadableAudioError, match="NaN"):
        read_audio(tmp_path / "nan.wav", 8000)


def test_atomic_write_round_trips_float_exactly_and_leaves_no_partial_file(tmp_path):
    signal = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32)
    write_audio_atomic(tmp_path / "x.wav", signal, 8000)
    data, rate = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)
    assert rate == 8000 and np.array_equal(data.T, signal)
    # no PEAK chunk: it carries a timestamp, which would make identical audio give different bytes
    assert b"PEAK" not in (tmp_path / "x.wav").read_bytes()[:200]
    write_text_atomic(tmp_path / "x.json", "{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.json", "x.wav"]
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))


def test_write_rejects_unknown_extension_and_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\.wav or \.flac"):
        write_audio_atomic(tmp_path / "x.mp3", np.zeros(10), 8000)
    with pytest.raises(ValueError, match=r"\[L\] or \[C, L\]"):
        write_audio_atomic(tmp_path / "x.wav", np.zeros((1, 2, 3)), 8000)


def test_resample_checks_rates():
    assert resample(np.ones(10), 8000, 8000).shape == (10,)
    with pytest.raises(ValueError, match="source_rate=0"):
        resample(np.ones(10), 0, 8000)


@needs_dev_full
def test_a_full_disk_is_an_os_error_naming_the_file(tmp_path):
    """libsndfile's own error (a LibsndfileError, "System error") becomes OSError(ENOSPC)."""
    os.symlink("/dev/full", tmp_path / "full.wav")
    with pytest.raises(OSError) as raised:
        write_audio(tmp_path / "full.wav", np.zeros(1000), 8000)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(tmp_path / "full.wav"))
    with pytest.raises(OSError) as raised:
        write_file("/dev/full", b"x" * 100)  # Python leaves the file out of a failed write
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, "/dev/full")


@needs_dev_full
def test_atomic_write_on_a_full_disk_leaves_nothing(tmp_path):
    os.symlink("/dev/full", tmp_path / f"x.wav{PARTIAL_SUFFIX}")  # where the temporary file goes
    with pytest.raises(OSError) as raised:
        write_audio_atomic(tmp_path / "x.wav", np.zeros(1000), 8000)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(tmp_path / "x.wav"))
    assert os.listdir(tmp_path) == []
