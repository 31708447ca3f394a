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
import io
import json
import math
import os
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import fast_bss_eval
import numpy as np
import torch

from spmamba_sb.data.audio_io import AUDIO_EXTENSIONS, UnreadableAudioError, read_audio, resample
from spmamba_sb.evaluation import UndefinedMetricsError, check_references, first_line, separation_metrics
from spmamba_sb.inference import AudioInputError, SPMambaSeparation
from spmamba_sb.losses import best_permutations
from spmamba_sb.outputs import atomic_outputs, write_file

#: Metric columns always written, in order.
CORE_METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i", "sir", "sar")
PESQ_RATES = {8000: "nb", 16000: "wb"}  # PESQ's sample rates and their modes
#: The files ``spmamba-evaluate`` writes in its output folder.
REPORT_FILES = ("scores.csv", "summary.json", "si_snri.png")
VARIABLE = re.compile(r"\$([\w.]+)")  # a $name in a CSV field, as SpeechBrain's load_data_csv finds it


class Utterance(NamedTuple):
    """One mixture to score: its ID, its file and its references' files (s1 ... sN)."""

    id: str
    mix: str
    sources: List[str]


class ScoringSet(NamedTuple):
    """The utterances of a scoring set, and one message per CSV row that could not be read."""

    utterances: List[Utterance]
    malformed: List[str]


def read_scoring_set(data: str, num_spks: int, data_root: Optional[str] = None) -> ScoringSet:
    """The utterances of a separation CSV or of a ``mix/``, ``s1/`` ... ``sN/`` folder.

    A CSV row that cannot be read (too few or too many fields, an empty or repeated ID, an
    empty file column) is left out, and named in ``malformed``: ``"<csv>: line <n>: <problem>"``.

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
    ScoringSet
        Utterances in CSV order, or sorted by file name (the ID is the name without extension),
        and the messages of the rows left out.

    Raises
    ------
    FileNotFoundError
        If ``data`` or one of the folder's subfolders is missing.
    ValueError
        If the CSV lacks columns or needs ``data_root``, or the set has no rows.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> for sub in ("mix", "s1", "s2"):
    ...     os.makedirs(folder / sub); open(folder / sub / "a.wav", "wb").close()
    >>> read_scoring_set(str(folder), 2).utterances[0].id
    'a'
    """
    if os.path.isdir(data):
        scoring_set = ScoringSet(_read_folder(data, num_spks), [])
    else:
        scoring_set = _read_csv(data, num_spks, data_root)
    if not scoring_set.utterances and not scoring_set.malformed:
        raise ValueError(f"{data}: no mixtures to score")
    return scoring_set


def _read_csv(csv_path: str, num_spks: int, data_root: Optional[str]) -> ScoringSet:
    """SpeechBrain's CSV format (as ``load_data_csv`` reads it: ``$name`` replaced in every
    field), read row by row so that one bad row is left out rather than failing the set."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: no such CSV or folder")
    columns = ["mix_wav"] + [f"s{index}_wav" for index in range(1, num_spks + 1)]
    replacements = {} if data_root is None else {"data_root": data_root}
    utterances: Dict[str, Utterance] = {}
    first_lines: Dict[str, int] = {}
    malformed = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        header = reader.fieldnames or []
        absent = [column for column in ["ID"] + columns if column not in header]
        if absent:
            raise ValueError(f"{csv_path}: missing columns {', '.join(absent)} (the model has {num_spks} sources)")
        for row in reader:
            where = f"{csv_path}: line {reader.line_num}"
            problem = _row_problem(row, len(header), columns, first_lines)
            if problem:
                malformed.append(f"{where}: {problem}")
                continue
            fields = [_replace_variables(row[column], replacements, where) for column in columns]
            first_lines[row["ID"]] = reader.line_num
            utterances[row["ID"]] = Utterance(row["ID"], fields[0], fields[1:])
    return ScoringSet(list(utterances.values()), malformed)


def _row_problem(row: Dict[Optional[str], Any], num_fields: int, columns: List[str],
                 first_lines: Dict[str, int]) -> Optional[str]:
    """Why a CSV row cannot be scored (None if it can): ``csv.DictReader`` puts the fields beyond
    the header under None and fills missing ones with None."""
    if None in row:
        return f"{num_fields + len(row[None])} fields, the header has {num_fields}"
    if None in row.values():
        return f"{sum(value is not None for value in row.values())} fields, the header has {num_fields}"
    empty = [column for column in ["ID"] + columns if not row[column]]
    if empty:
        return f"empty {', '.join(empty)}"
    if row["ID"] in first_lines:
        return f"ID {row['ID']} is on line {first_lines[row['ID']]} already"
    return None


def _replace_variables(value: str, replacements: Dict[str, str], where: str) -> str:
    """``value`` with each ``$name`` replaced, as ``load_data_csv`` does."""
    def replace(match: "re.Match") -> str:
        if match[1] not in replacements:
            hint = " (give --data-root)" if match[1] == "data_root" else ""
            raise ValueError(f"{where}: {value} uses ${match[1]}, which has no value{hint}")
        return replacements[match[1]]

    return VARIABLE.sub(replace, value)


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
    UndefinedMetricsError
        If the scores are undefined: a reference is silent, two references hold the same
        signal, or BSS-Eval fails on the signals.
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
    check_references(torch.stack(references, dim=-1), utterance.sources)  # before the separation's work
    estimates = separator.separate_file(utterance.mix, chunk_seconds, overlap_seconds)[0]  # [L, S]
    try:
        scores = utterance_metrics(mix, torch.stack(references, dim=-1), estimates, rate, extra_metrics)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:  # BSS-Eval; torch's LinAlgError is a RuntimeError
        raise UndefinedMetricsError(f"{utterance.mix}: the metrics cannot be computed ({first_line(error)})") from error
    return {"ID": utterance.id, **scores}


def write_report(out_folder: str, rows: Sequence[Dict[str, float]], details: Dict) -> Dict[str, float]:
    """Write ``scores.csv`` (a row per utterance, then ``mean``), ``summary.json`` and ``si_snri.png``.

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
        At least one, as :func:`score_utterance` returns, all with the same columns.
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
    means = {name: float(np.mean([row[name] for row in rows])) for name in columns[1:]}
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow({"ID": "mean", **means})
    summary = _finite_or_null({**details, "count": len(rows), "means": means})
    contents = [table.getvalue(), json.dumps(summary, indent=2, allow_nan=False) + "\n",
                _histogram_png([row["si-snr_i"] for row in rows])]
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


def _histogram_png(values: List[float]) -> bytes:
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
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=80)
    plt.close(figure)
    return image.getvalue()
