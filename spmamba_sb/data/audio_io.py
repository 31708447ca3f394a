"""Reading audio at a chosen sample rate, and writing audio and text files atomically.

Files are written under a temporary name and renamed into place, so a process killed midway
never leaves a file that looks complete under its final name.
"""

import logging
import math
import os
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

logger = logging.getLogger(__name__)

#: Extensions read as audio when scanning folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: Suffix of files being written; such files are incomplete and are deleted on a resumed run.
PARTIAL_SUFFIX = ".partial"

PathLike = Union[str, os.PathLike]
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sndfile.h


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
        raise UnreadableAudioError(f"{path}: cannot read audio ({_read_failure(path, error)})") from error
    if data.shape[0] == 0:
        raise UnreadableAudioError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise UnreadableAudioError(f"{path}: contains NaN or Inf samples")
    return resample(data.mean(axis=1), file_rate, sample_rate)


def _read_failure(path: PathLike, error: Exception) -> str:
    """Why a file could not be read: the OS's reason (no such file, a folder, no permission),
    ``empty file``, or else libsndfile's (for example ``Format not recognised``)."""
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

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "two_channels.wav")
    >>> write_audio_atomic(path, np.zeros((2, 100)), 8000)
    >>> sf.info(path).channels
    2
    """
    path = Path(path)
    formats = {".wav": "WAV", ".flac": "FLAC"}
    if path.suffix.lower() not in formats:
        raise ValueError(f"path must end in .wav or .flac, got '{path}'")
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise ValueError(f"samples must be [L] or [C, L], got shape {samples.shape}")
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    channels = 1 if samples.ndim == 1 else samples.shape[0]
    with sf.SoundFile(partial, "w", samplerate=sample_rate, channels=channels, subtype=subtype,
                      format=formats[path.suffix.lower()]) as handle:
        _drop_peak_chunk(handle)
        handle.write(samples.T)
    os.replace(partial, path)


def _drop_peak_chunk(handle: sf.SoundFile) -> None:
    """Stop libsndfile from adding a PEAK chunk to float WAVs: it holds a timestamp, so identical audio
    written at different times would give different bytes. Uses soundfile's libsndfile binding."""
    if handle.subtype == "FLOAT":
        status = sf._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
        if status != 0:  # libsndfile returns whether a PEAK chunk will still be written
            logger.warning("libsndfile refused to drop the PEAK chunk of '%s'", handle.name)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write a UTF-8 text file under a temporary name, then rename it into place.

    Arguments
    ---------
    path : str or os.PathLike
        Destination.
    text : str
        Content.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "note.txt")
    >>> write_text_atomic(path, "done")
    >>> open(path).read()
    'done'
    """
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)
