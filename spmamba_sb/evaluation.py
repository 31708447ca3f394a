"""Per-utterance separation metrics (SI-SNR, SI-SNRi, SDR, SDRi) and spectrogram plots."""

import os
from typing import Dict, Optional, Sequence

import fast_bss_eval
import torch

from spmamba_sb.losses import pit_si_snr_loss


class UndefinedMetricsError(ValueError):
    """An utterance whose metrics are undefined: a silent reference, two references holding the
    same signal, or signals BSS-Eval fails on.

    The message is ``<source>: <problem>`` or ``BSS-Eval failed on the signals (<reason>)``.

    Example
    -------
    >>> str(UndefinedMetricsError("s2: the reference is silent (all zeros), so its scores are undefined"))
    's2: the reference is silent (all zeros), so its scores are undefined'
    """


def check_references(references: torch.Tensor, names: Sequence[str]) -> None:
    """Check that every reference can be scored against: none silent, none the same signal as another.

    Arguments
    ---------
    references : torch.Tensor
        [L, S].
    names : sequence of str
        One per source, for the messages (the file names, or ``s1`` ... ``sS``).

    Raises
    ------
    UndefinedMetricsError
        At the first reference that is all zeros or equal to an earlier one.

    Example
    -------
    >>> refs = torch.randn(100, 2)
    >>> check_references(refs, ["a", "b"])
    >>> check_references(torch.stack([refs[:, 0], refs[:, 0]], dim=1), ["a", "b"])
    Traceback (most recent call last):
    ...
    spmamba_sb.evaluation.UndefinedMetricsError: b: the reference is the same signal as a, so BSS-Eval is undefined
    """
    if len(names) != references.shape[1]:
        raise ValueError(f"names has {len(names)} entries for {references.shape[1]} references")
    for index, name in enumerate(names):
        reference = references[:, index]
        if not reference.any():
            raise UndefinedMetricsError(f"{name}: the reference is silent (all zeros), so its scores are undefined")
        same = [names[earlier] for earlier in range(index) if torch.equal(references[:, earlier], reference)]
        if same:
            raise UndefinedMetricsError(
                f"{name}: the reference is the same signal as {same[0]}, so BSS-Eval is undefined"
            )


def separation_metrics(
    mix: torch.Tensor, references: torch.Tensor, estimates: torch.Tensor, names: Optional[Sequence[str]] = None,
) -> Dict[str, float]:
    """Metrics of one utterance, averaged over sources under the best assignment.

    SDR is BSS-Eval's (``fast_bss_eval``, 512-tap distortion filter); the improvements are
    relative to using the mixture itself as every estimate. An utterance shorter than the
    filter may score ``inf`` or ``nan``: such values are returned as they are.

    Arguments
    ---------
    mix : torch.Tensor
        [L].
    references, estimates : torch.Tensor
        [L, S].
    names : sequence of str, optional
        The references' names in messages (default ``s1`` ... ``sS``).

    Returns
    -------
    dict
        ``si-snr``, ``si-snr_i``, ``sdr``, ``sdr_i`` in dB.

    Raises
    ------
    UndefinedMetricsError
        If a reference is silent or the same signal as another (see :func:`check_references`),
        or BSS-Eval fails on the signals (an estimate holding NaN, every estimate silent, ...).

    Example
    -------
    >>> refs = torch.randn(8000, 2)
    >>> metrics = separation_metrics(refs.sum(1), refs, refs.flip(1) + 0.01 * torch.randn(8000, 2))
    >>> metrics["si-snr"] > 30 and metrics["sdr_i"] > 30
    True
    """
    references, estimates, mix = references.double().cpu(), estimates.double().cpu(), mix.double().cpu()
    check_references(references, names or [f"s{index}" for index in range(1, references.shape[1] + 1)])
    mixture_as_estimates = mix[:, None].expand_as(references)
    si_snr = -pit_si_snr_loss(references[None], estimates[None]).item()
    si_snr_mix = -pit_si_snr_loss(references[None], mixture_as_estimates[None]).item()
    try:
        sdr = fast_bss_eval.sdr(references.T, estimates.T).mean().item()
        sdr_mix = fast_bss_eval.sdr(references.T, mixture_as_estimates.T).mean().item()
    except (RuntimeError, ValueError) as error:  # torch's LinAlgError is a RuntimeError, NumPy's a ValueError
        raise UndefinedMetricsError(f"BSS-Eval failed on the signals ({first_line(error)})") from error
    return {"si-snr": si_snr, "si-snr_i": si_snr - si_snr_mix, "sdr": sdr, "sdr_i": sdr - sdr_mix}


def first_line(error: Exception) -> str:
    """The first line of an error's message, or its class name when the message is empty.

    Example
    -------
    >>> first_line(RuntimeError("singular matrix\\ndetails")), first_line(ValueError())
    ('singular matrix', 'ValueError')
    """
    return str(error).splitlines()[0] if str(error) else type(error).__name__


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
