"""Tracks: audio files placed one after another on a timeline, never overlapping each other.

A track is a list of segments, each a JSON-ready dict:
``{"file": path, "file_start": sample, "start": sample, "length": samples, "fade_in": samples,
"fade_out": samples}``; sample indices count at the mixture's sample rate, after any resampling of the
file. :func:`draw_segments` decides the segments, :func:`render_segments` turns them into audio.
"""

import logging
from typing import Callable, Dict, List, Sequence, Set, Tuple

import numpy as np

from spmamba_sb.data.audio_io import UnreadableAudioError

logger = logging.getLogger(__name__)

Loader = Callable[[str], np.ndarray]


class NoReadableFilesError(Exception):
    """Raised by :func:`draw_segments` when every candidate file is unreadable.

    Example
    -------
    >>> str(NoReadableFilesError("no readable files"))
    'no readable files'
    """


def _half_cosine(length: int) -> np.ndarray:
    """Rising raised-cosine ramp of ``length`` samples, strictly between 0 and 1."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)


def draw_segments(rng: np.random.Generator, files: Sequence[str], num_samples: int, sample_rate: int,
                  load: Loader, gap: Tuple[float, float], max_first_onset: float, fade: float,
                  random_start: bool, fade_every_segment: bool, skipped: Set[str]) -> List[Dict[str, int]]:
    """Fill a track of ``num_samples`` with files drawn at random (all of them before any repeats).

    The first file starts at a uniform time in ``[0, max_first_onset]``; each next one starts a
    uniform ``gap`` after the previous one ends, so segments never overlap. The file that crosses
    the end is cut there, with a fade-out.

    Arguments
    ---------
    rng : np.random.Generator
        Source of every random choice.
    files : sequence of str
        Candidate files.
    num_samples : int
        Track length.
    sample_rate : int
        Sample rate, to turn seconds into samples.
    load : callable
        ``path -> [L] float array`` at ``sample_rate``; raises ``UnreadableAudioError`` for bad files.
    gap : tuple of float
        Range of the silence between segments, in seconds.
    max_first_onset : float
        Latest start of the first segment, in seconds.
    fade : float
        Fade length in seconds, applied where a file is cut.
    random_start : bool
        If a file is longer than the time left, start it at a random point (backgrounds) instead of
        at its beginning (utterances keep their natural onsets).
    fade_every_segment : bool
        Also fade the natural start and end of every file (backgrounds, so files join without clicks).
    skipped : set of str
        Unreadable files are added here and another file is drawn.

    Returns
    -------
    list of dict
        The segments, in time order.

    Raises
    ------
    NoReadableFilesError
        If no candidate file can be read.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> segments = draw_segments(rng, ["a"], 100, 10, lambda path: np.ones(30), gap=(1.0, 1.0),
    ...                          max_first_onset=0.0, fade=0.0, random_start=False,
    ...                          fade_every_segment=False, skipped=set())
    >>> [(segment["start"], segment["length"]) for segment in segments]
    [(0, 30), (40, 30), (80, 20)]
    """
    if not files:
        raise NoReadableFilesError("no candidate files")
    fade_samples = int(round(fade * sample_rate))
    segments: List[Dict[str, int]] = []
    position = int(round(rng.uniform(0.0, max_first_onset) * sample_rate))
    queue: List[str] = []
    while position < num_samples:
        if not queue:
            if all(path in skipped for path in files):
                raise NoReadableFilesError(f"none of the {len(files)} candidate files is readable "
                                           f"(for example '{files[0]}')")
            queue = [files[index] for index in rng.permutation(len(files))]
        path = queue.pop(0)
        if path in skipped:
            continue
        try:
            audio = load(path)
        except UnreadableAudioError as error:
            logger.warning("skipping %s", error)
            skipped.add(path)
            continue
        remaining = num_samples - position
        file_start = 0
        if random_start and audio.shape[0] > remaining:
            file_start = int(rng.integers(0, audio.shape[0] - remaining + 1))
        length = min(audio.shape[0] - file_start, remaining)
        cut_start, cut_end = file_start > 0, file_start + length < audio.shape[0]
        ramp = min(fade_samples, length // 2)
        segments.append({"file": path, "file_start": file_start, "start": position, "length": length,
                         "fade_in": ramp if (cut_start or fade_every_segment) else 0,
                         "fade_out": ramp if (cut_end or fade_every_segment) else 0})
        position += length + int(round(rng.uniform(*gap) * sample_rate))
    return segments


def render_segments(segments: Sequence[Dict[str, int]], num_samples: int, load: Loader) -> np.ndarray:
    """Audio of a track: each segment's samples, faded, at its place.

    Arguments
    ---------
    segments : sequence of dict
        As returned by :func:`draw_segments`.
    num_samples : int
        Track length L.
    load : callable
        ``path -> [L'] float array``, the same loader the segments were drawn with.

    Returns
    -------
    np.ndarray
        [L], float64.

    Example
    -------
    >>> segment = {"file": "a", "file_start": 2, "start": 1, "length": 3, "fade_in": 0, "fade_out": 0}
    >>> render_segments([segment], 5, lambda path: np.arange(6.0)).tolist()
    [0.0, 2.0, 3.0, 4.0, 0.0]
    """
    track = np.zeros(num_samples, dtype=np.float64)
    for segment in segments:
        start, length, file_start = segment["start"], segment["length"], segment["file_start"]
        piece = np.array(load(segment["file"])[file_start:file_start + length], dtype=np.float64)
        if piece.shape[0] != length:
            raise ValueError(f"file '{segment['file']}' has {piece.shape[0]} samples from {file_start}, "
                             f"the segment needs {length}; was it changed since the mixture was made?")
        if segment["fade_in"]:
            piece[:segment["fade_in"]] *= _half_cosine(segment["fade_in"])
        if segment["fade_out"]:
            piece[length - segment["fade_out"]:] *= _half_cosine(segment["fade_out"])[::-1]
        track[start:start + length] += piece
    return track
