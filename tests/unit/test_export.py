"""Model folders from training experiments: read as data, no seeding, no objects built."""

import shutil
from functools import partial

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from spmamba_sb import cli
from spmamba_sb.checkpoints import MASKNET_AVERAGE
from spmamba_sb.export import export_model
from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.model_folder import MODEL_FILES, read_experiment
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Decoder, Encoder, MaskNet, separate
from tests.conftest import exit_status

MAMBA = dict(d_state=4, expand=2, scan_backend="torch")
TINY = dict(n_fft=32, emb_dim=4, emb_kernel_size=3, num_blocks=1, num_heads=2, attention_qk_dim=17,
            sequence_layer=partial(BMamba, **MAMBA))

EXPERIMENT_YAML = """\
seed: 7
__set_seed: !apply:torch.manual_seed [!ref <seed>]
output_folder: !PLACEHOLDER
save_folder: !ref <output_folder>/save
sample_rate: 8000
n_fft: 32
never_built: !new:no_such_package.Thing
optimizer: !name:torch.optim.Adam
    lr: 0.001
Encoder: !new:spmamba_sb.trio.Encoder
    n_fft: !ref <n_fft>
    hop_length: 8
MaskNet: !new:spmamba_sb.trio.MaskNet
    num_spks: 3
    n_fft: !ref <n_fft>
    emb_dim: 4
    emb_kernel_size: 3
    num_blocks: 1
    num_heads: 2
    attention_qk_dim: 17
    sequence_layer: !name:spmamba_sb.nnet.bmamba.BMamba
        d_state: 4
        expand: 2
        scan_backend: torch
Decoder: !new:spmamba_sb.trio.Decoder
    n_fft: !ref <n_fft>
    hop_length: 8
"""


def write_experiment(folder):
    """An experiment folder: its hyperparams.yaml and two checkpoints, the second one better;
    returns the folder and the trio of the better one."""
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(EXPERIMENT_YAML)
    trio = Encoder(32, 8), MaskNet(num_spks=3, **TINY).eval(), Decoder(32, 8)
    checkpointer = Checkpointer(folder / "save", {"encoder": trio[0], "masknet": trio[1], "decoder": trio[2]})
    checkpointer.save_checkpoint(meta={"si-snr": -3.0}, name="worse")
    with torch.no_grad():
        for parameter in trio[1].parameters():
            parameter.add_(0.01)
    checkpointer.save_checkpoint(meta={"si-snr": -5.0}, name="better")
    return folder, trio


@pytest.fixture
def experiment(tmp_path):
    return write_experiment(tmp_path / "experiment")


def test_export_reads_the_yaml_as_data(experiment, tmp_path):
    folder, trio = experiment
    settings = read_experiment(str(folder))
    assert settings["sample_rate"] == 8000 and settings["stft"] == {"n_fft": 32, "hop_length": 8}
    assert settings["masknet"]["num_spks"] == 3 and settings["save_folder"] == f"{folder}/save"
    layer = settings["masknet"]["sequence_layer"]
    assert layer.func is BMamba and layer.keywords == MAMBA
    state = torch.get_rng_state()
    checkpoint = export_model(str(folder), str(tmp_path / "model"))
    assert torch.equal(torch.get_rng_state(), state)  # the experiment's seeding did not run
    assert checkpoint.endswith("CKPT+better")
    assert all((tmp_path / "model" / name).is_file() for name in MODEL_FILES)
    separator = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "saved"))
    mix = torch.randn(2, 400)
    with torch.no_grad():
        expected = separate(mix, *trio)
    torch.testing.assert_close(separator.separate_batch(mix), expected, rtol=0, atol=0)


def test_a_checkpoint_with_a_weight_average_exports_the_average(experiment, tmp_path):
    folder, trio = experiment
    average = MaskNet(num_spks=3, **TINY).eval()
    torch.save(average.state_dict(), folder / "save" / "CKPT+better" / f"{MASKNET_AVERAGE}.ckpt")
    export_model(str(folder), str(tmp_path / "model"))
    exported = torch.load(tmp_path / "model" / "masknet.ckpt", weights_only=True)
    assert exported.keys() == average.state_dict().keys()
    assert all(torch.equal(exported[name], value) for name, value in average.state_dict().items())
    trained = trio[1].state_dict()
    assert any(not torch.equal(exported[name], trained[name]) for name in exported)  # not the trained weights


def test_the_export_command_says_when_it_exports_the_weight_average(experiment, tmp_path, capsys):
    folder, _ = experiment
    assert exit_status(cli.export_main, folder, "--out", tmp_path / "trained") == 0
    assert capsys.readouterr().out == f"exported {folder / 'save' / 'CKPT+better'} to {tmp_path / 'trained'}\n"
    torch.save(MaskNet(num_spks=3, **TINY).state_dict(), folder / "save" / "CKPT+better" / f"{MASKNET_AVERAGE}.ckpt")
    assert exit_status(cli.export_main, folder, "--out", tmp_path / "average") == 0
    assert capsys.readouterr().out == (f"exported {folder / 'save' / 'CKPT+better'} (the weight average of its mask "
                                       f"net) to {tmp_path / 'average'}\n")


def test_export_errors(experiment, tmp_path):
    folder, _ = experiment
    with pytest.raises(FileNotFoundError, match="not a training experiment"):
        export_model(str(tmp_path), str(tmp_path / "model"))
    (folder / "hyperparams.yaml").write_text(EXPERIMENT_YAML.replace("spmamba_sb.trio.MaskNet", "torch.nn.Identity"))
    with pytest.raises(ValueError, match="MaskNet must be !new:spmamba_sb.trio.MaskNet"):
        export_model(str(folder), str(tmp_path / "model"))
    (folder / "hyperparams.yaml").write_text(EXPERIMENT_YAML)
    for checkpoint in (folder / "save").iterdir():
        for path in checkpoint.iterdir():
            path.unlink()
        checkpoint.rmdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export_model(str(folder), str(tmp_path / "model"))


OLDER_LAYER = """\
    sequence_layer: mamba
    d_state: 4
    expand: 2
    scan_backend: torch
"""


def test_older_experiments_export_in_todays_form(experiment, tmp_path):
    """An experiment whose hyperparams.yaml names the sequence layer by a string."""
    folder, trio = experiment
    today = "".join(line + "\n" for line in EXPERIMENT_YAML.splitlines() if line.startswith("    sequence_layer")
                    or line.startswith("        "))
    (folder / "hyperparams.yaml").write_text(EXPERIMENT_YAML.replace(today, OLDER_LAYER))
    export_model(str(folder), str(tmp_path / "model"))
    text = (tmp_path / "model" / "hyperparams.yaml").read_text()
    assert "    sequence_layer: !name:spmamba_sb.nnet.bmamba.BMamba\n        d_state: 4\n" in text
    assert "mamba\n" not in text
    separator = SPMambaSeparation.from_hparams(source=str(tmp_path / "model"), savedir=str(tmp_path / "saved"))
    mix = torch.randn(2, 400)
    with torch.no_grad():
        torch.testing.assert_close(separator.separate_batch(mix), separate(mix, *trio), rtol=0, atol=0)


def _as_saved(folder, save_folder=None):
    """Write hyperparams.yaml as SpeechBrain saves it: references resolved, absolute folders."""
    text = EXPERIMENT_YAML.replace("output_folder: !PLACEHOLDER", f"output_folder: {folder}")
    (folder / "hyperparams.yaml").write_text(
        text.replace("save_folder: !ref <output_folder>/save", f"save_folder: {save_folder or folder / 'save'}"))


def test_a_copied_or_moved_experiment_exports_its_own_checkpoints(experiment, tmp_path):
    folder, _ = experiment
    _as_saved(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "save" / "CKPT+better")  # the copy's best checkpoint is not the original's
    assert read_experiment(str(copy))["save_folder"] == str(copy / "save")
    assert export_model(str(copy), str(tmp_path / "model")) == str(copy / "save" / "CKPT+worse")
    shutil.rmtree(folder)  # moved: the folder it was trained in is gone
    assert export_model(str(copy), str(tmp_path / "again")) == str(copy / "save" / "CKPT+worse")


def test_checkpoints_kept_outside_the_experiment_stay_where_they_are(experiment, tmp_path):
    folder, _ = experiment
    elsewhere = tmp_path / "checkpoints"
    shutil.move(str(folder / "save"), elsewhere)
    _as_saved(folder, save_folder=elsewhere)
    assert read_experiment(str(folder))["save_folder"] == str(elsewhere)
    assert export_model(str(folder), str(tmp_path / "model")) == str(elsewhere / "CKPT+better")
