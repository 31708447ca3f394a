"""What ``spmamba-evaluate`` scores: a scoring set's mixtures, each separated by a model and
scored by :mod:`spmamba_sb.scoring` (the scorer of ``train.py``'s test stage too).

A scoring set is a separation CSV (``ID, mix_wav, s1_wav, ..., sN_wav``, SpeechBrain's format)
or a folder with ``mix/``, ``s1/`` ... ``sN/`` subfolders of same-named files. Every file is
read as ``separate_file`` reads a mixture: a multi-channel file at its first channel (the
reference microphone, as in training), resampled to the model's rate. Each mixture goes
through ``separate_file`` (long ones in chunks), then
:func:`~spmamba_sb.scoring.utterance_metrics` puts its estimates in the references' order and
scores them; STOI and PESQ are added where ``pystoi`` / ``pesq`` are installed. For files at
the model's rate no longer than a chunk, the figures are those of ``train.py``'s test stage.
"""

import csv
import os
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import numpy as np
import torch

from spmamba_sb.data.audio_io import AUDIO_EXTENSIONS, UnreadableAudioError, read_audio
from spmamba_sb.inference import AudioInputError, SPMambaSeparation
from spmamba_sb.scoring import UndefinedMetricsError, check_references, first_line, utterance_metrics

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
        Its files, read at the model's rate (a multi-channel file at its first channel, the
        reference microphone, as ``separate_file`` reads the mixture).
    chunk_seconds, overlap_seconds : float
        As in ``separate_file``: longer mixtures are separated in chunks.
    extra_metrics : dict, optional
        See :func:`~spmamba_sb.scoring.utterance_metrics`.

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
        mix = torch.from_numpy(read_audio(utterance.mix, rate, channels="first")).float()  # [L]
        references = [torch.from_numpy(read_audio(path, rate, channels="first")).float() for path in utterance.sources]
    except UnreadableAudioError as error:
        raise AudioInputError(str(error)) from error
    for path, reference in zip(utterance.sources, references):
        if reference.shape[0] != mix.shape[0]:
            raise AudioInputError(f"{path}: {reference.shape[0]} samples at the model's rate, "
                                  f"the mixture {utterance.mix} has {mix.shape[0]}")
    check_references(torch.stack(references, dim=-1), utterance.sources)  # before the separation's work
    estimates = separator.separate_file(utterance.mix, chunk_seconds, overlap_seconds)[0]  # [L, S]
    try:
        scores = utterance_metrics(mix, torch.stack(references, dim=-1), estimates, rate, extra_metrics).scores
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:  # BSS-Eval (see separation_metrics), STOI, PESQ
        raise UndefinedMetricsError(f"{utterance.mix}: the metrics cannot be computed ({first_line(error)})") from error
    return {"ID": utterance.id, **scores}
