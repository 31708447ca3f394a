"""Crash-safe checkpoints: RNG state and training time survive a resume; a killed save loses nothing."""

import os
import random
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from spmamba_sb.checkpoints import Checkpointer, RandomState, TrainingClock
from spmamba_sb.tensor_files import TensorFileError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _draws():
    return (random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.standard_normal()),
            torch.rand(3).tolist())


def test_random_state_resumes_the_same_random_numbers(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"random_state": RandomState()})
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # each generator now holds a cached Gaussian
    checkpointer.save_checkpoint()
    expected = _draws()
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    assert Checkpointer(tmp_path, {"random_state": RandomState()}).recover_if_possible() is not None
    assert _draws() == expected


def test_random_state_file_holds_tensors_and_plain_values_only(tmp_path):
    checkpoint = Checkpointer(tmp_path, {"random_state": RandomState()}).save_checkpoint()
    state = torch.load(checkpoint.path / "random_state.ckpt", weights_only=True)
    assert sorted(state) == ["cuda", "numpy", "python", "torch"]


class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_random_state_is_refused_unread(tmp_path):
    checkpoint = Checkpointer(tmp_path / "save", {"random_state": RandomState()}).save_checkpoint()
    planted, marker = checkpoint.path / "random_state.ckpt", tmp_path / "marker"
    torch.save({"python": random.getstate(), "payload": _Payload(marker)}, planted)
    with pytest.raises(TensorFileError) as refused:
        Checkpointer(tmp_path / "save", {"random_state": RandomState()}).recover_if_possible()
    assert str(refused.value) == (f"{planted}: not a checkpoint of tensors and plain values "
                                  f"(refused to unpickle posix.system)")
    assert not marker.exists()
    torch.save({"python": random.getstate()}, planted)  # loads, but is not what RandomState saves
    with pytest.raises(TensorFileError, match=f"^{re.escape(str(planted))}: not the random generator states"):
        Checkpointer(tmp_path / "save", {"random_state": RandomState()}).recover_if_possible()


def test_training_clock_counts_running_stages_only(tmp_path):
    clock = TrainingClock()
    clock.start()
    time.sleep(0.05)
    assert clock.elapsed >= 0.05
    clock.stop()
    stopped = clock.elapsed
    time.sleep(0.02)
    assert clock.elapsed == stopped
    Checkpointer(tmp_path, {"clock": clock}).save_checkpoint()
    resumed = TrainingClock()
    Checkpointer(tmp_path, {"clock": resumed}).recover_if_possible()
    assert resumed.elapsed == stopped


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
    from spmamba_sb.checkpoints import Checkpointer

    @register_checkpoint_hooks
    class DiesOnSecondSave:
        saves = 0
        @mark_as_saver
        def _save(self, path):
            DiesOnSecondSave.saves += 1
            if DiesOnSecondSave.saves == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            open(path, "w").write("ok")
        @mark_as_loader
        def _recover(self, path, end_of_epoch=True, device=None):
            pass

    layer = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(layer.weight, 1.0)
    # "a_layer" sorts first: its new weights are on disk when the process dies
    checkpointer = Checkpointer(sys.argv[1], {"a_layer": layer, "z_dies": DiesOnSecondSave()})
    checkpointer.save_and_keep_only()
    torch.nn.init.constant_(layer.weight, 2.0)
    checkpointer.save_and_keep_only()
""")


@pytest.mark.slow  # a process of its own, killed during the save
def test_kill_during_checkpoint_save_leaves_the_previous_one_loadable(tmp_path):
    save = tmp_path / "save"
    result = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(save)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    folders = sorted(os.listdir(save))
    assert len(folders) == 2  # the complete checkpoint and the interrupted one
    layer = torch.nn.Linear(2, 2)
    checkpoint = Checkpointer(save, {"a_layer": layer}, allow_partial_load=True).recover_if_possible()
    assert checkpoint is not None and torch.all(layer.weight == 1.0)
    assert os.listdir(save) == [checkpoint.path.name]  # the interrupted save was removed


def test_the_only_private_speechbrain_members_we_override_still_exist():
    """Overriding a private member that SpeechBrain renamed would silently stop working: the
    checkpointer's marker-file hook must exist with the arguments we pass, and the Brain
    overrides no private member of SpeechBrain's at all."""
    import inspect

    import speechbrain as sb
    from speechbrain.utils.checkpoints import Checkpointer as Base

    from spmamba_sb.brain import SeparationBrain

    assert list(inspect.signature(Base._save_checkpoint_metafile).parameters) == [
        "self", "fpath", "meta_to_include", "end_of_epoch"]
    private = {name for name in vars(Checkpointer) if name.startswith("_") and not name.startswith("__")}
    assert private == {"_save_checkpoint_metafile"}
    assert not [name for name in vars(SeparationBrain)
                if name.startswith("_") and not name.startswith("__") and hasattr(sb.Brain, name)]
