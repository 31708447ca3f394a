"""Model folders: loading (ours and SpeechBrain's stock interface), files, long recordings, CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.inference.separation import SepformerSeparation

from spmamba_sb.inference import SPMambaSeparation, load_mono, write_model_folder
from spmamba_sb.trio import Encoder, MaskNet

RATE = 8000
TINY = dict(n_fft=64, emb_dim=4, emb_kernel_size=4, num_blocks=1, num_heads=1, attention_qk_dim=33, d_state=4,
            expand=1, scan_backend="torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    write_model_folder(str(folder), RATE, Encoder(64, 32), MaskNet(num_spks=2, **TINY), save_weights=True)
    return folder


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
def test_separate_file_resamples_and_downmixes(separator, tmp_path, rate, channels):
    gen = np.random.default_rng(0)
    data = gen.standard_normal((rate // 2, channels)).astype(np.float32) * 0.1
    path = _write(tmp_path / "mix.wav", data, rate, "PCM_16")
    out = separator.separate_file(path)
    assert out.shape == (1, RATE // 2, 2) and torch.isfinite(out).all()
    mono = load_mono(path, RATE)
    torch.testing.assert_close(out[0], separator.separate_batch(mono[None])[0].cpu())


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


def test_cli_writes_one_wav_per_source(model_dir, tmp_path):
    first = _write(tmp_path / "a.wav", np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1, RATE)
    second = _write(tmp_path / "b.flac", np.random.default_rng(1).standard_normal((RATE, 2)) * 0.1, 16000, "PCM_16")
    out = tmp_path / "out"
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "spmamba-separate"), first, second, "--model", str(model_dir), "--out", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_s1.wav", "a_s2.wav", "b_s1.wav", "b_s2.wav"]
    data, rate = sf.read(str(out / "b_s2.wav"))
    assert rate == RATE and len(data) == RATE // 2 and np.isfinite(data).all()
