"""train.py stopped with Ctrl-C: one line, exit status 130, no half-written checkpoint; resuming
from a checkpoint whose random_state.ckpt was replaced by a pickle that runs code: one line
naming the file, and nothing of the pickle runs."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import TINY_OVERRIDES, write_corpus

pytestmark = pytest.mark.slow  # train.py runs, stopped and resumed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Payload:
    """Unpickling it creates the file ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _command(data, out):
    # 8 steps per epoch: a checkpoint every couple of seconds, so Ctrl-C lands between two of them
    settings = {**dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2])), "--N_epochs": "100",
                "--train_epoch_size": "16"}
    return [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, "hparams", "spmamba.yaml"),
            "--data_folder", str(data), "--output_folder", str(out), "--device", "cpu",
            *[item for pair in settings.items() for item in pair]]


def _checkpoint_folders(out):
    save = out / "save"
    return sorted(save.glob("CKPT+*")) if save.is_dir() else []


def test_ctrl_c_then_a_planted_random_state_on_resume(tmp_path):
    data = write_corpus(tmp_path / "data", sizes=(("train", 4), ("valid", 1), ("test", 1)), seconds=0.3)
    out = tmp_path / "exp"
    command = _command(data, out)
    with open(tmp_path / "stderr.txt", "w", encoding="utf-8") as stderr:
        # a session of its own: Ctrl-C in a terminal signals the whole foreground process group
        process = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        try:
            deadline = time.time() + 300  # a guard against a hang; slow when the suite shares the cores
            while not any((folder / "CKPT.yaml").exists() for folder in _checkpoint_folders(out)):
                assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
                assert time.time() < deadline, "no checkpoint within 300 s"
                time.sleep(0.05)
            time.sleep(0.3)  # into the next epoch's training steps
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)
        finally:
            process.kill()
    stderr = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == "train.py: interrupted"
    assert "Traceback" not in stderr
    written = [os.path.join(folder, name) for folder, _, names in os.walk(out) for name in names]
    assert not [path for path in written if path.endswith(".partial")], written
    assert all((folder / "CKPT.yaml").exists() for folder in _checkpoint_folders(out))
    assert not (out / "test_results.csv").exists()

    marker = tmp_path / "pickle_ran"
    planted = _checkpoint_folders(out)[-1] / "random_state.ckpt"
    torch.save({"python": _Payload(str(marker))}, planted)
    resumed = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    line = resumed.stderr.rstrip().splitlines()[-1]
    assert line.startswith(f"train.py: error: {planted}"), line
    assert not marker.exists()
