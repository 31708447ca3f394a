"""The ray-traced reverberation tail of pyroomacoustics' hybrid simulator, vectorised.

pyroomacoustics turns each source-microphone pair's ray-tracing energy histograms into the late
part of the impulse response by shaping a random train of impulses (a Poisson process whose
rate grows with time, as reflections do). Its implementation draws the process one impulse at a
time and places the impulses in a Python loop, then filters the train into octave bands with
one full analysis per band: 85 % of a room's time at 16 kHz. :func:`tail_response` computes the
same tail from the same random draws in whole-array steps, and filters all bands with one
analysis; :func:`vectorised_tail` swaps it into pyroomacoustics for the duration of a
``with`` block. The responses are the library's own to floating-point rounding (the tests
compare them on random rooms), and the package-wide random generator ends in the same state,
so a seeded room gives the same response either way.
"""

import contextlib
import inspect
import math
from typing import Any, Dict, Iterator

import numpy as np

from spmamba_sb.data.extras import import_data_extra

#: The arguments of ``pyroomacoustics.simulation.rt.compute_rt_rir`` that :func:`tail_response` mirrors.
_STOCK_SIGNATURE = ("t0", "histograms", "directional_responses", "hist_bin_size", "hist_bin_size_samples",
                    "volume_room", "fdl", "c", "fs", "octave_bands", "air_abs_coeffs")
_MAX_RATE = 10000.0  # impulses per second at most (pyroomacoustics' default)


def impulse_times(rng: np.random.Generator, volume: float, duration: float, speed_of_sound: float,
                  t0: float, max_rate: float = _MAX_RATE) -> np.ndarray:
    """Times of the tail's impulses: a Poisson process whose rate grows as ``4 pi c^3 t^2 / V``.

    Draws from ``rng`` exactly the uniform numbers that pyroomacoustics' one-at-a-time loop draws,
    in the same order, and leaves ``rng`` in the same state.

    Arguments
    ---------
    rng : np.random.Generator
        Source of the draws.
    volume : float
        Room volume in cubic metres.
    duration : float
        Length of the tail in seconds.
    speed_of_sound : float
        In metres per second.
    t0 : float
        Time of the first impulse (the direct path's delay), in seconds.
    max_rate : float
        Largest rate of the process, in impulses per second.

    Returns
    -------
    np.ndarray
        [n] increasing times in seconds, from ``t0`` to the first at or past ``t0 + duration``.

    Example
    -------
    >>> times = impulse_times(np.random.default_rng(0), volume=60.0, duration=0.5, speed_of_sound=343.0, t0=0.01)
    >>> bool(times[0] == 0.01 and times[-1] >= 0.51 and np.all(np.diff(times) >= 0))
    True
    """
    growth = 4 * np.pi * speed_of_sound ** 3 / volume
    end = t0 + duration
    start_state = rng.bit_generator.state
    times = [t0]
    drawn = np.empty(0)
    used = 0
    while True:
        if used == drawn.size:  # the expected count of the rest, and some
            drawn = np.log(1 / rng.uniform(size=int(max_rate * max(end - times[-1], 0.0) * 1.1) + 64))
            used = 0
        now = times[-1]
        if now >= end:
            break
        rate = growth * (t0 + now) ** 2
        if rate < max_rate:  # the rate still grows: one impulse at a time
            times.append(now + drawn[used] / rate)
            used += 1
            continue
        steps = drawn[used:] / np.float64(max_rate)  # constant rate: the times are a running sum
        steps[0] += now
        tail = np.cumsum(steps)
        past = int(np.searchsorted(tail >= end, True))  # the first at or past the end, if any
        if past < tail.size:
            times.extend(tail[:past + 1])
            used += past + 1
            break
        times.extend(tail)
        used = drawn.size
    total = len(times) - 1
    rng.bit_generator.state = start_state  # replay exactly the draws used
    rng.uniform(size=total)
    return np.asarray(times, dtype=np.float64)


def impulse_train(rng: np.random.Generator, t0: float, times: np.ndarray, gains: np.ndarray,
                  hist_directions: np.ndarray, hist_bin_size: float, fs: float) -> np.ndarray:
    """Signed impulses at ``times``, one direction's gain each, scaled to unit power per histogram bin.

    Arguments
    ---------
    rng : np.random.Generator
        Source of the signs and directions (the same draws as pyroomacoustics makes).
    t0 : float
        Time of the first impulse, in seconds.
    times : np.ndarray
        [n] impulse times in seconds (:func:`impulse_times`).
    gains : np.ndarray
        [n_dirs] the receiver's gain towards each direction of the histograms.
    hist_directions : np.ndarray
        [n_dirs, n_bins] energy arriving from each direction in each histogram bin.
    hist_bin_size : float
        Length of a histogram bin in seconds.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    np.ndarray
        [round(times[-1] * fs) + 2] the impulse train.

    Example
    -------
    >>> times = np.array([0.01, 0.02, 0.025])
    >>> train = impulse_train(np.random.default_rng(0), 0.01, times, np.ones(1), np.ones((1, 4)), 0.004, 1000)
    >>> train.shape, int(np.count_nonzero(train))
    ((27,), 3)
    """
    rt = import_data_extra("pyroomacoustics", "impulse_train").simulation.rt
    unit_train = rt.binary_sequence(times, fs)
    power = rt.seq_rolling_power(unit_train, int(hist_bin_size * fs), filter_length_mult=2)
    nonzero = power > 1e-10
    inverse_power = np.where(nonzero, 1.0 / np.where(nonzero, power, 1.0), 0.0)

    indices = (times * fs).astype(np.int64)
    bins = np.minimum(np.floor((times - t0) / hist_bin_size).astype(np.int64), hist_directions.shape[-1] - 1)
    cumulative = np.cumsum(hist_directions, axis=0)  # [n_dirs, n_bins]
    filled = cumulative[[-1], :] > 1e-10  # bins with no energy draw a direction uniformly
    uniform = np.cumsum(np.ones((cumulative.shape[0], 1)), axis=0)
    cdf = np.where(filled, cumulative, uniform) / np.where(filled, cumulative[[-1], :], uniform[[-1], :])
    draws = rng.uniform(size=bins.shape[0])
    directions = np.sum(draws[None, :] > cdf[:, bins], axis=0)  # [n]
    signs = rng.choice([1, -1], size=len(indices))

    train = np.zeros(indices[-1] + 2)
    np.add.at(train, indices, signs * gains[directions] * np.sqrt(inverse_power[indices]))
    return train


def tail_response(t0: float, histograms, directional_responses: Dict[str, Any], hist_bin_size: float,
                  hist_bin_size_samples: int, volume_room: float, fdl: int, c: float, fs: float, octave_bands,
                  air_abs_coeffs=None) -> np.ndarray:
    """The late response of one source-microphone pair from its ray-tracing histograms.

    Takes the arguments of pyroomacoustics' ``compute_rt_rir``, by the same names, and returns
    its result; receivers whose directional response is a filter (more than one tap per
    direction) are handed to the library's own function.

    Arguments
    ---------
    t0 : float
        Direct-path delay in seconds.
    histograms : list of np.ndarray
        Per direction, [n_bands, n_bins] energy histograms.
    directional_responses : dict
        ``{"response": array, "is_impulse_response": bool}`` of the receiver.
    hist_bin_size, hist_bin_size_samples : float, int
        Histogram bin length in seconds and in samples.
    volume_room : float
        Room volume in cubic metres.
    fdl : int
        Length of the fractional-delay filter (half of it delays the tail, as the image sources).
    c, fs : float
        Speed of sound (m/s) and sample rate (Hz).
    octave_bands : pyroomacoustics.acoustics.OctaveBandsFactory
        The room's octave-band filter bank.
    air_abs_coeffs : np.ndarray, optional
        [n_bands] air absorption coefficients.

    Returns
    -------
    np.ndarray
        [fdl // 2 + n] the tail (``fdl // 2`` zeros alone when the histograms are empty).
    """
    pra = import_data_extra("pyroomacoustics", "tail_response")
    rt = pra.simulation.rt
    response = np.asarray(directional_responses["response"])
    one_gain_per_direction = not directional_responses["is_impulse_response"] and (
        response.ndim == 1 or (response.ndim == 2 and response.shape[1] == 1))
    if not one_gain_per_direction:
        return _stock_tail()(t0, histograms, directional_responses, hist_bin_size, hist_bin_size_samples,
                             volume_room, fdl, c, fs, octave_bands, air_abs_coeffs=air_abs_coeffs)
    gains = np.broadcast_to(response.reshape(-1), (len(histograms),))  # [n_dirs]

    n_bins = max(_last_filled_bin(h) + 1 for h in histograms)
    if n_bins == 0:
        return np.zeros(fdl // 2)
    samples_per_bin = int(hist_bin_size_samples)
    n_bins = math.ceil(n_bins * hist_bin_size * fs / samples_per_bin)
    length = n_bins * samples_per_bin
    stacked = rt.adjust_length_and_stack(histograms, n_bins)  # [n_dirs, n_bands, n_bins]
    n_bands = stacked.shape[1]

    times = impulse_times(pra.random.get_rng(), volume_room, length / fs, c, t0)
    train = impulse_train(pra.random.get_rng(), t0, times, gains, stacked.sum(axis=1), hist_bin_size,
                          fs)[:length]
    bands = octave_bands.analysis(train) if n_bands > 1 else train[:, None]  # [n, n_bands]
    envelope = rt.interp_hist(stacked.sum(axis=0), length)  # [n_bands, n]
    tail = bands.T * np.sqrt(np.maximum(envelope, 0.0))  # [n_bands, n]
    if air_abs_coeffs is not None:
        if n_bands == 1:
            tail = octave_bands.analysis(tail[0]).T
        tail = tail * np.exp(-0.5 * air_abs_coeffs[:, None] * np.arange(length)[None, :] / fs * c)
    return np.pad(np.sum(tail, axis=0), (fdl // 2, 0))


def _last_filled_bin(histogram: np.ndarray) -> int:
    """Index of the last histogram bin with energy in any band, -1 if none."""
    filled = np.nonzero(histogram.sum(axis=0))[0]
    return int(filled[-1]) if filled.size else -1


def _stock_tail():
    return import_data_extra("pyroomacoustics", "tail_response").simulation.rt.compute_rt_rir


def _supported(pra) -> bool:
    stock = getattr(getattr(pra, "room", None), "compute_rt_rir", None)
    if stock is None:
        return False
    return tuple(inspect.signature(stock).parameters) == _STOCK_SIGNATURE


@contextlib.contextmanager
def vectorised_tail() -> Iterator[bool]:
    """Within the block, pyroomacoustics' rooms compute their ray-traced tails with :func:`tail_response`.

    Yields whether the swap was made: a pyroomacoustics whose ``compute_rt_rir`` takes other
    arguments keeps its own.

    Example
    -------
    >>> with vectorised_tail() as swapped:
    ...     swapped
    True
    """
    pra = import_data_extra("pyroomacoustics", "vectorised_tail")
    if not _supported(pra):
        yield False
        return
    stock = pra.room.compute_rt_rir
    pra.room.compute_rt_rir = tail_response
    try:
        yield True
    finally:
        pra.room.compute_rt_rir = stock
