"""A model folder runs no code of its own: its hyperparams.yaml is checked before anything is built.

Payloads that would create a marker file are planted in a copy of a real (tiny) exported model
folder; each is refused by ``spmamba-separate``, ``spmamba-evaluate`` and
``SPMambaSeparation.from_hparams`` with one line naming it, and no marker is created (while plain
HyperPyYAML, as SpeechBrain's own loaders use it, runs each of them).
"""

import os
import shutil
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from spmamba_sb import cli
from spmamba_sb.export import export_model
from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.model_trust import UntrustedModelError, check_model_yaml
from spmamba_sb.nnet.sequence import BLSTM
from spmamba_sb.trio import MaskNet
from tests.conftest import exit_status
from tests.reference_oracle import reference_state_dict
from tests.unit.test_inference import RATE, write_tiny_model

HINT = "(pass --trust-model-code / trust_code=True if you trust this folder)"

# name -> (the line planted in hyperparams.yaml, with {marker}; what the error line names)
PAYLOADS = {
    "os.system": ('pwn: !apply:os.system ["touch {marker}"]', "!apply:os.system"),
    "Popen": ('pwn: !new:subprocess.Popen [["touch", "{marker}"]]', "!new:subprocess.Popen"),
    "python_tag": ('pwn: !!python/object/apply:os.system ["touch {marker}"]', "!!python/object/apply:os.system"),
    "include": ("pwn: !include:extra.yaml", "!include:extra.yaml"),
    "run_shell": ('pwn: !apply:speechbrain.utils.superpowers.run_shell ["touch {marker}"]',
                  "!apply:speechbrain.utils.superpowers.run_shell"),
    "tuple_text": ("pwn: \"(!!python/object/apply:os.system ['touch {marker}'], 2)\"", "!!python/object/apply"),
}
# what the included file runs
INCLUDED = 'ran: !apply:os.system ["touch {marker}"]\n'
# a payload that does nothing harmful, to show that the opt-in builds what the allow-list refuses
HARMLESS = "cwd: !apply:os.getcwd []\nordered: !new:collections.OrderedDict\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def _planted(tiny_model, folder, line, marker):
    """A copy of the tiny model folder with ``line`` appended to its hyperparams.yaml: the
    folder and the payload's line number."""
    shutil.copytree(tiny_model, folder)
    hparams = folder / "hyperparams.yaml"
    text = hparams.read_text()
    hparams.write_text(text + line.format(marker=marker) + "\n")
    (folder / "extra.yaml").write_text(INCLUDED.format(marker=marker))
    return folder, len(text.splitlines()) + 1


def _mixture(folder):
    """A two-speaker data folder (mix/, s1/, s2/) of one short utterance at the model's rate."""
    sources = np.random.default_rng(0).standard_normal((2, RATE // 4)).astype(np.float32) * 0.1
    for name, signal in (("s1", sources[0]), ("s2", sources[1]), ("mix", sources.sum(0))):
        (folder / name).mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / name / "a.wav"), signal, RATE, subtype="FLOAT")
    return folder


def _separate(model, tmp_path, *options):
    return exit_status(cli.separate_main, _mixture(tmp_path / "data") / "mix" / "a.wav", "--model", model,
                       "--out", tmp_path / "out", "--quiet", *options)


def _evaluate(model, tmp_path, *options):
    return exit_status(cli.evaluate_main, _mixture(tmp_path / "data"), "--model", model, "--out",
                       tmp_path / "scores", "--quiet", *options)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_the_payloads_run_under_plain_hyperpyyaml(tmp_path, name):
    """What the loaders must refuse runs when a file is trusted (as SpeechBrain's own
    ``from_hparams`` trusts every folder), so the other tests' markers would appear. In a fresh
    process: HyperPyYAML reads tuple-like texts as YAML only in the first file a process loads."""
    marker = tmp_path / "marker"
    (tmp_path / "hyperparams.yaml").write_text(PAYLOADS[name][0].format(marker=marker) + "\n")
    (tmp_path / "extra.yaml").write_text(INCLUDED.format(marker=marker))
    load = "import sys; from hyperpyyaml import load_hyperpyyaml; load_hyperpyyaml(open(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", load, str(tmp_path / "hyperparams.yaml")], capture_output=True, timeout=60)
    deadline = time.monotonic() + 10  # Popen returns before its process has run
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


@pytest.mark.parametrize("entry", ["spmamba-separate", "spmamba-evaluate"])
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_commands_refuse_a_planted_folder_with_one_line(tiny_model, tmp_path, capsys, entry, name):
    marker = tmp_path / "marker"
    line, shown = PAYLOADS[name]
    folder, line_number = _planted(tiny_model, tmp_path / "model", line, marker)
    run = _separate if entry == "spmamba-separate" else _evaluate
    assert run(folder, tmp_path) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    [message] = err.splitlines()
    assert message.startswith(f"{entry}: error: {folder / 'hyperparams.yaml'} line {line_number}: ")
    assert shown in message and message.endswith(HINT)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_from_hparams_refuses_a_planted_folder(tiny_model, tmp_path, name):
    marker = tmp_path / "marker"
    line, shown = PAYLOADS[name]
    folder, line_number = _planted(tiny_model, tmp_path / "model", line, marker)
    with pytest.raises(UntrustedModelError, match=f"hyperparams.yaml line {line_number}: ") as refused:
        SPMambaSeparation.from_hparams(source=str(folder), savedir=str(tmp_path / "saved"))
    assert shown in str(refused.value)
    assert not marker.exists()


def test_the_opt_in_builds_what_the_allow_list_refuses(tiny_model, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    with open(folder / "hyperparams.yaml", "a", encoding="utf-8") as handle:
        handle.write(HARMLESS)
    with pytest.raises(UntrustedModelError, match="!apply:os.getcwd is not on the allow-list"):
        SPMambaSeparation.from_hparams(source=str(folder), savedir=str(folder))
    separator = SPMambaSeparation.from_hparams(source=str(folder), savedir=str(folder), trust_code=True)
    assert separator.hparams.cwd == os.getcwd() and separator.hparams.ordered == {}
    assert _separate(folder, tmp_path) == 1
    assert "!apply:os.getcwd is not on the allow-list" in capsys.readouterr().err
    assert _separate(folder, tmp_path, "--trust-model-code") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a_s1.wav", "a_s2.wav"]
    assert _evaluate(folder, tmp_path / "again", "--trust-model-code") == 0
    assert (tmp_path / "again" / "scores" / "scores.csv").is_file()


@pytest.mark.parametrize("text,problem", [
    ("a: 1\nb: !ref <a.__class__>\n", "line 2: <a.__class__> reaches a private attribute"),
    ("a: !module:torch.nn\n", "line 1: !module:torch.nn is not on the allow-list of a model folder: a module"),
    ("a: !new:torch.nn.functional.relu\n", None),
    ("a: !apply:torch.nn.Linear [2, 2]\n", "line 1: !apply:torch.nn.Linear is not on the allow-list"),
    ("a: !new:spmamba_sb.trio.torch.nn.Linear [2, 2]\n", None),  # the same class, reached through a module
    ("a: !new:spmamba_sb.trio.partial [print]\n", "line 1: !new:spmamba_sb.trio.partial is not on the allow-list"),
    ("a: !new:speechbrain.utils.checkpoints.Checkpointer [x]\n", "line 1: !new:speechbrain.utils.checkpoints"),
    ("a: !new:speechbrain.lobes.models.fairseq_wav2vec.FairseqWav2Vec2 {}\n", "line 1: !new:speechbrain.lobes"),
    ("%TAG !x! !apply:\n---\na: !x!os.system [x]\n", "line 3: !apply:os.system is not on the allow-list"),
    ("a: !<tag:yaml.org,2002:python/name:os.system> ''\n", "line 1: !!python/name:os.system is not"),
    ("a: [1, 2\n", "line 2: not valid YAML"),
    ("a: 'Hi!'\n", "line 1: the text 'Hi!' holds a '!'"),
])
def test_what_the_check_refuses(tmp_path, text, problem):
    path = tmp_path / "hyperparams.yaml"
    path.write_text(text)
    if problem is None:
        check_model_yaml(str(path))
        return
    with pytest.raises(UntrustedModelError) as refused:
        check_model_yaml(str(path))
    assert str(refused.value).startswith(f"{path} {problem}"), str(refused.value)


STOCK_SEPFORMER = """\
sample_rate: 8000
num_spks: 2
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: 16
    out_channels: 256
SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: 8
    d_model: 256
    nhead: 8
    d_ffn: 1024
    dropout: 0
    use_positional_encoding: true
    norm_before: true
SBtfinter: !copy <SBtfintra>
MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: 256
    out_channels: 256
    num_layers: 2
    K: 250
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: false
    skip_around_intra: true
Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: 256
    out_channels: 1
    kernel_size: 16
    stride: 8
    bias: false
modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def test_a_stock_sepformer_folder_passes(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text(STOCK_SEPFORMER)
    check_model_yaml(str(tmp_path / "hyperparams.yaml"))


EXPERIMENT_YAML = """\
seed: 7
__set_seed: !apply:torch.manual_seed [!ref <seed>]
output_folder: !PLACEHOLDER
save_folder: !ref <output_folder>/save
sample_rate: 8000
Encoder: !new:spmamba_sb.trio.Encoder
    n_fft: 32
    hop_length: 8
MaskNet: !new:spmamba_sb.trio.MaskNet
    n_fft: 32
    emb_dim: 4
    emb_kernel_size: 3
    num_blocks: 1
    num_heads: 2
    attention_qk_dim: 17
    sequence_layer: {layer}
Decoder: !new:spmamba_sb.trio.Decoder
    n_fft: 32
    hop_length: 8
"""
SEQUENCE_LAYERS = {
    "mamba": "!name:spmamba_sb.nnet.bmamba.BMamba\n        d_state: 4\n        expand: 2\n        scan_backend: torch",
    "lstm": "!name:spmamba_sb.nnet.sequence.BLSTM\n        hidden_dim: 6",
}


@pytest.mark.parametrize("layer", sorted(SEQUENCE_LAYERS))
def test_folders_exported_from_an_experiment_pass(tmp_path, layer):
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(EXPERIMENT_YAML.format(layer=SEQUENCE_LAYERS[layer]))
    experiment_yaml = load_hyperpyyaml((folder / "hyperparams.yaml").read_text(), {"output_folder": str(folder)})
    modules = {name.lower(): experiment_yaml[name] for name in ("Encoder", "MaskNet", "Decoder")}
    Checkpointer(folder / "save", modules).save_checkpoint(meta={"si-snr": -1.0})
    export_model(str(folder), str(tmp_path / "model"))
    check_model_yaml(str(tmp_path / "model" / "hyperparams.yaml"))
    separator = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "model"))
    assert separator.separate_batch(torch.zeros(1, 320)).shape == (1, 320, 2)


def _reference_state(layer):
    """A reference checkpoint's weights at the published 8 kHz layout, one small block: the
    SPMamba repository's (Mamba), or TF-GridNet's (LSTM: the BLSTM and projection weights of a
    mask net of ours, under the reference's names)."""
    state = reference_state_dict(n_fft=256, n_srcs=2, n_layers=1, n_heads=1, emb_dim=4, emb_ks=4, d_state=4,
                                 expand=1, approx_qk_dim=512, seed=3)
    if layer == "mamba":
        return state
    state = {key: value for key, value in state.items() if "_mamba." not in key and "_linear." not in key}
    ours = MaskNet(n_fft=256, emb_dim=4, emb_kernel_size=4, num_blocks=1, num_heads=1, attention_qk_dim=512,
                   sequence_layer=partial(BLSTM, hidden_dim=8)).state_dict()
    for path in ("intra", "inter"):
        for key, value in ours.items():
            if key.startswith(f"blocks.0.{path}.sequence.lstm."):
                state[f"blocks.0.{path}_rnn.{key.rsplit('.', 1)[1]}"] = value
            elif key.startswith(f"blocks.0.{path}.project."):
                state[f"blocks.0.{path}_linear.{key.rsplit('.', 1)[1]}"] = value
    return state


@pytest.mark.parametrize("layer", ["mamba", "lstm"])
def test_folders_exported_from_a_reference_checkpoint_pass(tmp_path, capsys, layer):
    torch.save(_reference_state(layer), tmp_path / "best_model.pth")
    assert exit_status(cli.export_main, "--reference", tmp_path / "best_model.pth", "--out", tmp_path / "model") == 0
    assert f"{layer} network of 1 blocks" in capsys.readouterr().out
    check_model_yaml(str(tmp_path / "model" / "hyperparams.yaml"))
    separator = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "model"))
    assert separator.separate_batch(torch.zeros(1, 800)).shape == (1, 800, 2)


def test_a_name_refused_as_text_is_never_imported(tmp_path):
    refused = "speechbrain.lobes.models.fairseq_wav2vec"
    sys.modules.pop(refused, None)
    (tmp_path / "hyperparams.yaml").write_text(f"wav2vec: !new:{refused}.FairseqWav2Vec2 {{}}\n")
    with pytest.raises(UntrustedModelError, match=f"line 1: !new:{refused}.FairseqWav2Vec2 is not on the allow-list"):
        check_model_yaml(str(tmp_path / "hyperparams.yaml"))
    assert refused not in sys.modules
