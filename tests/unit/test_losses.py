"""PIT SNR / SI-SNR: permutation invariance and scale behaviour."""

import torch

from spmamba_sb.losses import best_permutations, neg_si_snr, neg_snr, pit_si_snr_loss, pit_snr_loss


def _signals(batch=3, length=800, sources=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randn(batch, length, sources, generator=gen)
    return targets, targets + 0.3 * torch.randn(batch, length, sources, generator=gen)


def test_snr_matches_definition():
    target, estimate = torch.randn(500, 1), torch.randn(500, 1)
    t, e = target - target.mean(), estimate - estimate.mean()
    expected = 10 * torch.log10((t.pow(2).sum() + 1e-8) / ((t - e).pow(2).sum() + 1e-8))
    torch.testing.assert_close(-neg_snr(estimate, target)[0, 0], expected)


def test_permutation_invariance():
    targets, estimates = _signals(sources=3)
    order = [2, 0, 1]
    for loss in (pit_snr_loss, pit_si_snr_loss):
        torch.testing.assert_close(loss(targets, estimates[..., order]), loss(targets, estimates))
    assert best_permutations(targets, estimates[..., order]) == [(1, 2, 0)] * 3


def test_scale_behaviour_of_snr_and_si_snr():
    targets, estimates = _signals()
    torch.testing.assert_close(pit_si_snr_loss(targets, 5 * estimates), pit_si_snr_loss(targets, estimates))
    assert (pit_snr_loss(targets, 5 * estimates) > pit_snr_loss(targets, estimates) + 5).all()
    # both are invariant to scaling estimates and targets together, and to a DC offset
    torch.testing.assert_close(pit_snr_loss(3 * targets, 3 * estimates), pit_snr_loss(targets, estimates))
    torch.testing.assert_close(pit_snr_loss(targets, estimates + 2.0), pit_snr_loss(targets, estimates))


def test_perfect_and_silent_estimates_are_finite():
    targets, _ = _signals()
    assert (pit_snr_loss(targets, targets) < -60).all()
    assert torch.isfinite(pit_si_snr_loss(targets, torch.zeros_like(targets))).all()
    assert torch.isfinite(neg_si_snr(torch.zeros(10, 2), torch.zeros(10, 2))).all()
