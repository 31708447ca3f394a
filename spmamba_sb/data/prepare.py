"""Write an Echo2Mix-style dataset: splits, parallel workers, resume, wavs, metadata JSON and CSVs.

Layout of the output folder::

    echo2mix_config.json            settings the dataset was made with (checked on resume)
    train.csv  valid.csv  test.csv  SpeechBrain CSVs (absolute paths, or $data_root/... on request)
    skipped_files.txt               unreadable source files that were skipped (if any)
    <split>/mix/<ID>.wav            the mixture, [L, C]
    <split>/s1/<ID>.wav ... sN/     reverberant image of each speaker (the targets)
    <split>/noise/<ID>.wav          sum of the reverberant noise, sound effects and music
    <split>/metadata/<ID>.json      everything needed to rebuild the mixture; written last

Each mixture's random generator is seeded from ``(seed, split, index)``, so the output does not
depend on the number of workers, their order, or on interruptions. Audio files are written under
temporary names and renamed into place, and the metadata JSON is written last, so a mixture counts
as done only when its JSON and all its wavs exist; a rerun skips those and redoes the rest.
"""

import csv
import io
import json
import logging
import os
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from spmamba_sb.data.audio_io import write_audio_atomic
from spmamba_sb.outputs import PARTIAL_SUFFIX, write_text_atomic
from spmamba_sb.data.corpora import SPLITS, Corpora
from spmamba_sb.data.mixing import MixtureSimulator
from spmamba_sb.data.simulation_config import SimulationConfig
from spmamba_sb.data.workers import worker_pool

logger = logging.getLogger(__name__)

#: The paper's split sizes in hours (REFERENCE.md section 3).
PAPER_HOURS = {"train": 57.0, "valid": 8.0, "test": 3.0}
CONFIG_FILE = "echo2mix_config.json"
SKIPPED_FILE = "skipped_files.txt"
CSV_PATH_STYLES = ("absolute", "data_root")

_WORKER_STATE: Dict[str, Any] = {}


def mixture_counts(hours: Dict[str, float], duration: float) -> Dict[str, int]:
    """Mixtures per split: ``round(hours * 3600 / duration)``, at least one for a split with hours.

    Arguments
    ---------
    hours : dict
        Hours per split (``"train"``, ``"valid"``, ``"test"``).
    duration : float
        Mixture length in seconds.

    Returns
    -------
    dict
        Split -> number of mixtures.

    Raises
    ------
    ValueError
        If a split is unknown, an hour count is negative, or all are zero.

    Example
    -------
    >>> mixture_counts(PAPER_HOURS, 60.0)
    {'train': 3420, 'valid': 480, 'test': 180}
    """
    unknown = sorted(set(hours) - set(SPLITS))
    if unknown:
        raise ValueError(f"hours has unknown splits {unknown}; expected {SPLITS}")
    for split, value in hours.items():
        if not value >= 0:
            raise ValueError(f"hours for split '{split}' must be >= 0, got {value}")
    if not any(hours.get(split, 0) > 0 for split in SPLITS):
        raise ValueError(f"hours must be positive for at least one split, got {hours}")
    return {split: max(1, int(round(hours[split] * 3600 / duration))) if hours.get(split, 0) > 0 else 0
            for split in SPLITS}


def mixture_id(split: str, index: int) -> str:
    """ID of mixture ``index`` of ``split``.

    Example
    -------
    >>> mixture_id("train", 42)
    'train_000042'
    """
    return f"{split}_{index:06d}"


def mixture_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one mixture, a function of ``(seed, split, index)`` only.

    Example
    -------
    >>> float(mixture_rng(0, "train", 3).uniform()) == float(mixture_rng(0, "train", 3).uniform())
    True
    """
    return np.random.default_rng([int(seed), SPLITS.index(split), int(index)])


def stream_names(num_speakers: int) -> List[str]:
    """Audio streams written per mixture: ``mix``, ``s1`` ... ``sN``, ``noise``.

    Example
    -------
    >>> stream_names(3)
    ['mix', 's1', 's2', 's3', 'noise']
    """
    return ["mix", *(f"s{index + 1}" for index in range(num_speakers)), "noise"]


def _paths(output: Path, split: str, identifier: str, num_speakers: int) -> Tuple[Dict[str, Path], Path]:
    audio = {name: output / split / name / f"{identifier}.wav" for name in stream_names(num_speakers)}
    return audio, output / split / "metadata" / f"{identifier}.json"


def _is_complete(output: Path, split: str, identifier: str, num_speakers: int) -> bool:
    audio, metadata = _paths(output, split, identifier, num_speakers)
    return metadata.is_file() and all(path.is_file() for path in audio.values())


def _initialise_worker(output: str, config_values: Dict[str, Any], split_sources: Dict[str, Dict],
                       seed: int) -> None:
    config = SimulationConfig.from_dict(config_values)
    _WORKER_STATE.update(output=Path(output), config=config, simulator=MixtureSimulator(config),
                         split_sources=split_sources, seed=seed)


def _make_mixture(split: str, index: int) -> List[str]:
    """Simulate and write one mixture (wavs first, JSON last); returns the files it skipped."""
    state = _WORKER_STATE
    config: SimulationConfig = state["config"]
    identifier = mixture_id(split, index)
    signals, metadata = state["simulator"].simulate(mixture_rng(state["seed"], split, index),
                                                    state["split_sources"][split], identifier)
    metadata["split"] = split
    audio_paths, metadata_path = _paths(state["output"], split, identifier, config.num_speakers)
    for name, path in audio_paths.items():
        metadata[f"{name}_wav"] = os.path.relpath(path, state["output"])
        write_audio_atomic(path, signals[name], config.sample_rate, subtype=config.audio_subtype)
    write_text_atomic(metadata_path, json.dumps(metadata, indent=1))
    return metadata["skipped_files"]


def _remove_partial_files(output: Path) -> int:
    removed = 0
    for split in SPLITS:
        folder = output / split
        if folder.is_dir():
            for path in folder.rglob(f"*{PARTIAL_SUFFIX}"):
                path.unlink()
                removed += 1
    return removed


def _check_or_write_settings(output: Path, settings: Dict[str, Any]) -> None:
    path = output / CONFIG_FILE
    if path.is_file():
        existing = json.loads(path.read_text(encoding="utf-8"))
        differing = sorted(key for key in set(existing) | set(settings) if existing.get(key) != settings.get(key))
        if differing:
            raise ValueError(f"output folder '{output}' holds a dataset made with other settings (differing: "
                             f"{', '.join(differing)}); use a new output folder, or delete this one to start over")
        return
    write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True))


def write_csv(output: str, split: str, num_mixtures: int, num_speakers: int, csv_paths: str = "absolute") -> str:
    """Write ``<output>/<split>.csv`` in SpeechBrain's separation format from the metadata files.

    Columns: ``ID, duration``, then ``<stream>_wav, <stream>_wav_format, <stream>_wav_opts`` for
    ``mix``, ``s1`` ... ``sN`` and ``noise``, then each source's speaker, ``s1_spk`` ... ``sN_spk``
    (which dynamic mixing needs).

    Arguments
    ---------
    output : str
        Dataset folder.
    split : str
        ``"train"``, ``"valid"`` or ``"test"``.
    num_mixtures : int
        Mixtures in the split; each must be complete.
    num_speakers : int
        Speakers per mixture.
    csv_paths : str
        ``"absolute"`` paths, or ``"data_root"``: ``$data_root/<split>/...``, which SpeechBrain's
        ``from_csv(..., replacements={"data_root": folder})`` (and ``train.py``'s ``data_folder``)
        fills in, so the dataset can be moved.

    Returns
    -------
    str
        Path of the CSV.

    Raises
    ------
    FileNotFoundError
        If a mixture is incomplete.

    Example
    -------
    >>> path = write_csv(str(getfixture("tmp_path")), "test", num_mixtures=0, num_speakers=2)
    >>> open(path).read().split(",")[:6]
    ['ID', 'duration', 'mix_wav', 'mix_wav_format', 'mix_wav_opts', 's1_wav']
    """
    if csv_paths not in CSV_PATH_STYLES:
        raise ValueError(f"csv_paths={csv_paths!r} must be one of {CSV_PATH_STYLES}")
    root = Path(output).resolve()
    header = ["ID", "duration"]
    for name in stream_names(num_speakers):
        header += [f"{name}_wav", f"{name}_wav_format", f"{name}_wav_opts"]
    header += [f"s{index + 1}_spk" for index in range(num_speakers)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for index in range(num_mixtures):
        identifier = mixture_id(split, index)
        audio, metadata_path = _paths(root, split, identifier, num_speakers)
        if not _is_complete(root, split, identifier, num_speakers):
            raise FileNotFoundError(f"mixture {identifier} in '{root}' is incomplete; rerun the preparation")
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        row = [identifier, f"{metadata['duration']:.4f}"]
        for name in stream_names(num_speakers):
            path = str(audio[name]) if csv_paths == "absolute" else \
                "$data_root/" + audio[name].relative_to(root).as_posix()
            row += [path, "wav", ""]
        writer.writerow(row + [speaker["speaker"] for speaker in metadata["speakers"]])
    path = root / f"{split}.csv"
    write_text_atomic(path, buffer.getvalue())
    return str(path)


def prepare_echo2mix(output: str, corpora: Corpora, config: SimulationConfig,
                     hours: Optional[Dict[str, float]] = None, seed: int = 0, num_workers: int = 1,
                     show_progress: bool = True, extra_settings: Optional[Dict[str, Any]] = None,
                     csv_paths: str = "absolute") -> Dict[str, Any]:
    """Simulate every missing mixture of every split and write the CSVs.

    Arguments
    ---------
    output : str
        Dataset folder (created if missing). Rerunning on it resumes; other settings raise.
    corpora : Corpora
        Source material (see :class:`~spmamba_sb.data.corpora.Corpora`).
    config : SimulationConfig
        How each mixture is simulated.
    hours : dict, optional
        Hours per split; the paper's 57 / 8 / 3 by default.
    seed : int
        Global seed.
    num_workers : int
        Worker processes; 0 or 1 runs in this process.
    show_progress : bool
        Show a tqdm progress bar.
    extra_settings : dict, optional
        More JSON values recorded with the settings (and checked on resume).
    csv_paths : str
        ``"absolute"`` or ``"data_root"`` (see :func:`write_csv`).

    Returns
    -------
    dict
        ``{"csv": {split: path}, "num_mixtures": {split: n}, "made": n, "skipped_files": [paths]}``.

    Raises
    ------
    ValueError
        On bad sizes, too few speakers, or an output folder made with other settings.

    Example
    -------
    >>> from spmamba_sb.data.audio_io import write_audio_atomic
    >>> folder = getfixture("tmp_path")
    >>> files = {name: str(folder / f"{name}.wav") for name in ("1-1-0", "2-1-0", "noise", "sfx", "music")}
    >>> for index, path in enumerate(files.values()):
    ...     write_audio_atomic(path, 0.1 * np.random.default_rng(index).standard_normal(8000), 8000)
    >>> corpora = Corpora(speakers={"1": [files["1-1-0"]], "2": [files["2-1-0"]]},
    ...                   backgrounds={kind: {"train": [files[kind]], "valid": [], "test": [], "unsplit": []}
    ...                                for kind in ("noise", "sfx", "music")})
    >>> config = SimulationConfig(sample_rate=8000, duration=1.5, rt60=(0.15, 0.2), room_min=(3.0, 3.0, 2.5),
    ...                           room_max=(3.5, 3.5, 2.6), num_rays=300)
    >>> result = prepare_echo2mix(str(folder / "dataset"), corpora, config, show_progress=False,
    ...                           hours={"train": 1.5 / 3600, "valid": 0.0, "test": 0.0})
    >>> result["num_mixtures"], sorted(path.name for path in (folder / "dataset" / "train").iterdir())
    ({'train': 1, 'valid': 0, 'test': 0}, ['metadata', 'mix', 'noise', 's1', 's2'])
    """
    hours = dict(PAPER_HOURS if hours is None else hours)
    counts = mixture_counts(hours, config.duration)
    if csv_paths not in CSV_PATH_STYLES:
        raise ValueError(f"csv_paths={csv_paths!r} must be one of {CSV_PATH_STYLES}")
    split_sources = corpora.assign_splits(hours, config.num_speakers, seed)
    root = Path(output).resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings = {"simulation": config.to_dict(), "hours": {split: float(hours.get(split, 0.0)) for split in SPLITS},
                "num_mixtures": counts, "seed": int(seed), "corpora": corpora.folders,
                "corpus_summary": corpora.summary(),
                "speakers": {split: sorted(split_sources[split]["speakers"]) for split in SPLITS},
                **(extra_settings or {})}
    _check_or_write_settings(root, settings)
    removed = _remove_partial_files(root)
    if removed:
        logger.info("removed %d half-written files of an interrupted run", removed)
    for split in SPLITS:
        for name in [*stream_names(config.num_speakers), "metadata"]:
            (root / split / name).mkdir(parents=True, exist_ok=True)
    pending = [(split, index) for split in SPLITS for index in range(counts[split])
               if not _is_complete(root, split, mixture_id(split, index), config.num_speakers)]
    total = sum(counts.values())
    logger.info("%d of %d mixtures to make in '%s' (%s)", len(pending), total, root,
                ", ".join(f"{split}: {counts[split]}" for split in SPLITS))
    initargs = (str(root), config.to_dict(), split_sources, int(seed))
    progress = tqdm(total=len(pending), desc="mixtures", unit="mix", disable=not show_progress)
    try:
        if num_workers <= 1:
            _initialise_worker(*initargs)
            for split, index in pending:
                _make_mixture(split, index)
                progress.update(1)
        elif pending:
            with worker_pool(num_workers, _initialise_worker, initargs) as executor:
                futures = [executor.submit(_make_mixture, split, index) for split, index in pending]
                for future in as_completed(futures):
                    future.result()
                    progress.update(1)
    finally:
        progress.close()
    csv_files = {split: write_csv(str(root), split, counts[split], config.num_speakers, csv_paths) for split in SPLITS}
    skipped = set()
    for split in SPLITS:
        for index in range(counts[split]):
            metadata_path = _paths(root, split, mixture_id(split, index), config.num_speakers)[1]
            skipped.update(json.loads(metadata_path.read_text(encoding="utf-8"))["skipped_files"])
    if skipped:
        write_text_atomic(root / SKIPPED_FILE, "".join(f"{path}\n" for path in sorted(skipped)))
        logger.warning("%d unreadable source files were skipped; listed in %s", len(skipped), root / SKIPPED_FILE)
    return {"csv": csv_files, "num_mixtures": counts, "made": len(pending), "skipped_files": sorted(skipped)}
