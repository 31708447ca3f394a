"""Model folders: the format on disk, writing, the check before reading, older folders' upgrade."""

import os
import pydoc
from functools import partial

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spmamba_sb import trio
from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.model_folder import (TRIO_MODULE, IncompatibleModelError, check_hyperparams, load_initial_masknet,
                                     upgrade_masknet_arguments, write_model_folder)
from spmamba_sb.model_trust import UntrustedModelError
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.nnet.sequence import BLSTM
from spmamba_sb.trio import Encoder, MaskNet

PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "pretrained", "spmamba-8k-clean")
TINY = dict(emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17)
MAMBA = dict(d_state=4, expand=2, scan_backend="torch")


def test_the_trio_module_names_the_trio():
    for name in ("Encoder", "MaskNet", "Decoder"):
        assert pydoc.locate(f"{TRIO_MODULE}.{name}") is getattr(trio, name)


def test_the_published_folder_is_written_back_as_it_is(tmp_path):
    """The format on disk: the released folder, loaded and written again, gives the same text but
    ``win_length``, which a written trio always states and the released file leaves at its default."""
    separator = SPMambaSeparation.from_hparams(source=PRETRAINED, savedir=str(tmp_path / "cache"))
    write_model_folder(str(tmp_path / "model"), separator.hparams.sample_rate, separator.mods.encoder,
                       separator.mods.masknet)
    written = (tmp_path / "model" / "hyperparams.yaml").read_text(encoding="utf-8").splitlines()
    assert written.count("    win_length: 256") == 2
    with open(os.path.join(PRETRAINED, "hyperparams.yaml"), encoding="utf-8") as handle:
        assert [line for line in written if line != "    win_length: 256"] == handle.read().splitlines()


def test_the_check_before_reading(tmp_path):
    assert check_hyperparams(PRETRAINED) == os.path.join(PRETRAINED, "hyperparams.yaml")
    (tmp_path / "hyperparams.yaml").write_text("pwn: !new:subprocess.Popen [[touch, marker]]\n")
    with pytest.raises(UntrustedModelError, match="line 1: !new:subprocess.Popen is not on the allow-list"):
        check_hyperparams(str(tmp_path))
    assert not (tmp_path / "marker").exists()


def test_model_folders_write_the_sequence_layer_with_name(tmp_path):
    masknet = MaskNet(num_spks=2, n_fft=32, sequence_layer=partial(BLSTM, hidden_dim=3), **TINY)
    write_model_folder(str(tmp_path), 8000, Encoder(32, 8), masknet)
    with open(tmp_path / "hyperparams.yaml", encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle)
    layer = hparams["MaskNet"].blocks[0].intra.sequence
    assert isinstance(layer, BLSTM) and layer.lstm.hidden_size == 3
    written = (tmp_path / "hyperparams.yaml").read_bytes()
    with pytest.raises(ValueError, match="sequence_layer=.* cannot be written to hyperparams.yaml"):
        write_model_folder(str(tmp_path), 8000, Encoder(32, 8),
                           MaskNet(num_spks=2, n_fft=32, sequence_layer=lambda dim: BLSTM(dim, 3), **TINY))
    assert (tmp_path / "hyperparams.yaml").read_bytes() == written  # it was emptied before the error


@pytest.mark.parametrize("old,layer,settings", [
    (dict(sequence_layer="mamba", d_state=4, expand=2, scan_backend="torch", lstm_hidden_dim=9), BMamba,
     dict(d_state=4, expand=2, scan_backend="torch")),
    (dict(d_state=4, expand=2, eps=1e-6), BMamba, dict(d_state=4, expand=2, eps=1e-6)),  # "mamba", the old default
    (dict(sequence_layer="lstm", lstm_hidden_dim=6, d_state=4), BLSTM, dict(hidden_dim=6)),
])
def test_older_model_folders_name_the_sequence_layer_by_a_string(old, layer, settings):
    """Older hyperparams.yaml files build the same mask net, with the same weights' names."""
    arguments = upgrade_masknet_arguments(dict(n_fft=32, **TINY, **old))
    assert arguments["sequence_layer"].func is layer and arguments["sequence_layer"].keywords == settings
    assert not {"lstm_hidden_dim", "d_state", "d_conv", "expand", "scan_backend"} & set(arguments)
    torch.manual_seed(0)
    legacy = MaskNet(n_fft=32, **TINY, **old)
    torch.manual_seed(0)
    today = MaskNet(**arguments)
    assert legacy.config.keys() == arguments.keys() and legacy.config["sequence_layer"].keywords == settings
    assert legacy.state_dict().keys() == today.state_dict().keys()
    for key, value in today.state_dict().items():
        assert torch.equal(legacy.state_dict()[key], value), key


def test_older_form_errors():
    with pytest.raises(ValueError, match="sequence_layer='gru' is not one of \\('mamba', 'lstm'\\)"):
        MaskNet(n_fft=32, sequence_layer="gru")
    with pytest.raises(TypeError, match="d_state is a setting of the sequence layer"):
        MaskNet(n_fft=32, sequence_layer=BMamba, d_state=4)
    assert upgrade_masknet_arguments({"n_fft": 32}) == {"n_fft": 32}


def _small_masknet(n_fft, emb_dim=4):
    layer = partial(BMamba, d_state=4, expand=2, scan_backend="torch")
    return MaskNet(num_spks=2, n_fft=n_fft, emb_dim=emb_dim, emb_kernel_size=3, num_blocks=1, num_heads=2,
                   attention_qk_dim=17, sequence_layer=layer)


def test_an_8khz_folder_starts_a_16khz_mask_net_bin_by_bin_in_hz(tmp_path):
    torch.manual_seed(0)
    source = _small_masknet(n_fft=32)
    with torch.no_grad():
        for value in source.parameters():
            value.normal_()
    write_model_folder(str(tmp_path), 8000, Encoder(n_fft=32, hop_length=8), source, save_weights=True)
    target = _small_masknet(n_fft=64)  # 16 kHz: the same 250 Hz bins, twice as many
    assert load_initial_masknet(target, str(tmp_path), sample_rate=16000) == 8  # 4 norms x (gamma, beta)
    theirs, ours = source.state_dict(), target.state_dict()
    for name, value in theirs.items():
        if value.shape == ours[name].shape:
            assert torch.equal(value, ours[name]), name
        else:  # [..., 17] -> [..., 33]: bins 0-16 copied, 17-32 (above 4 kHz) hold bin 16
            assert torch.equal(ours[name][..., :17], value), name
            assert torch.equal(ours[name][..., 17:], value[..., -1:].expand_as(ours[name][..., 17:])), name
    same_rate = _small_masknet(n_fft=64)  # 8 kHz with n_fft 64: bins half as wide, each the nearest one
    load_initial_masknet(same_rate, str(tmp_path), sample_rate=8000)
    gamma = "blocks.0.attention.query.norm.gamma"
    assert torch.equal(same_rate.state_dict()[gamma][..., 2], theirs[gamma][..., 1])


def test_a_folder_of_another_network_or_untrusted_is_refused(tmp_path):
    write_model_folder(str(tmp_path), 8000, Encoder(n_fft=32, hop_length=8), _small_masknet(32), save_weights=True)
    with pytest.raises(IncompatibleModelError, match=r"is \(.*\) there and \(.*\) here: not the same network"):
        load_initial_masknet(_small_masknet(32, emb_dim=8), str(tmp_path), sample_rate=8000)
    wider = MaskNet(num_spks=2, n_fft=64, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2,
                    attention_qk_dim=66, sequence_layer=partial(BMamba, d_state=4, expand=2, scan_backend="torch"))
    with pytest.raises(IncompatibleModelError, match=r"attention.query.conv.weight .*attention's width"):
        load_initial_masknet(wider, str(tmp_path), sample_rate=16000)  # 2 channels a head, the folder's 1
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_initial_masknet(_small_masknet(32), str(tmp_path / "nothing"), sample_rate=8000)
    hparams = tmp_path / "hyperparams.yaml"
    text = hparams.read_text()
    hparams.write_text(text.replace("sample_rate: 8000\n", ""))
    with pytest.raises(IncompatibleModelError, match="no sample_rate"):
        load_initial_masknet(_small_masknet(32), str(tmp_path), sample_rate=8000)
    hparams.write_text(text + "pwn: !apply:os.system [touch marker]\n")
    with pytest.raises(UntrustedModelError):
        load_initial_masknet(_small_masknet(32), str(tmp_path), sample_rate=8000)
    assert not (tmp_path / "marker").exists()
