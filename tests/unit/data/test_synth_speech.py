"""espeak-ng through espeakng-loader: many voices, deterministic whatever came before, clear errors."""

import numpy as np
import pytest

from spmamba_sb.data.synth_speech import EspeakSynthesizer

TEXT = "The quiet river passed the old mill before sunrise."


@pytest.fixture(scope="module")
def synthesizer():
    return EspeakSynthesizer()


def test_voices_and_variants_are_listed(synthesizer):
    assert {"en", "en-us", "en-GB-scotland"} <= set(synthesizer.voices())
    variants = synthesizer.variants()
    assert len(variants) >= 100 and {"m3", "f2", "klatt"} <= set(variants)


def test_same_settings_give_the_same_samples_whatever_was_spoken_before(synthesizer):
    settings = dict(voice="en-GB-x-rp", variant="klatt2", rate=160, pitch=35, pitch_range=70, seed=3)
    first = synthesizer.synthesize(TEXT, **settings)
    synthesizer.synthesize("Something else entirely, said by another voice.", voice="en-us", variant="whisper")
    again = synthesizer.synthesize(TEXT, **settings)
    assert np.array_equal(first, again)
    assert first.dtype == np.float32 and 0.05 < np.max(np.abs(first)) <= 1.0
    assert 1.5 < first.shape[0] / synthesizer.sample_rate < 6.0


def test_voice_settings_change_the_speech(synthesizer):
    base = synthesizer.synthesize(TEXT, voice="en-us", variant="m1", rate=170, pitch=50)
    assert not np.array_equal(base, synthesizer.synthesize(TEXT, voice="en-us", variant="f3", rate=170, pitch=50))
    assert not np.array_equal(base, synthesizer.synthesize(TEXT, voice="en-us", variant="m1", rate=170, pitch=80))
    faster = synthesizer.synthesize(TEXT, voice="en-us", variant="m1", rate=300, pitch=50)
    assert faster.shape[0] < 0.75 * base.shape[0]


@pytest.mark.parametrize("settings,match", [
    (dict(voice="fr"), "voice='fr' is not an available English voice"),
    (dict(variant="nobody"), "variant='nobody' is not in espeak-ng's voices/!v folder"),
    (dict(rate=20), "rate=20 must be an integer from 80 to 450"),
    (dict(pitch=120), "pitch=120 must be an integer from 0 to 99"),
])
def test_bad_settings_are_named(synthesizer, settings, match):
    with pytest.raises(ValueError, match=match):
        synthesizer.synthesize(TEXT, **settings)
    with pytest.raises(ValueError, match="text is empty"):
        synthesizer.synthesize("  ")
