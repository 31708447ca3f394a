"""hparams/stock/: the files for SpeechBrain's stock recipes/{LibriMix,WSJ0Mix}/separation/train.py.

The stock recipes are not part of the speechbrain package. These tests check what those scripts
read from the hparams file, and train a tiny model through the stock separation flow. With
``SPEECHBRAIN_RECIPES`` set to the ``recipes`` folder of a SpeechBrain 1.1 source tree (and
``mir_eval`` installed), they also run the stock ``train.py`` itself on a tiny synthetic corpus.
"""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import ruamel.yaml
import soundfile as sf
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate
from speechbrain.utils.epoch_loop import EpochCounterWithStopper

from spmamba_sb.checkpoints import Checkpointer
from spmamba_sb.data.pipelines import separation_datasets
from spmamba_sb.trio import Decoder, Encoder, MaskNet
from tests.conftest import TINY_OVERRIDES, write_corpus
from tests.unit.test_trio import stock_flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOCK = os.path.join(ROOT, "hparams", "stock")
MAIN = os.path.join(ROOT, "hparams", "spmamba-8k.yaml")

# What each stock recipe's train.py reads from its hparams file (SpeechBrain 1.1); base_folder_dm
# only with dynamic_mixing True, and a pretrained_separator key would replace the training's
# re-initialisation with loaded weights.
READ_BY_ALL = {
    "Encoder", "MaskNet", "Decoder", "modules", "optimizer", "loss", "lr_scheduler", "epoch_counter",
    "checkpointer", "train_logger", "num_spks", "sample_rate", "precision", "data_folder", "output_folder",
    "save_folder", "skip_prep", "train_data", "valid_data", "test_data", "dataloader_opts", "clip_grad_norm",
    "loss_upper_lim", "threshold_byloss", "threshold", "limit_training_signal_len", "training_signal_len",
    "use_speedperturb", "use_rand_shift", "min_shift", "max_shift", "use_wavedrop", "speed_perturb", "drop_freq",
    "drop_chunk", "dynamic_mixing", "save_audio", "n_audio_to_save",
}
# Per file: the recipe folder, the keys only that recipe reads, the CSVs its preparation writes to
# save_folder (train, valid, test; LibriMix's name carries the number of speakers), and the
# corpus layout under data_folder (wav8k/min/<split>/<folder>).
RECIPES = {
    "librimix-spmamba-8k.yaml": {
        "folder": "LibriMix", "extra_keys": {"use_wham_noise"},
        "csv": ["libri{}mix_train-360.csv", "libri{}mix_dev.csv", "libri{}mix_test.csv"],
        "corpus": "Libri2Mix", "splits": ["train-360", "dev", "test"], "mix_folder": "mix_clean",
        "extra_folders": ["noise", "mix_both"],
    },
    "wsj0mix-spmamba-8k.yaml": {
        "folder": "WSJ0Mix", "extra_keys": set(),
        "csv": ["wsj_tr.csv", "wsj_cv.csv", "wsj_tt.csv"],
        "corpus": os.path.join("wsj0-mix", "2speakers"), "splits": ["tr", "cv", "tt"], "mix_folder": "mix",
        "extra_folders": [],
    },
}
# The data section, where a stock file differs from spmamba-8k.yaml.
DATA_KEYS = {"experiment_name", "train_data", "valid_data", "test_data", "skip_prep"}
# Keys of spmamba-8k.yaml that the stock recipes leave unused (their own fit_batch clips with clip_grad_norm).
OURS_ONLY = {
    "missing_audio", "max_grad_norm", "skip_nonfinite_grads", "nonfinite_patience", "max_train_minutes",
    "train_epoch_size", "num_test_plots", "dm_gain_db", "eval_loss", "valid_dataloader_opts",
}
TINY = {key.lstrip("-"): value for key, value in zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2])}
TINY.pop("num_test_plots")  # ours only
TINY["batch_size"] = "1"  # the stock recipes also validate and test with this batch size


def _load(name, tmp_path, tiny=True, **extra):
    """A stock file loaded with a tmp data and output folder, tiny sizes and ``extra``."""
    overrides = {"data_folder": str(tmp_path / "data"), "output_folder": str(tmp_path / "out"),
                 **(TINY if tiny else {}), **extra}
    with open(os.path.join(STOCK, name), encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, "\n".join(f"{key}: {value}" for key, value in overrides.items()))


def _definitions(path):
    """Each top-level key's definition as written (tags, !ref targets and values), comments dropped."""

    def plain(node):
        tag = getattr(getattr(node, "tag", None), "value", None)
        if isinstance(node, dict):
            return tag, {key: plain(value) for key, value in node.items()}
        if isinstance(node, list):
            return tag, [plain(value) for value in node]
        return tag, getattr(node, "value", node)

    with open(path, encoding="utf-8") as handle:
        tree = ruamel.yaml.YAML().load(handle)
    return {key: plain(value) for key, value in tree.items()}


def test_all_files_are_covered():
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(STOCK, "*.yaml"))) == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.parametrize("num_spks", [2, 3])
def test_data_paths_are_where_the_stock_preparation_writes(name, num_spks, tmp_path):
    hparams = _load(name, tmp_path, num_spks=num_spks)
    assert hparams["skip_prep"] is False  # the recipe prepares the CSVs itself
    assert hparams["save_folder"] == str(tmp_path / "out" / "save")
    expected = [os.path.join(hparams["save_folder"], csv.format(num_spks)) for csv in RECIPES[name]["csv"]]
    assert [hparams[key] for key in ("train_data", "valid_data", "test_data")] == expected
    assert hparams["sample_rate"] == 8000  # both preparations read wav8k/min only
    assert hparams["MaskNet"].num_spks == num_spks


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_defines_what_the_stock_recipe_reads(name, tmp_path):
    hparams = _load(name, tmp_path)
    missing = (READ_BY_ALL | RECIPES[name]["extra_keys"]) - set(hparams)
    assert not missing
    assert "pretrained_separator" not in hparams  # training starts from scratch
    assert isinstance(hparams["Encoder"], Encoder) and isinstance(hparams["Decoder"], Decoder)
    assert isinstance(hparams["MaskNet"], MaskNet)
    modules = hparams["modules"]
    assert (modules["encoder"], modules["masknet"], modules["decoder"]) == (
        hparams["Encoder"], hparams["MaskNet"], hparams["Decoder"])
    recoverables = hparams["checkpointer"].recoverables
    assert isinstance(hparams["checkpointer"], Checkpointer)
    assert recoverables["masknet"] is hparams["MaskNet"] and recoverables["counter"] is hparams["epoch_counter"]
    assert recoverables["lr_scheduler"] is hparams["lr_scheduler"]
    assert isinstance(hparams["lr_scheduler"], ReduceLROnPlateau)
    assert isinstance(hparams["epoch_counter"], EpochCounterWithStopper)
    assert isinstance(hparams["optimizer"](hparams["MaskNet"].parameters()), torch.optim.Adam)
    flags = ["use_speedperturb", "use_rand_shift", "use_wavedrop", "threshold_byloss", "dynamic_mixing",
             "save_audio"] + sorted(RECIPES[name]["extra_keys"])
    assert not any(hparams[flag] for flag in flags)  # all off, as in the paper's recipe
    assert hparams["speed_perturb"].orig_freq == hparams["sample_rate"]
    assert hparams["dataloader_opts"]["batch_size"] == 1 and hparams["precision"] == "fp32"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_everything_but_the_data_section_is_spmamba_8k(name):
    stock, main = _definitions(os.path.join(STOCK, name)), _definitions(MAIN)
    assert set(stock) - DATA_KEYS <= set(main)
    assert set(main) - set(stock) == OURS_ONLY | ({"use_wham_noise"} - RECIPES[name]["extra_keys"])
    changed = [key for key in set(stock) - DATA_KEYS if stock[key] != main[key]]
    assert not changed


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_builds_the_published_network(name, tmp_path):
    hparams = _load(name, tmp_path, tiny=False)
    assert sum(p.numel() for p in hparams["MaskNet"].parameters()) == 6_094_498


class StockStyleSeparation(sb.Brain):
    """A stock separation recipe's Brain in brief: its forward flow, the ``loss`` key, and the
    scheduler, logger and checkpointer calls of its stage end."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        num_spks = self.hparams.num_spks
        targets = torch.stack([getattr(batch, f"s{i}_sig").data for i in range(1, num_spks + 1)], dim=-1)
        modules = self.hparams.Encoder, self.hparams.MaskNet, self.hparams.Decoder
        return stock_flow(batch.mix_sig.data, *modules, num_spks), targets

    def compute_objectives(self, predictions, batch, stage):
        estimates, targets = predictions
        return self.hparams.loss(targets, estimates).mean()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.VALID:
            _, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
            update_learning_rate(self.optimizer, next_lr)
            self.hparams.train_logger.log_stats({"epoch": epoch}, valid_stats={"si-snr": stage_loss})
            self.checkpointer.save_and_keep_only(meta={"si-snr": stage_loss}, min_keys=["si-snr"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_tiny_model_trains_and_tests_through_the_stock_flow(name, tmp_path):
    hparams = _load(name, tmp_path, N_epochs=1)
    corpus = write_corpus(tmp_path / "corpus", sizes=(("train", 1), ("valid", 1), ("test", 1)), seconds=0.2,
                          sample_rate=8000)
    os.makedirs(hparams["save_folder"], exist_ok=True)
    for split, key in zip(("train", "valid", "test"), ("train_data", "valid_data", "test_data")):
        shutil.copy(corpus / f"{split}.csv", hparams[key])  # stands in for the recipe's preparation
    csvs = [hparams["train_data"], hparams["valid_data"], hparams["test_data"]]
    train, valid, test = separation_datasets(csvs, hparams["num_spks"], hparams["sample_rate"],
                                             training_signal_len=hparams["training_signal_len"])
    brain = StockStyleSeparation(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                                 run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"])
    before = {n: p.detach().clone() for n, p in brain.modules.named_parameters()}
    brain.fit(hparams["epoch_counter"], train, valid, train_loader_kwargs=hparams["dataloader_opts"],
              valid_loader_kwargs=hparams["dataloader_opts"])
    assert any(not torch.equal(before[n], p) for n, p in brain.modules.named_parameters())
    assert np.isfinite(brain.evaluate(test, min_key="si-snr"))
    assert len(hparams["checkpointer"].list_checkpoints()) == 1
    assert "valid si-snr" in (tmp_path / "out" / "train_log.txt").read_text(encoding="utf-8")


def _stock_corpus(root, recipe):
    """Two-source mixtures of 0.5 s at 8 kHz, in the folders the stock preparation lists."""
    generator = np.random.default_rng(0)
    for split in recipe["splits"]:
        for index in range(2):
            signals = {"s1": 0.2 * np.sin(2 * np.pi * (150 + 40 * index) * np.arange(4000) / 8000),
                       "s2": 0.1 * generator.standard_normal(4000), "noise": 0.02 * generator.standard_normal(4000)}
            signals[recipe["mix_folder"]] = signals["s1"] + signals["s2"]
            signals["mix_both"] = signals[recipe["mix_folder"]] + signals["noise"]
            for folder in ["s1", "s2", recipe["mix_folder"]] + recipe["extra_folders"]:
                path = root / recipe["corpus"] / "wav8k" / "min" / split / folder / f"utt{index}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, signals[folder].astype("float32"), 8000)
    return root / recipe["corpus"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPEECHBRAIN_RECIPES"), reason="SPEECHBRAIN_RECIPES is not set")
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_stock_recipe_runs_unchanged(name, tmp_path):
    pytest.importorskip("mir_eval")  # the recipes' save_results
    recipe = RECIPES[name]
    data_folder = _stock_corpus(tmp_path, recipe)
    out = tmp_path / "out"
    command = [sys.executable, "train.py", os.path.join(STOCK, name), "--data_folder", str(data_folder),
               "--output_folder", str(out), "--device", "cpu"]
    for key, value in {**TINY, "N_epochs": "1"}.items():
        command += [f"--{key}", value]
    folder = os.path.join(os.environ["SPEECHBRAIN_RECIPES"], recipe["folder"], "separation")
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    for csv in recipe["csv"]:
        assert (out / "save" / csv.format(2)).is_file()
    rows = (out / "test_results.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4 and rows[-1].startswith("avg,")  # header, the 2 test mixtures, their mean
