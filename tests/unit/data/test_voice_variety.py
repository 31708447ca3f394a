"""Voice variety: each transform does what it says, all of it is seeded, "espeak" leaves the demo corpus as it was."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from spmamba_sb.data import voice_variety as variety
from spmamba_sb.data.audio_io import read_audio
from spmamba_sb.data.demo_corpus import build_demo_corpora, prepare_demo, voice_profiles
from spmamba_sb.data.prepare import CONFIG_FILE
from spmamba_sb.data.synth_speech import EspeakSynthesizer

RATE = 16000
HOURS = {"train": 6 / 3600, "valid": 2 / 3600, "test": 2 / 3600}
SIZES = {"num_voices": 3, "utterances_per_voice": 1, "num_noise_files": 3, "num_clips": 3}


def vowel(pitch: float = 120.0, formant: float = 1000.0, seconds: float = 1.0) -> np.ndarray:
    """A pulse train at ``pitch`` through one resonance at ``formant`` (100 Hz wide): [L] at RATE."""
    pulses = np.zeros(int(seconds * RATE))
    pulses[::int(RATE / pitch)] = 1.0
    radius, angle = np.exp(-np.pi * 100 / RATE), 2 * np.pi * formant / RATE
    output = lfilter([1.0], [1.0, -2 * radius * np.cos(angle), radius ** 2], pulses)  # a two-pole resonator
    return output / np.abs(output).max()


def spectrum(signal: np.ndarray):
    magnitude = np.abs(np.fft.rfft(signal * np.hanning(signal.shape[0])))
    return np.fft.rfftfreq(signal.shape[0], 1 / RATE), magnitude


def band_energy(signal: np.ndarray, low: float, high: float) -> float:
    frequencies, magnitude = spectrum(signal)
    return float(np.sum(magnitude[(frequencies >= low) & (frequencies < high)] ** 2))


def test_unknown_voice_variety_is_named():
    with pytest.raises(ValueError, match="voice_variety='loud' is not one of 'espeak', 'wide'"):
        variety.profile_ranges("loud")


@pytest.mark.parametrize("factor", [0.87, 1.15])
def test_formant_shift_moves_the_resonance_and_keeps_pitch_and_length(factor):
    for pitch in (120.0, 220.0, 300.0):
        speech = vowel(pitch=pitch, formant=1000.0)
        shifted = variety.shift_formants(speech, RATE, factor)
        assert shifted.shape == speech.shape
        frequencies, before = spectrum(speech)
        _, after = spectrum(shifted)
        centroid = lambda magnitude: np.sum(frequencies * magnitude ** 2) / np.sum(magnitude ** 2)  # noqa: E731
        # at least half of the requested shift of the spectral centroid, and no more than all of it
        assert 0.5 * abs(np.log(factor)) < np.log(centroid(after) / centroid(before)) * np.sign(factor - 1) < abs(
            np.log(factor)) + 0.02
        strongest = frequencies[np.argmax(after)]
        period = int(RATE / pitch)  # the pulse train's true pitch is RATE / period
        assert abs(strongest * period / RATE - round(strongest * period / RATE)) < 0.05  # still a harmonic
        np.testing.assert_allclose(variety.shift_formants(speech, RATE, 1.0), speech, atol=1e-9)


def test_pitch_drift_follows_the_curve_and_keeps_length():
    time = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 200 * time)
    cents = np.where(time < 0.5, 200.0, -200.0)
    drifted = variety.drift_pitch(tone, cents)
    assert drifted.shape == tone.shape
    crossings = lambda part: np.count_nonzero(np.diff(np.signbit(part)))  # noqa: E731
    ratio = crossings(drifted[:RATE // 2]) / crossings(drifted[RATE // 2:])
    assert ratio == pytest.approx(2 ** (400 / 1200), rel=0.03)
    np.testing.assert_allclose(variety.drift_pitch(tone, np.full(RATE, 80.0)), tone, atol=1e-9)  # no change: no drift
    with pytest.raises(ValueError, match="cents has shape"):
        variety.drift_pitch(tone, cents[:10])


def test_slow_curves_are_seeded_slow_and_peak_at_their_depth():
    curve = variety.slow_curve(np.random.default_rng(3), 4 * RATE, RATE, depth=2.5, max_frequency=1.5)
    assert np.abs(curve).max() == pytest.approx(2.5)
    frequencies, magnitude = spectrum(curve)
    assert np.sum(magnitude[frequencies > 3.0] ** 2) < 0.01 * np.sum(magnitude ** 2)
    assert np.array_equal(curve, variety.slow_curve(np.random.default_rng(3), 4 * RATE, RATE, 2.5, 1.5))
    level = variety.drift_level(np.ones(4 * RATE), curve)
    assert 20 * np.log10(level.max()) == pytest.approx(curve.max())


def test_channel_colouring_tilts_and_high_passes():
    noise = np.random.default_rng(0).standard_normal(4 * RATE)
    flat = dict(highpass_hz=1.0, peak_hz=1000.0, peak_db=0.0, peak_octaves=0.5)
    tilted = variety.colour_channel(noise, RATE, tilt_db_per_octave=2.0, **flat)
    gain = lambda signal: 10 * np.log10(band_energy(signal, 4000, 5000) / band_energy(signal, 500, 625))  # noqa: E731
    assert gain(tilted) - gain(noise) == pytest.approx(2.0 * 3, abs=1.0)  # 3 octaves apart
    high_passed = variety.colour_channel(noise, RATE, tilt_db_per_octave=0.0, **{**flat, "highpass_hz": 200.0})
    assert 10 * np.log10(band_energy(high_passed, 40, 80) / band_energy(noise, 40, 80)) < -15  # -28 to -16 dB
    assert 10 * np.log10(band_energy(high_passed, 1000, 2000) / band_energy(noise, 1000, 2000)) > -0.1
    assert high_passed.shape == noise.shape


def test_breath_noise_fills_pauses_only_at_its_level():
    speech = np.concatenate([vowel(seconds=0.5), np.zeros(RATE // 2), vowel(seconds=0.5)])
    breathy = variety.add_breath_noise(speech, RATE, -30.0, np.random.default_rng(0))
    pause = breathy[RATE // 2 + 800:RATE - 800]
    active_rms = np.sqrt(np.mean(speech[:RATE // 2] ** 2))
    assert 20 * np.log10(np.sqrt(np.mean(pause ** 2)) / active_rms) == pytest.approx(-30.0, abs=3.0)
    assert np.abs(breathy[:RATE // 2 - 800] - speech[:RATE // 2 - 800]).max() < 1e-9
    assert band_energy(pause, 0, 150) < 0.01 * band_energy(pause, 150, RATE / 2)  # high-passed, like an exhalation


def test_varying_an_utterance_is_seeded_and_keeps_length_and_peak():
    speech = np.concatenate([vowel(seconds=0.6), np.zeros(RATE // 4), vowel(pitch=150.0, seconds=0.6)])
    settings = variety.speaker_variety(np.random.default_rng([0, 25, 1]))
    first = variety.vary_utterance(speech, RATE, settings, np.random.default_rng([0, 26, 1, 0]))
    assert np.array_equal(first, variety.vary_utterance(speech, RATE, settings, np.random.default_rng([0, 26, 1, 0])))
    other = variety.vary_utterance(speech, RATE, settings, np.random.default_rng([0, 26, 1, 1]))
    assert not np.allclose(first, other)
    assert first.shape == speech.shape and np.abs(first).max() == pytest.approx(np.abs(speech).max())


def test_wide_profiles_spread_wider_balance_female_voices_and_keep_their_variety():
    synthesizer = EspeakSynthesizer()
    wide = voice_profiles(40, seed=0, synthesizer=synthesizer, voice_variety="wide")
    females = sum(synthesizer.variant_gender(profile["variant"]) == "female" for profile in wide)
    assert females == 20
    assert len({(profile["voice"], profile["variant"]) for profile in wide}) == 40
    for profile in wide:
        for key, (low, high) in variety.PROFILE_RANGES["wide"].items():
            assert low <= profile[key] <= high
        assert 0.85 <= profile["variety"]["formant_factor"] <= 1.2
    assert min(profile["rate"] for profile in wide) < 135  # beyond the espeak range
    espeak = voice_profiles(40, seed=0, synthesizer=synthesizer)
    assert espeak == voice_profiles(40, seed=0, synthesizer=synthesizer, voice_variety="espeak")
    assert all("variety" not in profile for profile in espeak)
    assert wide == voice_profiles(40, seed=0, synthesizer=synthesizer, voice_variety="wide")


def _hashes(root: Path) -> dict:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_espeak_variety_leaves_the_corpus_byte_identical_and_wide_changes_only_speech(tmp_path):
    options = dict(sample_rate=8000, sizes=SIZES, seed=5, show_progress=False)
    build_demo_corpora(str(tmp_path / "default"), HOURS, **options)
    build_demo_corpora(str(tmp_path / "espeak"), HOURS, voice_variety="espeak", **options)
    build_demo_corpora(str(tmp_path / "wide"), HOURS, voice_variety="wide", **options)
    default, espeak, wide = (_hashes(tmp_path / name) for name in ("default", "espeak", "wide"))
    assert default == espeak and len(default) > 10
    assert set(wide) == set(default)
    changed = {name for name in default if wide[name] != default[name]}
    speech = {name for name in default if name.endswith(".flac")}
    assert changed == speech | {"LibriSpeech/voices.json", "demo_sources.json"}
    profiles = json.loads((tmp_path / "wide" / "LibriSpeech" / "voices.json").read_text())
    assert [sorted(profile["variety"]) for profile in profiles] == [sorted(variety.speaker_variety(
        np.random.default_rng(0)))] * SIZES["num_voices"]
    assert json.loads((tmp_path / "wide" / "demo_sources.json").read_text())["voice_variety"] == "wide"
    with pytest.raises(ValueError, match="made with other settings"):
        build_demo_corpora(str(tmp_path / "wide"), HOURS, **options)
    with pytest.raises(ValueError, match="voice_variety='loud'"):
        build_demo_corpora(str(tmp_path / "loud"), HOURS, voice_variety="loud", **options)


def test_wide_variety_builds_a_dataset_end_to_end(tmp_path):
    fast_rooms = {"rt60": (0.15, 0.2), "room_max": (4.0, 4.0, 3.0), "num_rays": 300}
    result = prepare_demo(str(tmp_path), hours={"train": 3 / 3600, "valid": 0.0, "test": 0.0}, duration=1.5,
                          sample_rate=8000, sizes={**SIZES, "num_voices": 2}, show_progress=False,
                          simulation_options=fast_rooms, voice_variety="wide")
    assert result["num_mixtures"] == {"train": 2, "valid": 0, "test": 0}
    with open(result["csv"]["train"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        mixture = read_audio(row["mix_wav"], None)
        assert mixture.shape == (12000,) and np.isfinite(mixture).all() and np.abs(mixture).max() > 0
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["voice_variety"] == "wide"


def test_the_demo_command_passes_the_voice_variety(tmp_path, monkeypatch, capsys):
    import spmamba_sb.data.prepare_cli as cli

    seen = {}
    monkeypatch.setattr(cli, "prepare_demo", lambda output, **kwargs: seen.update(kwargs) or
                        {"made": 0, "num_mixtures": {}, "csv": {}})
    assert cli.demo_main(["--out", str(tmp_path), "--no-progress"]) == 0 and seen["voice_variety"] == "espeak"
    assert cli.demo_main(["--out", str(tmp_path), "--voice-variety", "wide", "--no-progress"]) == 0
    assert seen["voice_variety"] == "wide"
    with pytest.raises(SystemExit):
        cli.demo_main(["--out", str(tmp_path), "--voice-variety", "loud"])
    assert "invalid choice: 'loud'" in capsys.readouterr().err
