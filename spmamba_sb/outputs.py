"""Writing files without losing the user's: under a temporary name, all or none, never over an
input, replacing an existing file only when asked, into a folder checked first.

A file is written as ``<name>.partial`` and renamed into place, so a process killed midway never
leaves a file that looks complete under its final name; a set of files (a recording's sources, a
model folder, a report) appears all at once or not at all.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Union

#: Suffix of files being written; such files are incomplete and are deleted on a resumed run.
PARTIAL_SUFFIX = ".partial"

PathLike = Union[str, os.PathLike]


class OutputExistsError(FileExistsError):
    """An output that exists already, which the caller did not allow to be replaced.

    The message is ``<path> exists already``.

    Example
    -------
    >>> str(OutputExistsError("out/a_s1.wav exists already"))
    'out/a_s1.wav exists already'
    """


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write a UTF-8 text file under a temporary name, then rename it into place.

    Arguments
    ---------
    path : str or os.PathLike
        Destination.
    text : str
        Content.

    Raises
    ------
    OSError
        If the file cannot be written (see :func:`write_file`); nothing is left behind.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "note.txt")
    >>> write_text_atomic(path, "done")
    >>> open(path).read()
    'done'
    """
    with atomic_outputs([path]) as [partial]:
        write_file(partial, text)


def write_file(path: PathLike, content: Union[str, bytes]) -> None:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` in place; inside
    :func:`atomic_outputs`, write its temporary paths with it.

    Arguments
    ---------
    path : str or os.PathLike
        Destination.
    content : str or bytes
        What the file holds.

    Raises
    ------
    OSError
        If it cannot be written; ``filename`` is ``path`` (Python leaves it out of a failed write).

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "raw.bin")
    >>> write_file(path, b"ab")
    >>> os.path.getsize(path)
    2
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, os.fspath(path)) from error


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[PathLike]) -> Iterator[List[Path]]:
    """Write a set of files all or none: yields a temporary path for each (``<name>.partial``
    beside it); when the block ends without an error, each is renamed into place, else
    (an error, Ctrl-C) every temporary file is removed and no destination is touched.

    An ``OSError`` raised in the block that names a temporary path names its destination instead.
    Should a rename fail, the destinations renamed before it in this set are removed too, so a
    set is never left half written.

    Arguments
    ---------
    paths : sequence of str or os.PathLike
        Destinations (an existing one is replaced).

    Yields
    ------
    list of Path
        The temporary path of each destination, in order.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> with atomic_outputs([folder / "a.txt", folder / "b.txt"]) as partials:
    ...     for partial in partials:
    ...         write_file(partial, "done")
    >>> sorted(os.listdir(folder))
    ['a.txt', 'b.txt']
    """
    destinations = [Path(path) for path in paths]
    partials = [destination.with_name(destination.name + PARTIAL_SUFFIX) for destination in destinations]
    renamed: List[Path] = []
    try:
        try:
            yield partials
        except OSError as error:
            names = {os.fspath(partial): os.fspath(destination) for partial, destination in zip(partials, destinations)}
            if error.filename in names:
                raise OSError(error.errno, error.strerror, names[error.filename]) from error
            raise
        for partial, destination in zip(partials, destinations):
            os.replace(partial, destination)
            renamed.append(destination)
    except BaseException:
        for path in partials + renamed:
            with contextlib.suppress(OSError):  # not there (not written yet), or not ours to remove (a folder)
                os.remove(path)
        raise


def check_outputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike] = (), overwrite: bool = False) -> None:
    """Check, before any work, that writing ``outputs`` loses none of the user's files.

    An output is never one of the ``inputs`` (the same file, by whatever path, links included),
    even with ``overwrite``; one that exists already is replaced only with ``overwrite``.

    Arguments
    ---------
    outputs : iterable of str or os.PathLike
        The files a command will write.
    inputs : iterable of str or os.PathLike
        The files (and folders) it reads; those that do not exist are left aside.
    overwrite : bool
        Whether existing outputs that are not inputs may be replaced.

    Raises
    ------
    ValueError
        If an output is one of the inputs.
    OutputExistsError
        If an output exists and ``overwrite`` is off.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> write_file(folder / "mix.wav", b"")
    >>> try:  # the same file by another path
    ...     check_outputs([folder / "mix.wav"], [folder / ".." / folder.name / "mix.wav"], overwrite=True)
    ... except ValueError as error:
    ...     str(error).endswith("is an input of this command: it is never replaced")
    True
    """
    existing = [output for output in outputs if os.path.lexists(output)]
    identities = {}  # (device, inode) -> output
    for output in existing:
        try:
            status = os.stat(output)
        except OSError:  # a dangling link: replacing it loses no file
            continue
        identities.setdefault((status.st_dev, status.st_ino), output)
    for path in inputs:
        try:
            status = os.stat(path)
        except OSError:  # missing: nothing to lose
            continue
        output = identities.get((status.st_dev, status.st_ino))
        if output is not None:
            raise ValueError(f"{output} is an input of this command: it is never replaced")
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists already")


def check_writable(folder: PathLike) -> None:
    """Check that files can be created in ``folder``, by creating a temporary file there and removing it.

    Arguments
    ---------
    folder : str or os.PathLike
        An existing folder.

    Raises
    ------
    OSError
        If no file can be created there (``EACCES``, ``EROFS``, ...); ``filename`` is ``folder``.

    Example
    -------
    >>> check_writable(getfixture("tmp_path"))
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OSError(error.errno, error.strerror, os.fspath(folder)) from error
