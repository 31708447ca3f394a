"""Simulation settings: defaults from the paper, checks naming the bad setting, JSON round trip."""

import pytest

from spmamba_sb.data.simulation_config import SimulationConfig


def test_paper_defaults():
    config = SimulationConfig()
    assert (config.sample_rate, config.duration, config.num_speakers) == (16000, 60.0, 2)
    assert (config.speech_lufs, config.sfx_lufs, config.music_lufs, config.loudness_spread) == (-17, -21, -24, 2)
    assert config.num_samples == 960000


def test_round_trip_through_json_values():
    config = SimulationConfig(duration=3.0, num_channels=4, rt60=[0.3, 0.5])
    assert config.rt60 == (0.3, 0.5)
    assert SimulationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown simulation settings \['reverb'\]"):
        SimulationConfig.from_dict({"reverb": 1})


@pytest.mark.parametrize("settings,match", [
    (dict(duration=0.5), "duration=0.5 is invalid"),
    (dict(num_speakers=0), "num_speakers=0 is invalid"),
    (dict(num_channels=1.5), "num_channels=1.5 is invalid"),
    (dict(rt60=(0.8, 0.2)), r"rt60=\(0.8, 0.2\) is invalid: must be \(low, high\)"),
    (dict(room_min=(1.0, 3.0, 3.0)), "room_min=.* every side must exceed"),
    (dict(room_max=(3.0, 3.0, 2.0)), "room_max=.* must be at least room_min"),
    (dict(speech_lufs=3.0), "speech_lufs=3.0 is invalid"),
    (dict(max_peak=1.5), r"max_peak=1.5 is invalid: must be within \(0, 1\]"),
    (dict(audio_subtype="PCM_8"), "audio_subtype='PCM_8' is invalid"),
    (dict(sample_rate=16000.0), "sample_rate=16000.0 is invalid"),
])
def test_bad_settings_are_named(settings, match):
    with pytest.raises(ValueError, match=match):
        SimulationConfig(**settings)
