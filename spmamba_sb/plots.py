"""Figures of separation results: one utterance's spectrograms (the test stage's plots) and a
histogram of per-utterance SI-SNRi (``spmamba-evaluate``'s ``si_snri.png``)."""

import io
import math
import os
from typing import Sequence

import numpy as np
import torch


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram_png(values: Sequence[float]) -> bytes:
    """A PNG histogram of per-utterance SI-SNRi in dB, its mean marked (values that are not
    finite are left out of the bars and the mean, but counted in the title).

    Example
    -------
    >>> histogram_png([10.0, 12.0, float("inf")])[:4]
    b'\\x89PNG'
    """
    plt = _pyplot()
    finite = [value for value in values if math.isfinite(value)]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(finite, bins=min(30, max(len(finite), 1)), color="tab:blue", edgecolor="white")
    if finite:
        mean = float(np.mean(finite))
        axis.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.2f} dB")
        axis.legend()
    axis.set_xlabel("SI-SNRi (dB)")
    axis.set_ylabel("utterances")
    axis.set_title(f"SI-SNR improvement over {len(values)} utterances")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=80)
    plt.close(figure)
    return image.getvalue()


def plot_separation(
    path: str, mix: torch.Tensor, references: torch.Tensor, estimates: torch.Tensor, sample_rate: int,
    title: str = "", n_fft: int = 512,
) -> None:
    """Write a PNG of log-magnitude spectrograms: mixture, then each reference and estimate.

    Arguments
    ---------
    path : str
        Output PNG.
    mix : torch.Tensor
        [L].
    references, estimates : torch.Tensor
        [L, S], estimates already in the references' order.
    sample_rate : int
        For the axes.
    title : str
        Figure title.
    n_fft : int
        STFT size of the plots.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "plots", "a.png")
    >>> references = torch.randn(2000, 2)
    >>> plot_separation(path, references.sum(1), references, references, 8000, n_fft=64)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    plt = _pyplot()
    signals = [("mixture", mix)]
    for index in range(references.shape[1]):
        signals += [(f"reference {index + 1}", references[:, index]), (f"estimate {index + 1}", estimates[:, index])]
    window = torch.hann_window(n_fft)
    figure, axes = plt.subplots(len(signals), 1, figsize=(8, 1.6 * len(signals)), sharex=True, squeeze=False)
    for axis, (name, signal) in zip(axes[:, 0], signals):
        spec = torch.stft(signal.float().cpu(), n_fft, n_fft // 4, window=window, return_complex=True)
        db = 20 * torch.log10(spec.abs() + 1e-8)
        extent = (0, signal.shape[0] / sample_rate, 0, sample_rate / 2000)
        axis.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, vmin=db.max().item() - 80, cmap="magma")
        axis.set_ylabel("kHz")
        axis.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
