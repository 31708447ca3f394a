"""Reading audio at a chosen sample rate, and writing audio files (atomically with
:func:`write_audio_atomic`, or inside :func:`spmamba_sb.outputs.atomic_outputs` with :func:`write_audio`).
"""

import errno
import logging
import math
import os

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from spmamba_sb.outputs import PARTIAL_SUFFIX, PathLike, atomic_outputs

logger = logging.getLogger(__name__)

#: Extensions read as audio when scanning folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sndfile.h
_SFE_SYSTEM = 2  # libsndfile's error code for a failed system call (sndfile.h)


class UnreadableAudioError(Exception):
    """An audio file that cannot be decoded, has no samples, or holds NaN/Inf samples.

    The message is ``<path>: <problem>``. The preparation skips such files and counts them
    instead of stopping.

    Example
    -------
    >>> str(UnreadableAudioError("a.wav: no samples"))
    'a.wav: no samples'
    """


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter (no change if the rates match).

    Arguments
    ---------
    samples : np.ndarray
        [..., L] at ``source_rate``.
    source_rate, target_rate : int
        Sample rates in Hz.

    Returns
    -------
    np.ndarray
        [..., ceil(L * target_rate / source_rate)].

    Example
    -------
    >>> resample(np.zeros(8000), 8000, 16000).shape
    (16000,)
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got source_rate={source_rate}, target_rate={target_rate}")
    if source_rate == target_rate:
        return samples
    divisor = math.gcd(int(source_rate), int(target_rate))
    return resample_poly(samples, int(target_rate) // divisor, int(source_rate) // divisor, axis=-1)


def read_audio(path: PathLike, sample_rate: int) -> np.ndarray:
    """Read a file as mono float64 at ``sample_rate``: channels are averaged, other rates resampled.

    Arguments
    ---------
    path : str or os.PathLike
        Any file libsndfile reads (WAV, FLAC, OGG, ...).
    sample_rate : int
        Sample rate of the returned signal.

    Returns
    -------
    np.ndarray
        [L], float64.

    Raises
    ------
    UnreadableAudioError
        If the file is missing, a folder, empty or cannot be decoded, has no samples or
        holds NaN/Inf samples.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "tone.wav")
    >>> write_audio_atomic(path, np.zeros(800), 8000)
    >>> read_audio(path, 16000).shape
    (1600,)
    """
    try:
        data, file_rate = sf.read(os.fspath(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise UnreadableAudioError(f"{path}: cannot read audio ({read_failure(path, error)})") from error
    if data.shape[0] == 0:
        raise UnreadableAudioError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise UnreadableAudioError(f"{path}: contains NaN or Inf samples")
    return resample(data.mean(axis=1), file_rate, sample_rate)


def read_failure(path: PathLike, error: Exception) -> str:
    """Why a file could not be read: the OS's reason (no such file, a folder, no permission),
    ``empty file``, or else libsndfile's (for example ``Format not recognised``), never
    libsndfile's ``System error``.

    Arguments
    ---------
    path : str or os.PathLike
        The file.
    error : Exception
        What reading it raised.

    Returns
    -------
    str
        The reason, for a message such as ``"<path>: cannot read audio (<reason>)"``.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "missing.wav")
    >>> try:
    ...     sf.info(path)
    ... except sf.LibsndfileError as error:
    ...     read_failure(path, error)
    'No such file or directory'
    """
    try:
        with open(path, "rb") as handle:
            if not handle.read(1):
                return "empty file"
    except OSError as os_error:
        return os_error.strerror or str(os_error)
    return getattr(error, "error_string", str(error)).rstrip(".")


def write_audio_atomic(path: PathLike, samples: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write a WAV or FLAC file under a temporary name, then rename it into place.

    Arguments
    ---------
    path : str or os.PathLike
        Destination; its extension (``.wav`` or ``.flac``) picks the format.
    samples : np.ndarray
        [L] mono or [C, L] with C channels.
    sample_rate : int
        Sample rate in Hz.
    subtype : str
        libsndfile subtype: ``"FLOAT"`` (WAV only, exact), ``"PCM_24"`` or ``"PCM_16"``.

    Raises
    ------
    OSError
        If the file cannot be written (see :func:`write_audio`); nothing is left behind.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "two_channels.wav")
    >>> write_audio_atomic(path, np.zeros((2, 100)), 8000)
    >>> sf.info(path).channels
    2
    """
    with atomic_outputs([path]) as [partial]:
        write_audio(partial, samples, sample_rate, subtype)


def write_audio(path: PathLike, samples: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write a WAV or FLAC file in place; inside :func:`atomic_outputs`, write its temporary paths with it.

    Arguments
    ---------
    path : str or os.PathLike
        Destination; its extension (``.wav`` or ``.flac``, a trailing ``.partial`` left aside)
        picks the format.
    samples : np.ndarray
        [L] mono or [C, L] with C channels.
    sample_rate : int
        Sample rate in Hz.
    subtype : str
        libsndfile subtype: ``"FLOAT"`` (WAV only, exact), ``"PCM_24"`` or ``"PCM_16"``.

    Raises
    ------
    ValueError
        If the extension or the shape of ``samples`` is not one of the above.
    OSError
        If the file cannot be written, with the system's errno where libsndfile reports one
        (``ENOSPC`` for a full disk, ``EACCES`` or ``EROFS`` for a folder that cannot be
        written), else ``EIO``; ``filename`` is ``path``.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "tone.flac")
    >>> write_audio(path, np.zeros(100), 8000, subtype="PCM_16")
    >>> sf.info(path).format
    'FLAC'
    """
    name = os.fspath(path)
    suffix = os.path.splitext(name[:-len(PARTIAL_SUFFIX)] if name.endswith(PARTIAL_SUFFIX) else name)[1].lower()
    formats = {".wav": "WAV", ".flac": "FLAC"}
    if suffix not in formats:
        raise ValueError(f"path must end in .wav or .flac, got '{path}'")
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise ValueError(f"samples must be [L] or [C, L], got shape {samples.shape}")
    channels = 1 if samples.ndim == 1 else samples.shape[0]
    try:
        handle = sf.SoundFile(name, "w", samplerate=sample_rate, channels=channels, subtype=subtype,
                              format=formats[suffix])
    except sf.LibsndfileError as error:
        raise _system_error(error, name, sf._ffi.NULL) from error
    try:
        _drop_peak_chunk(handle)
        handle.write(samples.T)
    except sf.LibsndfileError as error:
        failure = _system_error(error, name, handle._file)
        _close_quietly(handle)
        raise failure from error
    except BaseException:
        _close_quietly(handle)
        raise
    try:
        handle.close()  # rewrites the header with the final length
    except sf.LibsndfileError as error:  # the handle, and with it the system's reason, is gone
        raise _system_error(error, name, None) from error


def _system_error(error: "sf.LibsndfileError", path: str, sndfile) -> OSError:
    """libsndfile's error as an ``OSError`` naming ``path``: its errno is the system's where
    libsndfile's message holds the system's reason (``"System error : No space left on device."``),
    else ``EIO``. ``sndfile`` is the open handle (``SNDFILE*``), NULL after a failed open (the
    reason is then libsndfile's global one), or None where no reason can be read."""
    message = "" if sndfile is None else sf._ffi.string(sf._snd.sf_strerror(sndfile)).decode("utf-8", "replace")
    prefix = "System error : "
    if error.code == _SFE_SYSTEM and message.startswith(prefix):
        reason = message[len(prefix):].rstrip(".")
        code = next((number for number in errno.errorcode if os.strerror(number) == reason), errno.EIO)
        return OSError(code, reason, path)
    return OSError(errno.EIO, getattr(error, "error_string", str(error)).rstrip("."), path)


def _close_quietly(handle: sf.SoundFile) -> None:
    """Close a file whose writing failed already; a second error on closing says nothing new."""
    try:
        handle.close()
    except sf.LibsndfileError:
        pass


def _drop_peak_chunk(handle: sf.SoundFile) -> None:
    """Stop libsndfile from adding a PEAK chunk to float WAVs: it holds a timestamp, so identical audio
    written at different times would give different bytes. Uses soundfile's libsndfile binding."""
    if handle.subtype == "FLOAT":
        status = sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
        if status != 0:  # libsndfile returns whether a PEAK chunk will still be written
            logger.warning("libsndfile refused to drop the PEAK chunk of '%s'", handle.name)
