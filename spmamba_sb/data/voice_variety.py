"""Voice variety of the demo corpus: how far its espeak-ng speakers spread, and what makes them sound recorded.

``"espeak"`` (the default) draws each speaker's rate, pitch, pitch range and word gap from the
demo's original ranges and leaves the synthesised samples as they are. ``"wide"`` draws them from
the ranges that brought espeak-ng's statistics nearer those of recorded speech
(``benchmarks/voice_statistics.py``: wider and slower rates, more pitch range, longer word gaps;
the demo corpus also takes female variants for half the speakers), gives every speaker a
vocal-tract length (a formant shift) and a speaking style (how much its pitch and level drift,
how loud its breaths are), then gives every utterance what recordings have and espeak-ng lacks:

* a formant shift by the speaker's factor, keeping pitch and duration (:func:`shift_formants`);
* a slow pitch drift (:func:`drift_pitch`) and a slow level drift (:func:`drift_level`);
* breath-like noise in the pauses (:func:`add_breath_noise`);
* a microphone / channel colouring: a high-pass, a spectral tilt and one broad resonance
  (:func:`colour_channel`).

Everything is a pure function of its arguments; the demo corpus seeds the random generators with
the corpus seed and the speaker and utterance indices.
"""

from typing import Any, Dict, Tuple

import numpy as np
from scipy.ndimage import convolve1d, map_coordinates
from scipy.signal import istft, stft

from spmamba_sb.data.loudness import frames_of

#: Values of the demo corpus's ``voice_variety`` option.
VOICE_VARIETIES = ("espeak", "wide")

#: Inclusive ranges of the espeak-ng settings drawn per speaker, for each voice variety.
PROFILE_RANGES = {
    "espeak": {"rate": (135, 210), "pitch": (20, 80), "pitch_range": (20, 90), "word_gap": (0, 2)},
    "wide": {"rate": (100, 220), "pitch": (10, 90), "pitch_range": (30, 99), "word_gap": (0, 6)},
}

#: Formant factors of "wide" speakers: a vocal tract about 17 % shorter (1.2) to 15 % longer (0.85).
FORMANT_FACTORS = (0.85, 1.2)
#: Width of the Hann window that smooths the power spectrum into its envelope: wider than harmonic spacings.
_ENVELOPE_HZ = 500.0
#: Largest gain the formant shift gives a time-frequency bin, in dB (deep spectral valleys stay bounded).
_MAX_FORMANT_GAIN_DB = 24.0


def profile_ranges(voice_variety: str) -> Dict[str, Tuple[int, int]]:
    """The inclusive ranges of a speaker's espeak-ng settings under ``voice_variety``.

    Raises ``ValueError`` if ``voice_variety`` is not one of :data:`VOICE_VARIETIES`.

    Example
    -------
    >>> profile_ranges("espeak")["rate"], profile_ranges("wide")["rate"]
    ((135, 210), (100, 220))
    """
    if voice_variety not in PROFILE_RANGES:
        raise ValueError(f"voice_variety={voice_variety!r} is not one of {', '.join(map(repr, VOICE_VARIETIES))}")
    return PROFILE_RANGES[voice_variety]


def speaker_variety(rng: np.random.Generator) -> Dict[str, float]:
    """Draw one "wide" speaker's vocal-tract length and speaking style (the values its voices.json entry keeps).

    Returns
    -------
    dict
        ``formant_factor`` (log-uniform in :data:`FORMANT_FACTORS`), ``pitch_drift_cents`` (50 to 200),
        ``level_drift_db`` (1 to 4) and ``breath_level_db`` (-42 to -28, relative to the speech).

    Example
    -------
    >>> variety = speaker_variety(np.random.default_rng(0))
    >>> sorted(variety), 0.85 <= variety["formant_factor"] <= 1.2
    (['breath_level_db', 'formant_factor', 'level_drift_db', 'pitch_drift_cents'], True)
    """
    return {"formant_factor": round(float(np.exp(rng.uniform(*np.log(FORMANT_FACTORS)))), 4),
            "pitch_drift_cents": round(float(rng.uniform(50.0, 200.0)), 2),
            "level_drift_db": round(float(rng.uniform(1.0, 4.0)), 2),
            "breath_level_db": round(float(rng.uniform(-42.0, -28.0)), 2)}


def slow_curve(rng: np.random.Generator, num_samples: int, sample_rate: int, depth: float,
               max_frequency: float = 1.5) -> np.ndarray:
    """A smooth random curve: three sinusoids of 0.1 Hz to ``max_frequency``, scaled to peak at ``depth``.

    Returns [L] float64 with ``max(abs(curve)) == depth``.

    Example
    -------
    >>> curve = slow_curve(np.random.default_rng(0), 8000, 8000, depth=3.0)
    >>> curve.shape, round(float(np.abs(curve).max()), 6)
    ((8000,), 3.0)
    """
    time = np.arange(num_samples) / sample_rate
    frequencies, phases = rng.uniform(0.1, max_frequency, 3), rng.uniform(0.0, 2 * np.pi, 3)
    curve = np.sin(2 * np.pi * frequencies[:, None] * time + phases[:, None]).sum(axis=0)  # [L]
    peak = np.abs(curve).max()
    return depth * curve / peak if peak > 0 else curve


def shift_formants(speech: np.ndarray, sample_rate: int, factor: float, n_fft: int = 1024) -> np.ndarray:
    """Scale the formant frequencies by ``factor``, keeping pitch and duration.

    Each frame's spectral envelope (its power spectrum smoothed over 500 Hz, so it runs through
    the harmonics whatever the pitch) is warped along frequency, ``E'(f) = E(f / factor)``, and
    the frame is multiplied by ``E' / E``: the harmonics and the phase stay, the resonances move
    (``factor > 1``: a shorter vocal tract).

    Arguments
    ---------
    speech : np.ndarray
        [L] samples.
    sample_rate : int
        Sample rate in Hz.
    factor : float
        Formant scale, for example 0.85 to 1.2.
    n_fft : int
        STFT size (hop ``n_fft // 4``, Hann window), at most L.

    Returns [L] float64.

    Example
    -------
    >>> shift_formants(np.random.default_rng(0).standard_normal(4000), 8000, 1.1, n_fft=256).shape
    (4000,)
    """
    if speech.shape[0] < n_fft:
        raise ValueError(f"speech has {speech.shape[0]} samples; shift_formants needs at least n_fft={n_fft}")
    overlap = n_fft - n_fft // 4
    spectrum = stft(np.asarray(speech, dtype=np.float64), nperseg=n_fft, noverlap=overlap)[2]  # [F, T]
    width = max(3, int(_ENVELOPE_HZ * n_fft / sample_rate) | 1)
    kernel = np.hanning(width + 2)[1:-1]
    smoothed = convolve1d(np.abs(spectrum.T) ** 2, kernel / kernel.sum(), axis=1, mode="nearest")  # [T, F]
    envelope = 0.5 * np.log(smoothed + 1e-12)  # [T, F], log magnitude
    source = np.minimum(np.arange(envelope.shape[1]) / factor, envelope.shape[1] - 1)  # [F], where each bin reads
    below = np.minimum(source.astype(int), envelope.shape[1] - 2)
    weight = source - below
    warped = envelope[:, below] * (1 - weight) + envelope[:, below + 1] * weight  # [T, F]
    limit = _MAX_FORMANT_GAIN_DB / 20 * np.log(10)
    gain = np.exp(np.clip(warped - envelope, -limit, limit)).T  # [F, T]
    return istft(spectrum * gain, nperseg=n_fft, noverlap=overlap)[1][:speech.shape[0]]  # [L]


def drift_pitch(speech: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Play ``speech`` at a slowly varying speed (``cents`` above or below normal), keeping its length.

    The read position advances by ``2 ** (cents / 1200)`` per sample, rescaled to end on the last
    sample; the samples between are cubic-spline interpolated. Pitch (and, slightly, formants)
    follow the curve.

    Arguments
    ---------
    speech : np.ndarray
        [L] samples.
    cents : np.ndarray
        [L] speed offset per sample, in cents.

    Returns [L] float64.

    Example
    -------
    >>> drift_pitch(np.sin(np.arange(800) / 5), np.full(800, 50.0)).shape
    (800,)
    """
    if cents.shape != speech.shape:
        raise ValueError(f"cents has shape {cents.shape}; expected the shape of speech {speech.shape}")
    steps = 2.0 ** (np.asarray(cents, dtype=np.float64) / 1200)  # [L]
    position = np.concatenate([[0.0], np.cumsum(steps[:-1])])  # [L]
    position *= (speech.shape[0] - 1) / max(position[-1], 1e-12)
    return map_coordinates(np.asarray(speech, dtype=np.float64), position[None], order=3, mode="nearest")


def drift_level(speech: np.ndarray, decibels: np.ndarray) -> np.ndarray:
    """Multiply ``speech`` [L] by a gain curve given in dB [L].

    Example
    -------
    >>> drift_level(np.ones(4), np.array([0.0, 6.0, -6.0, 20.0])).round(3)
    array([ 1.   ,  1.995,  0.501, 10.   ])
    """
    return np.asarray(speech, dtype=np.float64) * 10.0 ** (decibels / 20)


def channel_response_db(frequencies: np.ndarray, tilt_db_per_octave: float, highpass_hz: float, peak_hz: float,
                        peak_db: float, peak_octaves: float) -> np.ndarray:
    """Magnitude response of a microphone / channel in dB at ``frequencies`` [F] in Hz.

    The sum of a second-order Butterworth high-pass at ``highpass_hz``, a tilt of
    ``tilt_db_per_octave`` around 1 kHz (flat below 100 Hz) and a bell of ``peak_db`` at
    ``peak_hz``, ``peak_octaves`` wide (standard deviation on the log-frequency axis).

    Returns [F] gains in dB.

    Example
    -------
    >>> channel_response_db(np.array([1000.0, 2000.0, 4000.0]), -2.0, 10.0, 2000.0, 6.0, 0.5).round(2)
    array([ 0.81,  4.  , -3.19])
    """
    frequencies = np.maximum(np.asarray(frequencies, dtype=np.float64), 1e-3)
    highpass = -10 * np.log10(1 + (highpass_hz / frequencies) ** 4)
    tilt = tilt_db_per_octave * np.log2(np.maximum(frequencies, 100.0) / 1000.0)
    bell = peak_db * np.exp(-0.5 * (np.log2(frequencies / peak_hz) / peak_octaves) ** 2)
    return highpass + tilt + bell


def colour_channel(speech: np.ndarray, sample_rate: int, **response: float) -> np.ndarray:
    """Filter ``speech`` [L] with the zero-phase response :func:`channel_response_db` (``response`` its settings).

    Returns
    -------
    np.ndarray
        [L] float64.

    Example
    -------
    >>> channel = dict(tilt_db_per_octave=1.0, highpass_hz=80.0, peak_hz=2000.0, peak_db=3.0, peak_octaves=0.5)
    >>> colour_channel(np.random.default_rng(0).standard_normal(1000), 8000, **channel).shape
    (1000,)
    """
    length = speech.shape[0]
    size = 1 << int(np.ceil(np.log2(length + sample_rate // 10)))  # room for the filter's ringing
    gain = 10 ** (channel_response_db(np.fft.rfftfreq(size, 1 / sample_rate), **response) / 20)  # [F]
    return np.fft.irfft(np.fft.rfft(speech, size) * gain, size)[:length]


def add_breath_noise(speech: np.ndarray, sample_rate: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Fill the pauses of ``speech`` [L] with soft breath-like noise, ``level_db`` below its active level.

    Pauses are 20 ms frames more than 30 dB below the loudest frame, smoothed over 60 ms; the
    noise is white noise shaped like an exhalation (high-passed at 400 Hz, falling 3 dB per octave).

    Returns
    -------
    np.ndarray
        [L] float64.

    Example
    -------
    >>> speech = np.concatenate([np.ones(800), np.zeros(1600), np.ones(800)])
    >>> breathy = add_breath_noise(speech, 8000, -30.0, np.random.default_rng(0))
    >>> breathy.shape, bool(np.abs(breathy[1200:2000]).max() > 0), bool(np.allclose(breathy[:300], 1.0, atol=0.05))
    ((3200,), True, True)
    """
    frames = frames_of(speech, sample_rate)  # [T, frame], 20 ms
    num_frames, frame = frames.shape
    levels = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)  # [T]
    active_rms = np.sqrt(np.mean(frames[levels > levels.max() - 30] ** 2))
    pause = np.convolve((levels <= levels.max() - 30).astype(np.float64), np.ones(3) / 3, mode="same")  # [T]
    mask = np.interp(np.arange(speech.shape[0]), (np.arange(num_frames) + 0.5) * frame, pause)  # [L]
    noise = colour_channel(rng.standard_normal(speech.shape[0]), sample_rate, tilt_db_per_octave=-3.0,
                           highpass_hz=400.0, peak_hz=1000.0, peak_db=0.0, peak_octaves=1.0)
    noise *= active_rms * 10 ** (level_db / 20) / max(np.sqrt(np.mean(noise ** 2)), 1e-12)
    return speech + mask * noise


def vary_utterance(speech: np.ndarray, sample_rate: int, variety: Dict[str, Any],
                   rng: np.random.Generator) -> np.ndarray:
    """Apply a "wide" speaker's ``variety`` (see :func:`speaker_variety`) and fresh per-utterance draws to ``speech``.

    In order: formant shift, pitch drift, level drift, breath noise in the pauses, then a
    channel colouring (high-pass 30-90 Hz, tilt -1 to 1 dB/octave, a bell of -4 to 4 dB at
    300-3000 Hz, 0.3-1 octave wide). The result keeps the length and the peak of ``speech``.

    Arguments
    ---------
    speech : np.ndarray
        [L] samples.
    sample_rate : int
        Sample rate in Hz.
    variety : dict
        The speaker's :func:`speaker_variety`.
    rng : np.random.Generator
        Source of the utterance's draws.

    Returns
    -------
    np.ndarray
        [L] float64.

    Example
    -------
    >>> speech = np.sin(np.arange(8000) * 0.2) * np.hanning(8000)
    >>> variety = speaker_variety(np.random.default_rng(1))
    >>> varied = vary_utterance(speech, 8000, variety, np.random.default_rng(2))
    >>> varied.shape, bool(np.isclose(np.abs(varied).max(), np.abs(speech).max()))
    ((8000,), True)
    """
    length = speech.shape[0]
    varied = shift_formants(speech, sample_rate, variety["formant_factor"])
    varied = drift_pitch(varied, slow_curve(rng, length, sample_rate, variety["pitch_drift_cents"], max_frequency=2.0))
    varied = drift_level(varied, slow_curve(rng, length, sample_rate, variety["level_drift_db"], max_frequency=0.8))
    varied = add_breath_noise(varied, sample_rate, variety["breath_level_db"], rng)
    channel = {"tilt_db_per_octave": rng.uniform(-1.0, 1.0),
               "highpass_hz": np.exp(rng.uniform(np.log(30), np.log(90))),
               "peak_hz": np.exp(rng.uniform(np.log(300), np.log(3000))), "peak_db": rng.uniform(-4.0, 4.0),
               "peak_octaves": rng.uniform(0.3, 1.0)}
    varied = colour_channel(varied, sample_rate, **channel)
    peak = np.abs(varied).max()
    return varied * (np.abs(speech).max() / peak) if peak > 0 else varied
