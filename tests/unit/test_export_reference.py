"""Reference checkpoints become model folders that separate exactly as SPMamba with those weights."""

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from speechbrain.inference.separation import SepformerSeparation

from spmamba_sb import SPMamba, cli
from spmamba_sb.inference import SPMambaSeparation
from tests.conftest import exit_status
from tests.reference_oracle import reference_state_dict

# The published layouts with one block (the shapes per block are the published ones).
LAYOUTS = {"8k": dict(n_fft=256, rate=8000), "16k": dict(n_fft=512, rate=16000)}
PUBLISHED = dict(n_srcs=2, n_layers=1, n_heads=4, emb_dim=16, emb_ks=8, d_state=16, expand=4, approx_qk_dim=512)


def _state(n_fft, **changes):
    args = {**PUBLISHED, **changes}
    return reference_state_dict(n_fft, args["n_srcs"], args["n_layers"], args["n_heads"], args["emb_dim"],
                                args["emb_ks"], args["d_state"], args["expand"], args["approx_qk_dim"], seed=3)


def _checkpoint(path, state, form):
    obj = {"raw": state,
           "release": {"model_name": "TFGridNetMamba", "state_dict": state, "model_args": {"n_sample_rate": 2},
                       "infos": {}},
           "lightning": {"state_dict": {f"audio_model.{k}": v for k, v in state.items()}, "epoch": 1}}[form]
    torch.save(obj, path)
    return str(path)


def _config(path, n_fft, rate, **changes):
    model = dict(n_srcs=2, n_fft=n_fft, stride=n_fft // 4, window="hann", n_imics=1, n_layers=1,
                 lstm_hidden_units=192, attn_n_head=4, attn_approx_qk_dim=512, emb_dim=16, emb_ks=8, emb_hs=1,
                 activation="prelu", eps=1.0e-5, use_builtin_complex=False, **changes)
    config = {"audionet": {"audionet_name": "TFGridNetMamba", "audionet_config": model},
              "datamodule": {"data_config": {"sample_rate": rate, "batch_size": 1}}}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _export(*argv):
    return exit_status(cli.export_main, *argv)


# the published 16 kHz network takes several seconds a run; the 8 kHz runs take the same path fast
@pytest.mark.parametrize("layout", [pytest.param(name, marks=pytest.mark.slow) if name == "16k" else name
                                    for name in sorted(LAYOUTS)])
@pytest.mark.parametrize("form,with_config", [("raw", False), ("release", True), ("lightning", False)])
def test_reference_checkpoint_separates_as_spmamba(tmp_path, capsys, layout, form, with_config):
    n_fft, rate = LAYOUTS[layout]["n_fft"], LAYOUTS[layout]["rate"]
    state = _state(n_fft)
    checkpoint = _checkpoint(tmp_path / "best_model.pth", state, form)
    config = ["--config", _config(tmp_path / "conf.yml", n_fft, rate)] if with_config else []
    assert _export("--reference", checkpoint, "--out", tmp_path / "model", *config) == 0
    out = capsys.readouterr().out
    assert f"n_fft {n_fft}" in out and f"{rate} Hz" in out and ("the config" in out) == with_config

    model = SPMamba(n_fft=n_fft, hop_length=n_fft // 4, num_blocks=1, scan_backend="torch").eval()
    model.load_reference_state_dict(state)
    mix = torch.randn(1, rate // 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(mix).transpose(1, 2)  # [1, L, S]
    ours = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "a"))
    stock = SepformerSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "b"))
    for separator in (ours, stock):
        assert separator.hparams.sample_rate == rate
        torch.testing.assert_close(separator.separate_batch(mix), expected, rtol=1e-5, atol=1e-5)

    sf.write(str(tmp_path / "mix.wav"), mix[0].numpy(), rate, subtype="FLOAT")
    assert cli.separate_main([str(tmp_path / "mix.wav"), "--model", str(tmp_path / "model"),
                              "--out", str(tmp_path / "separated"), "--quiet"]) is None
    for source in range(2):
        written, written_rate = sf.read(str(tmp_path / "separated" / f"mix_s{source + 1}.wav"), dtype="float32")
        assert written_rate == rate
        np.testing.assert_allclose(written, expected[0, :, source].numpy(), rtol=1e-5, atol=1e-5)


def test_reference_settings_from_config(tmp_path, capsys):
    """A non-published hop and emb_hs come from the config; the exported folder uses them."""
    state = _state(256)
    checkpoint = _checkpoint(tmp_path / "ckpt.pth", state, "release")
    config = _config(tmp_path / "conf.yml", 256, 8000, **{})
    text = yaml.safe_load(open(config))
    text["audionet"]["audionet_config"].update(stride=128)
    (tmp_path / "conf.yml").write_text(yaml.safe_dump(text))
    assert _export("--reference", checkpoint, "--out", tmp_path / "model", "--config", config) == 0
    assert "hop 128" in capsys.readouterr().out
    separator = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "a"))
    assert separator.mods.encoder.hop_length == 128


@pytest.mark.parametrize("change,message", [
    (dict(n_srcs=3), "n_srcs=3 (the weights have 2)"),
    (dict(emb_dim=8), "emb_dim=8 (the weights have 16)"),
    (dict(n_fft=512), "n_fft=512 (the weights have 256)"),
    (dict(attn_approx_qk_dim=100), "attn_approx_qk_dim=100 (the weights have 4 query channels for 129 bins)"),
])
def test_config_conflicts_are_one_line_errors(tmp_path, capsys, change, message):
    checkpoint = _checkpoint(tmp_path / "ckpt.pth", _state(256), "raw")
    config = tmp_path / "conf.yml"
    _config(config, 256, 8000)
    text = yaml.safe_load(config.read_text())
    text["audionet"]["audionet_config"].update(change)
    config.write_text(yaml.safe_dump(text))
    assert _export("--reference", checkpoint, "--out", tmp_path / "model", "--config", config) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spmamba-export: error: the reference config contradicts")
    assert err[0].endswith(message)


def test_reference_errors(tmp_path, capsys):
    odd = _checkpoint(tmp_path / "odd.pth", _state(128), "raw")
    assert _export("--reference", odd, "--out", tmp_path / "m") == 1
    assert "no published sample rate for n_fft 128" in capsys.readouterr().err
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.pth")
    assert _export("--reference", tmp_path / "other.pth", "--out", tmp_path / "m") == 1
    assert "not a reference SPMamba / TF-GridNet state dict" in capsys.readouterr().err
    assert _export("--reference", tmp_path / "missing.pth", "--out", tmp_path / "m") == 1
    assert "no checkpoint file" in capsys.readouterr().err
    assert _export("--reference", odd, tmp_path, "--out", tmp_path / "m") == 2  # both sources given
    assert _export(tmp_path, "--config", tmp_path / "c.yml", "--out", tmp_path / "m") == 2


def test_separate_and_evaluate_take_a_reference_checkpoint(tmp_path, capsys):
    state = _state(256)
    checkpoint = _checkpoint(tmp_path / "best_model.pth", state, "release")
    assert _export("--reference", checkpoint, "--out", tmp_path / "model") == 0
    gen = np.random.default_rng(0)
    for folder in ("mix", "s1", "s2"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    sources = gen.standard_normal((2, 1600)).astype(np.float32) * 0.1
    sf.write(str(tmp_path / "set" / "s1" / "a.wav"), sources[0], 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "set" / "s2" / "a.wav"), sources[1], 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "set" / "mix" / "a.wav"), sources.sum(0), 8000, subtype="FLOAT")
    for name, model in (("folder", tmp_path / "model"), ("file", checkpoint)):
        cli.separate_main([str(tmp_path / "set" / "mix" / "a.wav"), "--model", str(model), "--out",
                           str(tmp_path / name), "--quiet"])
        try:
            cli.evaluate_main([str(tmp_path / "set"), "--model", str(model), "--out", str(tmp_path / f"scores-{name}"),
                               "--quiet"])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    assert "reference checkpoint, mamba network of 1 blocks" in capsys.readouterr().err
    for source in ("a_s1.wav", "a_s2.wav"):
        np.testing.assert_array_equal(sf.read(str(tmp_path / "folder" / source))[0],
                                      sf.read(str(tmp_path / "file" / source))[0])
    assert ((tmp_path / "scores-folder" / "scores.csv").read_text()
            == (tmp_path / "scores-file" / "scores.csv").read_text())
