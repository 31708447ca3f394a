"""Reading audio (one reader, :func:`read_audio`) and writing audio files (atomically with
:func:`write_audio_atomic`, or inside :func:`spmamba_sb.outputs.atomic_outputs` with :func:`write_audio`).

Every signal the package reads from an audio file goes through :func:`read_audio`, which
reduces a multi-channel file to one signal by one of two named rules (``channels``):

- ``"first"``: the first channel, the reference microphone. This is what a model with one
  input channel takes of a mixture or a target, in training (:mod:`spmamba_sb.data.pipelines`,
  :mod:`spmamba_sb.data.dynamic_mixing`) and at inference (``separate_file``,
  ``spmamba-evaluate``) alike: the corpora's targets are the sources' images at the first
  microphone, so a model trained on the first channel of its mixtures sees the same signal at
  inference.
- ``"mean"`` (the default): the mean of the channels. This is how the corpus simulation reads
  a source recording (a stereo music or noise file is one sound, not a microphone array; its
  first channel alone could miss an instrument panned to the other side).

The first multi-channel file reduced under each rule is logged once at INFO.
"""

import errno
import logging
import math
import os
from typing import Optional, Set

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from spmamba_sb.outputs import PARTIAL_SUFFIX, PathLike, atomic_outputs

logger = logging.getLogger(__name__)

#: Extensions read as audio when scanning folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: The rules of :func:`read_audio` for a multi-channel file, and what each keeps.
CHANNEL_RULES = {"first": "the first channel, the reference microphone", "mean": "the mean of the channels"}
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sndfile.h
_SFE_SYSTEM = 2  # libsndfile's error code for a failed system call (sndfile.h)


class UnreadableAudioError(Exception):
    """An audio file that cannot be decoded, has no samples, or holds NaN/Inf samples.

    The message is ``<path>: <problem>``; ``problem`` holds its part after the path (the whole
    message where it was not given), for callers that name the file their own way. The
    preparation skips such files and counts them instead of stopping.

    Example
    -------
    >>> error = UnreadableAudioError("a.wav: no samples", "no samples")
    >>> str(error), error.problem
    ('a.wav: no samples', 'no samples')
    """

    def __init__(self, message: str, problem: Optional[str] = None):
        super().__init__(message)
        self.problem = message if problem is None else problem


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


def read_audio(
    path: PathLike, sample_rate: Optional[int], *, channels: str = "mean", start: int = 0,
    stop: Optional[int] = None, dtype: str = "float64",
) -> np.ndarray:
    """Read samples ``start:stop`` of a file as one signal, multi-channel files reduced by ``channels``.

    A model with one input channel reads its mixtures and targets with ``channels="first"``
    (the reference microphone), in training and at inference; the corpus simulation reads its
    source recordings with ``"mean"`` (see the module docstring). The first multi-channel file
    reduced under each rule is logged once at INFO.

    Arguments
    ---------
    path : str or os.PathLike
        Any file libsndfile reads (WAV, FLAC, OGG, ...).
    sample_rate : int or None
        Sample rate of the returned signal (others are resampled with :func:`resample`), or
        None for the file's own rate.
    channels : str
        One of :data:`CHANNEL_RULES`: ``"first"`` keeps the first channel, ``"mean"`` averages them.
    start, stop : int
        The samples to read, counted at the file's own rate (``stop`` None: to the end), before
        any resampling; a crop reads only its part of the file.
    dtype : str
        ``"float64"`` or ``"float32"``, as libsndfile decodes it.

    Returns
    -------
    np.ndarray
        [L], of ``dtype`` (float64 after resampling).

    Raises
    ------
    UnreadableAudioError
        If the file is missing, a folder, empty or cannot be decoded, has no samples (in
        ``start:stop``) or the kept signal holds NaN/Inf samples.
    ValueError
        If ``channels`` is not one of :data:`CHANNEL_RULES`.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "stereo.wav")
    >>> write_audio_atomic(path, np.stack([np.full(800, 0.2), np.full(800, 0.4)]), 8000)
    >>> read_audio(path, 16000, channels="first").shape
    (1600,)
    >>> float(read_audio(path, None, channels="mean", start=10, stop=12, dtype="float32")[0])
    0.30000001192092896
    """
    if channels not in CHANNEL_RULES:
        raise ValueError(f"channels must be one of {', '.join(map(repr, CHANNEL_RULES))}, got {channels!r}")
    try:
        data, file_rate = sf.read(os.fspath(path), start=start, stop=stop, dtype=dtype, always_2d=True)  # [L, C]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise _unreadable(path, f"cannot read audio ({read_failure(path, error)})") from error
    if data.shape[0] == 0:
        raise _unreadable(path, "no samples")
    if data.shape[1] > 1:
        _log_reduction_once(path, data.shape[1], channels)
    signal = np.ascontiguousarray(data[:, 0]) if channels == "first" else data.mean(axis=1)  # [L]
    if not np.isfinite(signal).all():
        raise _unreadable(path, "contains NaN or Inf samples")
    return resample(signal, file_rate, file_rate if sample_rate is None else sample_rate)


def audio_info(path: PathLike) -> "sf._SoundFileInfo":
    """A file's header: ``samplerate``, ``frames``, ``channels`` (soundfile's ``info``).

    Raises
    ------
    UnreadableAudioError
        If the file is missing, a folder, empty or not audio.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "tone.wav")
    >>> write_audio_atomic(path, np.zeros(800), 8000)
    >>> audio_info(path).frames
    800
    """
    try:
        return sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as error:
        raise _unreadable(path, f"cannot read audio ({read_failure(path, error)})") from error


def _unreadable(path: PathLike, problem: str) -> UnreadableAudioError:
    return UnreadableAudioError(f"{path}: {problem}", problem)


_RULES_LOGGED: Set[str] = set()  # the rules of read_audio whose first reduction is logged


def _log_reduction_once(path: PathLike, num_channels: int, channels: str) -> None:
    """Log at INFO, once per rule in a process, that a multi-channel file is reduced to one signal."""
    if channels not in _RULES_LOGGED:
        _RULES_LOGGED.add(channels)
        logger.info("multi-channel audio is read as %s (channels=%r); first such file: %s (%d channels); "
                    "logged once", CHANNEL_RULES[channels], channels, path, num_channels)


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
