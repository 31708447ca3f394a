"""Data preparation killed with SIGKILL at two points, then rerun, equals an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # preparations of a corpus, killed and rerun

BIN = os.path.dirname(sys.executable)
SIZES = ["--duration", "1", "--hours-train", "0.003", "--hours-valid", "0.0006", "--hours-test", "0.0006",
         "--num-voices", "6", "--no-progress", "--num-workers", "2"]


def _prepare(out):
    return [os.path.join(BIN, "spmamba-prepare-demo"), "--out", str(out), *SIZES]


def _tree(root):
    """Relative path -> bytes of every file (CSV paths made relative to the root)."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            data = open(path, "rb").read()
            files[os.path.relpath(path, root)] = data.replace(str(root).encode(), b"<root>")
    return files


def _kill_when(process, ready, deadline_s=120):
    deadline = time.time() + deadline_s
    while not ready():
        assert process.poll() is None, "preparation ended before the kill point"
        assert time.time() < deadline, "kill point not reached"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_preparation_resumes_to_the_same_dataset(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert subprocess.run(_prepare(reference), capture_output=True).returncode == 0
    # first kill: while the source corpora are being synthesised
    process = subprocess.Popen(_prepare(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: (killed / "sources").exists() and any((killed / "sources").rglob("*.flac")))
    # second kill: while mixtures are being written
    process = subprocess.Popen(_prepare(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: any(killed.glob("train/metadata/*.json")))
    assert not (killed / "test.csv").exists()
    rerun = subprocess.run(_prepare(killed), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed, expected = _tree(killed), _tree(reference)
    assert resumed.keys() == expected.keys()
    different = [path for path, data in resumed.items() if data != expected[path]]
    assert not different, different
