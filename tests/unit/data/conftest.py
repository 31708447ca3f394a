"""Tiny fake LibriSpeech / WHAM! / DnR trees and a fast simulation config for the data tests.

The trees hold short synthetic signals in the real layouts, with the awkward cases the
preparation must handle: a LibriSpeech utterance and WHAM! / DnR files at other sample rates
(one stereo), a corrupt ``.flac`` utterance and a corrupt WHAM! ``.wav``.
"""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb.data.simulation_config import SimulationConfig

RATE = 8000
#: Speakers of the fake LibriSpeech: 8 in train-clean-100 and 4 in dev-clean.
TRAIN_SPEAKERS = [str(100 + index) for index in range(8)]
DEV_SPEAKERS = [str(900 + index) for index in range(4)]


def voiced(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """Speech-like test signal: a harmonic tone with a random pitch and syllable-rate envelope."""
    time = np.arange(int(seconds * rate)) / rate
    pitch = rng.uniform(90, 250)
    tone = sum(np.sin(2 * np.pi * pitch * order * time) / order for order in range(1, 6) if pitch * order < rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * time + rng.uniform(0, 3)), 0.05, None)
    return 0.2 * tone * envelope


def fast_config(**overrides) -> SimulationConfig:
    """A simulation small enough for unit tests: 8 kHz, 2 s, small rooms with short reverberation."""
    values = dict(sample_rate=RATE, duration=2.0, rt60=(0.15, 0.3), room_min=(3.0, 3.0, 2.5),
                  room_max=(4.0, 4.0, 3.0), num_rays=300, utterance_gap=(0.1, 0.5), max_first_onset=0.3,
                  sfx_gap=(0.2, 0.6))
    values.update(overrides)
    return SimulationConfig(**values)


def _build(root: Path) -> Dict[str, Path]:
    rng = np.random.default_rng(1234)
    librispeech = root / "LibriSpeech"
    for subset, speakers in (("train-clean-100", TRAIN_SPEAKERS), ("dev-clean", DEV_SPEAKERS)):
        for speaker in speakers:
            chapter = librispeech / subset / speaker / "77"
            chapter.mkdir(parents=True)
            for utterance in range(3):
                sf.write(chapter / f"{speaker}-77-{utterance:04d}.flac", voiced(rng, rng.uniform(0.6, 1.4), RATE),
                         RATE, subtype="PCM_16")
            (chapter / f"{speaker}-77.trans.txt").write_text("unused\n")
    other_rate = librispeech / "train-clean-100" / TRAIN_SPEAKERS[0] / "77" / f"{TRAIN_SPEAKERS[0]}-77-0003.flac"
    sf.write(other_rate, voiced(rng, 1.0, 16000), 16000, subtype="PCM_16")
    corrupt = librispeech / "train-clean-100" / TRAIN_SPEAKERS[1] / "77" / f"{TRAIN_SPEAKERS[1]}-77-0003.flac"
    corrupt.write_bytes(b"fLaC this is not a flac stream" * 10)

    wham = root / "wham_noise"
    for split in ("tr", "cv", "tt"):
        (wham / split).mkdir(parents=True)
        for number in range(2):
            sf.write(wham / split / f"noise_{number}.wav", 0.05 * rng.standard_normal(int(0.8 * RATE)), RATE)
    sf.write(wham / "tr" / "stereo_16k.wav", 0.05 * rng.standard_normal((int(0.8 * 16000), 2)), 16000)
    (wham / "tr" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (wham / "metadata").mkdir()
    (wham / "metadata" / "noise_meta.csv").write_text("utterance_id\n")

    dnr = root / "dnr_v2"
    for split, clip_rate in (("tr", RATE), ("cv", RATE), ("tt", 22050)):
        clip = dnr / split / "1001"
        clip.mkdir(parents=True)
        for stem in ("mix", "speech", "sfx", "music"):
            signal = voiced(rng, 3.0, clip_rate) if stem != "sfx" else 0.1 * rng.standard_normal(3 * clip_rate)
            sf.write(clip / f"{stem}.wav", signal, clip_rate)
    return {"root": root, "librispeech": librispeech, "wham": wham, "dnr": dnr, "other_rate": other_rate,
            "corrupt": corrupt, "corrupt_noise": wham / "tr" / "broken.wav"}


@pytest.fixture(scope="session")
def fake_corpora(tmp_path_factory) -> Dict[str, Path]:
    """Paths of the fake corpus trees (built once per session; tests must not modify them)."""
    return _build(tmp_path_factory.mktemp("corpora"))


@pytest.fixture(scope="session")
def make_config():
    """:func:`fast_config`, for tests to build configs with overrides."""
    return fast_config
