"""Integrated loudness (ITU-R BS.1770-4, K-weighted and gated) via pyloudnorm, and short frames for levels."""

import math
from functools import lru_cache

import numpy as np

from spmamba_sb.data.extras import import_data_extra


def frames_of(speech: np.ndarray, sample_rate: int, seconds: float = 0.02) -> np.ndarray:
    """``speech`` [L] cut into frames of ``seconds`` (at least one sample), the last zero-padded: [T, frame].

    Example
    -------
    >>> frames_of(np.ones(500), 8000).shape
    (4, 160)
    """
    frame = max(1, int(seconds * sample_rate))
    num_frames = math.ceil(speech.shape[0] / frame)
    return np.pad(speech, (0, num_frames * frame - speech.shape[0])).reshape(num_frames, frame)


@lru_cache(maxsize=8)
def _meter(sample_rate: int):
    return import_data_extra("pyloudnorm", "measure_loudness").Meter(sample_rate)


def measure_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of a mono signal in LUFS; ``-inf`` when every block falls below the -70 LUFS gate.

    Arguments
    ---------
    samples : np.ndarray
        [L], at least 0.4 s long.
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    float
        Loudness in LUFS.

    Raises
    ------
    ValueError
        If the signal is not 1-D or shorter than one 0.4 s block.

    Example
    -------
    A 1 kHz sine at -20 dBFS peak reads about -23 LUFS (BS.1770 puts a full-scale sine at -3 LUFS):

    >>> tone = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    >>> round(measure_loudness(tone, 16000), 1)
    -23.1
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"samples must be a mono signal [L], got shape {samples.shape}")
    if samples.shape[0] < int(0.4 * sample_rate) + 1:
        raise ValueError(f"samples must be longer than one 0.4 s block ({int(0.4 * sample_rate)} samples), "
                         f"got {samples.shape[0]}")
    return float(_meter(int(sample_rate)).integrated_loudness(samples))


def gain_to_loudness(current: float, target: float) -> float:
    """Linear gain that moves a signal from ``current`` to ``target`` LUFS (1 for a silent signal).

    Arguments
    ---------
    current, target : float
        Loudness in LUFS; ``current`` may be ``-inf``.

    Returns
    -------
    float
        Linear amplitude gain.

    Example
    -------
    >>> round(gain_to_loudness(-26.0, -20.0), 4)
    1.9953
    """
    if not math.isfinite(current):
        return 1.0
    return float(10.0 ** ((target - current) / 20.0))
