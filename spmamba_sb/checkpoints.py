"""Crash-safe checkpoints: a Checkpointer whose checkpoints appear only once complete, plus
recoverables for the random number generators and the training time.

SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` writes a checkpoint's
``CKPT.yaml`` (the file that marks a folder as a checkpoint) before its parameter files, so a
process killed in between leaves a "checkpoint" that cannot be loaded, and the next run picks it
as the newest. :class:`Checkpointer` writes ``CKPT.yaml`` last, by renaming, so a killed save
leaves only an unmarked folder (removed at the next recovery) and the previous checkpoint loads.

Example
-------
>>> import tempfile, torch
>>> folder = tempfile.mkdtemp()
>>> clock = TrainingClock()
>>> checkpointer = Checkpointer(folder, {"model": torch.nn.Linear(2, 2), "clock": clock})
>>> clock.seconds = 12.5
>>> _ = checkpointer.save_checkpoint()
>>> clock.seconds = 0.0
>>> _ = checkpointer.recover_if_possible()
>>> clock.seconds
12.5
"""

import logging
import os
import random
import shutil
import time

import numpy as np
import torch
import yaml
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from speechbrain.utils import checkpoints as sb_checkpoints
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from spmamba_sb.outputs import PARTIAL_SUFFIX
from spmamba_sb.tensor_files import TensorFileError, load_tensor_file

logger = logging.getLogger(__name__)

#: The recoverable holding the mask net's weight average (``ema_decay``): ``masknet_average.ckpt`` in a checkpoint.
MASKNET_AVERAGE = "masknet_average"


class Checkpointer(sb_checkpoints.Checkpointer):
    """SpeechBrain's Checkpointer, with checkpoints marked complete only after every file is written.

    Same arguments and use as :class:`speechbrain.utils.checkpoints.Checkpointer`.
    """

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save a checkpoint (see the base class); its ``CKPT.yaml`` appears last, atomically.

        Under DDP every process returns only once the checkpoint is complete, so none can
        look for checkpoints while the main process is still writing one.
        """
        self._written_metafiles = []
        checkpoint = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name, verbosity=verbosity)
        for path in self._written_metafiles:
            os.replace(f"{path}{PARTIAL_SUFFIX}", path)
        ddp_barrier()
        return checkpoint

    # SpeechBrain has no public hook for where the marker file goes; tests/unit/test_checkpoints.py
    # fails if this member is renamed or changes its arguments.
    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        self._written_metafiles.append(fpath)
        return super()._save_checkpoint_metafile(f"{fpath}{PARTIAL_SUFFIX}", meta_to_include, end_of_epoch)

    def recover_if_possible(self, *args, **kwargs):
        """Remove checkpoint folders a killed save left unmarked, then recover (see the base class)."""
        if if_main_process() and self.checkpoints_dir.exists():
            for folder in self.checkpoints_dir.glob(f"{sb_checkpoints.CKPT_PREFIX}+*"):
                if folder.is_dir() and not (folder / sb_checkpoints.METAFNAME).exists():
                    logger.warning("removing %s: an interrupted checkpoint save", folder)
                    shutil.rmtree(folder)
        ddp_barrier()  # every process sees the same checkpoints
        return super().recover_if_possible(*args, **kwargs)


@sb_checkpoints.register_checkpoint_hooks
class RandomState:
    """The Python, NumPy and PyTorch (CPU and CUDA) generator states, as a checkpoint recoverable.

    Restoring them on resume makes the rest of the run draw the same random numbers (data
    loader worker seeds, hence training crops) as a run that was never interrupted. The file
    holds tensors and plain values only, and is read with ``weights_only=True``
    (:func:`~spmamba_sb.tensor_files.load_tensor_file`): a file that holds anything else is
    refused with a :class:`~spmamba_sb.tensor_files.TensorFileError` naming it, and nothing
    of it runs.
    """

    @sb_checkpoints.mark_as_saver
    def _save(self, path):
        name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        state = {
            "python": random.getstate(),  # (version, 625 ints, a float or None)
            "numpy": {"bit_generator": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, path)

    @sb_checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch=True, device=None):
        state = load_tensor_file(str(path))
        try:
            numpy_state = state["numpy"]
            random.setstate(state["python"])
            np.random.set_state((numpy_state["bit_generator"], numpy_state["keys"].numpy().astype(np.uint32),
                                 numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
            torch.set_rng_state(state["torch"])
            cuda_states = state["cuda"]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise TensorFileError(f"{path}: not the random generator states this program saves ({error!r})") from error
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


@sb_checkpoints.register_checkpoint_hooks
class TrainingClock:
    """Wall-clock seconds spent in the training stage, kept across resumes.

    ``start()`` / ``stop()`` bracket a training stage; ``elapsed`` includes a running stage.
    Validation, testing and the time before a resume are not counted, so a time budget
    means the same for a run that was interrupted and one that was not.
    """

    def __init__(self):
        self.seconds = 0.0
        self._started = None

    def start(self):
        """Start counting (a training stage begins)."""
        self._started = time.monotonic()

    def stop(self):
        """Stop counting (a training stage ends)."""
        self.seconds = self.elapsed
        self._started = None

    @property
    def elapsed(self) -> float:
        """Training seconds so far."""
        running = time.monotonic() - self._started if self._started is not None else 0.0
        return self.seconds + running

    @sb_checkpoints.mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"seconds": self.elapsed}, handle)

    @sb_checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch=True, device=None):
        with open(path, encoding="utf-8") as handle:
            self.seconds = float(yaml.safe_load(handle)["seconds"])
        self._started = None
