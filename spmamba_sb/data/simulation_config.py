"""Every setting of the mixture simulation, checked in one place."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

#: The paper's loudness centres in LUFS (REFERENCE.md section 3). The paper gives none for WHAM!
#: noise; we put it with music, as a bed under the speech.
DEFAULT_LOUDNESS = {"speech": -17.0, "noise": -24.0, "sfx": -21.0, "music": -24.0}
AUDIO_SUBTYPES = ("FLOAT", "PCM_24", "PCM_16")
#: Background classes a mixture can hold.
BACKGROUND_KINDS = ("noise", "sfx", "music")


@dataclass(frozen=True)
class SimulationConfig:
    """How one mixture is simulated: length, speakers, loudness, rooms, microphones and file format.

    Arguments
    ---------
    sample_rate : int
        Sample rate of every output file, in Hz. Sources at other rates are resampled.
    duration : float
        Mixture length in seconds (the paper: 60).
    num_speakers : int
        Speakers per mixture (files ``s1`` ... ``sN``).
    num_channels : int
        Microphones: 1 is mono; more places a circular array of radius ``array_radius`` (2: a pair).
    backgrounds : tuple of str
        Background classes in every mixture, among ``BACKGROUND_KINDS`` (the paper: all three;
        none makes clean, reverberant mixtures).
    speech_lufs, noise_lufs, sfx_lufs, music_lufs : float
        Loudness centre of each class in LUFS, measured at the first microphone after reverberation.
    loudness_spread : float
        Each class's target is drawn uniformly within this many LU of its centre (the paper: 2).
    utterance_gap : tuple of float
        Range of the silence between two utterances of one speaker, in seconds.
    max_first_onset : float
        A speaker starts talking at a uniform time in ``[0, max_first_onset]`` seconds.
    sfx_gap : tuple of float
        Range of the silence between two sound-effect files, in seconds; the first starts within the
        shortest gap (noise and music play without gaps).
    fade : float
        Fade in / out, in seconds, where a file is cut (mixture end, random start in a long file).
    rt60 : tuple of float
        Range of the reverberation time drawn per room, in seconds.
    room_min, room_max : tuple of float
        Smallest and largest room (length, width, height) in metres; each side is drawn uniformly.
    wall_margin : float
        Smallest distance of sources and microphones to the walls, in metres.
    min_source_distance : float
        Smallest distance of a source to the array centre, in metres.
    array_radius : float
        Radius of the microphone array, in metres (unused for one microphone).
    ism_order : int
        Image-source order of the hybrid simulation; ray tracing models the rest of the tail.
    num_rays : int, optional
        Rays per source; ``None`` lets pyroomacoustics pick from the room volume.
    max_peak : float
        Largest absolute sample allowed in any output; if exceeded, all signals of the mixture are
        scaled down together and the factor is recorded (so nothing ever clips).
    audio_subtype : str
        ``"FLOAT"`` (32-bit float WAV; the mixture equals the sum of its parts to float precision),
        ``"PCM_24"`` or ``"PCM_16"`` (smaller files, rounding error up to about 1e-4).

    Example
    -------
    >>> config = SimulationConfig(duration=4.0)
    >>> config.num_samples
    64000
    >>> SimulationConfig.from_dict(config.to_dict()) == config
    True
    """

    sample_rate: int = 16000
    duration: float = 60.0
    num_speakers: int = 2
    num_channels: int = 1
    backgrounds: Tuple[str, ...] = BACKGROUND_KINDS
    speech_lufs: float = DEFAULT_LOUDNESS["speech"]
    noise_lufs: float = DEFAULT_LOUDNESS["noise"]
    sfx_lufs: float = DEFAULT_LOUDNESS["sfx"]
    music_lufs: float = DEFAULT_LOUDNESS["music"]
    loudness_spread: float = 2.0
    utterance_gap: Tuple[float, float] = (0.3, 2.0)
    max_first_onset: float = 2.0
    sfx_gap: Tuple[float, float] = (0.5, 4.0)
    fade: float = 0.02
    rt60: Tuple[float, float] = (0.2, 0.8)
    room_min: Tuple[float, float, float] = (3.0, 3.0, 2.5)
    room_max: Tuple[float, float, float] = (10.0, 8.0, 4.0)
    wall_margin: float = 0.5
    min_source_distance: float = 0.5
    array_radius: float = 0.05
    ism_order: int = 3
    num_rays: Optional[int] = None
    max_peak: float = 0.95
    audio_subtype: str = "FLOAT"

    def __post_init__(self):
        def check(condition: bool, name: str, requirement: str):
            if not condition:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: {requirement}")

        for name in ("utterance_gap", "sfx_gap", "rt60", "room_min", "room_max"):
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        check(len(set(self.backgrounds)) == len(self.backgrounds) and set(self.backgrounds) <= set(BACKGROUND_KINDS),
              "backgrounds", f"must be distinct kinds among {BACKGROUND_KINDS}")
        object.__setattr__(self, "backgrounds", tuple(kind for kind in BACKGROUND_KINDS if kind in self.backgrounds))
        check(isinstance(self.sample_rate, int) and self.sample_rate >= 4000, "sample_rate",
              "must be an integer of at least 4000 Hz")
        check(self.duration >= 1.0, "duration", "must be at least 1 second (loudness is measured on 0.4 s blocks)")
        check(isinstance(self.num_speakers, int) and self.num_speakers >= 1, "num_speakers",
              "must be a positive integer")
        check(isinstance(self.num_channels, int) and self.num_channels >= 1, "num_channels",
              "must be a positive integer")
        for name in ("speech_lufs", "noise_lufs", "sfx_lufs", "music_lufs"):
            check(math.isfinite(getattr(self, name)) and getattr(self, name) < 0, name, "must be a negative LUFS value")
        check(self.loudness_spread >= 0, "loudness_spread", "must be >= 0")
        for name in ("utterance_gap", "sfx_gap", "rt60"):
            low, high = getattr(self, name)
            check(len(getattr(self, name)) == 2 and 0 <= low <= high, name, "must be (low, high) with 0 <= low <= high")
        check(self.rt60[0] > 0, "rt60", "must be positive")
        check(self.max_first_onset >= 0, "max_first_onset", "must be >= 0")
        check(0 <= self.fade <= 1, "fade", "must be within [0, 1] second")
        for name in ("room_min", "room_max"):
            check(len(getattr(self, name)) == 3, name, "must be (length, width, height)")
        check(all(low <= high for low, high in zip(self.room_min, self.room_max)), "room_max",
              f"must be at least room_min={self.room_min} on every side")
        check(min(self.room_min) > 2 * self.wall_margin + 2 * self.array_radius, "room_min",
              f"every side must exceed 2 * wall_margin + 2 * array_radius = "
              f"{2 * self.wall_margin + 2 * self.array_radius:g} m")
        check(self.wall_margin > 0, "wall_margin", "must be positive")
        check(self.min_source_distance >= 0, "min_source_distance", "must be >= 0")
        check(self.array_radius > 0, "array_radius", "must be positive")
        check(isinstance(self.ism_order, int) and self.ism_order >= 0, "ism_order", "must be an integer >= 0")
        check(self.num_rays is None or (isinstance(self.num_rays, int) and self.num_rays > 0), "num_rays",
              "must be None or a positive integer")
        check(0 < self.max_peak <= 1, "max_peak", "must be within (0, 1]")
        check(self.audio_subtype in AUDIO_SUBTYPES, "audio_subtype", f"must be one of {AUDIO_SUBTYPES}")

    @property
    def num_samples(self) -> int:
        """Mixture length in samples."""
        return int(round(self.duration * self.sample_rate))

    def loudness_centre(self, kind: str) -> float:
        """Loudness centre in LUFS of ``"speech"``, ``"noise"``, ``"sfx"`` or ``"music"``."""
        return getattr(self, f"{kind}_lufs")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "SimulationConfig":
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            On an unknown key.
        """
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown simulation settings {unknown}; known: {sorted(known)}")
        return cls(**values)
