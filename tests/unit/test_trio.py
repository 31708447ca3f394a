"""The trio through SpeechBrain's stock separation flow equals SPMamba's own forward."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from spmamba_sb import SPMamba
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Decoder, Encoder, MaskNet, separate, to_sb_layout

TINY = dict(emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17)
MAMBA = dict(d_state=4, expand=2, scan_backend="torch")


def _pair(num_spks):
    model = SPMamba(num_spks=num_spks, n_fft=32, hop_length=8, **TINY, **MAMBA).eval()
    masknet = MaskNet(num_spks=num_spks, n_fft=32, sequence_layer=partial(BMamba, **MAMBA), **TINY)
    trio = Encoder(32, 8), masknet.eval(), Decoder(32, 8)
    trio[1].load_state_dict(model.masknet.state_dict(), strict=True)
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


@pytest.mark.parametrize("num_spks", [2, 3])
@pytest.mark.parametrize("length", [400, 403, 519])
def test_stock_flow_equals_model(num_spks, length):
    model, trio = _pair(num_spks)
    mix = torch.randn(2, length, generator=torch.Generator().manual_seed(length)) * 3
    with torch.no_grad():
        expected = to_sb_layout(model(mix))
        stock = stock_flow(mix, *trio, num_spks)
        ours = separate(mix, *trio)
    assert stock.shape == (2, length, num_spks)
    torch.testing.assert_close(stock, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    torch.testing.assert_close(ours, stock)


def test_stock_flow_equals_model_under_bf16_autocast():
    model, trio = _pair(2)
    mix = torch.randn(2, 400)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = to_sb_layout(model(mix))
        stock = stock_flow(mix, *trio, 2)
        assert trio[0](mix).dtype == torch.float32  # the STFT stays fp32
    torch.testing.assert_close(stock, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_silence_and_shapes():
    _, (encoder, masknet, decoder) = _pair(2)
    mix_w = encoder(torch.zeros(1, 400))
    assert mix_w.shape == (1, 4, 51, 17) and torch.equal(mix_w, torch.zeros_like(mix_w))
    assert masknet(mix_w).shape == (2, 1, 4, 51, 17)
    assert decoder(mix_w).shape == (1, 51 * 8)
    assert torch.equal(separate(torch.zeros(1, 400), encoder, masknet, decoder), torch.zeros(1, 400, 2))


def test_pipeline_layout():
    """The same modules in the package's flow: spectrum in, estimates out, no carrier channels."""
    model, (encoder, masknet, decoder) = _pair(2)
    wave = torch.randn(3, 1, 400)
    spec = encoder(wave)
    assert spec.shape == (3, 1, 2, 51, 17)
    torch.testing.assert_close(spec, model.encoder(wave))
    with torch.no_grad():
        estimate = masknet(spec[:, 0])
        assert estimate.shape == (3, 2, 2, 51, 17)
        torch.testing.assert_close(estimate, model.masknet(spec[:, 0]))
    assert decoder(estimate, length=403).shape == (3, 2, 403)
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        encoder(torch.randn(1, 1, 31))
    with pytest.raises(ValueError, match=r"mono mixtures \[B, L\]"):
        separate(torch.randn(1, 1, 400), encoder, masknet, decoder)


def test_bad_input():
    encoder, masknet, decoder = _pair(2)[1]
    with pytest.raises(ValueError, match="mono"):
        encoder(torch.randn(1, 400, 2))
    with pytest.raises(ValueError, match=r"expected the Encoder's output \[B, 4, T, F\] or a spectrum"):
        masknet(torch.randn(1, 3, 51, 17))
    with pytest.raises(ValueError, match="num_mics must be 1"):
        MaskNet(num_mics=2)
    with pytest.raises(ValueError, match=r"expected \[B, 4, T, F\]"):
        decoder(torch.randn(1, 2, 51, 17))


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
