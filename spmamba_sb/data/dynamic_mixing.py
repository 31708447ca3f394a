"""Dynamic mixing: every training example a new mixture of the training split's own sources.

The training CSV's source files (``s1_wav`` ... ``sN_wav``) are pooled by speaker, and its
backgrounds (``noise_wav``, where the corpus has one) into a list. Example ``i`` draws
``num_spks`` distinct speakers, one source file of each, a random crop of each (a random
offset where the file is shorter than the crop), a random gain per source within
``+-gain_db``, and one background crop, then sums them: ``mix = s1 + ... + sN + noise``. The
sources keep their own reverberation (each is the image of a different room), the
background its own. A multi-channel file is read at its first channel, the reference
microphone, as :mod:`spmamba_sb.data.pipelines` reads it.

Everything about example ``i`` follows from ``(seed, i)`` alone, so the stream does not
depend on workers or their order; :class:`DynamicMixingSampler` numbers the examples of
epoch ``e`` ``e * n ... e * n + n - 1``, so each epoch brings new mixtures, and a run resumed
from an intra-epoch checkpoint (SpeechBrain saves the epoch and the position in it)
continues the same stream.

Speaker IDs come from, in order: columns ``s1_spk`` ... ``sN_spk`` (written by this package's
preparation); the mixture's metadata JSON (``<split>/metadata/<ID>.json``, older Echo2Mix
and demo folders); the file names of SpeechBrain-prepared LibriMix (``<spk>-<chapter>-<utt>_...``)
and WSJ0-2mix / WHAM! / WHAMR! (``<utt>_<snr>_<utt>_<snr>``, speaker = first three characters
of the utterance) folders. Any other folder needs the ``s<i>_spk`` columns.
"""

import csv
import json
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from spmamba_sb.data.audio_io import UnreadableAudioError, audio_info, read_audio
from spmamba_sb.data.pipelines import SeparationDataError

_LIBRIMIX_UTTERANCE = re.compile(r"^(\d+)-\d+-\d+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def speaker_from_name(path: str, source: int, num_spks: int) -> Optional[str]:
    """Speaker of source ``source`` (1-based) from a LibriMix or WSJ0-2mix style file name.

    Example
    -------
    >>> speaker_from_name("s1/61-70968-0000_8455-210777-0012.wav", 2, 2)
    '8455'
    >>> speaker_from_name("s1/011a0101_0.061_20co010q_-0.061.wav", 1, 2)
    '011'
    >>> speaker_from_name("s1/train_000001.wav", 1, 2) is None
    True
    """
    parts = Path(path).stem.split("_")
    if len(parts) == num_spks and all(_LIBRIMIX_UTTERANCE.match(part) for part in parts):
        return _LIBRIMIX_UTTERANCE.match(parts[source - 1]).group(1)
    if len(parts) == 2 * num_spks and all(_NUMBER.match(part) for part in parts[1::2]):
        return parts[2 * (source - 1)][:3]
    return None


def _speaker_from_metadata(row: Dict[str, str], path: str, source: int) -> Optional[str]:
    """Speaker of a source from this package's per-mixture metadata JSON, when it is there."""
    metadata = Path(path).parent.parent / "metadata" / f"{row['ID']}.json"
    if not metadata.is_file():
        return None
    speakers = json.loads(metadata.read_text(encoding="utf-8")).get("speakers", [])
    return str(speakers[source - 1]["speaker"]) if len(speakers) >= source else None


class SourcePool:
    """Source files by speaker, and background files, with their lengths in samples.

    Arguments
    ---------
    speakers : dict
        Speaker ID -> list of ``(path, frames)``.
    backgrounds : list
        ``(path, frames)`` of each background file (may be empty).

    Example
    -------
    >>> pool = SourcePool({"a": [("a.wav", 100)], "b": [("b.wav", 80)]}, [])
    >>> pool.num_speakers, pool.num_sources
    (2, 2)
    """

    def __init__(self, speakers: Dict[str, List[Tuple[str, int]]], backgrounds: List[Tuple[str, int]]):
        self.speakers = {speaker: list(files) for speaker, files in sorted(speakers.items())}
        self.speaker_ids = list(self.speakers)
        self.backgrounds = list(backgrounds)

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    @property
    def num_sources(self) -> int:
        return sum(len(files) for files in self.speakers.values())

    @classmethod
    def from_csv(cls, csv_path: str, num_spks: int, data_root: str = "", skip_ids=()) -> "SourcePool":
        """Pool the sources and backgrounds of a separation CSV.

        Arguments
        ---------
        csv_path : str
            Training CSV (``ID``, ``s1_wav`` ... ``sN_wav``, optionally ``s1_spk`` ...,
            ``noise_wav``).
        num_spks : int
            Sources per row.
        data_root : str
            Replaces ``$data_root`` in paths.
        skip_ids : iterable of str
            Rows to leave out (for example those with unreadable audio).

        Returns
        -------
        SourcePool

        Raises
        ------
        SeparationDataError
            If a file cannot be read, a source's speaker cannot be told (see the module
            docstring), or fewer than ``num_spks`` speakers are found.
        """
        skip = set(skip_ids)
        speakers: Dict[str, List[Tuple[str, int]]] = {}
        backgrounds: List[Tuple[str, int]] = []
        frames: Dict[str, int] = {}

        def length(row_id, column, path):
            if path not in frames:
                try:
                    frames[path] = audio_info(path).frames
                except UnreadableAudioError as error:
                    problem = f"{csv_path}: row {row_id}: {column}={path!r}: {error.problem}"
                    raise SeparationDataError(problem) from error
            return frames[path]

        with open(csv_path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["ID"] in skip:
                    continue
                for source in range(1, num_spks + 1):
                    path = row[f"s{source}_wav"].replace("$data_root", data_root)
                    speaker = (row.get(f"s{source}_spk") or _speaker_from_metadata(row, path, source)
                               or speaker_from_name(path, source, num_spks))
                    if not speaker:
                        raise SeparationDataError(
                            f"{csv_path}: row {row['ID']}: cannot tell the speaker of {path!r}; dynamic mixing "
                            f"needs columns s1_spk ... s{num_spks}_spk (or LibriMix / WSJ0-2mix file names)"
                        )
                    speakers.setdefault(speaker, []).append((path, length(row["ID"], f"s{source}_wav", path)))
                noise = (row.get("noise_wav") or "").replace("$data_root", data_root)
                if noise:
                    backgrounds.append((noise, length(row["ID"], "noise_wav", noise)))
        if len(speakers) < num_spks:
            raise SeparationDataError(f"{csv_path}: dynamic mixing of {num_spks} speakers needs as many distinct "
                                      f"speakers, found {len(speakers)}")
        return cls(speakers, backgrounds)


def _crop(rng: np.random.Generator, path: str, frames: int, length: int) -> np.ndarray:
    """A random ``length``-sample crop of the file's first channel (the reference microphone, as
    the pipelines read it); a shorter file is placed at a random offset in zeros. A file that cannot
    be read, or whose samples are none or hold NaN or Inf, raises a :class:`SeparationDataError`
    naming it."""
    start, stop = 0, None
    if frames >= length:
        start = int(rng.integers(0, frames - length + 1))
        stop = start + length
    try:
        data = read_audio(path, None, channels="first", start=start, stop=stop, dtype="float32")
    except UnreadableAudioError as error:
        raise SeparationDataError(str(error)) from error
    if frames >= length:
        return data
    out = np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, length - frames + 1))
    out[offset:offset + frames] = data
    return out


class DynamicMixingDataset(torch.utils.data.Dataset):
    """Mixtures drawn on the fly from a :class:`SourcePool`; item ``i`` depends on ``(seed, i)`` only.

    Items are dicts with ``id``, ``mix_sig``, ``s1_sig`` ... ``sN_sig`` and ``noise_sig``
    (float32 [length] tensors; zeros for ``noise_sig`` without backgrounds), for
    SpeechBrain's ``PaddedBatch`` collation.

    Arguments
    ---------
    pool : SourcePool
        Sources and backgrounds.
    num_spks : int
        Speakers per mixture (distinct).
    length : int
        Samples per mixture.
    seed : int
        Seed of the stream.
    gain_db : float
        Each source and background gets a gain drawn uniformly in ``[-gain_db, gain_db]`` dB
        on top of its level in the corpus.
    epoch_size : int
        ``len()`` of the dataset: examples per epoch (see :class:`DynamicMixingSampler`).

    Example
    -------
    >>> import os, soundfile as sf
    >>> folder = str(getfixture("tmp_path"))
    >>> files = {}
    >>> for name in ("a", "b", "c"):
    ...     files[name] = [(os.path.join(folder, name + ".wav"), 800)]
    ...     sf.write(files[name][0][0], np.random.default_rng(0).standard_normal(800) * 0.1, 8000)
    >>> dataset = DynamicMixingDataset(SourcePool(files, []), num_spks=2, length=400, seed=0)
    >>> item = dataset[5]
    >>> item["mix_sig"].shape, bool(torch.allclose(item["mix_sig"], item["s1_sig"] + item["s2_sig"]))
    (torch.Size([400]), True)
    """

    def __init__(self, pool: SourcePool, num_spks: int, length: int, seed: int, gain_db: float = 2.0,
                 epoch_size: int = 1000):
        if pool.num_speakers < num_spks:
            raise ValueError(f"{num_spks} distinct speakers needed, the pool has {pool.num_speakers}")
        self.pool, self.num_spks, self.length, self.seed = pool, num_spks, length, seed
        self.gain_db, self.epoch_size = gain_db, epoch_size

    def __len__(self) -> int:
        return self.epoch_size

    def _gain(self, rng: np.random.Generator) -> float:
        return float(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([int(self.seed), int(index)])
        pool = self.pool
        item: Dict[str, torch.Tensor] = {"id": f"dm_{int(index):09d}"}
        mix = np.zeros(self.length, dtype=np.float32)
        for source, chosen in enumerate(rng.choice(pool.num_speakers, self.num_spks, replace=False), start=1):
            files = pool.speakers[pool.speaker_ids[int(chosen)]]
            path, frames = files[int(rng.integers(len(files)))]
            signal = _crop(rng, path, frames, self.length) * self._gain(rng)
            mix += signal
            item[f"s{source}_sig"] = torch.from_numpy(signal)
        noise = np.zeros(self.length, dtype=np.float32)
        if pool.backgrounds:
            path, frames = pool.backgrounds[int(rng.integers(len(pool.backgrounds)))]
            noise = _crop(rng, path, frames, self.length) * self._gain(rng)
            mix += noise
        item["noise_sig"] = torch.from_numpy(noise)
        item["mix_sig"] = torch.from_numpy(mix)
        return item


class DynamicMixingSampler(torch.utils.data.Sampler):
    """Example numbers ``epoch * n ... epoch * n + n - 1`` for a :class:`DynamicMixingDataset`:
    new mixtures every epoch, the same ones on a rerun. SpeechBrain calls :meth:`set_epoch`.

    Example
    -------
    >>> sampler = DynamicMixingSampler(3)
    >>> sampler.set_epoch(2)
    >>> list(sampler)
    [6, 7, 8]
    """

    def __init__(self, epoch_size: int):
        super().__init__()
        self.epoch_size = epoch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.epoch_size, (self.epoch + 1) * self.epoch_size))

    def __len__(self) -> int:
        return self.epoch_size
