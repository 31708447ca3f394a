"""Commands ``spmamba-prepare-echo2mix`` (real corpora), ``spmamba-prepare-demo`` (no download) and
``spmamba-prepare-real`` (a test set of recorded speech).

All three report through ``logging`` and show tqdm progress bars; bad input ends with exit status 2 and
a one-line message naming the argument or folder; so does a missing ``data`` extra
(``pip install "spmamba-sb[data]"``: pyroomacoustics, pyloudnorm, espeakng-loader). Ctrl-C
ends with the line ``<command>: interrupted`` and exit status 130 once the files in progress are
written whole; rerunning the command resumes.
"""

import argparse
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

from spmamba_sb.console import command
from spmamba_sb.data.corpora import Corpora
from spmamba_sb.data.demo_corpus import DEMO_DURATION, DEMO_HOURS, prepare_demo
from spmamba_sb.data.extras import DATA_MODULES, import_data_extra
from spmamba_sb.data.prepare import CSV_PATH_STYLES, PAPER_HOURS, prepare_echo2mix
from spmamba_sb.data.real_speech import SOURCE_LAYOUTS, prepare_real_speech
from spmamba_sb.data.simulation_config import AUDIO_SUBTYPES, BACKGROUND_KINDS, SimulationConfig
from spmamba_sb.data.voice_variety import VOICE_VARIETIES

logger = logging.getLogger(__name__)

#: Settings of ``spmamba-prepare-demo --preset``, as parsed arguments.
DEMO_PRESETS = {"clean": {"backgrounds": ["none"], "rt60": [0.1, 0.3]}}
#: spmamba-prepare-real --preset: the settings of the demo mixtures whose voices it replaces.
REAL_PRESETS = {"clean": DEMO_PRESETS["clean"], "noisy": {"backgrounds": list(BACKGROUND_KINDS), "rt60": None}}


def _add_common_arguments(parser: argparse.ArgumentParser, hours: Dict[str, float], duration: float) -> None:
    parser.add_argument("--out", required=True, help="output folder (rerun on it to resume)")
    for split in ("train", "valid", "test"):
        parser.add_argument(f"--hours-{split}", type=float, default=hours[split],
                            help=f"hours of {split} mixtures (default {hours[split]:g})")
    parser.add_argument("--duration", type=float, default=duration, help=f"mixture length in s (default {duration:g})")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    parser.add_argument("--num-speakers", type=int, default=2, help="speakers per mixture (default 2)")
    parser.add_argument("--num-channels", type=int, default=1,
                        help="microphones; more than 1 writes multi-channel wavs (default 1)")
    parser.add_argument("--rt60", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="reverberation time range in s (default 0.2 0.8)")
    parser.add_argument("--backgrounds", nargs="+", choices=[*BACKGROUND_KINDS, "none"],
                        help="background classes in every mixture (default: noise sfx music); none: clean speech")
    parser.add_argument("--audio-subtype", choices=AUDIO_SUBTYPES, default="FLOAT",
                        help="wav sample format (default FLOAT: exact sums; PCM_16 halves the size)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="any other simulation setting, VALUE in JSON, e.g. --option 'room_max=[6,5,3]' "
                             f"(settings: {', '.join(field.name for field in dataclasses.fields(SimulationConfig))})")
    _add_run_arguments(parser)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv-paths", choices=CSV_PATH_STYLES, default="absolute",
                        help="paths in the CSVs: absolute (default), or data_root: $data_root/..., filled in by "
                             "SpeechBrain with the data folder, so the dataset can be moved")
    parser.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    parser.add_argument("--num-workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _simulation_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Dict[str, Any]:
    known = {field.name for field in dataclasses.fields(SimulationConfig)}
    options: Dict[str, Any] = {}
    for item in args.option:
        key, separator, value = item.partition("=")
        if not separator or key not in known:
            parser.error(f"--option {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.rt60 is not None:
        options["rt60"] = tuple(args.rt60)
    if args.backgrounds is not None:
        if "none" in args.backgrounds and len(args.backgrounds) > 1:
            parser.error("--backgrounds none cannot be combined with background classes")
        options["backgrounds"] = tuple(kind for kind in args.backgrounds if kind != "none")
    options["audio_subtype"] = args.audio_subtype
    return options


def _require_data_extra(parser: argparse.ArgumentParser) -> None:
    try:
        for name in DATA_MODULES:
            import_data_extra(name, parser.prog)
    except ImportError as error:
        parser.exit(2, f"{error}\n")


def _hours(args: argparse.Namespace) -> Dict[str, float]:
    return {"train": args.hours_train, "valid": args.hours_valid, "test": args.hours_test}


def _report(result: Dict[str, Any], started: float) -> None:
    logger.info("made %d mixtures in %.1f s; %s", result["made"], time.time() - started,
                ", ".join(f"{split}: {count}" for split, count in result["num_mixtures"].items()))
    for split, path in result["csv"].items():
        logger.info("%s CSV: %s", split, path)


@command("spmamba-prepare-echo2mix")
def echo2mix_main(argv: Optional[List[str]] = None) -> int:
    """Build the paper's noisy, reverberant LibriSpeech mixtures from LibriSpeech, WHAM! and DnR folders.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status 0 (argument and input errors, and a missing data extra, exit with status 2).

    Example
    -------
    >>> try:
    ...     echo2mix_main(["--librispeech", "LibriSpeech", "--wham", "no_such_folder", "--dnr", "dnr",
    ...                    "--out", "echo2mix"])
    ... except SystemExit as exit:
    ...     print("exit status", exit.code)
    exit status 2
    """
    parser = argparse.ArgumentParser(prog="spmamba-prepare-echo2mix", description=echo2mix_main.__doc__.split("\n\n")[0])
    parser.add_argument("--librispeech", required=True, help="LibriSpeech folder (any subsets, flac)")
    parser.add_argument("--librispeech-subsets", nargs="+", metavar="SUBSET",
                        help="use only these subsets, e.g. train-clean-100 train-clean-360")
    parser.add_argument("--wham", required=True, help="WHAM! noise folder (wham_noise, with tr/ cv/ tt/)")
    parser.add_argument("--dnr", help="DnR folder: sound effects (sfx.wav) and music (music.wav) from its clips")
    parser.add_argument("--sfx", help="sound-effects folder (default: --dnr)")
    parser.add_argument("--music", help="music folder (default: --dnr)")
    _add_common_arguments(parser, PAPER_HOURS, 60.0)
    args = parser.parse_args(argv)
    _require_data_extra(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sfx, music = args.sfx or args.dnr, args.music or args.dnr
    if sfx is None or music is None:
        parser.error("give --dnr (the DnR folder), or both --sfx and --music")
    started = time.time()
    try:
        config = SimulationConfig(sample_rate=args.sample_rate, duration=args.duration,
                                  num_speakers=args.num_speakers, num_channels=args.num_channels,
                                  **_simulation_options(parser, args))
        corpora = Corpora.from_folders(args.librispeech, args.wham, sfx, music, args.librispeech_subsets)
        result = prepare_echo2mix(args.out, corpora, config, hours=_hours(args), seed=args.seed,
                                  num_workers=args.num_workers, show_progress=not args.no_progress,
                                  csv_paths=args.csv_paths)
    except (ValueError, TypeError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    _report(result, started)
    return 0


@command("spmamba-prepare-demo")
def demo_main(argv: Optional[List[str]] = None) -> int:
    """Build the download-free demo dataset: espeak-ng speakers, synthetic noise, effects and music, simulated rooms.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status 0 (argument and input errors, and a missing data extra, exit with status 2).

    Example
    -------
    >>> try:
    ...     demo_main(["--out", "demo", "--duration", "0.5"])
    ... except SystemExit as exit:
    ...     print("exit status", exit.code)
    exit status 2
    """
    parser = argparse.ArgumentParser(prog="spmamba-prepare-demo", description=demo_main.__doc__.split("\n\n")[0])
    _add_common_arguments(parser, DEMO_HOURS, DEMO_DURATION)
    parser.add_argument("--num-voices", type=int, help="synthetic speakers (default: grows with the hours)")
    parser.add_argument("--utterances-per-voice", type=int,
                        help="utterances per speaker (default: grows with the hours)")
    parser.add_argument("--num-noise-files", type=int, help="synthetic noise files (default: grows with the hours)")
    parser.add_argument("--num-clips", type=int, help="synthetic effects + music clips (default: grows with the hours)")
    parser.add_argument("--preset", choices=sorted(DEMO_PRESETS),
                        help="clean: two voices in mildly reverberant rooms and nothing else (--backgrounds none "
                             "--rt60 0.1 0.3); explicit options win")
    parser.add_argument("--voice-variety", choices=VOICE_VARIETIES, default="espeak",
                        help="espeak: espeak-ng's voices as they are (default); wide: speakers spread wider (rate, "
                             "pitch, half of them female variants), formant shifts, and recording-like pitch and "
                             "level drift, breaths and microphone colouring (settings in voices.json)")
    args = parser.parse_args(argv)
    _require_data_extra(parser)
    for key, value in DEMO_PRESETS.get(args.preset, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sizes = {"num_voices": args.num_voices, "utterances_per_voice": args.utterances_per_voice,
             "num_noise_files": args.num_noise_files, "num_clips": args.num_clips}
    started = time.time()
    try:
        result = prepare_demo(args.out, hours=_hours(args), duration=args.duration, sample_rate=args.sample_rate,
                              num_speakers=args.num_speakers, num_channels=args.num_channels,
                              sizes={key: value for key, value in sizes.items() if value is not None},
                              seed=args.seed, num_workers=args.num_workers, show_progress=not args.no_progress,
                              simulation_options=_simulation_options(parser, args), csv_paths=args.csv_paths,
                              voice_variety=args.voice_variety)
    except (ValueError, TypeError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    _report(result, started)
    return 0


@command("spmamba-prepare-real")
def real_main(argv: Optional[List[str]] = None) -> int:
    """Build a test set of recorded human speech: the demo test split's mixtures (clean or noisy), with real voices.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status 0 (argument and input errors, and a missing data extra, exit with status 2).

    Example
    -------
    >>> try:
    ...     real_main(["--source", "no_such_folder", "--out", "real"])
    ... except SystemExit as exit:
    ...     print("exit status", exit.code)
    exit status 2
    """
    parser = argparse.ArgumentParser(prog="spmamba-prepare-real", description=real_main.__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="folder of recorded speech")
    parser.add_argument("--layout", choices=sorted(SOURCE_LAYOUTS), default="librispeech",
                        help="how --source is laid out: " + "; ".join(f"{name}: {text}" for name, text in
                                                                        SOURCE_LAYOUTS.items())
                             + " (default librispeech)")
    parser.add_argument("--out", required=True, help="output folder, new or empty (rerun the same command to resume)")
    parser.add_argument("--num-mixtures", type=int, default=200, help="test mixtures (default 200)")
    parser.add_argument("--duration", type=float, default=DEMO_DURATION,
                        help=f"mixture length in s (default {DEMO_DURATION:g}, as the demo's)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    parser.add_argument("--num-speakers", type=int, default=2, help="speakers per mixture (default 2)")
    parser.add_argument("--preset", choices=sorted(REAL_PRESETS), default="clean",
                        help="the demo mixtures whose voices are replaced: clean (the clean demo's mildly "
                             "reverberant rooms, no background; default) or noisy (the default demo's rooms, "
                             "noise, effects and music)")
    _add_run_arguments(parser)
    args = parser.parse_args(argv)
    _require_data_extra(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    preset = argparse.Namespace(option=[], audio_subtype="FLOAT", **REAL_PRESETS[args.preset])
    started = time.time()
    try:
        result = prepare_real_speech(args.out, args.source, args.layout, num_mixtures=args.num_mixtures,
                                     duration=args.duration, sample_rate=args.sample_rate,
                                     num_speakers=args.num_speakers, seed=args.seed, num_workers=args.num_workers,
                                     show_progress=not args.no_progress,
                                     simulation_options=_simulation_options(parser, preset), csv_paths=args.csv_paths)
    except (ValueError, TypeError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    sources = result["sources"]
    logger.info("recorded speech: %d speakers, %d utterances, %.1f minutes after trimming", sources["speakers"],
                sources["utterances"], sources["minutes"])
    _report(result, started)
    return 0
