"""benchmarks/voice_statistics.py measures known pitch, rhythm and pauses, and compares both demo voice varieties
with a folder of recordings."""

import json

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import load_benchmark

RATE = 8000


def syllables(pitch: float, syllable_rate: float, seconds: float = 3.0) -> np.ndarray:
    """Harmonics of ``pitch`` (falling as 1 / order) switched on and off ``syllable_rate`` times a second: [L]."""
    time = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * pitch * order * time) / order for order in range(1, int(0.45 * RATE / pitch) + 1))
    return 0.2 * tone * (np.sin(2 * np.pi * syllable_rate * time) > 0)


def test_known_signals_give_their_pitch_rhythm_and_pauses():
    statistics = load_benchmark("voice_statistics")
    signals = [syllables(150.0, 3.0), syllables(200.0, 3.0)]
    corpus = statistics.corpus_statistics(signals, RATE)
    assert corpus["f0_utterance_median_hz"]["p5"] == pytest.approx(150.0, rel=0.03)
    assert corpus["f0_utterance_median_hz"]["p95"] == pytest.approx(200.0, rel=0.03)
    assert corpus["intonation_semitones"] < 0.2  # steady tones
    assert corpus["modulation_peak_hz"]["p50"] == pytest.approx(3.0, abs=0.3)
    assert corpus["pause_fraction"] == pytest.approx(0.5, abs=0.05) and corpus["level_floor_db"] == -100.0
    assert corpus["voiced_fraction"] == pytest.approx(0.5, abs=0.1)
    # Harmonics falling as 1 / order lose about 6 dB per octave.
    assert corpus["spectral_tilt_db_per_octave"] == pytest.approx(-6.0, abs=2.0)


def test_both_varieties_are_compared_with_the_recordings(tmp_path, capsys):
    statistics = load_benchmark("voice_statistics")
    recorded = tmp_path / "recorded" / "speaker" / "1"
    recorded.mkdir(parents=True)
    for number, pitch in enumerate((110.0, 180.0, 230.0)):
        sf.write(recorded / f"utterance-{number}.flac", syllables(pitch, 2.5), RATE, subtype="PCM_16")
    figure = tmp_path / "voices.png"
    statistics.main(["--recorded", str(tmp_path / "recorded"), "--num-utterances", "2", "--work",
                     str(tmp_path / "work"), "--plot", str(figure)])
    report = json.loads(capsys.readouterr().out)
    assert report["sample_rate"] == RATE and report["max_seconds"] == 4.0
    assert {name: corpus["num_utterances"] for name, corpus in report["corpora"].items()} == {
        "espeak": 2, "wide": 2, "recorded": 2}
    assert 100 < report["corpora"]["recorded"]["f0_frames_hz"]["p50"] < 240
    espeak, wide = report["distance_to_recorded"]["espeak"], report["distance_to_recorded"]["wide"]
    assert set(espeak) == set(wide) and all(value >= 0 for value in [*espeak.values(), *wide.values()])
    assert set(report["closer_with_wide"]) | set(report["farther_with_wide"]) <= set(espeak)
    assert sorted(path.parent.parent.name for path in (tmp_path / "work").rglob("voices.json")) == ["espeak", "wide"]
    assert figure.stat().st_size > 10000
    with pytest.raises(SystemExit, match="no .flac/.wav/.ogg files"):
        statistics.main(["--recorded", str(tmp_path / "work" / "missing"), "--num-utterances", "1"])
