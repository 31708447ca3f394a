"""Scoring an exported model on a set of mixtures with their references (``spmamba-evaluate``).

A scoring set is a separation CSV (``ID, mix_wav, s1_wav, ..., sN_wav``, SpeechBrain's format)
or a folder with ``mix/``, ``s1/`` ... ``sN/`` subfolders of same-named files. Every file is
read as ``separate_file`` reads a mixture: channels averaged, resampled to the model's rate.
Each mixture goes through ``separate_file`` (long ones in chunks); its estimates are put in
the references' order by SI-SNR (``best_permutations``), then scored with the test stage's
``separation_metrics`` plus BSS-Eval SIR and SAR, and STOI / PESQ where ``pystoi`` / ``pesq``
are installed. For mono files at the model's rate no longer than a chunk, the figures are those
of ``train.py``'s test stage.
"""

import csv
import json
import math
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import fast_bss_eval
import numpy as np
import torch
from speechbrain.dataio.dataio import load_data_csv

from spmamba_sb.data.audio_io import AUDIO_EXTENSIONS, UnreadableAudioError, read_audio, resample
from spmamba_sb.evaluation import separation_metrics
from spmamba_sb.inference import AudioInputError, SPMambaSeparation
from spmamba_sb.losses import best_permutations

#: Metric columns always written, in order.
CORE_METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i", "sir", "sar")
PESQ_RATES = {8000: "nb", 16000: "wb"}  # PESQ's sample rates and their modes


class Utterance(NamedTuple):
    """One mixture to score: its ID, its file and its references' files (s1 ... sN)."""

    id: str
    mix: str
    sources: List[str]


def read_scoring_set(data: str, num_spks: int, data_root: Optional[str] = None) -> List[Utterance]:
    """The utterances of a separation CSV or of a ``mix/``, ``s1/`` ... ``sN/`` folder.

    Arguments
    ---------
    data : str
        A CSV with columns ``ID``, ``mix_wav``, ``s1_wav`` ... ``sN_wav``, or a folder whose
        ``mix/`` holds the mixtures (.wav, .flac, .ogg) and ``s<n>/`` the references of the same name.
    num_spks : int
        Sources per mixture.
    data_root : str, optional
        Replaces ``$data_root`` in the CSV's paths (required when they hold it).

    Returns
    -------
    list of Utterance
        In CSV order, or sorted by file name (the ID is the name without extension).

    Raises
    ------
    FileNotFoundError
        If ``data`` or one of the folder's subfolders is missing.
    ValueError
        If the CSV lacks columns, has duplicate IDs or needs ``data_root``, or the set is empty.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> for sub in ("mix", "s1", "s2"):
    ...     os.makedirs(folder / sub); open(folder / sub / "a.wav", "wb").close()
    >>> read_scoring_set(str(folder), 2)[0].id
    'a'
    """
    utterances = _read_folder(data, num_spks) if os.path.isdir(data) else _read_csv(data, num_spks, data_root)
    if not utterances:
        raise ValueError(f"{data}: no mixtures to score")
    return utterances


def _read_csv(csv_path: str, num_spks: int, data_root: Optional[str]) -> List[Utterance]:
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: no such CSV or folder")
    columns = ["mix_wav"] + [f"s{index}_wav" for index in range(1, num_spks + 1)]
    replacements = {} if data_root is None else {"data_root": data_root}
    try:
        rows = load_data_csv(csv_path, replacements)
    except KeyError as error:  # no ID column, or a $variable without its replacement
        hint = " (give --data-root)" if "replacements" in error.args[0] else ""
        raise ValueError(f"{csv_path}: {error.args[0]}{hint}") from error
    except ValueError as error:  # duplicate IDs, a duration that is not a number
        raise ValueError(f"{csv_path}: {error}") from error
    absent = [column for column in columns if rows and column not in next(iter(rows.values()))]
    if absent:
        raise ValueError(f"{csv_path}: missing columns {', '.join(absent)} (the model has {num_spks} sources)")
    return [Utterance(utterance_id, row["mix_wav"], [row[column] for column in columns[1:]])
            for utterance_id, row in rows.items()]


def _read_folder(folder: str, num_spks: int) -> List[Utterance]:
    subfolders = ["mix"] + [f"s{index}" for index in range(1, num_spks + 1)]
    absent = [name for name in subfolders if not os.path.isdir(os.path.join(folder, name))]
    if absent:
        raise FileNotFoundError(
            f"{folder}: no {', '.join(f'{name}/' for name in absent)} subfolder (the model has {num_spks} sources)"
        )
    names = sorted(name for name in os.listdir(os.path.join(folder, "mix")) if name.lower().endswith(AUDIO_EXTENSIONS))
    return [Utterance(os.path.splitext(name)[0], os.path.join(folder, "mix", name),
                      [os.path.join(folder, sub, name) for sub in subfolders[1:]]) for name in names]


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


def utterance_metrics(
    mix: torch.Tensor, references: torch.Tensor, estimates: torch.Tensor, sample_rate: int,
    extra_metrics: Optional[Dict[str, Callable]] = None,
) -> Dict[str, float]:
    """Scores of one separated mixture, estimates first put in the references' order by SI-SNR.

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
    dict
        :data:`CORE_METRICS` then the extra columns; SIR and SAR are BSS-Eval's (512-tap
        filter), averaged over sources.

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> scores = utterance_metrics(refs.sum(1), refs, refs.flip(1) + 0.01 * torch.randn(4000, 2), 8000)
    >>> list(scores) == list(CORE_METRICS) and scores["si-snr_i"] > 30
    True
    """
    order = best_permutations(references[None], estimates[None])[0]
    estimates = estimates[:, list(order)]
    scores = separation_metrics(mix, references, estimates)
    refs, ests = references.double().T.cpu(), estimates.double().T.cpu()  # [S, L]
    _, sir, sar = fast_bss_eval.bss_eval_sources(refs, ests, compute_permutation=False)
    scores.update(sir=sir.mean().item(), sar=sar.mean().item())
    for name, metric in (extra_metrics or {}).items():
        scores[name] = metric(refs.numpy(), ests.numpy(), sample_rate)
    return scores


def score_utterance(
    separator: SPMambaSeparation, utterance: Utterance, chunk_seconds: float = 8.0, overlap_seconds: float = 2.0,
    extra_metrics: Optional[Dict[str, Callable]] = None,
) -> Dict[str, float]:
    """Separate one mixture with ``separator`` and score it against its references.

    Arguments
    ---------
    separator : SPMambaSeparation
        The model.
    utterance : Utterance
        Its files, read at the model's rate (channels averaged).
    chunk_seconds, overlap_seconds : float
        As in ``separate_file``: longer mixtures are separated in chunks.
    extra_metrics : dict, optional
        See :func:`utterance_metrics`.

    Returns
    -------
    dict
        ``ID`` then the scores.

    Raises
    ------
    AudioInputError
        If a file cannot be read or separated, or a reference's length differs from the mixture's.
    """
    rate = separator.hparams.sample_rate
    try:
        mix = torch.from_numpy(read_audio(utterance.mix, rate)).float()  # [L]
        references = [torch.from_numpy(read_audio(path, rate)).float() for path in utterance.sources]
    except UnreadableAudioError as error:
        raise AudioInputError(str(error)) from error
    for path, reference in zip(utterance.sources, references):
        if reference.shape[0] != mix.shape[0]:
            raise AudioInputError(f"{path}: {reference.shape[0]} samples at the model's rate, "
                                  f"the mixture {utterance.mix} has {mix.shape[0]}")
    estimates = separator.separate_file(utterance.mix, chunk_seconds, overlap_seconds)[0]  # [L, S]
    scores = utterance_metrics(mix, torch.stack(references, dim=-1), estimates, rate, extra_metrics)
    return {"ID": utterance.id, **scores}


def write_report(out_folder: str, rows: Sequence[Dict[str, float]], details: Dict) -> Dict[str, float]:
    """Write ``scores.csv`` (a row per utterance, then ``mean``), ``summary.json`` and ``si_snri.png``.

    Arguments
    ---------
    out_folder : str
        Existing folder to write into; files there are replaced.
    rows : sequence of dict
        At least one, as :func:`score_utterance` returns, all with the same columns.
    details : dict
        Written into ``summary.json`` beside ``count`` and ``means`` (model, data, settings).

    Returns
    -------
    dict
        The mean of every metric column.

    Example
    -------
    >>> rows = [{"ID": "a", "si-snr_i": 10.0}, {"ID": "b", "si-snr_i": 12.0}]
    >>> write_report(str(getfixture("tmp_path")), rows, {"model": "my_model"})
    {'si-snr_i': 11.0}
    """
    columns = list(rows[0])
    means = {name: float(np.mean([row[name] for row in rows])) for name in columns[1:]}
    with open(os.path.join(out_folder, "scores.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"ID": "mean", **means})
    summary = {**details, "count": len(rows), "means": means}
    with open(os.path.join(out_folder, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, allow_nan=True)
        handle.write("\n")
    _plot_histogram(os.path.join(out_folder, "si_snri.png"), [row["si-snr_i"] for row in rows])
    return means


def _plot_histogram(path: str, values: List[float]) -> None:
    """A PNG histogram of per-utterance SI-SNRi in dB, its mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    figure.savefig(path, dpi=80)
    plt.close(figure)
