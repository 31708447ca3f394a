"""Loading the reference implementation's weights reproduces its forward pass."""

import pytest
import torch

from spmamba_sb import SPMamba
from tests.reference_oracle import reference_forward, reference_state_dict

CONFIGS = {
    "hop1": dict(n_fft=32, stride=8, n_srcs=2, n_layers=2, n_heads=2, emb_dim=4, emb_ks=3, emb_hs=1),
    "hop2_padded": dict(n_fft=32, stride=8, n_srcs=3, n_layers=1, n_heads=2, emb_dim=4, emb_ks=4, emb_hs=2),
}
D_STATE, EXPAND, QK = 4, 2, 34


def _model(cfg):
    return SPMamba(
        n_srcs=cfg["n_srcs"], n_fft=cfg["n_fft"], stride=cfg["stride"], n_layers=cfg["n_layers"],
        attn_n_head=cfg["n_heads"], attn_approx_qk_dim=QK, emb_dim=cfg["emb_dim"], emb_ks=cfg["emb_ks"],
        emb_hs=cfg["emb_hs"], d_state=D_STATE, expand=EXPAND, scan_backend="torch",
    ).eval()


def _weights(cfg):
    return reference_state_dict(cfg["n_fft"], cfg["n_srcs"], cfg["n_layers"], cfg["n_heads"], cfg["emb_dim"],
                                cfg["emb_ks"], D_STATE, EXPAND, QK)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reproduces_reference_forward(name):
    cfg = CONFIGS[name]
    sd = _weights(cfg)
    model = _model(cfg)
    model.load_reference_state_dict(sd)
    mix = torch.randn(2, 403, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(mix)
        expected = reference_forward(sd, mix, cfg["n_fft"], cfg["stride"], cfg["n_srcs"], cfg["n_layers"],
                                     cfg["n_heads"], cfg["emb_ks"], cfg["emb_hs"], D_STATE)
    assert ours.shape == (2, cfg["n_srcs"], 403)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("form", ["raw", "released", "lightning", "path"])
def test_checkpoint_forms(form, tmp_path):
    cfg = CONFIGS["hop1"]
    sd = _weights(cfg)
    obj = {
        "raw": sd,
        "released": {"model_name": "TFGridNetMamba", "state_dict": sd, "model_args": {}, "infos": {}},
        "lightning": {"state_dict": {f"audio_model.{k}": v for k, v in sd.items()}, "epoch": 3},
        "path": None,
    }[form]
    if form == "path":
        obj = tmp_path / "best_model.pth"
        torch.save({"model_name": "TFGridNetMamba", "state_dict": sd}, obj)
    model = _model(cfg)
    model.load_reference_state_dict(obj)
    torch.testing.assert_close(
        model.masknet.blocks[1].attention.key.norm.gamma[:, -1],
        sd["blocks.1.attn_conv_K_1.2.gamma"][:, -1],
    )
    torch.testing.assert_close(
        model.masknet.blocks[0].inter.sequence.backward_mixer.A_log,
        sd["blocks.0.inter_mamba.backward_blocks.0.mixer.A_log"],
    )


def test_mismatch_lists_missing_and_unexpected():
    cfg = CONFIGS["hop1"]
    sd = _weights(cfg)
    del sd["blocks.0.intra_linear.bias"]
    sd["blocks.0.surprise.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing 1 \['blocks.0.intra.project.bias'\].*blocks.0.surprise.weight"):
        _model(cfg).load_reference_state_dict(sd)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        _model(CONFIGS["hop1"]).load_reference_state_dict(tmp_path / "nope.pth")
