"""A test set of recorded human speech: the demo's two-speaker mixtures, with real voices.

The demo corpus trains and tests on espeak-ng voices. This set keeps everything of the clean demo
test split (``spmamba-prepare-demo --preset clean``: mixtures of 4 s, two speakers, each in a
mildly reverberant simulated room, no noise, effects or music) except the voices, which come from
a folder of recordings; a model's SI-SNRi on it beside its SI-SNRi on the espeak-ng test split
measures the gap between synthetic and recorded speech. With backgrounds it keeps everything of
the default, noisy demo instead (its rooms, and its synthetic noise, effects and music, written to
``<output>/sources/backgrounds``). Recorded speakers are never in the demo's training data, and
all of them go to the test split (the set has no training or validation part).

:func:`arrange_recordings` writes every utterance of the folder, as mono PCM at the dataset's
sample rate with leading and trailing silence trimmed, in the LibriSpeech layout::

    <output>/sources/LibriSpeech/real/<speaker>/1/<speaker>-1-<utterance>.flac
    <output>/sources/real_sources.json     the settings, and each speaker's recordings in order

and :func:`prepare_real_speech` runs :func:`~spmamba_sb.data.prepare.prepare_echo2mix` on them,
which writes ``<output>/test.csv`` and the mixtures (empty ``train.csv`` and ``valid.csv`` too).
Rerunning the same command resumes; any other existing content of the output folder is refused.
"""

import json
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from spmamba_sb.data.audio_io import AUDIO_EXTENSIONS, UnreadableAudioError, read_audio, write_audio_atomic
from spmamba_sb.data.corpora import SPLITS, Corpora, partition_speakers, scan_librispeech
from spmamba_sb.data.demo_corpus import DEMO_DURATION, build_demo_backgrounds, demo_onset_options
from spmamba_sb.data.loudness import frames_of
from spmamba_sb.data.prepare import mixture_counts, prepare_echo2mix
from spmamba_sb.data.simulation_config import BACKGROUND_KINDS, SimulationConfig
from spmamba_sb.data.workers import worker_pool
from spmamba_sb.outputs import PARTIAL_SUFFIX, write_text_atomic

#: Folder layouts of ``source`` that :func:`scan_recordings` reads.
SOURCE_LAYOUTS = {
    "librispeech": "LibriSpeech files <speaker>-<chapter>-<utterance>.flac anywhere below the folder",
    "speaker-folders": "one folder per speaker, <speaker>/**/*" + "|*".join(AUDIO_EXTENSIONS),
}
SOURCES_FILE = "real_sources.json"
#: Trimming keeps the frames within this many dB of the loudest 20 ms frame, plus a margin of 0.1 s.
_TRIM_DECIBELS = 40.0
_TRIM_FRAME_SECONDS = 0.02
_TRIM_MARGIN_SECONDS = 0.1


def scan_recordings(source: str, layout: str) -> Dict[str, List[str]]:
    """List each speaker's recordings in a folder.

    Arguments
    ---------
    source : str
        Folder of recordings.
    layout : str
        A key of ``SOURCE_LAYOUTS``: ``"librispeech"`` (the speaker is the file name's first
        number) or ``"speaker-folders"`` (the speaker is the first folder below ``source``; its
        audio files at any depth below it).

    Returns
    -------
    dict
        Speaker name -> sorted absolute paths, speakers sorted.

    Raises
    ------
    ValueError
        If the layout is unknown, the folder is missing or empty, or it holds no recordings in the layout.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "anna" / "day1").mkdir(parents=True)
    >>> (root / "anna" / "day1" / "a.wav").touch()
    >>> {speaker: len(files) for speaker, files in scan_recordings(str(root), "speaker-folders").items()}
    {'anna': 1}
    """
    if layout not in SOURCE_LAYOUTS:
        raise ValueError(f"layout={layout!r} must be one of {sorted(SOURCE_LAYOUTS)}")
    folder = Path(source).expanduser()
    if not folder.is_dir() or not any(folder.iterdir()):
        state = "is empty" if folder.is_dir() else "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"source folder '{source}' {state}; expected {SOURCE_LAYOUTS[layout]}")
    if layout == "librispeech":
        return scan_librispeech(str(folder))
    speakers = {}
    for speaker_folder in sorted(path for path in folder.resolve().iterdir() if path.is_dir()):
        files = sorted(str(path) for path in speaker_folder.rglob("*")
                       if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS)
        if files:
            speakers[speaker_folder.name] = files
    if not speakers:
        raise ValueError(f"source folder '{source}' holds no speaker folder with audio files; "
                         f"expected {SOURCE_LAYOUTS[layout]}")
    return speakers


def speaker_ids(names: List[str]) -> Dict[str, str]:
    """LibriSpeech speaker IDs (digits) for speaker names: kept if all are digits, else 1, 2, ... in sorted order.

    Example
    -------
    >>> speaker_ids(["19", "103"]), speaker_ids(["bob", "anna"])
    ({'103': '103', '19': '19'}, {'anna': '1', 'bob': '2'})
    """
    ordered = sorted(names)
    if all(name.isdigit() for name in ordered):
        return {name: name for name in ordered}
    return {name: str(index + 1) for index, name in enumerate(ordered)}


def trim_silence(speech: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading and trailing silence: keep from the first to the last loud 20 ms frame, plus 0.1 s each side.

    A frame is loud when its RMS is within 40 dB of the loudest frame's.

    Arguments
    ---------
    speech : np.ndarray
        [L] samples.
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    np.ndarray
        [L'] with L' <= L.

    Raises
    ------
    ValueError
        If every sample is zero.

    Example
    -------
    >>> speech = np.concatenate([np.zeros(8000), np.ones(800), np.zeros(8000)])
    >>> trim_silence(speech, 8000).shape
    (2400,)
    """
    frames = frames_of(speech, sample_rate, _TRIM_FRAME_SECONDS)  # [T, frame]
    frame = frames.shape[1]
    energy = np.mean(frames ** 2, axis=1)  # [T]
    if not energy.max() > 0:
        raise ValueError("holds only silence")
    loud = np.nonzero(energy >= energy.max() * 10 ** (-_TRIM_DECIBELS / 10))[0]
    margin = int(_TRIM_MARGIN_SECONDS * sample_rate)
    return speech[max(0, loud[0] * frame - margin):(loud[-1] + 1) * frame + margin]


def _arrange_speaker(folder: str, speaker: str, files: List[str], sample_rate: int) -> float:
    """Write one speaker's utterances not written yet; returns their total length in seconds."""
    chapter = Path(folder) / speaker / "1"
    chapter.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for number, recording in enumerate(files):
        path = chapter / f"{speaker}-1-{number:04d}.flac"
        if not path.is_file():
            try:
                speech = trim_silence(read_audio(recording, sample_rate), sample_rate)
            except (UnreadableAudioError, ValueError) as error:
                detail = str(error).replace(f"{recording}: ", "")
                raise ValueError(f"source recording '{recording}' {detail}; remove it from the folder") from error
            write_audio_atomic(path, np.clip(speech, -1.0, 1.0), sample_rate, subtype="PCM_16")
        seconds += sf.info(str(path)).duration
    return seconds


def arrange_recordings(output: str, source: str, layout: str, sample_rate: int, num_speakers: int = 2,
                       num_workers: int = 1, show_progress: bool = True) -> Dict[str, Any]:
    """Write the recordings of ``source`` as LibriSpeech speakers in ``<output>/sources`` (see the module docstring).

    Arguments
    ---------
    output : str
        Dataset folder: new, empty, or made by the same call (which then resumes).
    source : str
        Folder of recordings.
    layout : str
        A key of ``SOURCE_LAYOUTS``.
    sample_rate : int
        Sample rate of the written utterances.
    num_speakers : int
        Speakers per mixture: the folder must hold at least this many.
    num_workers : int
        Worker processes; 0 or 1 runs in this process.
    show_progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``{"librispeech": folder, "speakers": n, "utterances": n, "minutes": total}``.

    Raises
    ------
    ValueError
        On a bad folder or layout, too few speakers, an unreadable or silent recording, or an
        output folder that holds something else.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for speaker in ("anna", "bob"):
    ...     (root / "voices" / speaker).mkdir(parents=True)
    ...     write_audio_atomic(root / "voices" / speaker / "a.wav", np.ones(4000) * 0.1, 8000)
    >>> result = arrange_recordings(str(root / "set"), str(root / "voices"), "speaker-folders", 8000,
    ...                             show_progress=False)
    >>> result["speakers"], result["utterances"], sorted(Path(result["librispeech"], "real").iterdir())[0].name
    (2, 2, '1')
    """
    recordings = scan_recordings(source, layout)
    if len(recordings) < num_speakers:
        raise ValueError(f"source folder '{source}' holds {len(recordings)} speaker(s) ({', '.join(recordings)}); "
                         f"mixtures of {num_speakers} speakers need at least {num_speakers}")
    identifiers = speaker_ids(list(recordings))
    speakers = {identifiers[name]: {"name": name, "recordings": files} for name, files in recordings.items()}
    settings = {"source": str(Path(source).resolve()), "layout": layout, "sample_rate": int(sample_rate),
                "speakers": speakers}
    root = Path(output).resolve()
    marker = root / "sources" / SOURCES_FILE
    if marker.is_file():
        if json.loads(marker.read_text(encoding="utf-8")) != settings:
            raise ValueError(f"output folder '{output}' holds a recorded-speech set made from other recordings or "
                             f"settings; use a new output folder, or delete this one to start over")
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"output folder '{output}' is not empty and holds no recorded-speech set; use a new or "
                         f"empty folder")
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json.dumps(settings, indent=1))
    for partial in marker.parent.rglob(f"*{PARTIAL_SUFFIX}"):  # half-written by an interrupted run
        partial.unlink()
    folder = marker.parent / "LibriSpeech" / "real"
    tasks = [(str(folder), speaker, entry["recordings"], int(sample_rate)) for speaker, entry in speakers.items()]
    seconds = _run(tasks, num_workers, show_progress)
    return {"librispeech": str(folder.parent), "speakers": len(speakers),
            "utterances": sum(len(entry["recordings"]) for entry in speakers.values()), "minutes": seconds / 60}


def _run(tasks: List[Tuple[Any, ...]], num_workers: int, show_progress: bool) -> float:
    progress = tqdm(total=len(tasks), desc="recorded speakers", unit="speaker", disable=not show_progress)
    seconds = 0.0
    try:
        if num_workers <= 1:
            for task in tasks:
                seconds += _arrange_speaker(*task)
                progress.update(1)
        else:
            with worker_pool(num_workers) as executor:
                for future in as_completed([executor.submit(_arrange_speaker, *task) for task in tasks]):
                    seconds += future.result()
                    progress.update(1)
    finally:
        progress.close()
    return seconds


class _SpeechOnlyCorpora(Corpora):
    """Speakers without background files: every split's background lists stay empty."""

    def assign_splits(self, hours: Dict[str, float], num_speakers: int, seed: int) -> Dict[str, Dict]:
        parts = partition_speakers(list(self.speakers), hours, num_speakers, seed)
        return {split: {"speakers": {speaker: self.speakers[speaker] for speaker in parts[split]},
                        **{kind: [] for kind in BACKGROUND_KINDS}} for split in SPLITS}


def prepare_real_speech(output: str, source: str, layout: str = "librispeech", num_mixtures: int = 200,
                        duration: float = DEMO_DURATION, sample_rate: int = 16000, num_speakers: int = 2,
                        seed: int = 0, num_workers: int = 1, show_progress: bool = True,
                        simulation_options: Optional[Dict[str, Any]] = None,
                        csv_paths: str = "absolute") -> Dict[str, Any]:
    """Build the recorded-speech test set in ``output`` from the recordings in ``source``.

    Arguments
    ---------
    output : str
        Dataset folder: new, empty, or made by the same call (which then resumes).
    source : str
        Folder of recordings (see :func:`scan_recordings`).
    layout : str
        A key of ``SOURCE_LAYOUTS``.
    num_mixtures : int
        Test mixtures to make.
    duration : float
        Mixture length in seconds (the demo's: 4).
    sample_rate : int
        Sample rate in Hz.
    num_speakers : int
        Speakers per mixture.
    seed : int
        Seed of the mixtures.
    num_workers : int
        Worker processes.
    show_progress : bool
        Show tqdm progress bars.
    simulation_options : dict, optional
        Other :class:`~spmamba_sb.data.simulation_config.SimulationConfig` settings; the clean demo's
        are ``rt60=(0.1, 0.3)``. Without ``backgrounds`` the set holds speech only; with them
        (the noisy demo's: ``("noise", "sfx", "music")``), the demo's synthetic backgrounds for
        these mixtures are written to ``<output>/sources/backgrounds`` and mixed in as the demo
        mixes them.
    csv_paths : str
        ``"absolute"`` or ``"data_root"`` (see :func:`~spmamba_sb.data.prepare.write_csv`).

    Returns
    -------
    dict
        As :func:`~spmamba_sb.data.prepare.prepare_echo2mix` returns, plus ``"sources"``: what
        :func:`arrange_recordings` returns.

    Raises
    ------
    ValueError
        On bad sizes or settings, and as :func:`arrange_recordings` raises.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for speaker in ("anna", "bob"):
    ...     (root / "voices" / speaker).mkdir(parents=True)
    ...     write_audio_atomic(root / "voices" / speaker / "a.wav", np.sin(np.arange(12000) / 5) * 0.1, 8000)
    >>> fast_rooms = {"rt60": (0.15, 0.2), "room_max": (4.0, 4.0, 3.0), "num_rays": 300}
    >>> result = prepare_real_speech(str(root / "set"), str(root / "voices"), "speaker-folders", num_mixtures=1,
    ...                              duration=1.5, sample_rate=8000, show_progress=False,
    ...                              simulation_options=fast_rooms)
    >>> result["num_mixtures"]
    {'train': 0, 'valid': 0, 'test': 1}
    """
    options = demo_onset_options(duration, simulation_options)
    config = SimulationConfig(sample_rate=sample_rate, duration=duration, num_speakers=num_speakers,
                              **{**options, "backgrounds": tuple(options.get("backgrounds") or ())})
    if not isinstance(num_mixtures, int) or num_mixtures < 1:
        raise ValueError(f"num_mixtures={num_mixtures!r} must be a positive integer")
    hours = {"train": 0.0, "valid": 0.0, "test": num_mixtures * config.duration / 3600}
    mixture_counts(hours, config.duration)  # check the sizes before any work
    sources = arrange_recordings(output, source, layout, sample_rate, num_speakers=num_speakers,
                                 num_workers=num_workers, show_progress=show_progress)
    if config.backgrounds:
        backgrounds = build_demo_backgrounds(str(Path(output).resolve() / "sources" / "backgrounds"), hours,
                                             sample_rate=sample_rate, seed=seed, num_workers=num_workers,
                                             show_progress=show_progress)
        corpora = Corpora.from_folders(sources["librispeech"], backgrounds["noise"], backgrounds["sfx"],
                                       backgrounds["music"])
        corpora.folders["recordings"] = str(Path(source).resolve())
    else:
        corpora = _SpeechOnlyCorpora(speakers=scan_librispeech(sources["librispeech"]),
                                     backgrounds={kind: {split: [] for split in (*SPLITS, "unsplit")}
                                                  for kind in BACKGROUND_KINDS},
                                     folders={"recordings": str(Path(source).resolve()),
                                              "librispeech": sources["librispeech"]})
    result = prepare_echo2mix(output, corpora, config, hours=hours, seed=seed, num_workers=num_workers,
                              show_progress=show_progress, extra_settings={"real_speech": layout},
                              csv_paths=csv_paths)
    return {**result, "sources": sources}
