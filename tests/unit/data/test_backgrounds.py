"""Synthetic noise, music and sound effects: lengths, levels, determinism, character."""

import numpy as np
import pytest

from spmamba_sb.data.backgrounds import BackgroundSynthesizer

RATE = 8000


def _flatness(signal):
    power = np.abs(np.fft.rfft(signal)) ** 2 + 1e-12
    return np.exp(np.mean(np.log(power))) / np.mean(power)


@pytest.mark.parametrize("kind", ["noise", "music", "sfx"])
def test_lengths_levels_and_determinism(kind):
    synthesizer = BackgroundSynthesizer(RATE)
    audio = synthesizer.generate(kind, np.random.default_rng(0), 3.0)
    assert audio.shape == (3 * RATE,) and np.isfinite(audio).all()
    assert 0.01 < np.max(np.abs(audio)) <= 0.9
    assert np.array_equal(audio, synthesizer.generate(kind, np.random.default_rng(0), 3.0))
    assert not np.array_equal(audio, synthesizer.generate(kind, np.random.default_rng(1), 3.0))


def test_each_kind_has_its_own_character():
    synthesizer = BackgroundSynthesizer(RATE)
    noise = [synthesizer.generate("noise", np.random.default_rng(seed), 4.0) for seed in range(4)]
    music = [synthesizer.generate("music", np.random.default_rng(seed), 4.0) for seed in range(4)]
    effects = [synthesizer.generate("sfx", np.random.default_rng(seed), 8.0) for seed in range(4)]
    # music is tonal (a peaky spectrum), noise is not
    assert max(_flatness(signal) for signal in music) < min(_flatness(signal) for signal in noise)
    # noise plays throughout; sound effects are sparse events with silence in between
    assert all(np.mean(np.abs(signal) < 1e-4) < 0.01 for signal in noise)
    assert all(np.mean(np.abs(signal) < 1e-4) > 0.1 for signal in effects)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample_rate=100"):
        BackgroundSynthesizer(100)
    with pytest.raises(ValueError, match="kind must be one of"):
        BackgroundSynthesizer(RATE).generate("speech", np.random.default_rng(0), 1.0)
    with pytest.raises(ValueError, match="duration=0"):
        BackgroundSynthesizer(RATE).generate("noise", np.random.default_rng(0), 0)
