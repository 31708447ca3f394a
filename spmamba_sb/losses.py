"""Separation losses in SpeechBrain's layout ([B, L, S]): SNR and SI-SNR, permutation-invariant.

Training uses the paper's negative SNR on zero-mean signals (eps 1e-8), validation and
testing the negative SI-SNR; both go through SpeechBrain's ``PitWrapper``, which picks,
for each utterance, the assignment of estimates to references with the lowest loss.
"""

import torch
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from speechbrain.nnet.losses import PitWrapper

EPS = 1e-8


def _zero_mean(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def neg_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative SNR in dB over the first axis (time), zero-mean signals.

    Arguments
    ---------
    estimate, target : torch.Tensor
        [L, ...] (``PitWrapper``'s base-loss layout).

    Returns
    -------
    torch.Tensor
        [1, ...].

    Example
    -------
    >>> t = torch.randn(100, 2)
    >>> neg_snr(t + 0.1 * torch.randn(100, 2), t).shape
    torch.Size([1, 2])
    """
    estimate, target = _zero_mean(estimate.float()), _zero_mean(target.float())
    signal = target.pow(2).sum(0, keepdim=True)
    error = (target - estimate).pow(2).sum(0, keepdim=True)
    return -10 * torch.log10((signal + EPS) / (error + EPS))


def neg_si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative scale-invariant SNR in dB over the first axis (time).

    Arguments
    ---------
    estimate, target : torch.Tensor
        [L, ...].

    Returns
    -------
    torch.Tensor
        [1, ...].

    Example
    -------
    >>> t = torch.randn(100, 2)
    >>> bool((neg_si_snr(3 * t, t) < -60).all())
    True
    """
    estimate, target = _zero_mean(estimate.float()), _zero_mean(target.float())
    scale = (estimate * target).sum(0, keepdim=True) / (target.pow(2).sum(0, keepdim=True) + EPS)
    projection = scale * target
    noise = estimate - projection
    ratio = (projection.pow(2).sum(0, keepdim=True) + EPS) / (noise.pow(2).sum(0, keepdim=True) + EPS)
    return -10 * torch.log10(ratio)


_PIT_SNR = PitWrapper(neg_snr)
_PIT_SI_SNR = PitWrapper(neg_si_snr)


def pit_snr_loss(targets: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant negative SNR per utterance (the training loss).

    Arguments
    ---------
    targets, estimates : torch.Tensor
        [B, L, S] (SpeechBrain's order of arguments: targets first).

    Returns
    -------
    torch.Tensor
        [B], mean over sources of the best assignment.

    Example
    -------
    >>> t = torch.randn(2, 100, 3)
    >>> torch.allclose(pit_snr_loss(t, t[..., [2, 0, 1]]), pit_snr_loss(t, t))
    True
    """
    return _PIT_SNR(estimates, targets)[0]


def pit_si_snr_loss(targets: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant negative SI-SNR per utterance (validation and test).

    Arguments
    ---------
    targets, estimates : torch.Tensor
        [B, L, S].

    Returns
    -------
    torch.Tensor
        [B].

    Example
    -------
    >>> t = torch.randn(2, 100, 2)
    >>> pit_si_snr_loss(t, t.flip(-1)).shape
    torch.Size([2])
    """
    return _PIT_SI_SNR(estimates, targets)[0]


def best_permutations(targets: torch.Tensor, estimates: torch.Tensor) -> list:
    """Per utterance, the order of the estimated sources that best matches the targets (SI-SNR).

    Arguments
    ---------
    targets, estimates : torch.Tensor
        [B, L, S].

    Returns
    -------
    list of tuple
        ``estimates[b][:, order[b]]`` lines up with ``targets[b]``.

    Example
    -------
    >>> refs = torch.randn(1, 1000, 3)
    >>> best_permutations(refs, refs[..., [2, 0, 1]])
    [(1, 2, 0)]
    """
    return list(_PIT_SI_SNR(estimates, targets)[1])
