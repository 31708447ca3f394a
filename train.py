#!/usr/bin/env python3
"""Train and test SPMamba (or the TF-GridNet baseline) on separation CSVs.

    python train.py hparams/spmamba.yaml --data_folder DIR [--precision bf16] [--device cpu]
        [--max_train_minutes M] [--train_epoch_size N] [--dynamic_mixing True]

DIR holds train.csv, valid.csv and test.csv in SpeechBrain's separation format. With
``dynamic_mixing`` every training example is a new mixture of train.csv's sources
(:mod:`spmamba_sb.data.dynamic_mixing`). Run the same command again to resume from the last
checkpoint; once training has finished it re-runs only the test. Multi-GPU:
``torchrun --nproc_per_node=N train.py ...``.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.sampler import ReproducibleRandomSampler

from spmamba_sb.brain import SeparationBrain
from spmamba_sb.data.dynamic_mixing import DynamicMixingDataset, DynamicMixingSampler, SourcePool
from spmamba_sb.data.pipelines import check_rows, separation_datasets

UNSUPPORTED_FLAGS = ("use_wham_noise",)


def dynamic_mixing_data(hparams):
    """The training set and its sampler under ``dynamic_mixing``: new mixtures of train.csv's
    sources, ``train_epoch_size`` of them per epoch (default: as many as train.csv has rows)."""
    if not hparams["limit_training_signal_len"]:
        raise SystemExit("dynamic_mixing needs limit_training_signal_len: True (mixtures of training_signal_len samples)")
    csv_path, root = hparams["train_data"], hparams["data_folder"]
    skip = check_rows(csv_path, hparams["num_spks"], hparams["sample_rate"], root, hparams["missing_audio"])
    pool = SourcePool.from_csv(csv_path, hparams["num_spks"], root, skip_ids=skip)
    epoch_size = hparams.get("train_epoch_size") or pool.num_sources // hparams["num_spks"]
    dataset = DynamicMixingDataset(pool, hparams["num_spks"], hparams["training_signal_len"], hparams["seed"],
                                   gain_db=hparams["dm_gain_db"], epoch_size=epoch_size)
    return dataset, DynamicMixingSampler(epoch_size)


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    enabled = [flag for flag in UNSUPPORTED_FLAGS if hparams.get(flag)]
    if enabled:
        raise SystemExit(f"{hparams_file}: {enabled} are read by SpeechBrain's stock recipes only; set them False here")

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    dynamic_mixing = hparams.get("dynamic_mixing")
    fixed_splits = ["valid_data", "test_data"] if dynamic_mixing else ["train_data", "valid_data", "test_data"]
    datasets = separation_datasets(
        [hparams[split] for split in fixed_splits],
        num_spks=hparams["num_spks"],
        sample_rate=hparams["sample_rate"],
        training_signal_len=None if dynamic_mixing or not hparams["limit_training_signal_len"]
        else hparams["training_signal_len"],
        data_root=hparams["data_folder"],
        missing_audio=hparams["missing_audio"],
    )
    train_loader_kwargs = dict(hparams["dataloader_opts"])
    if dynamic_mixing:
        valid_data, test_data = datasets
        train_data, train_loader_kwargs["sampler"] = dynamic_mixing_data(hparams)
        train_loader_kwargs["collate_fn"] = PaddedBatch
    else:
        train_data, valid_data, test_data = datasets
        if hparams.get("train_epoch_size"):
            train_loader_kwargs["sampler"] = ReproducibleRandomSampler(
                train_data, seed=hparams["seed"], num_samples=hparams["train_epoch_size"]
            )
    brain = SeparationBrain(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(test_data, min_key="si-snr", test_loader_kwargs=hparams["valid_dataloader_opts"])


if __name__ == "__main__":
    main(sys.argv[1:])
