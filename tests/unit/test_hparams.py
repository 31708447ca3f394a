"""Every hparams file loads, builds the published model on CPU and defines what recipes read."""

import glob
import os

import pytest
from hyperpyyaml import load_hyperpyyaml
from speechbrain.nnet.schedulers import ReduceLROnPlateau

from spmamba_sb.nnet.sequence import BLSTM
from spmamba_sb.schedules import TimeBudgetSchedule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HPARAMS = sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml")))
PARAMS = {"spmamba.yaml": 6_141_826, "spmamba-8k.yaml": 6_094_498, "tfgridnet.yaml": 10_427_266,
          "spmamba-8k-quick.yaml": 6_094_498}
# The paper's recipe, which every file but the short-budget one follows (REFERENCE §2).
PAPER_RECIPE = {"lr": 1e-3, "crop_seconds": 4, "dynamic_mixing": False, "batch_size": 1}
QUICK_RECIPE = {"lr": 2e-3, "crop_seconds": 2, "dynamic_mixing": True, "batch_size": 4}
# Keys that SpeechBrain's stock recipes/{LibriMix,WSJ0Mix}/separation/train.py read.
STOCK_KEYS = [
    "Encoder", "MaskNet", "Decoder", "num_spks", "loss", "optimizer", "lr_scheduler", "epoch_counter",
    "checkpointer", "modules", "train_logger", "save_folder", "output_folder", "clip_grad_norm",
    "loss_upper_lim", "threshold_byloss", "threshold", "limit_training_signal_len", "training_signal_len",
    "use_speedperturb", "use_rand_shift", "use_wavedrop", "use_wham_noise", "dynamic_mixing",
    "dataloader_opts", "N_epochs", "sample_rate", "data_folder", "train_data", "valid_data", "test_data",
    "skip_prep", "save_audio", "n_audio_to_save", "min_shift", "max_shift", "speed_perturb", "drop_freq", "drop_chunk",
]


def test_all_files_are_covered():
    assert sorted(os.path.basename(p) for p in HPARAMS) == sorted(PARAMS)


@pytest.mark.parametrize("path", HPARAMS, ids=os.path.basename)
def test_loads_and_builds(path, tmp_path):
    with open(path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")})
    missing = [key for key in STOCK_KEYS if key not in hparams]
    assert not missing
    assert not any(hparams[flag] for flag in ("use_speedperturb", "use_rand_shift", "use_wavedrop", "threshold_byloss"))
    assert hparams["speed_perturb"].orig_freq == hparams["sample_rate"]
    quick = os.path.basename(path) == "spmamba-8k-quick.yaml"
    recipe = QUICK_RECIPE if quick else PAPER_RECIPE
    if quick:  # warm-up, the peak held, then linear decay to 0 over the last quarter of the time budget
        schedule = hparams["lr_scheduler"]
        assert isinstance(schedule, TimeBudgetSchedule)
        total = schedule.total_minutes
        assert total == hparams["max_train_minutes"] and schedule(total) == 0
        assert schedule(0.75 * total) == hparams["lr"] > schedule(0.8 * total)
    else:  # halved after 10 epochs without improvement
        assert isinstance(hparams["lr_scheduler"], ReduceLROnPlateau)
        assert hparams["lr_scheduler"].factor == 0.5 and hparams["lr_scheduler"].patience == 10
    assert hparams["dynamic_mixing"] == recipe["dynamic_mixing"] and hparams["batch_size"] == recipe["batch_size"]
    assert hparams["epoch_counter"].limit_to_stop == 20
    assert hparams["clip_grad_norm"] == hparams["max_grad_norm"] == 5
    assert hparams["training_signal_len"] == recipe["crop_seconds"] * hparams["sample_rate"]
    assert sum(p.numel() for p in hparams["MaskNet"].parameters()) == PARAMS[os.path.basename(path)]
    assert set(hparams["modules"]) == {"encoder", "masknet", "decoder"}
    assert hparams["Encoder"].n_fft == hparams["Decoder"].n_fft == hparams["n_fft"]
    optimizer = hparams["optimizer"](hparams["MaskNet"].parameters())
    assert optimizer.defaults["lr"] == recipe["lr"] and optimizer.defaults["weight_decay"] == 0


def test_quick_recipe_runs_the_tfgridnet_baseline_from_the_command_line(tmp_path):
    """`--sequence_layer '!ref <blstm>'` (as benchmarks/quick_separation.sh documents) swaps BMamba for BLSTMs."""
    path = os.path.join(ROOT, "hparams", "spmamba-8k-quick.yaml")
    overrides = f"data_folder: {tmp_path}\noutput_folder: {tmp_path / 'out'}\nsequence_layer: !ref <blstm>"
    with open(path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    layers = [path.sequence for block in hparams["MaskNet"].blocks for path in (block.intra, block.inter)]
    assert len({id(layer) for layer in layers}) == 12 and all(isinstance(layer, BLSTM) for layer in layers)
    assert layers[0].lstm.hidden_size == hparams["lstm_hidden_dim"] == 256
    assert sum(p.numel() for p in hparams["MaskNet"].parameters()) == 10_379_938  # TF-GridNet, H=256, 8 kHz
