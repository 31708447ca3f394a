"""Source corpora: LibriSpeech speakers and WHAM! / DnR background files, scanned from folders.

Scanning only lists files (no audio is opened), so even the full LibriSpeech takes seconds.
Unreadable files are found and skipped later, when a mixture first reads them.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from spmamba_sb.data.audio_io import AUDIO_EXTENSIONS
from spmamba_sb.data.simulation_config import BACKGROUND_KINDS

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
#: A split gets at least this many speakers when the pool has eight times as many: a small
#: evaluation split then still holds several voices instead of one pair.
MIN_SPLIT_SPEAKERS = 8
#: Folder names that put the files below them into a split (WHAM! and DnR v2: tr/cv/tt; DnR v3: train/val/test).
SPLIT_FOLDER_NAMES = {"train": ("tr", "train"), "valid": ("cv", "val", "valid", "dev"), "test": ("tt", "test")}
#: DnR keeps one file per stem in each clip folder; these are the stems each kind takes.
DNR_STEMS = {"sfx": ("sfx",), "music": ("music",)}
_DNR_OTHER_STEMS = ("mix", "mixture", "speech", "sfx", "music", "sfx_fg", "sfx_bg")
_LIBRISPEECH_FILE = re.compile(r"^(\d+)-(\d+)-(\d+)\.flac$")

LIBRISPEECH_LAYOUT = ("the LibriSpeech folder, holding <subset>/<speaker>/<chapter>/"
                      "<speaker>-<chapter>-<utterance>.flac (for example "
                      "LibriSpeech/train-clean-100/19/198/19-198-0001.flac)")
BACKGROUND_LAYOUTS = {
    "noise": "the WHAM! noise folder (wham_noise/ with tr/, cv/ and tt/ holding .wav files) or any folder of noise "
             "recordings",
    "sfx": "the DnR folder (tr/, cv/, tt/ clip folders each holding sfx.wav) or any folder of sound-effect files",
    "music": "the DnR folder (tr/, cv/, tt/ clip folders each holding music.wav) or any folder of music files",
}


def _check_folder(folder: Optional[str], argument: str, expected: str) -> Path:
    """Raise a ValueError naming ``argument`` unless ``folder`` is an existing, non-empty folder."""
    if folder is None or str(folder) == "":
        raise ValueError(f"{argument} is not set; expected {expected}")
    path = Path(folder).expanduser()
    if not path.exists():
        raise ValueError(f"{argument} folder '{folder}' does not exist; expected {expected}")
    if not path.is_dir():
        raise ValueError(f"{argument} '{folder}' is a file, not a folder; expected {expected}")
    if not any(path.iterdir()):
        raise ValueError(f"{argument} folder '{folder}' is empty; expected {expected}")
    return path.resolve()


def _walk_files(root: Path) -> Iterable[Path]:
    """Every file below ``root`` (following links), in sorted order."""
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        subdirectories.sort()
        for name in sorted(files):
            yield Path(directory) / name


def scan_librispeech(folder: str, subsets: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """List the utterances of every speaker in a LibriSpeech folder.

    Arguments
    ---------
    folder : str
        The ``LibriSpeech`` folder (any of its subsets present), one subset folder, or a folder above them.
    subsets : sequence of str, optional
        Keep only files below folders of these names (for example ``["train-clean-100"]``).

    Returns
    -------
    dict
        Speaker ID -> sorted absolute paths of that speaker's ``.flac`` utterances.

    Raises
    ------
    ValueError
        If the folder is missing, empty, or holds no ``<speaker>-<chapter>-<utterance>.flac`` files.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "dev-clean" / "84" / "121").mkdir(parents=True)
    >>> (root / "dev-clean" / "84" / "121" / "84-121-0000.flac").touch()
    >>> {speaker: len(files) for speaker, files in scan_librispeech(str(root)).items()}
    {'84': 1}
    """
    root = _check_folder(folder, "librispeech", LIBRISPEECH_LAYOUT)
    wanted = set(subsets) if subsets else None
    speakers: Dict[str, List[str]] = {}
    other_audio = []
    for path in _walk_files(root):
        match = _LIBRISPEECH_FILE.match(path.name)
        if match is None:
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                other_audio.append(path)
            continue
        if wanted is not None and not wanted.intersection(path.relative_to(root).parts[:-1]):
            continue
        speakers.setdefault(match.group(1), []).append(str(path))
    if not speakers:
        found = (f"; found {len(other_audio)} other audio files (for example "
                 f"'{other_audio[0].relative_to(root)}')" if other_audio else "")
        only = f" in subsets {sorted(wanted)}" if wanted else ""
        raise ValueError(f"librispeech folder '{folder}' holds no LibriSpeech utterances{only}{found}; "
                         f"expected {LIBRISPEECH_LAYOUT}")
    logger.info("LibriSpeech: %d speakers, %d utterances in %s", len(speakers),
                sum(len(files) for files in speakers.values()), root)
    return dict(sorted(speakers.items()))


def _split_of(relative_parts: Sequence[str]) -> str:
    """The split named by the first split folder in a path, or ``"unsplit"``."""
    for part in relative_parts:
        for split, names in SPLIT_FOLDER_NAMES.items():
            if part.lower() in names:
                return split
    return "unsplit"


def scan_background_folder(folder: str, kind: str) -> Dict[str, List[str]]:
    """List the audio files of one background class, grouped by the split folder they sit in.

    In a DnR folder (clip folders holding ``mix``, ``speech``, ``sfx`` and ``music`` stems), only
    the stem of ``kind`` is taken; any other folder contributes all its audio files.

    Arguments
    ---------
    folder : str
        The WHAM! noise folder, the DnR folder, or any folder of audio files.
    kind : str
        ``"noise"``, ``"sfx"`` or ``"music"``.

    Returns
    -------
    dict
        ``{"train": [...], "valid": [...], "test": [...], "unsplit": [...]}``, sorted absolute paths;
        files below no ``tr``/``cv``/``tt`` (or ``train``/``val``/``test``) folder are ``"unsplit"``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or the folder is missing, empty, holds no audio, is a LibriSpeech
        folder, or is a DnR folder without the stem of ``kind``.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "tr").mkdir()
    >>> (root / "tr" / "a.wav").touch()
    >>> {split: len(files) for split, files in scan_background_folder(str(root), "noise").items()}
    {'train': 1, 'valid': 0, 'test': 0, 'unsplit': 0}
    """
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"kind must be one of {BACKGROUND_KINDS}, got {kind!r}")
    expected = BACKGROUND_LAYOUTS[kind]
    root = _check_folder(folder, kind, expected)
    audio = [path for path in _walk_files(root) if path.suffix.lower() in AUDIO_EXTENSIONS]
    if not audio:
        raise ValueError(f"{kind} folder '{folder}' holds no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                         f"expected {expected}")
    if any(_LIBRISPEECH_FILE.match(path.name) for path in audio):
        raise ValueError(f"{kind} folder '{folder}' looks like a LibriSpeech folder "
                         f"(<speaker>-<chapter>-<utterance>.flac files); expected {expected}")
    stems = {path.stem.lower() for path in audio}
    own_stems = DNR_STEMS.get(kind, ())
    if stems.intersection(own_stems):
        audio = [path for path in audio if path.stem.lower() in own_stems]
    elif {"mix", "mixture", "speech"} & stems and stems & set(_DNR_OTHER_STEMS):
        wanted = " or ".join(f"{stem}.wav" for stem in own_stems) or "noise recordings"
        raise ValueError(f"{kind} folder '{folder}' looks like a DnR folder (it has mix/speech stems) but holds no "
                         f"{wanted}; expected {expected}")
    grouped: Dict[str, List[str]] = {split: [] for split in (*SPLITS, "unsplit")}
    for path in audio:
        grouped[_split_of(path.relative_to(root).parts[:-1])].append(str(path))
    logger.info("%s: %s in %s", kind, ", ".join(f"{len(files)} {split}" for split, files in grouped.items()), root)
    return grouped


def proportional_counts(total: int, weights: Sequence[float], minimum: int) -> List[int]:
    """Split ``total`` items in proportion to ``weights`` (largest remainders); zero weight gets zero.

    Every positive weight then gets at least ``minimum``, taken one by one from the largest counts.

    Arguments
    ---------
    total : int
        Items to share; at least ``minimum`` times the number of positive weights.
    weights : sequence of float
        One weight per share.
    minimum : int
        Fewest items of a share with positive weight.

    Returns
    -------
    list of int
        Counts summing to ``total`` (or all zero when no weight is positive).

    Example
    -------
    >>> proportional_counts(10, [8, 1, 1], minimum=2)
    [6, 2, 2]
    """
    active = [index for index, weight in enumerate(weights) if weight > 0]
    counts = [0] * len(weights)
    if not active:
        return counts
    shares = np.array([weights[index] for index in active], dtype=float)
    shares = total * shares / shares.sum()
    floors = np.floor(shares).astype(int)
    order = np.argsort(-(shares - floors), kind="stable")
    leftover = total - int(floors.sum())
    for rank, position in enumerate(order):
        counts[active[position]] = int(floors[position]) + int(rank < leftover)
    for index in active:
        while counts[index] < minimum:
            donor = max(active, key=lambda other: counts[other] - (minimum if other != index else total))
            counts[donor] -= 1
            counts[index] += 1
    return counts


def partition_speakers(speakers: Sequence[str], hours: Dict[str, float], num_speakers: int,
                       seed: int) -> Dict[str, List[str]]:
    """Give each split its own speakers, in numbers proportional to its hours.

    Every split with hours gets at least ``num_speakers`` speakers, and at least
    ``MIN_SPLIT_SPEAKERS`` when there are eight times as many (an eighth of the pool otherwise).

    Arguments
    ---------
    speakers : sequence of str
        Speaker IDs.
    hours : dict
        Hours per split (``"train"``, ``"valid"``, ``"test"``); a split with 0 hours gets no speakers.
    num_speakers : int
        Speakers per mixture: every split with hours gets at least this many.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    dict
        Split -> sorted speaker IDs; the sets are disjoint.

    Raises
    ------
    ValueError
        If there are too few speakers.

    Example
    -------
    >>> parts = partition_speakers([str(i) for i in range(10)], {"train": 8, "valid": 1, "test": 1}, 2, 0)
    >>> [len(parts[split]) for split in SPLITS]
    [6, 2, 2]
    >>> parts = partition_speakers([str(i) for i in range(112)], {"train": 4, "valid": 0.05, "test": 0.05}, 2, 0)
    >>> [len(parts[split]) for split in SPLITS]
    [96, 8, 8]
    """
    weights = [float(hours.get(split, 0.0)) for split in SPLITS]
    needed = num_speakers * sum(weight > 0 for weight in weights)
    if len(speakers) < needed:
        raise ValueError(f"found {len(speakers)} speakers, but speaker-disjoint splits with num_speakers="
                         f"{num_speakers} need at least {needed}; add LibriSpeech subsets or lower num_speakers")
    order = np.random.default_rng([seed, 1]).permutation(sorted(speakers)).tolist()
    minimum = max(num_speakers, min(MIN_SPLIT_SPEAKERS, len(order) // 8))
    counts = proportional_counts(len(order), weights, minimum)
    parts, start = {}, 0
    for split, count in zip(SPLITS, counts):
        parts[split] = sorted(order[start:start + count])
        start += count
    return parts


def _split_backgrounds(grouped: Dict[str, List[str]], kind: str, hours: Dict[str, float],
                       seed: int) -> Dict[str, List[str]]:
    """Files of one background kind per split: split folders first, loose files shared out by hours."""
    weights = [float(hours.get(split, 0.0)) for split in SPLITS]
    files = {split: list(grouped[split]) for split in SPLITS}
    loose = grouped["unsplit"]
    if loose:
        active = sum(weight > 0 for weight in weights)
        if len(loose) >= active:
            order = np.random.default_rng([seed, 2, BACKGROUND_KINDS.index(kind)]).permutation(loose).tolist()
            start = 0
            for split, count in zip(SPLITS, proportional_counts(len(order), weights, 1 if active else 0)):
                files[split] += order[start:start + count]
                start += count
    everything = sorted(path for paths in grouped.values() for path in paths)
    for split, weight in zip(SPLITS, weights):
        if weight > 0 and not files[split]:
            logger.warning("%s: no files set apart for the %s split; it draws from all %d %s files",
                           kind, split, len(everything), kind)
            files[split] = everything
    return {split: sorted(paths) for split, paths in files.items()}


@dataclass
class Corpora:
    """The source material: utterances per speaker and background files per class and split.

    Arguments
    ---------
    speakers : dict
        Speaker ID -> utterance paths.
    backgrounds : dict
        Background kind (``"noise"``, ``"sfx"``, ``"music"``) -> split (``"train"``, ``"valid"``,
        ``"test"``, ``"unsplit"``) -> paths.
    folders : dict
        The folders scanned, by argument name (recorded in the dataset's configuration).

    Example
    -------
    >>> corpora = Corpora(speakers={"1": ["a.flac"], "2": ["b.flac"]},
    ...                   backgrounds={kind: {"train": [], "valid": [], "test": [], "unsplit": [kind + ".wav"]}
    ...                                for kind in BACKGROUND_KINDS})
    >>> sources = corpora.assign_splits({"train": 1.0, "valid": 0.0, "test": 0.0}, num_speakers=2, seed=0)
    >>> sorted(sources["train"]["speakers"]), sources["train"]["noise"]
    (['1', '2'], ['noise.wav'])
    """

    speakers: Dict[str, List[str]]
    backgrounds: Dict[str, Dict[str, List[str]]]
    folders: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_folders(cls, librispeech: str, noise: str, sfx: str, music: str,
                     librispeech_subsets: Optional[Sequence[str]] = None) -> "Corpora":
        """Scan the four corpus folders (the same DnR folder may serve as ``sfx`` and ``music``).

        Arguments
        ---------
        librispeech : str
            LibriSpeech folder (see :func:`scan_librispeech`).
        noise : str
            WHAM! noise folder.
        sfx, music : str
            DnR folder(s), or folders of sound-effect / music files.
        librispeech_subsets : sequence of str, optional
            Restrict LibriSpeech to these subsets.

        Returns
        -------
        Corpora
            The scanned lists.
        """
        backgrounds = {kind: scan_background_folder(folder, kind)
                       for kind, folder in (("noise", noise), ("sfx", sfx), ("music", music))}
        speakers = scan_librispeech(librispeech, librispeech_subsets)
        folders = {"librispeech": str(Path(librispeech).resolve()), "noise": str(Path(noise).resolve()),
                   "sfx": str(Path(sfx).resolve()), "music": str(Path(music).resolve())}
        return cls(speakers=speakers, backgrounds=backgrounds, folders=folders)

    def summary(self) -> Dict[str, int]:
        """Counts of speakers, utterances and background files (recorded to detect a changed corpus).

        Returns
        -------
        dict
            ``{"speakers": ..., "utterances": ..., "noise": ..., "sfx": ..., "music": ...}``.
        """
        counts = {"speakers": len(self.speakers),
                  "utterances": sum(len(files) for files in self.speakers.values())}
        for kind in BACKGROUND_KINDS:
            counts[kind] = sum(len(files) for files in self.backgrounds[kind].values())
        return counts

    def assign_splits(self, hours: Dict[str, float], num_speakers: int, seed: int) -> Dict[str, Dict]:
        """Sources of each split: disjoint speakers, and background files kept apart where possible.

        Arguments
        ---------
        hours : dict
            Hours per split; sizes the speaker shares.
        num_speakers : int
            Speakers per mixture.
        seed : int
            Seed of the assignment.

        Returns
        -------
        dict
            Split -> ``{"speakers": {speaker: [paths]}, "noise": [paths], "sfx": [paths], "music": [paths]}``.
        """
        speaker_parts = partition_speakers(list(self.speakers), hours, num_speakers, seed)
        backgrounds = {kind: _split_backgrounds(self.backgrounds[kind], kind, hours, seed) for kind in BACKGROUND_KINDS}
        return {split: {"speakers": {speaker: self.speakers[speaker] for speaker in speaker_parts[split]},
                        **{kind: backgrounds[kind][split] for kind in BACKGROUND_KINDS}}
                for split in SPLITS}
