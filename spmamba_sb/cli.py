"""Command-line entry points (the only module that prints)."""

import argparse
import logging
import os
import sys
import textwrap
import time
from typing import List, Optional, Set

from spmamba_sb.data.audio_io import write_audio_atomic
from spmamba_sb.inference import (
    MODEL_FILES, OUTPUT_RATES, AudioInputError, SPMambaSeparation, export_model, keep_freed_memory,
)


def export_main(argv: Optional[List[str]] = None) -> None:
    """Export a training experiment's best checkpoint to a model folder."""
    parser = argparse.ArgumentParser(prog="spmamba-export", description=export_main.__doc__)
    parser.add_argument("experiment", help="output_folder of a train.py run (holds hyperparams.yaml and save/)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--checkpoint", help="a CKPT+... folder (default: best validation SI-SNR)")
    args = parser.parse_args(argv)
    try:
        checkpoint = export_model(args.experiment, args.out, args.checkpoint)
    except (FileNotFoundError, ValueError) as error:
        print(f"spmamba-export: error: {error}", file=sys.stderr)
        raise SystemExit(1)
    print(f"exported {checkpoint} to {args.out}")


def separate_main(argv: Optional[List[str]] = None) -> None:
    """Separate audio files with an exported model; writes one float wav per source.

    A file that cannot be separated (unreadable, empty, too short, NaN samples, outputs that
    exist already) gets one "spmamba-separate: error: <file>: <problem>" line on stderr and the
    other files go on; the exit status is then 1. A bad --model or --out exits with status 1,
    bad chunk settings with 2.

    Each separated file prints "<file>: <duration> s separated into <S> sources in <time> s
    (<time / duration>x real time)" on stdout. A file that goes in more than one chunk shows a
    progress bar over its chunks on stderr (--quiet turns it off); there is no bar over the
    files, as the result lines already count them and a second bar would be redrawn among them.
    """
    parser = argparse.ArgumentParser(prog="spmamba-separate", description=separate_main.__doc__)
    parser.add_argument("inputs", nargs="+", help="audio files (any rate; channels are averaged)")
    parser.add_argument("--model", required=True, help="model folder (from spmamba-export)")
    parser.add_argument("--out", required=True, help="output folder: <name>_s1.wav, <name>_s2.wav, ...")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="longer files go in chunks")
    parser.add_argument("--overlap-seconds", type=float, default=2.0, help="overlap of consecutive chunks")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--output-rate", choices=OUTPUT_RATES, default="model",
                        help="write at the model's sample rate, or resample back to each input's")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    warnings_only = logging.StreamHandler()
    warnings_only.setLevel(logging.WARNING)  # SpeechBrain sets its own loggers to INFO
    logging.basicConfig(handlers=[warnings_only])
    device = "cuda:0" if args.device == "cuda" else args.device  # SpeechBrain wants an index
    if device == "cpu":
        keep_freed_memory()
    separator = _load_separator(args.model, device)
    try:
        separator.chunk_lengths(args.chunk_seconds, args.overlap_seconds)
    except ValueError as error:
        parser.error(f"--chunk-seconds / --overlap-seconds: {error}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        _print_error(f"--out {args.out}: cannot create the folder ({error.strerror or error})")
        raise SystemExit(1)
    num_spks = separator.hparams.num_spks
    written: Set[str] = set()  # outputs of this run, which a later input must not replace
    failures = 0
    for path in args.inputs:
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        outputs = [os.path.join(args.out, f"{name}_s{index + 1}.wav") for index in range(num_spks)]
        start = time.perf_counter()
        try:
            _check_outputs(path, outputs, written, args.overwrite)
            sources = separator.separate_file(  # [L, S]
                path, args.chunk_seconds, args.overlap_seconds, progress=not args.quiet, output_rate=args.output_rate,
            )[0]
            rate = separator.output_sample_rate(path, args.output_rate)
            for output, source in zip(outputs, sources.T.contiguous()):  # source: [L]
                write_audio_atomic(output, source.numpy(), rate)
        except (AudioInputError, OSError) as error:  # this file's problem: report it, go on with the next
            _print_error(str(error))
            failures += 1
            continue
        written.update(outputs)
        duration, elapsed = sources.shape[0] / rate, time.perf_counter() - start
        print(f"{path}: {duration:.1f} s separated into {num_spks} sources in {elapsed:.1f} s "
              f"({elapsed / duration:.2f}x real time)")
    if failures:
        raise SystemExit(1)


def _print_error(message: str) -> None:
    print(f"spmamba-separate: error: {message}", file=sys.stderr)


def _load_separator(model: str, device: str) -> SPMambaSeparation:
    """Load a model folder, or exit with status 1 and one line saying what is wrong with it."""
    if not os.path.isdir(model):
        _print_error(f"--model {model}: no such folder")
        raise SystemExit(1)
    missing = [name for name in ("hyperparams.yaml",) + MODEL_FILES if not os.path.isfile(os.path.join(model, name))]
    if missing:
        _print_error(f"--model {model}: not a model folder (no {', '.join(missing)})")
        raise SystemExit(1)
    try:
        return SPMambaSeparation.from_hparams(source=model, savedir=model, run_opts={"device": device})
    except Exception as error:  # a damaged folder fails in YAML, torch.load or load_state_dict, each its own way
        reason = textwrap.shorten(str(error), width=300, placeholder=" ...")  # one line
        _print_error(f"--model {model}: cannot load it on device {device} ({reason})")
        raise SystemExit(1)


def _check_outputs(path: str, outputs: List[str], written: Set[str], overwrite: bool) -> None:
    """Raise ``FileExistsError`` if ``path``'s outputs were written earlier in this run, or
    exist and ``overwrite`` is off."""
    for output in outputs:
        if output in written:
            raise FileExistsError(f"{path}: {output} was written for an earlier input of this run")
        if not overwrite and os.path.lexists(output):
            raise FileExistsError(f"{path}: {output} exists already (use --overwrite to replace it)")
