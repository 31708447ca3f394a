"""Per-utterance separation metrics (SI-SNR, SI-SNRi, SDR, SDRi) and spectrogram plots."""

import os
from typing import Dict

import fast_bss_eval
import torch

from spmamba_sb.losses import pit_si_snr_loss


def separation_metrics(mix: torch.Tensor, references: torch.Tensor, estimates: torch.Tensor) -> Dict[str, float]:
    """Metrics of one utterance, averaged over sources under the best assignment.

    SDR is BSS-Eval's (``fast_bss_eval``, 512-tap distortion filter); the improvements are
    relative to using the mixture itself as every estimate.

    Arguments
    ---------
    mix : torch.Tensor
        [L].
    references, estimates : torch.Tensor
        [L, S].

    Returns
    -------
    dict
        ``si-snr``, ``si-snr_i``, ``sdr``, ``sdr_i`` in dB.

    Example
    -------
    >>> refs = torch.randn(8000, 2)
    >>> metrics = separation_metrics(refs.sum(1), refs, refs.flip(1) + 0.01 * torch.randn(8000, 2))
    >>> metrics["si-snr"] > 30 and metrics["sdr_i"] > 30
    True
    """
    references, estimates, mix = references.double().cpu(), estimates.double().cpu(), mix.double().cpu()
    mixture_as_estimates = mix[:, None].expand_as(references)
    si_snr = -pit_si_snr_loss(references[None], estimates[None]).item()
    si_snr_mix = -pit_si_snr_loss(references[None], mixture_as_estimates[None]).item()
    sdr = fast_bss_eval.sdr(references.T, estimates.T).mean().item()
    sdr_mix = fast_bss_eval.sdr(references.T, mixture_as_estimates.T).mean().item()
    return {"si-snr": si_snr, "si-snr_i": si_snr - si_snr_mix, "sdr": sdr, "sdr_i": sdr - sdr_mix}


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
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
