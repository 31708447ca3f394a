"""The download-free demo corpus: synthetic speakers, noise, sound effects and music, then the Echo2Mix pipeline.

:func:`build_demo_corpora` writes stand-ins for the three corpora in their real layouts::

    <root>/LibriSpeech/demo/<speaker>/1/<speaker>-1-<utterance>.flac   espeak-ng speakers (+ .trans.txt)
    <root>/LibriSpeech/voices.json                                     each speaker's voice settings
    <root>/wham_noise/{tr,cv,tt}/noise_<n>.wav                         synthetic noise
    <root>/dnr/{tr,cv,tt}/<clip>/{sfx.wav,music.wav}                    synthetic sound effects and music

and :func:`prepare_demo` runs :func:`~spmamba_sb.data.prepare.prepare_echo2mix` on them, exactly
as on the real corpora. Every speaker is one espeak-ng voice: an English accent, a voice variant,
and its own speaking rate, pitch, pitch range and word gap; each utterance is one or two random
sentences. With ``voice_variety="wide"`` the speakers spread wider and every utterance is made
to sound more like a recording (see :mod:`~spmamba_sb.data.voice_variety`). All of it is
deterministic from the seed, resumes after an interruption, and runs in parallel worker processes.
"""

import json
import logging
import math
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from spmamba_sb.data.audio_io import resample, write_audio_atomic
from spmamba_sb.outputs import PARTIAL_SUFFIX, write_text_atomic
from spmamba_sb.data.backgrounds import BackgroundSynthesizer
from spmamba_sb.data.corpora import SPLITS, Corpora, proportional_counts
from spmamba_sb.data.prepare import mixture_counts, prepare_echo2mix
from spmamba_sb.data.sentences import SentenceGenerator
from spmamba_sb.data.simulation_config import SimulationConfig
from spmamba_sb.data.synth_speech import EspeakSynthesizer
from spmamba_sb.data.voice_variety import profile_ranges, speaker_variety, vary_utterance
from spmamba_sb.data.workers import worker_pool

logger = logging.getLogger(__name__)

#: Default demo sizes in hours: 18 minutes of 4 s mixtures, a few minutes to make on two CPU cores.
DEMO_HOURS = {"train": 0.2, "valid": 0.05, "test": 0.05}
DEMO_DURATION = 4.0
SOURCES_FILE = "demo_sources.json"
_SPLIT_FOLDERS = {"train": "tr", "valid": "cv", "test": "tt"}
_NOISE_SECONDS = 15.0
_CLIP_SECONDS = 30.0
#: Background files per split at least, when there are four times as many of the kind.
_MIN_SPLIT_BACKGROUNDS = 4


def demo_sizes(hours: Dict[str, float], num_speakers: int = 2) -> Dict[str, int]:
    """Source corpus sizes that grow with the requested hours.

    Each utterance is used about three times and each second of noise and music about twice
    (a model that has heard the same few backgrounds over and over keeps unheard ones).

    Arguments
    ---------
    hours : dict
        Hours per split.
    num_speakers : int
        Speakers per mixture.

    Returns
    -------
    dict
        ``{"num_voices", "utterances_per_voice", "num_noise_files", "num_clips"}``.

    Example
    -------
    >>> demo_sizes(DEMO_HOURS)
    {'num_voices': 36, 'utterances_per_voice': 6, 'num_noise_files': 36, 'num_clips': 18}
    """
    total = round(math.fsum(hours.values()), 9)  # the same on every Python version, float artefacts dropped
    num_voices = int(np.clip(round(30 + 20 * total), 30, 1000))
    speech_needed = total * 3600 * num_speakers * 0.8  # seconds of speech in the mixtures
    per_voice = math.ceil(speech_needed / (num_voices * 3.5 * 3))  # ~3.5 s utterances, each used ~3 times
    noise_files = math.ceil(total * 3600 / (2 * _NOISE_SECONDS))  # each second of background used ~twice
    clips = math.ceil(total * 3600 / (2 * _CLIP_SECONDS))
    return {"num_voices": num_voices, "utterances_per_voice": int(np.clip(per_voice, 6, 300)),
            "num_noise_files": int(np.clip(noise_files, 6, 5000)), "num_clips": int(np.clip(clips, 6, 5000))}


def demo_onset_options(duration: float, simulation_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The demo's simulation options: a speaker starts within the first quarter (at most 2 s), unless overridden.

    Example
    -------
    >>> demo_onset_options(4.0), demo_onset_options(4.0, {"max_first_onset": 0.5, "rt60": (0.1, 0.3)})
    ({'max_first_onset': 1.0}, {'max_first_onset': 0.5, 'rt60': (0.1, 0.3)})
    """
    return {"max_first_onset": min(2.0, duration / 4), **(simulation_options or {})}


def voice_profiles(num_voices: int, seed: int, synthesizer: Optional[EspeakSynthesizer] = None,
                   voice_variety: str = "espeak") -> List[Dict[str, Any]]:
    """Distinct synthetic speakers: each a different accent and variant pair (while pairs last) and voice settings.

    Arguments
    ---------
    num_voices : int
        Speakers to make.
    seed : int
        Seed of the draws.
    synthesizer : EspeakSynthesizer, optional
        Lists the accents and variants available.
    voice_variety : str
        ``"espeak"`` or ``"wide"``: the ranges of the settings
        (:data:`~spmamba_sb.data.voice_variety.PROFILE_RANGES`); ``"wide"`` adds each speaker's
        ``"variety"`` (:func:`~spmamba_sb.data.voice_variety.speaker_variety`).

    Returns
    -------
    list of dict
        ``{"speaker", "voice", "variant", "rate", "pitch", "pitch_range", "word_gap"}`` per speaker
        (and ``"variety"``); speaker IDs are ``"1000"``, ``"1001"``, ...

    Example
    -------
    >>> profiles = voice_profiles(3, seed=0)
    >>> [profile["speaker"] for profile in profiles], len({(p["voice"], p["variant"]) for p in profiles})
    (['1000', '1001', '1002'], 3)
    """
    ranges = profile_ranges(voice_variety)
    profiles = []
    for index, (voice, variant) in enumerate(_voice_pairs(synthesizer or EspeakSynthesizer(), num_voices, seed,
                                                          voice_variety)):
        rng = np.random.default_rng([seed, 22, index])
        profile = {"speaker": str(1000 + index), "voice": voice, "variant": variant,
                   **{key: int(rng.integers(low, high + 1)) for key, (low, high) in ranges.items()}}
        if voice_variety != "espeak":
            profile["variety"] = speaker_variety(np.random.default_rng([seed, 25, index]))
        profiles.append(profile)
    return profiles


def _voice_pairs(synthesizer: EspeakSynthesizer, num_voices: int, seed: int,
                 voice_variety: str) -> List[Tuple[str, str]]:
    """Each speaker's accent and variant: distinct pairs in random order while they last.

    ``"wide"`` takes the variants espeak-ng marks female and the others in turn, as recorded
    corpora balance their speakers (about one espeak-ng variant in four is female).
    """
    pairs = [(voice, variant) for voice in synthesizer.voices() for variant in synthesizer.variants()]
    if voice_variety == "espeak":
        groups, orders = [pairs], [np.random.default_rng([seed, 21]).permutation(len(pairs))]
    else:
        female = {variant for variant in synthesizer.variants() if synthesizer.variant_gender(variant) == "female"}
        groups = [group for group in ([pair for pair in pairs if pair[1] in female],
                                      [pair for pair in pairs if pair[1] not in female]) if group]
        orders = [np.random.default_rng([seed, 21, number]).permutation(len(group))
                  for number, group in enumerate(groups)]
    chosen = []
    for index in range(num_voices):
        group, order = groups[index % len(groups)], orders[index % len(groups)]
        chosen.append(group[int(order[index // len(groups) % len(group)])])
    return chosen


def _trim(speech: np.ndarray, sample_rate: int, margin: float = 0.05) -> np.ndarray:
    """Drop leading and trailing near-silence, keeping ``margin`` seconds."""
    loud = np.nonzero(np.abs(speech) > 1e-3 * np.max(np.abs(speech)))[0]
    if loud.size == 0:
        return speech
    keep = int(margin * sample_rate)
    return speech[max(0, loud[0] - keep):loud[-1] + keep + 1]


def _make_speaker(folder: str, profile: Dict[str, Any], num_utterances: int, sample_rate: int, seed: int,
                  index: int) -> None:
    """Synthesise one speaker's utterances (skipping those already written), then the transcript.

    A profile with a ``"variety"`` has each trimmed utterance varied at the synthesizer's rate.
    """
    synthesizer, sentences = EspeakSynthesizer(), SentenceGenerator()
    chapter = Path(folder) / profile["speaker"] / "1"
    chapter.mkdir(parents=True, exist_ok=True)
    lines = []
    for utterance in range(num_utterances):
        name = f"{profile['speaker']}-1-{utterance:04d}"
        text = sentences.utterance(np.random.default_rng([seed, 23, index, utterance]))
        lines.append(f"{name} {text.upper()}\n")
        path = chapter / f"{name}.flac"
        if path.is_file():
            continue
        speech = synthesizer.synthesize(text, voice=profile["voice"], variant=profile["variant"], rate=profile["rate"],
                                        pitch=profile["pitch"], pitch_range=profile["pitch_range"],
                                        word_gap=profile["word_gap"], seed=seed * 100003 + index * 1009 + utterance)
        speech = _trim(speech.astype(np.float64), synthesizer.sample_rate)
        if "variety" in profile:
            speech = vary_utterance(speech, synthesizer.sample_rate, profile["variety"],
                                    np.random.default_rng([seed, 26, index, utterance]))
        speech = resample(speech, synthesizer.sample_rate, sample_rate)
        write_audio_atomic(path, np.clip(speech, -1.0, 1.0), sample_rate, subtype="PCM_16")
    write_text_atomic(chapter / f"{profile['speaker']}-1.trans.txt", "".join(lines))


def _make_backgrounds(paths: List[Tuple[str, str]], duration: float, sample_rate: int, seed: Tuple[int, ...]) -> None:
    """Write ``(kind, path)`` backgrounds not written yet; one random generator for the group."""
    synthesizer = BackgroundSynthesizer(sample_rate)
    for offset, (kind, path) in enumerate(paths):
        if not Path(path).is_file():
            audio = synthesizer.generate(kind, np.random.default_rng([*seed, offset]), duration)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_audio_atomic(path, audio, sample_rate, subtype="PCM_16")


def _resumable_folder(root: str) -> Path:
    """``root`` resolved and created, without the files an interrupted run left half-written."""
    folder = Path(root).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for partial in folder.rglob(f"*{PARTIAL_SUFFIX}"):
        partial.unlink()
    return folder


def _run(tasks: List[Tuple[Any, ...]], num_workers: int, show_progress: bool, description: str) -> None:
    progress = tqdm(total=len(tasks), desc=description, unit="task", disable=not show_progress)
    try:
        if num_workers <= 1:
            for function, *arguments in tasks:
                function(*arguments)
                progress.update(1)
        else:
            with worker_pool(num_workers) as executor:
                for future in as_completed([executor.submit(*task) for task in tasks]):
                    future.result()
                    progress.update(1)
    finally:
        progress.close()


def build_demo_corpora(root: str, hours: Dict[str, float], sample_rate: int = 16000, num_speakers: int = 2,
                       sizes: Optional[Dict[str, int]] = None, seed: int = 0, num_workers: int = 1,
                       show_progress: bool = True, voice_variety: str = "espeak") -> Dict[str, str]:
    """Write the synthetic LibriSpeech, WHAM! and DnR stand-ins (see the module docstring).

    Arguments
    ---------
    root : str
        Folder of the three corpora (created if missing). Rerunning resumes; other settings raise.
    hours : dict
        Hours per split of the dataset to be made from them; sizes the corpora and shares the
        background files between ``tr``/``cv``/``tt``.
    sample_rate : int
        Sample rate of the files.
    num_speakers : int
        Speakers per mixture.
    sizes : dict, optional
        Overrides of :func:`demo_sizes` (any of its keys).
    seed : int
        Seed.
    num_workers : int
        Worker processes; 0 or 1 runs in this process.
    show_progress : bool
        Show a tqdm progress bar.
    voice_variety : str
        ``"espeak"`` (espeak-ng's voices as they are) or ``"wide"`` (wider spread, formant shifts and
        recording-like variation; see :mod:`~spmamba_sb.data.voice_variety`).

    Returns
    -------
    dict
        ``{"librispeech": ..., "noise": ..., "sfx": ..., "music": ...}`` folders.

    Raises
    ------
    ValueError
        On unknown size keys, an unknown voice variety, or a folder made with other settings.

    Example
    -------
    >>> sizes = {"num_voices": 2, "utterances_per_voice": 1, "num_noise_files": 3, "num_clips": 3}
    >>> folders = build_demo_corpora(str(getfixture("tmp_path")), {"train": 0.1, "valid": 0.1, "test": 0.1},
    ...                              sample_rate=8000, sizes=sizes, show_progress=False)
    >>> sorted(Path(folders["librispeech"], "demo").iterdir())[0].name, Path(folders["sfx"]).name
    ('1000', 'dnr')
    """
    profile_ranges(voice_variety)  # checks the name before any work
    chosen = demo_sizes(hours, num_speakers)
    unknown = sorted(set(sizes or {}) - set(chosen))
    if unknown:
        raise ValueError(f"sizes has unknown keys {unknown}; expected some of {sorted(chosen)}")
    chosen.update({key: int(value) for key, value in (sizes or {}).items() if value is not None})
    for key, value in chosen.items():
        if value < 1:
            raise ValueError(f"{key}={value} must be at least 1")
    folder = _resumable_folder(root)
    settings = {"sizes": chosen, "sample_rate": int(sample_rate), "seed": int(seed),
                "hours": {split: float(hours.get(split, 0.0)) for split in SPLITS}}
    if voice_variety != "espeak":  # a default corpus's marker stays as it always was
        settings["voice_variety"] = voice_variety
    marker = folder / SOURCES_FILE
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) != settings:
        raise ValueError(f"demo source folder '{folder}' was made with other settings; use another folder or "
                         f"delete it")
    write_text_atomic(marker, json.dumps(settings, indent=1, sort_keys=True))
    folders = {"librispeech": str(folder / "LibriSpeech"), "noise": str(folder / "wham_noise"),
               "sfx": str(folder / "dnr"), "music": str(folder / "dnr")}
    speech_folder = folder / "LibriSpeech" / "demo"
    speech_folder.mkdir(parents=True, exist_ok=True)
    profiles = voice_profiles(chosen["num_voices"], seed, voice_variety=voice_variety)
    write_text_atomic(folder / "LibriSpeech" / "voices.json", json.dumps(profiles, indent=1))
    tasks: List[Tuple[Any, ...]] = [(_make_speaker, str(speech_folder), profile, chosen["utterances_per_voice"],
                                     sample_rate, seed, index) for index, profile in enumerate(profiles)]
    tasks += _background_tasks(folder, hours, chosen["num_noise_files"], chosen["num_clips"], sample_rate, seed)
    _run(tasks, num_workers, show_progress, "demo sources")
    return folders


def _background_tasks(folder: Path, hours: Dict[str, float], num_noise_files: int, num_clips: int,
                      sample_rate: int, seed: int) -> List[Tuple[Any, ...]]:
    """The tasks writing the WHAM! stand-in's noise files and the DnR stand-in's clips under
    ``folder``, shared between the split folders in proportion to ``hours`` (a few in every split)."""
    tasks: List[Tuple[Any, ...]] = []
    weights = [float(hours.get(split, 0.0)) for split in SPLITS]
    for kind_index, (key, count) in enumerate((("noise", num_noise_files), ("dnr", num_clips))):
        minimum = max(1, min(_MIN_SPLIT_BACKGROUNDS, count // 4))
        per_split = proportional_counts(count, [max(weight, 1e-9) for weight in weights], minimum)
        for split, split_count in zip(SPLITS, per_split):
            subfolder = folder / ("wham_noise" if key == "noise" else "dnr") / _SPLIT_FOLDERS[split]
            for number in range(split_count):
                if key == "noise":
                    paths = [("noise", str(subfolder / f"noise_{number:05d}.wav"))]
                    duration = _NOISE_SECONDS
                else:
                    clip = subfolder / f"clip_{number:05d}"
                    paths = [("sfx", str(clip / "sfx.wav")), ("music", str(clip / "music.wav"))]
                    duration = _CLIP_SECONDS
                tasks.append((_make_backgrounds, paths, duration, sample_rate,
                              (seed, 24, kind_index, SPLITS.index(split), number)))
    return tasks


def build_demo_backgrounds(root: str, hours: Dict[str, float], sample_rate: int = 16000, seed: int = 0,
                           num_workers: int = 1, show_progress: bool = True) -> Dict[str, str]:
    """Write only the demo's synthetic backgrounds, as :func:`build_demo_corpora` writes them for
    the same hours and seed: noise files in ``<root>/wham_noise``, sound-effect and music clips in
    ``<root>/dnr``. Rerunning resumes.

    Arguments
    ---------
    root : str
        Folder of the two corpora (created if missing).
    hours : dict
        Hours per split of the dataset to be made from them (sizes them: :func:`demo_sizes`).
    sample_rate : int
        Sample rate of the files.
    seed : int
        Seed.
    num_workers : int
        Worker processes; 0 or 1 runs in this process.
    show_progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``{"noise": ..., "sfx": ..., "music": ...}`` folders.

    Example
    -------
    >>> folders = build_demo_backgrounds(str(getfixture("tmp_path")), {"train": 0.0, "valid": 0.0, "test": 0.01},
    ...                                  sample_rate=8000, show_progress=False)
    >>> len(list(Path(folders["noise"], "tt").iterdir())), len(list(Path(folders["sfx"], "tt").iterdir()))
    (4, 4)
    """
    sizes = demo_sizes(hours)
    folder = _resumable_folder(root)
    _run(_background_tasks(folder, hours, sizes["num_noise_files"], sizes["num_clips"], sample_rate, seed),
         num_workers, show_progress, "backgrounds")
    return {"noise": str(folder / "wham_noise"), "sfx": str(folder / "dnr"), "music": str(folder / "dnr")}


def prepare_demo(output: str, hours: Optional[Dict[str, float]] = None, duration: float = DEMO_DURATION,
                 sample_rate: int = 16000, num_speakers: int = 2, num_channels: int = 1,
                 sizes: Optional[Dict[str, int]] = None, seed: int = 0, num_workers: int = 1,
                 show_progress: bool = True, simulation_options: Optional[Dict[str, Any]] = None,
                 csv_paths: str = "absolute", voice_variety: str = "espeak") -> Dict[str, Any]:
    """Build the demo source corpora in ``<output>/sources`` and the demo dataset in ``<output>``.

    Arguments
    ---------
    output : str
        Dataset folder; the layout is that of :mod:`~spmamba_sb.data.prepare`, plus ``sources/``.
    hours : dict, optional
        Hours per split (default ``DEMO_HOURS``: 0.2 / 0.05 / 0.05); tens of hours work too.
    duration : float
        Mixture length in seconds.
    sample_rate : int
        Sample rate in Hz.
    num_speakers : int
        Speakers per mixture.
    num_channels : int
        Microphones.
    sizes : dict, optional
        Source corpus sizes (see :func:`demo_sizes`).
    seed : int
        Seed of both the sources and the mixtures.
    num_workers : int
        Worker processes.
    show_progress : bool
        Show tqdm progress bars.
    simulation_options : dict, optional
        Any other :class:`~spmamba_sb.data.simulation_config.SimulationConfig` settings.
    csv_paths : str
        ``"absolute"`` or ``"data_root"`` (see :func:`~spmamba_sb.data.prepare.write_csv`).
    voice_variety : str
        ``"espeak"`` or ``"wide"`` (see :func:`build_demo_corpora`).

    Returns
    -------
    dict
        As :func:`~spmamba_sb.data.prepare.prepare_echo2mix` returns.

    Example
    -------
    >>> sizes = {"num_voices": 2, "utterances_per_voice": 1, "num_noise_files": 3, "num_clips": 3}
    >>> hours = {"train": 1.5 / 3600, "valid": 0.0, "test": 0.0}
    >>> fast_rooms = {"rt60": (0.15, 0.2), "room_max": (4.0, 4.0, 3.0), "num_rays": 300}
    >>> result = prepare_demo(str(getfixture("tmp_path")), hours=hours, duration=1.5, sample_rate=8000,
    ...                       sizes=sizes, show_progress=False, simulation_options=fast_rooms)
    >>> result["num_mixtures"]
    {'train': 1, 'valid': 0, 'test': 0}
    """
    hours = dict(DEMO_HOURS if hours is None else hours)
    config = SimulationConfig(sample_rate=sample_rate, duration=duration, num_speakers=num_speakers,
                              num_channels=num_channels, **demo_onset_options(duration, simulation_options))
    mixture_counts(hours, config.duration)  # check the sizes before any work
    folders = build_demo_corpora(str(Path(output) / "sources"), hours, sample_rate=sample_rate,
                                 num_speakers=num_speakers, sizes=sizes, seed=seed, num_workers=num_workers,
                                 show_progress=show_progress, voice_variety=voice_variety)
    extra_settings = {"demo": True, **({} if voice_variety == "espeak" else {"voice_variety": voice_variety})}
    corpora = Corpora.from_folders(folders["librispeech"], folders["noise"], folders["sfx"], folders["music"])
    return prepare_echo2mix(output, corpora, config, hours=hours, seed=seed, num_workers=num_workers,
                            show_progress=show_progress, extra_settings=extra_settings, csv_paths=csv_paths)
