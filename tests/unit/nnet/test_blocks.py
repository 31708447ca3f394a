"""Norms, attention, STFT, sequence layers and the GridNet block on tiny CPU inputs."""

import math
from functools import partial

import pytest
import torch
import torch.nn as nn

from spmamba_sb.nnet.attention import FullBandAttention
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.gridnet_block import GridNetBlock, SequencePath
from spmamba_sb.nnet.norms import LayerNorm4D, LayerNorm4DCF
from spmamba_sb.nnet.sequence import BLSTM
from spmamba_sb.nnet.stft import ISTFTDecoder, STFTConfig, STFTEncoder

LAYERS = {"bmamba": partial(BMamba, d_state=4, expand=2, scan_backend="torch"), "blstm": partial(BLSTM, hidden_dim=5)}


def test_layernorm4d_normalises_channels():
    y = LayerNorm4D(5)(torch.randn(2, 5, 3, 4) * 7 + 3)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3, rtol=0)


def test_layernorm4dcf_groups_are_independent():
    norm = LayerNorm4DCF(4, n_freqs=6, num_groups=2)
    x = torch.randn(1, 4, 3, 6)
    x[:, 2:] = x[:, 2:] * 100 + 50
    y = norm(x)
    for group in (y[:, :2], y[:, 2:]):
        torch.testing.assert_close(group.mean(dim=(1, 3)), torch.zeros(1, 3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not divisible"):
        LayerNorm4DCF(5, 6, num_groups=2)


def test_attention_sizes_follow_reference():
    attention = FullBandAttention(emb_dim=16, n_freqs=257, num_heads=4, attention_qk_dim=512)
    assert attention.query.conv.out_channels == 4 * math.ceil(512 / 257)
    assert attention.value.conv.out_channels == 16
    assert sum(p.numel() for p in attention.parameters()) == 25501
    assert attention(torch.randn(1, 16, 5, 257)).shape == (1, 16, 5, 257)
    with pytest.raises(ValueError, match="emb_dim=6 is not divisible by num_heads=4"):
        FullBandAttention(emb_dim=6, n_freqs=9, num_heads=4)


def test_attention_mixes_frames_only_through_attention():
    attention = FullBandAttention(emb_dim=4, n_freqs=5, num_heads=2, attention_qk_dim=10)
    x = torch.randn(1, 4, 6, 5, requires_grad=True)
    weights = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    (attention(x)[0, :, 0] * weights).sum().backward()  # a plain sum of a normalised frame is constant
    assert x.grad[0, :, 5].abs().sum() > 0  # frame 0's output depends on frame 5


def test_stft_round_trip():
    encoder, decoder = STFTEncoder(64, 16), ISTFTDecoder(64, 16)
    wave = torch.randn(2, 3, 1001)
    spec = encoder(wave)
    assert spec.shape == (2, 3, 2, encoder.num_frames(1001), 33)
    torch.testing.assert_close(decoder(spec, length=1001), wave, atol=1e-5, rtol=1e-5)


def test_stft_runs_in_fp32_under_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = STFTEncoder(32, 8)(torch.randn(1, 200))
        wave = ISTFTDecoder(32, 8)(spec, length=200)
    assert spec.dtype == torch.float32 and wave.dtype == torch.float32


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_fft=33), "n_fft must be an even int"), (dict(n_fft=32, hop_length=0), "hop_length"),
    (dict(n_fft=32, hop_length=8, window="hanning"), "window='hanning' is not one of"),
    (dict(n_fft=32, hop_length=8, win_length=64), "win_length"),
])
def test_stft_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        STFTConfig(**kwargs)


def test_sequence_layers():
    assert BMamba(8, d_state=4, expand=2).output_dim == 16
    assert BLSTM(8, hidden_dim=3)(torch.randn(8, 2, 5)).shape == (6, 2, 5)
    assert BLSTM(8).output_dim == 2 * 192
    with pytest.raises(ValueError, match="hidden_dim must be a positive int, got 0"):
        BLSTM(8, hidden_dim=0)


def test_sequence_path_builds_fresh_layers_from_the_factory():
    calls = []

    def factory(input_dim):
        calls.append(input_dim)
        return BLSTM(input_dim, hidden_dim=2)

    block = GridNetBlock(4, 9, factory, emb_kernel_size=3, num_heads=2, attention_qk_dim=18)
    assert calls == [12, 12] and block.intra.sequence is not block.inter.sequence
    with pytest.raises(TypeError, match="built a Identity without output_dim and inference_elements"):
        SequencePath(4, lambda input_dim: nn.Identity(), emb_kernel_size=3, emb_hop_size=1)


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("n_frames,n_freqs,kernel,hop", [(7, 9, 3, 1), (2, 9, 4, 2), (11, 10, 4, 3)])
def test_gridnet_block_shapes_and_gradients(kind, n_frames, n_freqs, kernel, hop):
    block = GridNetBlock(4, n_freqs, LAYERS[kind], kernel, hop, num_heads=2, attention_qk_dim=18)
    x = torch.randn(2, 4, n_frames, n_freqs, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.pow(2).mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters())


def test_gridnet_block_parameter_count_of_published_config():
    block = GridNetBlock(16, 257, BMamba, 8, 1, num_heads=4, attention_qk_dim=512)
    assert sum(p.numel() for p in block.parameters()) == 1_023_485


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_inference_row_groups_give_the_same_output(kind):
    block = GridNetBlock(4, 9, LAYERS[kind], 3, 1, num_heads=2, attention_qk_dim=18)
    x = torch.randn(2, 4, 7, 9)
    with torch.no_grad():
        whole = block(x)
        for path in (block.intra, block.inter):
            path.sequence.inference_elements = {"cpu": 3 * 4 * 9 * 3}  # 3 rows per group of the intra-frame path
        grouped = block(x)
    torch.testing.assert_close(grouped, whole)
    torch.testing.assert_close(block(x).detach(), whole)  # the autograd path


def test_inference_query_blocks_give_the_same_output(monkeypatch):
    from spmamba_sb.nnet import attention as attention_module

    attention = FullBandAttention(emb_dim=4, n_freqs=5, num_heads=2, attention_qk_dim=10)
    x = torch.randn(2, 4, 11, 5)
    expected = attention(x).detach()  # autograd path: one call
    monkeypatch.setattr(attention_module, "INFERENCE_QUERY_BLOCK", 3)
    with torch.no_grad():
        torch.testing.assert_close(attention(x), expected)


def test_head_projection_gradients_equal_the_convolutions():
    from spmamba_sb.nnet.attention import HeadProjection

    projection = HeadProjection(6, num_heads=2, head_dim=3, n_freqs=5).double()
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    projection(x).backward(grad)
    ours = [x.grad, projection.conv.weight.grad, projection.conv.bias.grad]
    x.grad = None
    projection.zero_grad()
    conv = projection.conv  # the same parameters through nn.Conv2d's own backward
    y = projection.norm(projection.act(conv(x).view(2, 2, -1, 4, 5)).view(2, 6, 4, 5))
    y.backward(grad)
    for got, expected in zip(ours, [x.grad, conv.weight.grad, conv.bias.grad]):
        torch.testing.assert_close(got, expected)
    torch.autograd.gradcheck(lambda *a: projection(*a), (x.detach().requires_grad_(),))
