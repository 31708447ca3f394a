"""Random sentences: varied, deterministic, well formed."""

import numpy as np
import pytest

from spmamba_sb.data.sentences import SentenceGenerator


def test_utterances_are_varied_deterministic_and_punctuated():
    generator = SentenceGenerator(max_sentences=2)
    texts = [generator.utterance(np.random.default_rng(seed)) for seed in range(200)]
    assert len(set(texts)) >= 195
    assert texts == [generator.utterance(np.random.default_rng(seed)) for seed in range(200)]
    for text in texts:
        assert text[0].isupper() and text.endswith((".", "?")) and "{" not in text
        assert 1 <= text.count(".") + text.count("?") <= 2
    assert "compasses" in " ".join(generator.sentence(np.random.default_rng(seed)) for seed in range(3000))


def test_max_sentences_is_checked():
    with pytest.raises(ValueError, match="max_sentences=0"):
        SentenceGenerator(max_sentences=0)
