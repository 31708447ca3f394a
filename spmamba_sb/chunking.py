"""Separation of long recordings in overlapping chunks, aligned by PIT and cross-faded."""

import math
from typing import Callable, Optional, Tuple

import torch
from tqdm import tqdm

from spmamba_sb.losses import best_permutations


def chunk_lengths(chunk_seconds: float, overlap_seconds: float, sample_rate: int, min_chunk: int) -> Tuple[int, int]:
    """Chunk and overlap lengths in samples, checked.

    Arguments
    ---------
    chunk_seconds : float
        Chunk length; at least ``min_chunk`` samples.
    overlap_seconds : float
        Overlap of consecutive chunks; at least one sample, at most half a chunk.
    sample_rate : int
        Sample rate in Hz.
    min_chunk : int
        Fewest samples in a chunk (one STFT frame).

    Returns
    -------
    tuple of int
        ``(chunk, overlap)`` in samples.

    Raises
    ------
    ValueError
        Naming the argument, its value and its allowed range.

    Example
    -------
    >>> chunk_lengths(8.0, 2.0, 8000, 256)
    (64000, 16000)
    """
    chunk = int(chunk_seconds * sample_rate) if math.isfinite(chunk_seconds) else 0  # NaN and inf fail below
    overlap = int(overlap_seconds * sample_rate) if math.isfinite(overlap_seconds) else 0
    if chunk < min_chunk:
        raise ValueError(
            f"chunk_seconds must be at least one STFT frame ({min_chunk / sample_rate:g} s), got {chunk_seconds}"
        )
    if not 1 <= overlap <= chunk // 2:
        raise ValueError(
            f"overlap_seconds must be between one sample ({1 / sample_rate:g} s) and chunk_seconds / 2 "
            f"({chunk_seconds / 2:g} s), got {overlap_seconds}"
        )
    return chunk, overlap


def separate_in_chunks(
    separate: Callable[[torch.Tensor], torch.Tensor],
    mix: torch.Tensor,
    chunk: int,
    overlap: int,
    progress: bool = False,
    label: Optional[str] = None,
) -> torch.Tensor:
    """Separate one long mixture chunk by chunk: [L] -> [L, S].

    Each chunk is separated on its own; its sources are put in the order that best matches
    the previous chunk's on their overlap (permutation-invariant SI-SNR, as in training, see
    :func:`~spmamba_sb.losses.best_permutations`), and overlaps are cross-faded linearly.
    Memory is that of one chunk plus the [L, S] output.

    Arguments
    ---------
    separate : callable
        [1, N] -> [1, N, S], any N from ``overlap + 1`` to ``chunk`` samples.
    mix : torch.Tensor
        [L].
    chunk, overlap : int
        Lengths in samples (see :func:`chunk_lengths`); a mixture no longer than ``chunk`` is
        separated whole.
    progress : bool
        Show a tqdm bar over the chunks on stderr (only when there is more than one).
    label : str, optional
        The bar's label.

    Returns
    -------
    torch.Tensor
        [L, S] on the CPU.

    Example
    -------
    >>> halves = lambda x: torch.stack([x / 2, x / 2], dim=-1)  # a "separator": [1, N] -> [1, N, 2]
    >>> mix = torch.randn(1000)
    >>> torch.allclose(separate_in_chunks(halves, mix, chunk=300, overlap=50).sum(-1), mix, atol=1e-6)
    True
    """
    length = mix.shape[-1]
    if length <= chunk:
        return separate(mix[None])[0].cpu()
    hop = chunk - overlap
    starts = list(range(0, length - chunk, hop)) + [length - chunk]
    output, weight, previous = None, torch.zeros(length, 1), None
    # leave=False: the bar is cleared when done, so the caller's result line takes its place
    for start in tqdm(starts, desc=label, unit="chunk", leave=False, disable=not progress):
        estimate = separate(mix[None, start:start + chunk])[0].cpu()  # [chunk, S]
        fade = torch.ones(chunk, 1)
        if previous is None:
            output = torch.zeros(length, estimate.shape[-1])
        else:
            shared = previous[0] + previous[1].shape[0] - start  # samples shared with the last chunk
            order = best_permutations(previous[1][None, -shared:], estimate[None, :shared])[0]
            estimate = estimate[:, list(order)]
            fade[:shared, 0] = torch.linspace(0, 1, shared + 2)[1:-1]
        if start != starts[-1]:
            next_shared = chunk - (min(start + hop, length - chunk) - start)
            fade[-next_shared:, 0] *= torch.linspace(1, 0, next_shared + 2)[1:-1]
        output[start:start + chunk] += fade * estimate
        weight[start:start + chunk] += fade
        previous = (start, estimate)
    return output / weight
