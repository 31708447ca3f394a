"""SPMamba / TFGridNet: published sizes, keywords, input forms, bad input, normalisation."""

from functools import partial

import pytest
import torch

from spmamba_sb import SPMamba, TFGridNet
from spmamba_sb.models.gridnet import GridNetMaskNet
from spmamba_sb.models.pipeline import normalise
from spmamba_sb.models.separator import GridNetSeparator
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.sequence import BLSTM

TINY_NETWORK = dict(n_fft=32, hop_length=8, emb_dim=4, num_blocks=1, num_heads=2, attention_qk_dim=17,
                    emb_kernel_size=3)
TINY = dict(TINY_NETWORK, d_state=4, expand=2, scan_backend="torch")


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_published_parameter_counts():
    assert _count(SPMamba()) == 6_141_826
    assert _count(SPMamba(n_fft=256, stride=64)) == 6_094_498


def test_reference_keywords():
    reference_config = dict(input_dim=64, n_srcs=3, n_fft=32, stride=8, window="hann", n_imics=2, n_layers=2,
                            lstm_hidden_units=7, attn_n_head=2, attn_approx_qk_dim=17, emb_dim=4, emb_ks=3,
                            emb_hs=2, activation="prelu", eps=1e-5)
    model = SPMamba(d_state=4, expand=2, scan_backend="torch", **reference_config)
    assert model.masknet.num_spks == 3 and model.masknet.num_mics == 2 and len(model.masknet.blocks) == 2
    assert model.encoder.hop_length == 8 and model.masknet.blocks[0].emb_hop_size == 2
    assert model(torch.randn(1, 300, 2)).shape == (1, 3, 300)
    with pytest.raises(TypeError, match="SPMamba got an unexpected keyword argument 'n_src'"):
        SPMamba(n_src=2)
    with pytest.raises(ValueError, match="activation='relu'"):
        SPMamba(activation="relu")


def test_reference_and_our_keyword_for_one_setting():
    with pytest.raises(ValueError, match="^num_spks=3 and n_srcs=2 are the same setting with different values"):
        SPMamba(num_spks=3, n_srcs=2)
    with pytest.raises(ValueError, match="^stride=16 and hop_length=8 are the same setting"):
        TFGridNet(stride=16, hop_length=8)
    with pytest.raises(ValueError, match="^lstm_hidden_dim=6 and lstm_hidden_units=5"):
        TFGridNet(lstm_hidden_dim=6, lstm_hidden_units=5)
    model = SPMamba(num_spks=3, n_srcs=3, **TINY)
    assert model.masknet.num_spks == 3


def test_state_dict_keys_are_unchanged():
    """The names under which checkpoints were saved (one block)."""
    mixer = ["A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
             "dt_proj.bias", "out_proj.weight"]
    lstm = [f"{kind}_{part}_l0{direction}" for direction in ("", "_reverse")
            for kind, part in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))]
    layers = {"SPMamba": [f"{direction}_{name}" for direction in ("forward", "backward")
                          for name in ["norm.weight"] + [f"mixer.{name}" for name in mixer]],
              "TFGridNet": [f"lstm.{name}" for name in lstm]}
    for model in (SPMamba(**TINY), TFGridNet(lstm_hidden_dim=6, **TINY_NETWORK)):
        block = "masknet.blocks.0."
        expected = ["masknet.embed.0.weight", "masknet.embed.0.bias", "masknet.embed.1.weight", "masknet.embed.1.bias"]
        for path in ("intra", "inter"):
            expected += [f"{block}{path}.norm.gamma", f"{block}{path}.norm.beta"]
            expected += [f"{block}{path}.sequence.{name}" for name in layers[type(model).__name__]]
            expected += [f"{block}{path}.project.weight", f"{block}{path}.project.bias"]
        expected += [f"{block}attention.{role}.{name}" for role in ("query", "key", "value", "output")
                     for name in ("conv.weight", "conv.bias", "act.weight", "norm.gamma", "norm.beta")]
        expected += ["masknet.deconv.weight", "masknet.deconv.bias"]
        assert list(model.state_dict()) == expected


@pytest.mark.parametrize("shape,expected", [((300,), (1, 2, 300)), ((3, 300), (3, 2, 300)), ((2, 300, 1), (2, 2, 300))])
def test_input_forms(shape, expected):
    assert SPMamba(**TINY)(torch.randn(shape)).shape == expected


def test_tfgridnet_is_the_same_network_with_lstm():
    model = TFGridNet(lstm_hidden_dim=6, **TINY_NETWORK)
    layer = model.masknet.blocks[0].intra.sequence
    assert type(layer).__name__ == "BLSTM" and layer.lstm.hidden_size == 6
    assert model(torch.randn(2, 300)).shape == (2, 2, 300)
    assert TFGridNet(lstm_hidden_units=5).masknet.blocks[0].inter.sequence.lstm.hidden_size == 5
    assert TFGridNet().masknet.blocks[0].inter.sequence.lstm.hidden_size == 192
    with pytest.raises(TypeError, match="TFGridNet's sequence layer is a BLSTM"):
        TFGridNet(sequence_layer=BLSTM)
    with pytest.raises(TypeError, match="SPMamba's sequence layer is BMamba"):
        SPMamba(sequence_layer=BMamba)


@pytest.mark.parametrize("setting", [dict(d_state=4), dict(d_conv=3), dict(expand=2), dict(scan_backend="torch")])
def test_tfgridnet_rejects_mamba_settings(setting):
    with pytest.raises(TypeError, match=f"TFGridNet got an unexpected keyword argument '{next(iter(setting))}'"):
        TFGridNet(**TINY_NETWORK, **setting)


def test_spmamba_rejects_lstm_settings_but_ignores_the_reference_ones():
    with pytest.raises(TypeError, match="SPMamba got an unexpected keyword argument 'lstm_hidden_dim'"):
        SPMamba(lstm_hidden_dim=6)
    assert len(SPMamba(lstm_hidden_units=7, input_dim=64, **TINY).masknet.blocks) == 1  # unused, as in the reference


def test_named_configurations_are_not_subclasses_of_one_another():
    assert not issubclass(TFGridNet, SPMamba) and not issubclass(SPMamba, TFGridNet)
    assert issubclass(SPMamba, GridNetSeparator) and issubclass(TFGridNet, GridNetSeparator)


def test_generic_separator_takes_any_sequence_layer():
    torch.manual_seed(0)
    named = TFGridNet(lstm_hidden_dim=6, **TINY_NETWORK)
    torch.manual_seed(0)
    generic = GridNetSeparator(sequence_layer=partial(BLSTM, hidden_dim=6), **TINY_NETWORK)
    mix = torch.randn(1, 300)
    torch.testing.assert_close(generic(mix), named(mix), rtol=0, atol=0)
    assert isinstance(GridNetSeparator().masknet.blocks[0].intra.sequence, BMamba)  # the default


def test_silence_gives_silence():
    out = SPMamba(**TINY)(torch.zeros(2, 300))
    assert torch.equal(out, torch.zeros(2, 2, 300))
    _, scale = normalise(torch.zeros(1, 1, 10))
    assert scale.item() == 0


@pytest.mark.parametrize("mix,match", [
    (torch.randn(2, 31), "31 samples, shorter than one STFT frame"),
    (torch.randn(1, 2, 300, 1), r"expected a waveform of shape \[L\], \[B, L\] or \[B, L, M\]"),
    (torch.tensor([[0.1] * 299 + [float("nan")]]), "NaN or Inf"),
    (torch.tensor([[0.1] * 299 + [float("inf")]]), "NaN or Inf"),
    (torch.randn(1, 300, 2), "expects 1 microphone"),
    (torch.zeros(1, 300, dtype=torch.int16), "floating-point"),
])
def test_bad_input(mix, match):
    with pytest.raises(ValueError, match=match):
        SPMamba(**TINY)(mix)


@pytest.mark.parametrize("kwargs,match", [
    (dict(emb_dim=6, num_heads=4), "emb_dim=6 is not divisible by num_heads=4"),
    (dict(n_fft=255), "n_fft must be an even int"),
    (dict(num_blocks=0), "num_blocks must be a positive int"),
    (dict(scan_backend="fast"), "scan_backend='fast'"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPMamba(**kwargs)


def test_sequence_layer_must_be_a_factory():
    with pytest.raises(TypeError, match="sequence_layer='mamba' is not callable"):
        GridNetMaskNet(sequence_layer="mamba")


def test_output_scales_with_input():
    model = SPMamba(**TINY).eval()
    mix = torch.randn(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(model(mix * 1e-3), model(mix) * 1e-3, rtol=1e-4, atol=1e-7)


def test_training_step_updates_every_parameter():
    model = SPMamba(**TINY)
    mix = torch.randn(2, 300)
    loss = model(mix).pow(2).mean()
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_bf16_autocast_runs_without_nan():
    model = SPMamba(**TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 300))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("model_class,settings", [(SPMamba, TINY), (TFGridNet, TINY_NETWORK)])
def test_checkpoint_blocks_keeps_results_and_saves_memory(model_class, settings):
    """Activation checkpointing gives the same outputs and gradients, and autograd keeps less."""
    torch.manual_seed(0)
    plain = model_class(**{**settings, "num_blocks": 2})
    recomputed = model_class(**{**settings, "num_blocks": 2}, checkpoint_blocks=True)
    recomputed.load_state_dict(plain.state_dict())
    mix = torch.randn(2, 800)
    results = []
    for model in (plain, recomputed):
        saved_bytes = 0

        def pack(tensor):
            nonlocal saved_bytes
            saved_bytes += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = model(mix)
        output.square().mean().backward()
        results.append((output.detach(), [p.grad for p in model.parameters()], saved_bytes))
    (out_plain, grads_plain, bytes_plain), (out_ckpt, grads_ckpt, bytes_ckpt) = results
    torch.testing.assert_close(out_ckpt, out_plain)
    for grad_ckpt, grad_plain in zip(grads_ckpt, grads_plain):
        torch.testing.assert_close(grad_ckpt, grad_plain)
    assert bytes_ckpt < bytes_plain / 2


def test_compile_takes_the_model_in_one_graph_with_the_automatic_backend():
    """The recipes' ``scan_backend: auto`` is resolved while tracing: no graph break per Mamba layer."""
    model = SPMamba(**dict(TINY, scan_backend="auto"))
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(1, 64))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
