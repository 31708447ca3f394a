"""How a command ends: a user's interrupt or a full or read-only disk is one line on stderr and an
exit status, never a traceback.

Every console script (``spmamba-*``) and ``train.py`` runs its ``main`` under :func:`command`.

Example
-------
>>> @command("demo")
... def main():
...     raise KeyboardInterrupt
>>> try:
...     main()
... except SystemExit as stop:
...     stop.code
130
"""

import errno
import functools
import sys
from typing import Callable, TypeVar

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)
# The disk-level errors a user fixes outside the program (free space, permissions), not bugs.
DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}

Main = TypeVar("Main", bound=Callable)


def error_line(prog: str, message: str) -> None:
    """Write ``"<prog>: error: <message>"`` on stderr."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


def disk_error_message(error: OSError) -> str:
    """``"<file>: <reason>"`` for an ``OSError`` (the file is left out when the error names none).

    Example
    -------
    >>> import errno
    >>> disk_error_message(OSError(errno.ENOSPC, "No space left on device", "out/a_s1.wav"))
    'out/a_s1.wav: the disk is full (No space left on device)'
    """
    reason = DISK_ERRNOS.get(error.errno)
    detail = error.strerror or str(error)
    text = f"{reason} ({detail})" if reason else detail
    return f"{error.filename}: {text}" if error.filename else text


def command(prog: str) -> Callable[[Main], Main]:
    """Decorate a command's ``main``: Ctrl-C exits with status 130 after one line, and a full disk,
    a quota, a read-only file system or a permission error with status 1 after one line.

    The command itself removes its partial outputs (``try``/``finally`` or atomic writes); this
    only decides how the process ends.

    Arguments
    ---------
    prog : str
        The command's name, the first word of its lines.

    Returns
    -------
    callable
        A decorator for the command's ``main``.
    """

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                sys.stderr.write(f"\n{prog}: interrupted\n")
                raise SystemExit(INTERRUPTED) from None
            except OSError as error:
                if error.errno not in DISK_ERRNOS:
                    raise
                error_line(prog, disk_error_message(error))
                raise SystemExit(1) from None

        return run  # type: ignore[return-value]

    return decorate
