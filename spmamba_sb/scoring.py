"""The one scorer of separated speech: ``train.py``'s test stage
(:class:`~spmamba_sb.brain.SeparationBrain`) and ``spmamba-evaluate`` (which reads its
mixtures with :mod:`spmamba_sb.scoring_sets`) both score and write here, so their figures,
columns and files cannot drift apart.

One job per function:

- an utterance's scores: :func:`utterance_metrics` puts the estimates in the references'
  order by SI-SNR and scores them with :func:`separation_metrics` (:data:`CORE_METRICS`, after
  :func:`check_references`), plus the optional STOI and PESQ of :func:`optional_metrics` where
  the caller asks for them; signals the scores are undefined for raise :class:`UndefinedMetricsError`;
- rows and the mean row: :func:`mean_scores` averages each metric over the rows that hold every
  metric (an utterance left out keeps a row with only its ``ID``); :func:`scores_csv` writes a
  row per utterance, then the ``mean`` row;
- writing, atomically: :func:`write_scores` (one CSV, the test stage's ``test_results.csv``) and
  :func:`write_report` (``spmamba-evaluate``'s ``scores.csv``, ``summary.json`` and
  ``si_snri.png``, all or none).
"""

import csv
import io
import json
import math
import os
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import fast_bss_eval
import numpy as np
import torch

from spmamba_sb.data.audio_io import resample
from spmamba_sb.losses import best_permutations, pit_si_snr_loss
from spmamba_sb.outputs import PathLike, atomic_outputs, write_file, write_text_atomic
from spmamba_sb.plots import histogram_png

#: Metric columns always written, in order.
CORE_METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i", "sir", "sar")
PESQ_RATES = {8000: "nb", 16000: "wb"}  # PESQ's sample rates and their modes
#: The files ``spmamba-evaluate`` writes in its output folder.
REPORT_FILES = ("scores.csv", "summary.json", "si_snri.png")


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
    spmamba_sb.scoring.UndefinedMetricsError: b: the reference is the same signal as a, so BSS-Eval is undefined
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
    """:data:`CORE_METRICS` of one utterance whose estimates are in the references' order,
    averaged over sources.

    SDR, SIR and SAR are BSS-Eval's (``fast_bss_eval``, 512-tap distortion filter); the
    improvements are relative to using the mixture itself as every estimate. An utterance
    shorter than the filter may score ``inf`` or ``nan``: such values are returned as they are.

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
        ``si-snr``, ``si-snr_i``, ``sdr``, ``sdr_i``, ``sir``, ``sar`` in dB.

    Raises
    ------
    UndefinedMetricsError
        If a reference is silent or the same signal as another (see :func:`check_references`),
        or BSS-Eval fails on the signals (an estimate holding NaN, every estimate silent, ...).

    Example
    -------
    >>> refs = torch.randn(8000, 2)
    >>> metrics = separation_metrics(refs.sum(1), refs, refs + 0.01 * torch.randn(8000, 2))
    >>> list(metrics) == list(CORE_METRICS) and metrics["si-snr"] > 30 and metrics["sdr_i"] > 30
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
        _, sir, sar = fast_bss_eval.bss_eval_sources(references.T, estimates.T, compute_permutation=False)
    except (RuntimeError, ValueError) as error:  # torch's LinAlgError is a RuntimeError, NumPy's a ValueError
        raise UndefinedMetricsError(f"BSS-Eval failed on the signals ({first_line(error)})") from error
    return {"si-snr": si_snr, "si-snr_i": si_snr - si_snr_mix, "sdr": sdr, "sdr_i": sdr - sdr_mix,
            "sir": sir.mean().item(), "sar": sar.mean().item()}


def first_line(error: Exception) -> str:
    """The first line of an error's message, or its class name when the message is empty.

    Example
    -------
    >>> first_line(RuntimeError("singular matrix\\ndetails")), first_line(ValueError())
    ('singular matrix', 'ValueError')
    """
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def optional_metrics() -> Dict[str, Callable[[np.ndarray, np.ndarray, int], float]]:
    """STOI and PESQ, each present only when its package (``pystoi``, ``pesq``) imports.

    Each takes references and estimates [S, L] at a sample rate and returns the mean over
    sources. PESQ runs narrow-band at 8 kHz and wide-band at 16 kHz; other rates are
    resampled to 16 kHz first.

    Returns
    -------
    dict
        Column name -> metric, in the order ``stoi``, ``pesq``.

    Example
    -------
    >>> set(optional_metrics()) <= {"stoi", "pesq"}
    True
    """
    metrics = {}
    try:
        from pystoi import stoi
    except ImportError:
        pass
    else:
        metrics["stoi"] = lambda refs, ests, rate: float(np.mean([stoi(r, e, rate) for r, e in zip(refs, ests)]))
    try:
        from pesq import pesq
    except ImportError:
        pass
    else:
        def mean_pesq(refs: np.ndarray, ests: np.ndarray, rate: int) -> float:
            pesq_rate = rate if rate in PESQ_RATES else 16000
            refs, ests = resample(refs, rate, pesq_rate), resample(ests, rate, pesq_rate)
            return float(np.mean([pesq(pesq_rate, r, e, PESQ_RATES[pesq_rate]) for r, e in zip(refs, ests)]))

        metrics["pesq"] = mean_pesq
    return metrics


class UtteranceMetrics(NamedTuple):
    """An utterance's scores, and its estimates [L, S] in the references' order."""

    scores: Dict[str, float]
    estimates: torch.Tensor


def utterance_metrics(
    mix: torch.Tensor, references: torch.Tensor, estimates: torch.Tensor, sample_rate: int,
    extra_metrics: Optional[Dict[str, Callable]] = None,
) -> UtteranceMetrics:
    """Scores of one separated utterance, its estimates first put in the references' order by SI-SNR.

    Arguments
    ---------
    mix : torch.Tensor
        [L].
    references, estimates : torch.Tensor
        [L, S], estimates in any order.
    sample_rate : int
        Their sample rate (for STOI and PESQ).
    extra_metrics : dict, optional
        Further column -> metric, as :func:`optional_metrics` returns.

    Returns
    -------
    UtteranceMetrics
        The scores (:data:`CORE_METRICS`, see :func:`separation_metrics`, then the extra
        columns) and the reordered estimates [L, S].

    Raises
    ------
    UndefinedMetricsError
        As :func:`separation_metrics`; an extra metric raises as it does.

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> scores, ordered = utterance_metrics(refs.sum(1), refs, refs.flip(1) + 0.01 * torch.randn(4000, 2), 8000)
    >>> list(scores) == list(CORE_METRICS) and scores["si-snr_i"] > 30, ordered.shape
    (True, torch.Size([4000, 2]))
    """
    order = best_permutations(references[None], estimates[None])[0]
    estimates = estimates[:, list(order)]
    scores = separation_metrics(mix, references, estimates)
    refs, ests = references.double().T.cpu().numpy(), estimates.double().T.cpu().numpy()  # [S, L]
    for name, metric in (extra_metrics or {}).items():
        scores[name] = metric(refs, ests, sample_rate)
    return UtteranceMetrics(scores, estimates)


def mean_scores(rows: Sequence[Dict[str, Any]], metrics: Sequence[str]) -> Dict[str, float]:
    """The mean of each of ``metrics`` over the rows that hold all of them (none if no row does).

    A score that is not finite makes its column's mean not finite either.

    Example
    -------
    >>> mean_scores([{"ID": "a", "sdr": 1.0}, {"ID": "b"}, {"ID": "c", "sdr": 2.0}], ["sdr"])
    {'sdr': 1.5}
    """
    scored = [row for row in rows if all(name in row for name in metrics)]
    return {name: float(np.mean([row[name] for row in scored])) for name in metrics} if scored else {}


def scores_csv(rows: Sequence[Dict[str, Any]], columns: Sequence[str], means: Dict[str, float]) -> str:
    """CSV text: the ``columns`` header, a row per utterance (empty fields where a row has no
    value), then the ``mean`` row. Scores are written as Python writes floats (``inf``, ``nan``).

    Example
    -------
    >>> scores_csv([{"ID": "a", "sdr": 1.0}, {"ID": "b"}], ["ID", "sdr"], {"sdr": 1.0}).splitlines()
    ['ID,sdr', 'a,1.0', 'b,', 'mean,1.0']
    """
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow({"ID": "mean", **means})
    return table.getvalue()


def write_scores(path: PathLike, rows: Sequence[Dict[str, Any]], metrics: Sequence[str] = CORE_METRICS
                 ) -> Dict[str, float]:
    """Write one scores CSV (:func:`scores_csv`) under a temporary name, then rename it into place.

    Arguments
    ---------
    path : str or os.PathLike
        Destination (the test stage's ``test_results.csv``).
    rows : sequence of dict
        ``ID`` and the scores of each utterance; one left out holds only its ``ID``.
    metrics : sequence of str
        The metric columns, in order.

    Returns
    -------
    dict
        The means (:func:`mean_scores`), empty if no row was scored.

    Example
    -------
    >>> path = os.path.join(getfixture("tmp_path"), "test_results.csv")
    >>> write_scores(path, [{"ID": "a", "sdr": 3.0}, {"ID": "b"}], ["sdr"])
    {'sdr': 3.0}
    """
    means = mean_scores(rows, metrics)
    write_text_atomic(path, scores_csv(rows, ["ID", *metrics], means))
    return means


def write_report(out_folder: str, rows: Sequence[Dict[str, float]], details: Dict) -> Dict[str, float]:
    """Write ``scores.csv`` (:func:`scores_csv`), ``summary.json`` and ``si_snri.png``, all or none.

    The three files are written all or none (:func:`~spmamba_sb.outputs.atomic_outputs`).
    A score that is not finite (``sar`` is ``inf`` where the BSS-Eval filter fits an utterance
    shorter than it exactly) is written ``inf`` or ``nan`` in ``scores.csv``, as Python writes
    floats, and ``null`` in ``summary.json``, which is strict JSON. The mean of a column holding
    one is not finite either.

    Arguments
    ---------
    out_folder : str
        Existing folder to write into; files there are replaced (``spmamba-evaluate`` checks first).
    rows : sequence of dict
        At least one, ``ID`` then the scores, all with the same columns.
    details : dict
        Written into ``summary.json`` beside ``count`` and ``means`` (model, data, settings).

    Returns
    -------
    dict
        The mean of every metric column.

    Example
    -------
    >>> rows = [{"ID": "a", "si-snr_i": 10.0, "sar": 9.0}, {"ID": "b", "si-snr_i": 12.0, "sar": float("inf")}]
    >>> folder = str(getfixture("tmp_path"))
    >>> write_report(folder, rows, {"model": "my_model"})
    {'si-snr_i': 11.0, 'sar': inf}
    >>> json.load(open(os.path.join(folder, "summary.json")))["means"]
    {'si-snr_i': 11.0, 'sar': None}
    """
    columns = list(rows[0])
    means = mean_scores(rows, columns[1:])
    summary = _finite_or_null({**details, "count": len(rows), "means": means})
    contents = [scores_csv(rows, columns, means), json.dumps(summary, indent=2, allow_nan=False) + "\n",
                histogram_png([row["si-snr_i"] for row in rows])]
    with atomic_outputs([os.path.join(out_folder, name) for name in REPORT_FILES]) as partials:
        for partial, content in zip(partials, contents):
            write_file(partial, content)
    return means


def _finite_or_null(value: Any) -> Any:
    """``value`` with every float that is not finite (in dicts and lists too) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value
