"""The preparation's worker pool: initialised workers that ignore Ctrl-C, cancellation on an error,
and workers that end with their parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from spmamba_sb.data.workers import worker_pool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_STATE = {}


def _remember(value):
    _STATE["value"] = value


def _report(_):
    return _STATE.get("value"), signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _nap(seconds):
    time.sleep(seconds)
    return seconds


def test_workers_are_initialised_and_ignore_ctrl_c():
    with worker_pool(2, _remember, ("ready",)) as pool:
        assert list(pool.map(_report, range(4))) == [("ready", True)] * 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process still stops on Ctrl-C


def test_an_error_cancels_the_tasks_not_started():
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(1) as pool:
            futures = [pool.submit(_nap, 0.5) for _ in range(20)]  # 10 s if none were cancelled
            raise KeyboardInterrupt
    assert time.time() - started < 5
    assert all(future.done() for future in futures)
    # the running task and the one the pool had queued for its worker ran (and, under load, one more
    # may have started before the raise); the rest never did
    assert sum(future.cancelled() for future in futures) >= 17


def _run_python(code, **kwargs):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    result = _run_python("""
        from spmamba_sb.data.workers import _bind_to_parent
        _bind_to_parent(0)  # not this process's parent: as if the parent had died before
        print("still running")
    """)
    assert result.returncode == 1 and "still running" not in result.stdout


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads processes from /proc")
def test_the_parent_watcher_ends_an_orphan():
    """The watcher used where the kernel cannot signal a parent's death: a process whose parent
    exits is gone within a second."""
    parent = _run_python("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import os, threading, time; "
                                  "from spmamba_sb.data.workers import _exit_with_parent; "
                                  "threading.Thread(target=_exit_with_parent, args=(os.getppid(), 0.05)).start(); "
                                  "print('watching', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "watching\\n"
        print(child.pid)
    """)
    assert parent.returncode == 0, parent.stderr
    orphan = int(parent.stdout.split()[-1])
    deadline = time.time() + 5
    while _alive(orphan) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
