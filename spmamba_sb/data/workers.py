"""Worker processes for the corpus preparation that end with their parent.

A process pool's idle workers wait on a pipe that every worker holds open, so when the parent
is killed (SIGKILL, an out-of-memory kill) they would stay alive, holding their memory. Workers
started by :func:`worker_pool` exit as soon as their parent is gone: on Linux the kernel kills
them (``prctl(PR_SET_PDEATHSIG)``, which follows the thread that started them: make the pool in
a thread that outlives it), elsewhere a thread in each worker notices that its parent process
changed. Workers ignore Ctrl-C, which the parent handles: it cancels the tasks not
started, lets the running ones finish (their files are written whole), and re-raises. Each
worker of a pool of several computes on one thread (OpenMP's and PyTorch's thread counts), so
that N workers keep N cores busy instead of contending for them.
"""

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Optional, Tuple

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_POLL_SECONDS = 0.5
# The parent's process ID must be the pool creator's for the check in ``_bind_to_parent``: "fork"
# (and "spawn") start workers from the creator, while "forkserver" (Python 3.14's default on
# Linux) starts them from a server process.
_CONTEXT = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


@contextlib.contextmanager
def worker_pool(num_workers: int, initializer: Optional[Callable[..., None]] = None,
                initargs: Tuple[Any, ...] = ()) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers exit when this process dies and ignore Ctrl-C.

    On leaving the ``with`` block normally, every submitted task is waited for; on an exception
    (Ctrl-C included), the tasks not started are cancelled and the running ones waited for.

    Arguments
    ---------
    num_workers : int
        Worker processes.
    initializer : callable, optional
        Run in each worker once it is bound to this process, with ``initargs``.
    initargs : tuple
        Arguments of ``initializer``.

    Yields
    ------
    ProcessPoolExecutor
        The pool.

    Example
    -------
    >>> with worker_pool(2) as pool:
    ...     sorted(pool.map(abs, [-2, 1]))
    [1, 2]
    """
    executor = ProcessPoolExecutor(max_workers=num_workers, mp_context=_CONTEXT, initializer=_start_worker,
                                   initargs=(os.getpid(), num_workers > 1, initializer, initargs))
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _start_worker(parent_pid: int, one_thread: bool, initializer: Optional[Callable[..., None]],
                  initargs: Tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _bind_to_parent(parent_pid)
    if one_thread:
        _compute_on_one_thread()
    if initializer is not None:
        initializer(*initargs)


def _compute_on_one_thread() -> None:
    """Limit this process's thread pools to one thread: OpenMP's (for libraries imported later) and PyTorch's."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _bind_to_parent(parent_pid: int) -> None:
    """End this process when process ``parent_pid``, its parent, dies (at once, if it already has)."""
    if not (sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL)):
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="exit-with-parent", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def _set_parent_death_signal(signal_number: int) -> bool:
    """Ask Linux to send ``signal_number`` to this process when its parent dies; whether it agreed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        agreed = libc.prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) == 0
    except (OSError, AttributeError) as error:
        logger.debug("prctl unavailable (%s); watching the parent process instead", error)
        return False
    if not agreed:
        logger.debug("prctl(PR_SET_PDEATHSIG) failed (errno %d); watching the parent process instead",
                     ctypes.get_errno())
    return agreed


def _exit_with_parent(parent_pid: int, poll_seconds: float = _PARENT_POLL_SECONDS) -> None:
    """Exit the process once its parent is no longer ``parent_pid`` (an orphan is adopted by another)."""
    while os.getppid() == parent_pid:
        time.sleep(poll_seconds)
    os._exit(1)
