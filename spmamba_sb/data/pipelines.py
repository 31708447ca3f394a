"""SpeechBrain datasets for separation CSVs (ID, duration, mix_wav, s1_wav, ..., sN_wav, ...).

Works with the CSVs that SpeechBrain's own LibriMix / WHAMR! / WSJ0-2mix preparation
scripts write and with those of ``spmamba_sb.data``. ``$data_root`` in a path is replaced
by the data folder. Multi-channel files are read at their first channel (the reference
microphone) with :func:`~spmamba_sb.data.audio_io.read_audio`, as at inference. Training
items are random crops of a fixed length, read from disk without loading the whole file;
validation and test items are whole utterances. Bad audio (missing,
unreadable, at another rate, empty, NaN or Inf) is found by :func:`check_rows` before training
or, in a training file, when it is read; either way a :class:`SeparationDataError` names the
CSV, the row and the file.
"""

import csv
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes

from spmamba_sb.data.audio_io import UnreadableAudioError, audio_info, read_audio

logger = logging.getLogger(__name__)

MISSING_AUDIO_POLICIES = ("fatal", "skip")


def audio_columns(num_spks: int) -> List[str]:
    """CSV columns holding the audio an item needs.

    Example
    -------
    >>> audio_columns(3)
    ['mix_wav', 's1_wav', 's2_wav', 's3_wav']
    """
    return ["mix_wav"] + [f"s{i}_wav" for i in range(1, num_spks + 1)]


class SeparationDataError(ValueError):
    """A separation CSV that cannot be used; the message names the CSV and, where one is at
    fault, the row, the column and the file.

    Example
    -------
    >>> str(SeparationDataError("train.csv: row a1: mix_wav='a1.wav': contains NaN or Inf samples"))
    "train.csv: row a1: mix_wav='a1.wav': contains NaN or Inf samples"
    """


def check_rows(
    csv_path: str,
    num_spks: int,
    sample_rate: int,
    data_root: str = "",
    missing_audio: str = "fatal",
    read_samples: bool = False,
    min_samples: int = 1,
) -> List[str]:
    """Find rows whose audio is missing, unreadable or at the wrong sample rate, and with
    ``read_samples`` also empty or holding NaN or Inf samples.

    Arguments
    ---------
    csv_path : str
        Separation CSV.
    num_spks : int
        Sources per mixture (columns s1_wav .. sN_wav must exist).
    sample_rate : int
        Expected rate of every file.
    data_root : str
        Replaces ``$data_root`` in paths.
    missing_audio : str
        ``"fatal"``: raise on the first bad rows; ``"skip"``: log them and return their IDs.
    read_samples : bool
        Read every file whole (for small sets such as validation and test); otherwise only
        the headers are read.
    min_samples : int
        With ``read_samples``, the fewest samples a file may hold (the model's ``n_fft``: a
        shorter utterance fills no STFT frame).

    Returns
    -------
    list of str
        IDs of the rows to skip (empty under ``"fatal"``).

    Raises
    ------
    FileNotFoundError
        If the CSV is missing.
    ValueError
        On an unknown policy.
    SeparationDataError
        On missing columns, or bad rows under ``"fatal"``.

    Example
    -------
    >>> import numpy, soundfile as sf
    >>> folder = getfixture("tmp_path")
    >>> for name, value in (("mix", 0.1), ("s1", 0.1), ("s2", numpy.nan)):
    ...     sf.write(folder / f"a_{name}.wav", numpy.full(100, value), 16000, subtype="FLOAT")
    >>> _ = (folder / "test.csv").write_text("ID,mix_wav,s1_wav,s2_wav\\n"
    ...                                      "a,$data_root/a_mix.wav,$data_root/a_s1.wav,$data_root/a_s2.wav\\n")
    >>> check_rows(str(folder / "test.csv"), 2, 16000, str(folder), missing_audio="skip", read_samples=True)
    ['a']
    """
    if missing_audio not in MISSING_AUDIO_POLICIES:
        raise ValueError(f"missing_audio={missing_audio!r} is not one of {MISSING_AUDIO_POLICIES}")
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"no separation CSV at {csv_path!r}")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = ["ID"] + audio_columns(num_spks)
        absent = [c for c in needed if c not in (reader.fieldnames or [])]
        if absent:
            raise SeparationDataError(f"{csv_path}: missing columns {absent} (num_spks={num_spks})")
        problems: Dict[str, str] = {}
        for row in reader:
            for column in audio_columns(num_spks):
                path = row[column].replace("$data_root", data_root)
                problem = _file_problem(path, sample_rate, read_samples, min_samples)
                if problem is not None:
                    problems[row["ID"]] = f"{column}={path!r}: {problem}"
                    break
    for row_id, problem in problems.items():
        logger.warning("%s: row %s: %s", csv_path, row_id, problem)
    if problems and missing_audio == "fatal":
        first = next(iter(problems.items()))
        raise SeparationDataError(
            f"{csv_path}: {len(problems)} row(s) with bad audio, e.g. row {first[0]}: {first[1]} "
            "(set missing_audio: skip to leave them out)"
        )
    return list(problems)


def _file_problem(path: str, sample_rate: int, read_samples: bool, min_samples: int = 1) -> Optional[str]:
    """Why an audio file of a row cannot be used, or None."""
    try:
        rate = audio_info(path).samplerate
        if rate != sample_rate:
            return f"{rate} Hz, expected {sample_rate} Hz"
        if not read_samples:
            return None
        length = read_audio(path, None, channels="first", dtype="float32").shape[0]
    except UnreadableAudioError as error:
        return error.problem
    if length < min_samples:
        return f"{length} samples, shorter than one STFT frame ({min_samples} samples)"
    return None


def _pipelines(csv_path: str, num_spks: int, crop_length: Optional[int]):
    """The dynamic item that reads a row's mixture and sources, cropped alike; a file that
    cannot be read, or holds no samples or NaN or Inf samples, raises a
    :class:`SeparationDataError` naming the CSV, the row and the file."""
    columns = audio_columns(num_spks)
    signals = ["mix_sig"] + [f"s{i}_sig" for i in range(1, num_spks + 1)]

    @takes("id", *columns)
    @provides(*signals)
    def read_item(row_id, *paths):
        column, path = columns[0], paths[0]
        try:
            start, stop = 0, None
            if crop_length is not None:
                length = audio_info(path).frames
                if length > crop_length:
                    start = int(torch.randint(0, length - crop_length + 1, (1,)))
                    stop = start + crop_length
            item = []
            for column, path in zip(columns, paths):  # the reference microphone's signal, at the file's rate
                samples = read_audio(path, None, channels="first", start=start, stop=stop, dtype="float32")
                item.append(torch.from_numpy(samples))
        except UnreadableAudioError as error:
            raise SeparationDataError(f"{csv_path}: row {row_id}: {column}={path!r}: {error.problem}") from error
        return tuple(item)

    return read_item, signals


def separation_datasets(
    csv_paths: Sequence[str],
    num_spks: int,
    sample_rate: int,
    training_signal_len: Optional[int] = None,
    data_root: str = "",
    missing_audio: str = "fatal",
    check_samples: Sequence[str] = (),
    min_samples: int = 1,
) -> Tuple[DynamicItemDataset, ...]:
    """Train, valid and test datasets from separation CSVs.

    Arguments
    ---------
    csv_paths : sequence of str
        CSVs, the training set first when ``training_signal_len`` is set (it gets the random
        crops); for example train, valid and test.
    num_spks : int
        Sources per mixture.
    sample_rate : int
        Expected sample rate of every file.
    training_signal_len : int, optional
        Crop length in samples for the training set; None reads whole files.
    data_root : str
        Replaces ``$data_root`` in the CSVs.
    missing_audio : str
        ``"fatal"`` or ``"skip"`` for rows with bad audio (see :func:`check_rows`).
    check_samples : sequence of str
        The CSVs of ``csv_paths`` whose files are read whole now, so that empty files and NaN or
        Inf samples are found before training (small sets such as valid and test). The others'
        files are checked as they are read.
    min_samples : int
        The fewest samples a file of ``check_samples`` may hold (see :func:`check_rows`).

    Returns
    -------
    tuple of DynamicItemDataset
        One per CSV, with output keys ``id, mix_sig, s1_sig, ..., sN_sig``.

    Raises
    ------
    SeparationDataError
        As :func:`check_rows`; reading an item whose audio cannot be read, is empty or holds
        NaN or Inf samples raises it too, naming the CSV, the row and the file.
    """
    datasets = []
    for index, csv_path in enumerate(csv_paths):
        skip = set(check_rows(csv_path, num_spks, sample_rate, data_root, missing_audio,
                              read_samples=csv_path in check_samples, min_samples=min_samples))
        dataset = DynamicItemDataset.from_csv(csv_path, replacements={"data_root": data_root})
        if skip:
            keep = [item_id for item_id in dataset.data_ids if item_id not in skip]
            logger.warning("%s: skipping %d row(s) with bad audio", csv_path, len(skip))
            dataset = dataset.filtered_sorted(key_test={"id": lambda item_id: item_id in set(keep)})
        read_item, signals = _pipelines(csv_path, num_spks, training_signal_len if index == 0 else None)
        dataset.add_dynamic_item(read_item)
        dataset.set_output_keys(["id"] + signals)
        datasets.append(dataset)
    return tuple(datasets)
