"""Per-utterance metrics: signals they are undefined for raise one error that names the problem."""

import pytest
import torch

from spmamba_sb.evaluation import UndefinedMetricsError, check_references, separation_metrics

LENGTH = 2000


@pytest.fixture
def references():
    return torch.randn(LENGTH, 2, generator=torch.Generator().manual_seed(0))


def test_good_signals_are_scored(references):
    estimates = references + 0.1 * torch.randn(LENGTH, 2)
    metrics = separation_metrics(references.sum(1), references, estimates)
    assert all(torch.isfinite(torch.tensor(list(metrics.values()))))


def test_a_silent_reference_is_named(references):
    references[:, 1] = 0
    with pytest.raises(UndefinedMetricsError, match="^s2: the reference is silent"):
        separation_metrics(references.sum(1), references, torch.randn(LENGTH, 2))
    with pytest.raises(UndefinedMetricsError, match="^b.wav: the reference is silent"):
        check_references(references, ["a.wav", "b.wav"])


def test_the_mixture_given_as_both_references_is_named(references):
    mix = references.sum(1)
    twice = torch.stack([mix, mix], dim=1)
    with pytest.raises(UndefinedMetricsError, match="^s2: the reference is the same signal as s1"):
        separation_metrics(mix, twice, torch.randn(LENGTH, 2))


@pytest.mark.parametrize("estimates", [torch.zeros(LENGTH, 2), torch.full((LENGTH, 2), float("nan"))],
                         ids=["silent", "nan"])
def test_signals_bss_eval_fails_on_raise_one_error(references, estimates):
    with pytest.raises(UndefinedMetricsError, match=r"^BSS-Eval failed on the signals \(.+\)$"):
        separation_metrics(references.sum(1), references, estimates)


def test_names_must_match_the_references(references):
    with pytest.raises(ValueError, match="names has 1 entries for 2 references"):
        check_references(references, ["a.wav"])
