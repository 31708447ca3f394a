#!/usr/bin/env python3
"""Speech statistics of the demo corpus's voices ("espeak" and "wide") beside recorded speech. Prints JSON.

    python benchmarks/voice_statistics.py --recorded DIR [--num-utterances 40] [--sample-rate 8000]
                                          [--max-seconds 4] [--seed 0] [--work DIR] [--plot FIGURE.png]

Builds the demo speech twice (``build_demo_corpora`` with ``voice_variety`` "espeak" and "wide",
``--num-utterances`` speakers of one utterance each, in ``--work`` or a temporary folder), reads
``--num-utterances`` recordings drawn at random from the audio files under ``--recorded`` (any
layout: ``.flac``, ``.wav``, ``.ogg``), all at ``--sample-rate`` and cut to their first
``--max-seconds`` (the demo's mixture length: recordings are longer than the synthetic
utterances, and the modulation and pause statistics depend on length), and measures per corpus:

* long-term average spectrum (Welch, 32 ms Hann frames, each utterance normalised to unit power):
  octave-band levels, and the spectral tilt in dB/octave (a line fitted to the dB spectrum against
  log2 frequency, 100 Hz to 0.9 x Nyquist), of the average and per utterance;
* F0 by normalised autocorrelation (40 ms frames every 10 ms, 60-400 Hz, voiced where the peak
  exceeds 0.45 inside the range within 35 dB of the loudest frame): frame percentiles, per-utterance medians,
  and the intonation (per-utterance interquartile range of F0 in semitones / 1.349, a standard
  deviation that octave errors of the tracker do not inflate);
* speaking-rate proxy: the peak (1-12 Hz) of the modulation spectrum of the 100 Hz RMS envelope;
* level dynamics of 20 ms frames relative to the utterance's 95th percentile: the spread of
  active frames (within 40 dB), the fraction of pause frames (below -30 dB), and the floor
  (5th percentile, floored at -100 dB).

``distance_to_recorded`` gives, per statistic, how far each synthetic corpus lies from the
recorded one (absolute differences; Wasserstein distances between per-utterance distributions;
the RMS difference of the average spectra in dB), and ``closer_with_wide`` the statistics that
"wide" brings closer.
"""

import argparse
import json
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
from scipy.signal import welch
from scipy.stats import wasserstein_distance

from spmamba_sb.data.audio_io import read_audio
from spmamba_sb.data.demo_corpus import DEMO_HOURS, build_demo_corpora

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
OCTAVE_CENTRES = (125, 250, 500, 1000, 2000, 4000, 8000)


def _frames(signal: np.ndarray, size: int, hop: int) -> np.ndarray:
    """[L] -> [T, size] frames every ``hop`` samples (zero-padded at the end)."""
    count = max(1, 1 + int(np.ceil((signal.shape[0] - size) / hop)))
    padded = np.pad(signal, (0, (count - 1) * hop + size - signal.shape[0]))
    return np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:count]


def spectrum_statistics(signal: np.ndarray, sample_rate: int) -> Dict[str, np.ndarray]:
    """Unit-power Welch spectrum [F] of one utterance, its frequencies [F] and its tilt in dB/octave."""
    size = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    frequencies, power = welch(signal, sample_rate, nperseg=size)
    power = power / power.sum()
    return {"frequencies": frequencies, "power": power, "tilt": _tilt(frequencies, power, sample_rate)}


def _tilt(frequencies: np.ndarray, power: np.ndarray, sample_rate: int) -> float:
    band = (frequencies >= 100) & (frequencies <= 0.45 * sample_rate)
    return float(np.polyfit(np.log2(frequencies[band]), 10 * np.log10(power[band] + 1e-20), 1)[0])


def pitch_track(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz of 40 ms frames every 10 ms by normalised autocorrelation, NaN where unvoiced; [T]."""
    size, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    frames = _frames(signal, size, hop)  # [T, size]
    levels = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)  # [T]
    window = np.hanning(size)
    windowed = (frames - frames.mean(axis=1, keepdims=True)) * window  # [T, size]
    n_fft = 1 << int(np.ceil(np.log2(2 * size)))
    correlation = np.fft.irfft(np.abs(np.fft.rfft(windowed, n_fft)) ** 2, n_fft)[:, :size]  # [T, size]
    window_correlation = np.fft.irfft(np.abs(np.fft.rfft(window, n_fft)) ** 2, n_fft)[:size]  # [size]
    correlation = correlation / window_correlation / np.maximum(correlation[:, :1] / window_correlation[0], 1e-20)
    low, high = int(sample_rate / 400), int(sample_rate / 60)
    search = correlation[:, low:high + 1]  # [T, lags]
    best = search.max(axis=1)
    # The first lag within 90 % of the best peak: a period, not a multiple of it.
    lag = np.argmax(search >= 0.9 * best[:, None], axis=1)
    while True:  # climb to the local maximum from there
        step = (lag + 1 < search.shape[1]) & (search[np.arange(len(lag)), np.minimum(lag + 1, search.shape[1] - 1)]
                                              > search[np.arange(len(lag)), lag])
        if not step.any():
            break
        lag = lag + step
    rows, index = np.arange(len(lag)), np.clip(lag, 1, search.shape[1] - 2)
    left, centre, right = search[rows, index - 1], search[rows, index], search[rows, index + 1]
    offset = 0.5 * (left - right) / np.where(np.abs(left - 2 * centre + right) > 1e-12, left - 2 * centre + right, 1)
    # Voiced: a clear peak inside the range (one at its edge is no period of 60-400 Hz), in a loud enough frame.
    voiced = (best > 0.45) & (levels > levels.max() - 35) & (lag > 0) & (lag < search.shape[1] - 1)
    return np.where(voiced, sample_rate / (low + index + np.clip(offset, -0.5, 0.5)), np.nan)


def modulation_peak(signal: np.ndarray, sample_rate: int) -> Dict[str, np.ndarray]:
    """Modulation spectrum of the 100 Hz RMS envelope (unit sum over 0.5-16 Hz) and its 1-12 Hz peak in Hz."""
    envelope = np.sqrt(np.mean(_frames(signal, int(0.025 * sample_rate), int(0.01 * sample_rate)) ** 2, axis=1))
    envelope = (envelope - envelope.mean()) * np.hanning(envelope.shape[0])
    size = max(2048, 1 << int(np.ceil(np.log2(envelope.shape[0]))))
    frequencies = np.fft.rfftfreq(size, 0.01)
    spectrum = np.abs(np.fft.rfft(envelope, size)) ** 2
    shown, band = (frequencies >= 0.5) & (frequencies <= 16), (frequencies >= 1) & (frequencies <= 12)
    return {"frequencies": frequencies[shown], "spectrum": spectrum[shown] / max(spectrum[shown].sum(), 1e-20),
            "peak": float(frequencies[band][np.argmax(spectrum[band])])}


def frame_levels(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Levels in dB of 20 ms frames relative to the utterance's 95th percentile, floored at -100 dB; [T]."""
    size = int(0.02 * sample_rate)
    levels = 10 * np.log10(np.mean(_frames(signal, size, size) ** 2, axis=1) + 1e-20)
    return np.maximum(levels - np.percentile(levels, 95), -100.0)


def _percentiles(values: np.ndarray, points=(5, 25, 50, 75, 95)) -> Dict[str, float]:
    return {f"p{point}": round(float(np.percentile(values, point)), 2) for point in points}


def corpus_statistics(signals: List[np.ndarray], sample_rate: int) -> Dict[str, object]:
    """All statistics of one corpus (see the module docstring); keys starting with ``_`` hold the raw arrays."""
    spectra = [spectrum_statistics(signal, sample_rate) for signal in signals]
    frequencies = spectra[0]["frequencies"]
    average = np.mean([spectrum["power"] for spectrum in spectra], axis=0)
    edges = [(centre / np.sqrt(2), min(centre * np.sqrt(2), sample_rate / 2)) for centre in OCTAVE_CENTRES
             if centre / np.sqrt(2) < sample_rate / 2]
    bands = {f"{centre}": round(float(10 * np.log10(average[(frequencies >= low) & (frequencies < high)].sum())), 2)
             for centre, (low, high) in zip(OCTAVE_CENTRES, edges)}
    full_tracks = [pitch_track(signal, sample_rate) for signal in signals]
    tracks = [track[np.isfinite(track)] for track in full_tracks]
    voiced = [track for track in tracks if track.size >= 5]
    medians = np.array([np.median(track) for track in voiced])
    intonation = np.array([np.subtract(*np.percentile(12 * np.log2(track), [75, 25])) / 1.349 for track in voiced])
    modulations = [modulation_peak(signal, sample_rate) for signal in signals]
    peaks = np.array([modulation["peak"] for modulation in modulations])
    levels = [frame_levels(signal, sample_rate) for signal in signals]
    active_spread = np.array([np.std(level[level > -40]) for level in levels])
    pause_fraction = np.array([np.mean(level < -30) for level in levels])
    floor = np.array([np.percentile(level, 5) for level in levels])
    utterance_tilts = np.array([spectrum["tilt"] for spectrum in spectra])
    return {
        "num_utterances": len(signals),
        "seconds_mean": round(float(np.mean([signal.shape[0] for signal in signals]) / sample_rate), 2),
        "ltas_octave_bands_db": bands,
        "spectral_tilt_db_per_octave": round(_tilt(frequencies, average, sample_rate), 2),
        "utterance_tilt_db_per_octave": {"mean": round(float(utterance_tilts.mean()), 2),
                                         "std": round(float(utterance_tilts.std()), 2)},
        "f0_frames_hz": _percentiles(np.concatenate(tracks)) if any(track.size for track in tracks) else {},
        "f0_utterance_median_hz": _percentiles(medians) if medians.size else {},
        "intonation_semitones": round(float(intonation.mean()), 2) if intonation.size else None,
        "voiced_fraction": round(float(np.mean(np.isfinite(np.concatenate(full_tracks)))), 3),
        "modulation_peak_hz": _percentiles(peaks, (25, 50, 75)),
        "active_level_spread_db": round(float(active_spread.mean()), 2),
        "pause_fraction": round(float(pause_fraction.mean()), 3),
        "level_floor_db": round(float(np.median(floor)), 1),
        "_raw": {"frequencies": frequencies, "ltas": average, "medians": medians, "intonation": intonation,
                 "f0_frames": np.concatenate(tracks), "peaks": peaks, "tilts": utterance_tilts,
                 "modulation": (modulations[0]["frequencies"],
                                np.mean([modulation["spectrum"] for modulation in modulations], axis=0)),
                 "levels": np.concatenate(levels)},
    }


def distances(synthetic: Dict[str, object], recorded: Dict[str, object]) -> Dict[str, float]:
    """How far a synthetic corpus's statistics lie from the recorded corpus's."""
    one, two = synthetic["_raw"], recorded["_raw"]
    band = (one["frequencies"] >= 100) & (one["frequencies"] <= 0.9 * one["frequencies"][-1])
    difference = 10 * np.log10(one["ltas"][band] / two["ltas"][band])
    semitones = lambda hz: 12 * np.log2(hz / 100.0)  # noqa: E731
    values = {
        "ltas_rms_db": float(np.sqrt(np.mean((difference - difference.mean()) ** 2))),
        "spectral_tilt_db_per_octave": abs(synthetic["spectral_tilt_db_per_octave"]
                                           - recorded["spectral_tilt_db_per_octave"]),
        "utterance_tilt_wasserstein_db_per_octave": wasserstein_distance(one["tilts"], two["tilts"]),
        "f0_frames_wasserstein_semitones": wasserstein_distance(semitones(one["f0_frames"]),
                                                                semitones(two["f0_frames"])),
        "f0_utterance_median_wasserstein_semitones": wasserstein_distance(semitones(one["medians"]),
                                                                          semitones(two["medians"])),
        "intonation_semitones": abs(synthetic["intonation_semitones"] - recorded["intonation_semitones"]),
        "modulation_peak_wasserstein_hz": wasserstein_distance(one["peaks"], two["peaks"]),
        "active_level_spread_db": abs(synthetic["active_level_spread_db"] - recorded["active_level_spread_db"]),
        "pause_fraction": abs(synthetic["pause_fraction"] - recorded["pause_fraction"]),
        "level_floor_db": abs(synthetic["level_floor_db"] - recorded["level_floor_db"]),
    }
    return {key: round(float(value), 3) for key, value in values.items()}


def recorded_files(folder: str, count: int, seed: int) -> List[Path]:
    """``count`` audio files drawn at random (from ``seed``) from those under ``folder``."""
    files = sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SystemExit(f"--recorded {folder!r}: no {'/'.join(AUDIO_SUFFIXES)} files under it")
    order = np.random.default_rng(seed).permutation(len(files))[:count]
    return [files[index] for index in sorted(order)]


def demo_files(work: Path, voice_variety: str, count: int, sample_rate: int, seed: int, num_workers: int) -> List[Path]:
    """Build ``count`` demo speakers of one utterance each with ``voice_variety``; their files."""
    sizes = {"num_voices": count, "utterances_per_voice": 1, "num_noise_files": 3, "num_clips": 3}
    folders = build_demo_corpora(str(work / voice_variety), DEMO_HOURS, sample_rate=sample_rate, sizes=sizes,
                                 seed=seed, num_workers=num_workers, show_progress=False, voice_variety=voice_variety)
    return sorted(Path(folders["librispeech"], "demo").rglob("*.flac"))


def plot(statistics: Dict[str, Dict[str, object]], path: str) -> None:
    """Average spectra, F0, modulation spectra and frame levels of every corpus, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    for name, corpus in statistics.items():
        raw = corpus["_raw"]
        axes[0, 0].semilogx(raw["frequencies"][1:], 10 * np.log10(raw["ltas"][1:]), label=name)
        axes[0, 1].hist(raw["f0_frames"], bins=np.geomspace(60, 400, 40), histtype="step", density=True, label=name)
        axes[1, 0].plot(*raw["modulation"], label=name)
        axes[1, 1].hist(raw["levels"], bins=np.linspace(-100, 10, 56), histtype="step", density=True, label=name)
    axes[0, 1].set_xscale("log")
    for axis, title, label in ((axes[0, 0], "long-term average spectrum", "Hz (dB, unit power)"),
                               (axes[0, 1], "F0 of voiced frames", "Hz"),
                               (axes[1, 0], "envelope modulation spectrum", "Hz"),
                               (axes[1, 1], "20 ms frame levels", "dB re 95th percentile")):
        axis.set_title(title)
        axis.set_xlabel(label)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recorded", required=True, help="folder of recorded speech (audio files at any depth)")
    parser.add_argument("--num-utterances", type=int, default=40, help="utterances per corpus (default 40)")
    parser.add_argument("--sample-rate", type=int, default=8000, help="sample rate in Hz (default 8000)")
    parser.add_argument("--max-seconds", type=float, default=4.0,
                        help="cut every utterance to its first seconds (default 4, the demo's mixture length)")
    parser.add_argument("--seed", type=int, default=0, help="demo corpus seed and recorded draw (default 0)")
    parser.add_argument("--work", help="folder for the demo speech (default: a temporary folder, removed)")
    parser.add_argument("--num-workers", type=int, default=1, help="worker processes making the demo speech")
    parser.add_argument("--plot", metavar="FIGURE", help="also save a figure of the four statistics (png, pdf)")
    args = parser.parse_args(argv)
    recorded = recorded_files(args.recorded, args.num_utterances, args.seed)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work or temporary)
        files = {variety: demo_files(work, variety, args.num_utterances, args.sample_rate, args.seed,
                                     args.num_workers) for variety in ("espeak", "wide")}
        files["recorded"] = recorded
        keep = int(args.max_seconds * args.sample_rate)
        statistics = {name: corpus_statistics([read_audio(path, args.sample_rate)[:keep] for path in paths],
                                              args.sample_rate) for name, paths in files.items()}
    if args.plot:
        plot(statistics, args.plot)
    away = {variety: distances(statistics[variety], statistics["recorded"]) for variety in ("espeak", "wide")}
    report = {"sample_rate": args.sample_rate, "seed": args.seed, "max_seconds": args.max_seconds,
              "corpora": {name: {key: value for key, value in corpus.items() if key != "_raw"}
                          for name, corpus in statistics.items()},
              "distance_to_recorded": away,
              "closer_with_wide": sorted(key for key in away["wide"] if away["wide"][key] < away["espeak"][key]),
              "farther_with_wide": sorted(key for key in away["wide"] if away["wide"][key] > away["espeak"][key])}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
