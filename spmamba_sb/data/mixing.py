"""One noisy, reverberant mixture: speaker tracks, backgrounds, a room, loudness targets.

Each speaker speaks a sequence of their own utterances (never overlapping each other); noise,
sound effects and music play in the background. Every source is placed in a simulated room and
convolved with its impulse responses; each class is then scaled so that its reverberant image at
the first microphone has the loudness drawn for it. The targets are the reverberant speaker
images; ``noise`` is the sum of the reverberant backgrounds, so ``mix = s1 + ... + sN + noise``.
"""

import logging
import math
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np
from scipy.signal import oaconvolve

from spmamba_sb.data.audio_io import UnreadableAudioError, read_audio
from spmamba_sb.data.loudness import gain_to_loudness, measure_loudness
from spmamba_sb.data.room import RoomSimulator
from spmamba_sb.data.simulation_config import BACKGROUND_KINDS, SimulationConfig
from spmamba_sb.data.timeline import NoReadableFilesError, draw_segments, render_segments

logger = logging.getLogger(__name__)

METADATA_VERSION = 1


class _CachedLoader:
    """Reads each file once per mixture, at the mixture's sample rate; remembers unreadable files."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.audio: Dict[str, np.ndarray] = {}
        self.errors: Dict[str, UnreadableAudioError] = {}

    def __call__(self, path: str) -> np.ndarray:
        if path in self.errors:
            raise self.errors[path]
        if path not in self.audio:
            try:
                self.audio[path] = read_audio(path, self.sample_rate)
            except UnreadableAudioError as error:
                self.errors[path] = error
                raise
        return self.audio[path]


def _overlap_ratio(speaker_segments: List[List[Dict[str, int]]], num_samples: int) -> float:
    """Fraction of the mixture during which at least two speakers talk."""
    active = np.zeros(num_samples, dtype=np.int32)
    for segments in speaker_segments:
        for segment in segments:
            active[segment["start"]:segment["start"] + segment["length"]] += 1
    return float(np.mean(active >= 2))


def room_sources(metadata: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """``(kind, entry)`` of each source of a drawn mixture's room, in the room's order: ``"speech"``
    and its entry per speaker, then each background the mixture has, in ``BACKGROUND_KINDS`` order.

    Example
    -------
    >>> metadata = {"speakers": [{"id": "a"}, {"id": "b"}], "backgrounds": {"music": {}, "noise": {}}}
    >>> [kind for kind, _ in room_sources(metadata)]
    ['speech', 'speech', 'noise', 'music']
    """
    backgrounds = [(kind, metadata["backgrounds"][kind]) for kind in BACKGROUND_KINDS if kind in metadata["backgrounds"]]
    return [*(("speech", entry) for entry in metadata["speakers"]), *backgrounds]


class MixtureSimulator:
    """Simulates mixtures, and rebuilds a mixture from its metadata.

    Arguments
    ---------
    config : SimulationConfig
        Every setting of the simulation.

    Example
    -------
    >>> import os
    >>> from spmamba_sb.data.audio_io import write_audio_atomic
    >>> folder = str(getfixture("tmp_path"))
    >>> noise = np.random.default_rng(0).standard_normal(8000) * 0.1
    >>> files = []
    >>> for name in ("a1", "a2", "b1", "n", "s", "m"):
    ...     files.append(os.path.join(folder, name + ".wav"))
    ...     write_audio_atomic(files[-1], noise, 8000)
    >>> sources = {"speakers": {"a": files[0:2], "b": files[2:3]}, "noise": [files[3]], "sfx": [files[4]],
    ...            "music": [files[5]]}
    >>> config = SimulationConfig(sample_rate=8000, duration=1.5, rt60=(0.15, 0.2), room_min=(3.0, 3.0, 2.5),
    ...                           room_max=(3.5, 3.5, 2.6), num_rays=300)
    >>> signals, metadata = MixtureSimulator(config).simulate(np.random.default_rng(0), sources)
    >>> sorted(signals), signals["mix"].shape
    (['mix', 'noise', 's1', 's2'], (1, 12000))
    """

    def __init__(self, config: SimulationConfig):
        self.config = config
        self.room_simulator = RoomSimulator(config)

    def _draw_speakers(self, rng: np.random.Generator, speakers: Dict[str, List[str]], load: Callable,
                       skipped: Set[str]) -> List[Dict[str, Any]]:
        config = self.config
        if len(speakers) < config.num_speakers:
            raise ValueError(f"num_speakers={config.num_speakers} but only {len(speakers)} speakers are available")
        chosen = []
        candidates = sorted(speakers)
        for index in rng.permutation(len(candidates)):
            speaker = candidates[int(index)]
            try:
                segments = draw_segments(rng, speakers[speaker], config.num_samples, config.sample_rate, load,
                                         gap=config.utterance_gap, max_first_onset=config.max_first_onset,
                                         fade=config.fade, random_start=False, fade_every_segment=False,
                                         skipped=skipped)
            except NoReadableFilesError:
                logger.warning("speaker %s has no readable utterance; drawing another speaker", speaker)
                continue
            chosen.append({"speaker": speaker, "segments": segments})
            if len(chosen) == config.num_speakers:
                return chosen
        raise ValueError(f"fewer than num_speakers={config.num_speakers} speakers have readable utterances")

    def _draw_background(self, rng: np.random.Generator, kind: str, files: List[str], load: Callable,
                         skipped: Set[str]) -> List[Dict[str, int]]:
        config = self.config
        gap = config.sfx_gap if kind == "sfx" else (0.0, 0.0)
        try:
            return draw_segments(rng, files, config.num_samples, config.sample_rate, load, gap=gap,
                                 max_first_onset=gap[0], fade=config.fade, random_start=True,
                                 fade_every_segment=True, skipped=skipped)
        except NoReadableFilesError as error:
            raise ValueError(f"no readable {kind} file among {len(files)} ({error})") from error

    def _target(self, rng: np.random.Generator, kind: str) -> float:
        centre = self.config.loudness_centre(kind)
        return float(rng.uniform(centre - self.config.loudness_spread, centre + self.config.loudness_spread))

    def simulate(self, rng: np.random.Generator, sources: Dict[str, Any],
                 mixture_id: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
        """Draw and render one mixture.

        Arguments
        ---------
        rng : np.random.Generator
            Source of every random choice (the mixture is a function of its state and the sources).
        sources : dict
            ``{"speakers": {speaker: [paths]}, "noise": [paths], "sfx": [paths], "music": [paths]}``.
        mixture_id : str
            Recorded in the metadata.

        Returns
        -------
        signals : dict
            ``"mix"``, ``"s1"`` ... ``"sN"`` and ``"noise"``, each [C, L] float32.
        metadata : dict
            JSON-ready description from which :meth:`rebuild` recomputes the signals.
        """
        config = self.config
        load = _CachedLoader(config.sample_rate)
        skipped: Set[str] = set()
        speakers = self._draw_speakers(rng, sources["speakers"], load, skipped)
        for speaker in speakers:
            speaker["lufs_target"] = self._target(rng, "speech")
        backgrounds = {}
        for kind in config.backgrounds:
            backgrounds[kind] = {"segments": self._draw_background(rng, kind, sources[kind], load, skipped),
                                 "lufs_target": self._target(rng, kind)}
        room = self.room_simulator.draw(rng, num_sources=len(speakers) + len(backgrounds))
        metadata = {"version": METADATA_VERSION, "id": mixture_id, "sample_rate": config.sample_rate,
                    "num_samples": config.num_samples, "duration": config.num_samples / config.sample_rate,
                    "num_channels": config.num_channels, "audio_subtype": config.audio_subtype,
                    "speakers": speakers, "backgrounds": backgrounds, "room": room,
                    "overlap_ratio": _overlap_ratio([speaker["segments"] for speaker in speakers],
                                                    config.num_samples),
                    "skipped_files": sorted(skipped)}
        signals = self._render(metadata, load, measure=True)
        return signals, metadata

    def rebuild(self, metadata: Dict[str, Any], load: Optional[Callable[[str], np.ndarray]] = None,
                include_backgrounds: bool = False) -> Dict[str, np.ndarray]:
        """Recompute a mixture's signals from its metadata (source files, segments, gains, room).

        Arguments
        ---------
        metadata : dict
            As returned by :meth:`simulate` (or read back from its JSON file).
        load : callable, optional
            ``path -> [L] float array``; by default the files are read and resampled as when simulating.
        include_backgrounds : bool
            Also return each background class alone, as ``"background_noise"``, ``"background_sfx"``
            and ``"background_music"`` ([C, L] float32, summing to ``"noise"`` up to float rounding).

        Returns
        -------
        dict
            The same signals as :meth:`simulate` returned (plus the backgrounds, if asked).

        Raises
        ------
        ValueError
            If the metadata was made with another sample rate, length or channel count.
        """
        config = self.config
        for key, value in (("sample_rate", config.sample_rate), ("num_samples", config.num_samples),
                           ("num_channels", config.num_channels)):
            if metadata[key] != value:
                raise ValueError(f"metadata has {key}={metadata[key]}, this simulator's config has {value}")
        return self._render(metadata, load or _CachedLoader(config.sample_rate), measure=False,
                            include_backgrounds=include_backgrounds)

    def _render(self, metadata: Dict[str, Any], load: Callable, measure: bool,
                include_backgrounds: bool = False) -> Dict[str, np.ndarray]:
        """Signals of a drawn mixture; with ``measure``, set the gains and record them in ``metadata``."""
        config = self.config
        length = config.num_samples
        sources = room_sources(metadata)
        classes = [entry for _, entry in sources]
        impulse_responses = self.room_simulator.impulse_responses(metadata["room"])
        images = []
        for entry, responses in zip(classes, impulse_responses):
            dry = render_segments(entry["segments"], length, load)  # [L]
            image = np.stack([oaconvolve(dry, response)[:length] for response in responses])  # [C, L]
            if measure:
                loudness = measure_loudness(image[0], config.sample_rate)
                entry["lufs_before_gain"] = loudness if math.isfinite(loudness) else None
                entry["gain"] = gain_to_loudness(loudness, entry["lufs_target"])
            images.append(entry["gain"] * image)
        num_speakers = len(metadata["speakers"])
        background = np.sum([np.zeros((config.num_channels, length)), *images[num_speakers:]], axis=0)  # [C, L]
        parts = [*images[:num_speakers], background]
        if measure:
            peak = max(float(np.max(np.abs(np.sum(parts, axis=0)))), *(float(np.max(np.abs(part))) for part in parts))
            metadata["rescale"] = min(1.0, config.max_peak / peak) if peak > 0 else 1.0
            for entry in classes:
                entry["gain_db"] = 20 * math.log10(entry["gain"]) if entry["gain"] > 0 else None
                entry["lufs"] = (entry["lufs_target"] + 20 * math.log10(metadata["rescale"])
                                 if entry["lufs_before_gain"] is not None else None)
        rescale = metadata["rescale"]
        signals = {f"s{index + 1}": (rescale * part).astype(np.float32) for index, part in enumerate(parts[:-1])}
        signals["noise"] = (rescale * background).astype(np.float32)
        mix = signals["noise"].copy()
        for index in range(num_speakers):
            mix += signals[f"s{index + 1}"]
        signals["mix"] = mix
        if include_backgrounds:
            for (kind, _), image in zip(sources[num_speakers:], images[num_speakers:]):
                signals[f"background_{kind}"] = (rescale * image).astype(np.float32)
        return signals
