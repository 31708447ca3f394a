"""Model folders: loading (ours and SpeechBrain's stock interface), files, long recordings."""

import logging
import platform
import re
from functools import partial

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.inference.separation import SepformerSeparation

from spmamba_sb.data import audio_io
from spmamba_sb.data.audio_io import read_audio, resample
from spmamba_sb.cli import keep_freed_memory
from spmamba_sb.inference import AudioInputError, SPMambaSeparation
from spmamba_sb.model_folder import write_model_folder
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Encoder, MaskNet

RATE = 8000
N_FFT = 64
TINY = dict(n_fft=N_FFT, emb_dim=4, emb_kernel_size=4, num_blocks=1, num_heads=1, attention_qk_dim=33,
            sequence_layer=partial(BMamba, d_state=4, expand=1, scan_backend="torch"))


def write_tiny_model(folder):
    """An untrained two-speaker model folder at 8 kHz, small enough for CPU tests."""
    torch.manual_seed(0)
    write_model_folder(str(folder), RATE, Encoder(N_FFT, 32), MaskNet(num_spks=2, **TINY), save_weights=True)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def separator(model_dir, tmp_path_factory):
    return SPMambaSeparation.from_hparams(source=str(model_dir), savedir=str(tmp_path_factory.mktemp("cache")))


def test_stock_interface_loads_the_same_model(model_dir, separator, tmp_path):
    stock = SepformerSeparation.from_hparams(source=str(model_dir), savedir=str(tmp_path))
    mix = torch.randn(2, 3000)
    ours = separator.separate_batch(mix)
    assert ours.shape == (2, 3000, 2)
    torch.testing.assert_close(stock.separate_batch(mix), ours)


def _write(path, data, rate, subtype="FLOAT"):
    sf.write(str(path), data, rate, subtype=subtype)
    return str(path)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_separate_file_resamples_and_takes_the_first_channel(separator, tmp_path, rate, channels):
    gen = np.random.default_rng(0)
    data = gen.standard_normal((rate // 2, channels)).astype(np.float32) * 0.1
    path = _write(tmp_path / "mix.wav", data, rate, "PCM_16")
    out = separator.separate_file(path)
    assert out.shape == (1, RATE // 2, 2) and torch.isfinite(out).all()
    first = _write(tmp_path / "first.wav", data[:, 0], rate, "PCM_16")  # the reference microphone alone
    mono = torch.from_numpy(read_audio(first, RATE)).float()
    torch.testing.assert_close(out[0], separator.separate_batch(mono[None])[0].cpu())


def test_a_multi_channel_input_is_logged_once(separator, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(audio_io, "_RULES_LOGGED", set())
    stereo = np.random.default_rng(0).standard_normal((RATE // 4, 2)).astype(np.float32) * 0.1
    paths = [_write(tmp_path / f"mix{index}.wav", stereo, RATE) for index in range(2)]
    with caplog.at_level(logging.INFO, logger="spmamba_sb.data.audio_io"):
        for path in paths:
            separator.separate_file(path)
    assert [record.getMessage() for record in caplog.records if record.name == "spmamba_sb.data.audio_io"] == [
        f"multi-channel audio is read as the first channel, the reference microphone (channels='first'); "
        f"first such file: {paths[0]} (2 channels); logged once"
    ]


def test_separate_file_errors_name_the_file(separator, tmp_path):
    path = _write(tmp_path / "short.wav", np.full(N_FFT - 1, 0.1, np.float32), RATE)
    problem = f"input has {N_FFT - 1} samples, shorter than one STFT frame"
    with pytest.raises(AudioInputError, match=f"^{re.escape(path)}: {problem}"):
        separator.separate_file(path)
    with pytest.raises(AudioInputError, match="missing.wav: cannot read audio"):
        separator.separate_file(str(tmp_path / "missing.wav"))


def test_separate_file_never_returns_nan(separator, tmp_path, monkeypatch):
    path = _write(tmp_path / "mix.wav", np.full(RATE // 4, 0.1, np.float32), RATE)
    monkeypatch.setattr(separator, "separate_batch", lambda mix: torch.full((1, mix.shape[-1], 2), float("nan")))
    with pytest.raises(AudioInputError, match="mix.wav: the separated audio has NaN or Inf samples"):
        separator.separate_file(path)


@pytest.mark.parametrize("chunk_seconds,overlap_seconds,match", [
    ((N_FFT - 1) / RATE, 0.001, "chunk_seconds must be at least one STFT frame"),
    (float("nan"), 1.0, "chunk_seconds"),
    (float("inf"), 1.0, "chunk_seconds"),
    (4.0, 0.0, "overlap_seconds must be between one sample"),
    (4.0, 2.5, r"chunk_seconds / 2 \(2 s\), got 2.5"),
    (4.0, float("nan"), "overlap_seconds"),
])
def test_chunk_settings_are_checked_before_the_file(separator, tmp_path, chunk_seconds, overlap_seconds, match):
    with pytest.raises(ValueError, match=match) as raised:
        separator.separate_file(str(tmp_path / "missing.wav"), chunk_seconds, overlap_seconds)
    assert not isinstance(raised.value, AudioInputError)
    with pytest.raises(ValueError, match=match):
        separator.separate_long(torch.zeros(RATE), chunk_seconds, overlap_seconds)


def test_shortest_chunk_settings_work(separator):
    assert separator.chunk_lengths(N_FFT / RATE, 1 / RATE) == (N_FFT, 1)
    out = separator.separate_long(torch.randn(3 * N_FFT + 5), N_FFT / RATE, 1 / RATE)
    assert out.shape == (3 * N_FFT + 5, 2) and torch.isfinite(out).all()


def test_long_input_goes_in_bounded_chunks(separator, monkeypatch):
    seen = []
    real = separator.separate_batch

    def spy(mix):
        seen.append(mix.shape[-1])
        return real(mix)

    monkeypatch.setattr(separator, "separate_batch", spy)
    out = separator.separate_long(torch.randn(RATE * 9), chunk_seconds=2, overlap_seconds=0.5)
    assert out.shape == (RATE * 9, 2) and torch.isfinite(out).all()
    assert max(seen) == 2 * RATE and len(seen) == 6


def test_chunked_matches_whole_away_from_edges(separator):
    """Chunks are separated on their own (own std, own attention context), so they match
    whole-file processing approximately; the tolerance is stated as an SNR in dB."""
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(RATE * 8) / RATE
    sources = torch.stack([torch.sin(2 * torch.pi * 220 * t), torch.sign(torch.sin(2 * torch.pi * 3 * t))])
    mix = sources.sum(0) + 0.05 * torch.randn(t.shape, generator=gen)
    whole = separator.separate_batch(mix[None])[0].cpu()
    chunked = separator.separate_long(mix, chunk_seconds=4, overlap_seconds=1.5)
    chunked = chunked[:, [0, 1]] if (chunked[:, 0] - whole[:, 0]).norm() < (chunked[:, 1] - whole[:, 0]).norm() \
        else chunked[:, [1, 0]]
    core = slice(RATE, RATE * 7)  # away from the file's edges
    error = (chunked[core] - whole[core]).pow(2).sum() / whole[core].pow(2).sum()
    snr = -10 * torch.log10(error).item()
    assert snr > CHUNK_MATCH_SNR_DB, snr


CHUNK_MATCH_SNR_DB = 20.0


def test_progress_bar_over_chunks_only_when_asked(separator, capsys):
    mix = torch.randn(RATE)  # 0.25 s chunks, 0.05 s overlap: chunks start at 0, 0.2, 0.4, 0.6, 0.75 s
    quiet = separator.separate_long(mix, 0.25, 0.05)
    assert capsys.readouterr() == ("", "")
    shown = separator.separate_long(mix, 0.25, 0.05, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "/5 [" in err and "chunk/s" in err
    torch.testing.assert_close(shown, quiet)
    separator.separate_long(mix, 1.0, 0.05, progress=True)  # one chunk: no bar
    assert capsys.readouterr() == ("", "")


def test_separate_file_bar_is_labelled_with_the_path(separator, tmp_path, capsys):
    path = _write(tmp_path / "mix.wav", np.full(RATE, 0.1, np.float32), RATE)
    separator.separate_file(path, 0.25, 0.05, progress=True)
    assert f"{path}: " in capsys.readouterr().err


@pytest.mark.parametrize("rate,frames", [(8000, 4000), (16000, 8001), (44100, 22051)])
def test_separate_file_at_the_input_rate(separator, tmp_path, rate, frames):
    path = _write(tmp_path / "mix.wav", np.random.default_rng(0).standard_normal(frames) * 0.1, rate)
    at_model = separator.separate_file(path)
    at_input = separator.separate_file(path, output_rate="input")
    assert separator.output_sample_rate(path, "input") == rate and separator.output_sample_rate(path) == RATE
    assert at_input.shape == (1, frames, 2) and at_input.dtype == torch.float32
    expected = resample(at_model[0].T.numpy(), RATE, rate)[:, :frames].T
    torch.testing.assert_close(at_input[0], torch.from_numpy(expected).float())


def test_unknown_output_rate_is_refused_before_the_file(separator, tmp_path):
    with pytest.raises(ValueError, match="output_rate must be one of 'model', 'input', got 'file'") as raised:
        separator.separate_file(str(tmp_path / "missing.wav"), output_rate="file")
    assert not isinstance(raised.value, AudioInputError)
    with pytest.raises(ValueError, match="output_rate must be one of"):
        separator.output_sample_rate(str(tmp_path / "missing.wav"), "file")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_takes_on_glibc(separator):
    """The allocator accepts the setting and the model separates as before (same output)."""
    mix = torch.randn(1, 3000)
    before = separator.separate_batch(mix)
    assert keep_freed_memory(1 << 28)
    assert torch.equal(separator.separate_batch(mix), before)
