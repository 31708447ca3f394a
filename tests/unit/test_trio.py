"""The trio through SpeechBrain's stock separation flow equals GridNetSeparator's own forward."""

from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.models.separator import GridNetSeparator
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Decoder, Encoder, MaskNet, separate

TINY = dict(emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17)
MAMBA = dict(d_state=4, expand=2, scan_backend="torch")


def _pair(num_spks):
    """A trio of random weights, and a GridNetSeparator given its mask net's weights by state dict."""
    torch.manual_seed(num_spks)
    bmamba = partial(BMamba, **MAMBA)
    trio = Encoder(32, 8), MaskNet(num_spks=num_spks, n_fft=32, sequence_layer=bmamba, **TINY).eval(), Decoder(32, 8)
    model = GridNetSeparator(num_spks=num_spks, n_fft=32, hop_length=8, sequence_layer=bmamba, **TINY).eval()
    model.masknet.load_state_dict(trio[1].state_dict(), strict=True)
    return model, trio


def stock_flow(mix, encoder, masknet, decoder, num_spks):
    """SpeechBrain's recipes/*/separation/train.py compute_forward, written out."""
    mix_w = encoder(mix)
    est_mask = masknet(mix_w)
    mix_w = torch.stack([mix_w] * num_spks)
    sep_h = mix_w * est_mask
    est_source = torch.cat([decoder(sep_h[i]).unsqueeze(-1) for i in range(num_spks)], dim=-1)
    T_origin, T_est = mix.size(1), est_source.size(1)
    if T_origin > T_est:
        return F.pad(est_source, (0, 0, 0, T_origin - T_est))
    return est_source[:, :T_origin, :]


def _relative_difference(now, expected):
    return ((now - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("num_spks", [2, 3])
@pytest.mark.parametrize("length", [400, 403, 519])
def test_separate_is_the_stock_flow_and_equals_the_separator(num_spks, length):
    model, trio = _pair(num_spks)
    mix = torch.randn(2, length, generator=torch.Generator().manual_seed(length)) * 3
    with torch.no_grad():
        expected = model(mix).transpose(1, 2)  # [B, L, S]
        ours = separate(mix, *trio)
        stock = stock_flow(mix, *trio, num_spks)
    assert ours.shape == (2, length, num_spks)
    assert _relative_difference(ours, expected) <= 1e-5
    torch.testing.assert_close(ours, stock, rtol=0, atol=0)


def test_stock_flow_equals_the_separator_under_bf16_autocast():
    model, trio = _pair(2)
    mix = torch.randn(2, 400)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(mix).transpose(1, 2)
        stock = stock_flow(mix, *trio, 2)
        assert trio[0](mix).dtype == torch.float32  # the STFT stays fp32
    torch.testing.assert_close(stock, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


class Wrapped(nn.Module):
    """Exposes its module's forward only, as DistributedDataParallel does."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


def test_separate_calls_the_modules_forward_only():
    _, trio = _pair(2)
    mix = torch.randn(2, 400)
    with torch.no_grad():
        torch.testing.assert_close(separate(mix, *map(Wrapped, trio)), separate(mix, *trio), rtol=0, atol=0)


def test_silence_and_shapes():
    _, (encoder, masknet, decoder) = _pair(2)
    mix_w = encoder(torch.zeros(1, 400))
    assert mix_w.shape == (1, 4, 51, 17) and torch.equal(mix_w, torch.zeros_like(mix_w))
    assert masknet(mix_w).shape == (2, 1, 4, 51, 17)
    assert decoder(mix_w).shape == (1, 51 * 8)
    assert torch.equal(separate(torch.zeros(1, 400), encoder, masknet, decoder), torch.zeros(1, 400, 2))


def test_other_layouts_are_refused():
    """Only the stock layout: the package pipeline's shapes ([B, 1, L], [B, 2, T, F],
    [B, S, 2, T, F]) raise, naming the expected shape."""
    encoder, masknet, decoder = _pair(2)[1]
    with pytest.raises(ValueError, match=r"mono mixtures \[B, L\], got shape \(3, 1, 400\)"):
        encoder(torch.randn(3, 1, 400))
    with pytest.raises(ValueError, match=r"mono mixtures \[B, L\]"):
        encoder(torch.randn(1, 400, 2))
    with pytest.raises(ValueError, match=r"expected the Encoder's output \[B, 4, T, F\], got \(3, 2, 51, 17\)"):
        masknet(torch.randn(3, 2, 51, 17))
    with pytest.raises(ValueError, match=r"expected one source's feature map \[B, 4, T, F\], got \(3, 2, 2, 51, 17\)"):
        decoder(torch.randn(3, 2, 2, 51, 17))
    with pytest.raises(ValueError, match="num_mics must be 1"):
        MaskNet(num_mics=2)


@pytest.mark.parametrize("mix, message", [
    (torch.randn(1, 1, 400), r"the trio takes mono mixtures \[B, L\], got shape \(1, 1, 400\)"),
    (torch.randn(2, 31), r"input has 31 samples, shorter than one STFT frame \(32 samples\)"),
    (torch.full((1, 400), float("nan")), "input contains NaN or Inf samples"),
    (torch.zeros(1, 400, dtype=torch.int16), "expected a floating-point waveform tensor"),
])
def test_separate_checks_its_input(mix, message):
    with pytest.raises(ValueError, match=message):
        separate(mix, *_pair(2)[1])


def test_recipe_reinitialisation_keeps_mamba_init():
    """SpeechBrain's recipes call reset_parameters on every layer before training."""
    masknet = MaskNet(n_fft=32, sequence_layer=partial(BMamba, **MAMBA), **TINY)

    def reset(layer):
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        for child in layer.modules():
            if child is not layer:
                reset(child)

    reset(masknet)
    mixer = masknet.blocks[0].intra.sequence.forward_mixer
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert torch.allclose(mixer.A_log[0], torch.log(torch.arange(1, 5.0)))
