"""Data preparation ended from outside: its workers die with it after SIGKILL, and Ctrl-C stops it
with one line and status 130, leaving no half-written file."""

import os
import signal
import subprocess
import sys
import time

import pytest

BIN = os.path.dirname(sys.executable)
SIZES = ["--duration", "1", "--hours-train", "0.006", "--hours-valid", "0.0006", "--hours-test", "0.0006",
         "--num-voices", "6", "--no-progress", "--num-workers", "2"]

pytestmark = [pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads processes from /proc (Linux)"),
              pytest.mark.slow]  # preparations in processes of their own


def _prepare(out):
    return [os.path.join(BIN, "spmamba-prepare-demo"), "--out", str(out), *SIZES]


def _children(pid):
    """IDs of the live processes whose parent is ``pid`` (from /proc/<id>/stat)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            state = _state(int(name))
            if state is not None and state[1] == pid and state[0] != "Z":
                found.append(int(name))
    return found


def _state(pid):
    """``(state letter, parent ID)`` of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def _alive(pid):
    state = _state(pid)
    return state is not None and state[0] != "Z"


def _wait_for(process, ready, what, deadline_s=120):
    deadline = time.time() + deadline_s
    while not ready():
        assert process.poll() is None, f"the preparation ended before {what}"
        assert time.time() < deadline, f"no {what} within {deadline_s} s"
        time.sleep(0.05)


def _partial_files(root):
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
            if name.endswith(".partial") or name.startswith("tmp")]


def test_workers_exit_when_the_preparation_is_killed(tmp_path):
    process = subprocess.Popen(_prepare(tmp_path / "out"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(process, lambda: len(_children(process.pid)) >= 2, "two worker processes")
        workers = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.time() + 5
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their killed parent"
    finally:
        process.kill()


def test_ctrl_c_stops_the_preparation_with_one_line_and_status_130(tmp_path):
    out = tmp_path / "out"
    # a session of its own: Ctrl-C in a terminal signals the whole foreground process group
    process = subprocess.Popen(_prepare(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _wait_for(process, lambda: any(out.glob("train/metadata/*.json")), "mixture written")
        workers = _children(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stderr.rstrip().splitlines()[-1] == "spmamba-prepare-demo: interrupted"
    assert "Traceback" not in stderr
    assert not (out / "test.csv").exists()
    assert not _partial_files(out)
    assert workers and not [pid for pid in workers if _alive(pid)]
