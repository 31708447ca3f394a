#!/usr/bin/env python3
"""Train and test SPMamba (or the TF-GridNet baseline) on separation CSVs.

    python train.py hparams/spmamba.yaml --data_folder DIR [--precision bf16] [--device cpu]
        [--max_train_minutes M] [--train_epoch_size N] [--dynamic_mixing True]

DIR holds train.csv, valid.csv and test.csv in SpeechBrain's separation format. With
``dynamic_mixing`` every training example is a new mixture of train.csv's sources
(:mod:`spmamba_sb.data.dynamic_mixing`). Run the same command again to resume from the last
checkpoint; once training has finished it re-runs only the test. ``--init_from FOLDER`` starts
the mask net from a model folder's weights (fine-tuning; a resumed run keeps its checkpoint's).
Multi-GPU:
``torchrun --nproc_per_node=N train.py ...``.

Before training, the settings are checked (a missing hparams file, a key the file does not have,
a number out of range: one line, exit status 2) and so is the data: every row's files exist and
have the expected sample rate, and the validation and test files are read whole (no empty file,
no NaN or Inf sample). Bad data, found then or later in a training row, ends with one line
naming the CSV, the row and the file (exit status 1); Ctrl-C with ``train.py: interrupted``
(exit status 130). Any other error is a bug and keeps its traceback.
"""

import sys
from typing import NoReturn

import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
import speechbrain as sb
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.sampler import ReproducibleRandomSampler

from spmamba_sb.brain import SeparationBrain
from spmamba_sb.console import command, disk_error_message, error_line
from spmamba_sb.data.dynamic_mixing import DynamicMixingDataset, DynamicMixingSampler, SourcePool
from spmamba_sb.data.pipelines import check_rows, separation_datasets
from spmamba_sb.environment import apply_scan_environment, scan_environment, with_scan_backend
from spmamba_sb.model_folder import load_initial_masknet
from spmamba_sb.settings import SettingsError, load_hparams

PROG = "train.py"
USAGE_ERROR = 2  # argparse's status for a bad command line; also a bad setting
DATA_ERROR = 1


def is_user_error(error: Exception) -> bool:
    """Whether an error is a message for the user (a missing file, or an error of this package's
    own classes, raised for bad data) rather than a bug, which keeps its traceback."""
    return isinstance(error, FileNotFoundError) or any(
        klass.__module__ == "spmamba_sb" or klass.__module__.startswith("spmamba_sb.")
        for klass in type(error).__mro__
    )


def one_line(error: Exception) -> str:
    """An error's message on one line. An error raised in a DataLoader worker is raised again
    in this process with the worker's traceback as its message, whose last line is the original
    ``<class>: <message>``."""
    if isinstance(error, OSError) and error.filename:
        return disk_error_message(error)
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    lines = str(error).strip().splitlines() or [name]
    return lines[-1].removeprefix(f"{name}: ")


def dynamic_mixing_data(hparams):
    """The training set and its sampler under ``dynamic_mixing``: new mixtures of train.csv's
    sources, ``train_epoch_size`` of them per epoch (default: as many as train.csv has rows)."""
    csv_path, root = hparams["train_data"], hparams["data_folder"]
    skip = check_rows(csv_path, hparams["num_spks"], hparams["sample_rate"], root, hparams["missing_audio"])
    pool = SourcePool.from_csv(csv_path, hparams["num_spks"], root, skip_ids=skip)
    epoch_size = hparams.get("train_epoch_size") or pool.num_sources // hparams["num_spks"]
    dataset = DynamicMixingDataset(pool, hparams["num_spks"], hparams["training_signal_len"], hparams["seed"],
                                   gain_db=hparams["dm_gain_db"], epoch_size=epoch_size)
    return dataset, DynamicMixingSampler(epoch_size)


@command(PROG)
def main(argv):
    """Train and test; a bad setting or bad data ends with one line (status 2 or 1), Ctrl-C with
    status 130."""
    try:
        train(argv)
    except SettingsError as error:
        fail(str(error), USAGE_ERROR)
    except Exception as error:  # a bug (not is_user_error) keeps its traceback
        if not is_user_error(error):
            raise
        fail(one_line(error), DATA_ERROR)


def fail(message: str, status: int) -> NoReturn:
    """End with one line ``train.py: error: <message>`` on stderr and exit status ``status``."""
    error_line(PROG, message)
    raise SystemExit(status)


def train(argv):
    """Check the settings and the data, train, then test."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    environment = scan_environment()
    overrides = with_scan_backend(hparams_file, overrides, environment)  # saved with the experiment
    hparams = load_hparams(hparams_file, overrides)
    apply_scan_environment(hparams["modules"].values(), environment)

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
        check_samples=[hparams["valid_data"], hparams["test_data"]],
        min_samples=hparams["n_fft"],  # a shorter utterance fills no STFT frame
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
    if hparams.get("init_from") and hparams["checkpointer"].find_checkpoint() is None:  # a resume keeps its own
        resampled = load_initial_masknet(hparams["modules"]["masknet"], hparams["init_from"], hparams["sample_rate"])
        print(f"{PROG}: the mask net starts from {hparams['init_from']} "
              f"({resampled} parameters carried over in frequency)", file=sys.stderr)
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
