"""Command-line entry points (the only module that prints)."""

import argparse
import ctypes
import logging
import os
import sys
import tempfile
import textwrap
import time
from typing import List, Optional, Set

from tqdm import tqdm

from spmamba_sb.data.audio_io import write_audio_atomic
from spmamba_sb.export import MODEL_FILES, export_model, export_reference
from spmamba_sb.inference import OUTPUT_RATES, AudioInputError, SPMambaSeparation
from spmamba_sb.scoring import optional_metrics, read_scoring_set, score_utterance, write_report


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let the C allocator keep freed blocks of up to ``limit_bytes`` for reuse (CPU speed).

    A forward pass on the CPU allocates and frees tensors of hundreds of MB over and over; by
    default glibc maps each one afresh from the system and unmaps it on free, so every one
    page-faults on first touch. Keeping them (``mallopt`` mmap and trim thresholds) made the
    published model's CPU inference about a fifth faster on a 2-core machine
    (``benchmarks/cpu_efficiency.py``); the process's memory then stays near its peak. It
    affects the whole process, so it is an opt-in (``spmamba-separate`` and ``spmamba-evaluate`` call it on the CPU).

    Returns
    -------
    bool
        Whether the allocator took the setting (False where the C library is not glibc).

    Example
    -------
    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, mmap_threshold = -1, -3  # glibc's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    return bool(mallopt(mmap_threshold, limit_bytes)) and bool(mallopt(trim_threshold, limit_bytes))


def export_main(argv: Optional[List[str]] = None) -> None:
    """Write a model folder: from a training experiment's best checkpoint, or from a checkpoint of
    the reference implementation (--reference)."""
    parser = argparse.ArgumentParser(prog="spmamba-export", description=export_main.__doc__)
    parser.add_argument("experiment", nargs="?", help="output_folder of a train.py run (holds hyperparams.yaml and save/)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--checkpoint", help="a CKPT+... folder of the experiment (default: best validation SI-SNR)")
    parser.add_argument("--reference", metavar="CKPT",
                        help="a reference checkpoint instead of an experiment: state dict, release or Lightning file")
    parser.add_argument("--config", help="with --reference: the reference's YAML config (default: settings from "
                                         "the weights' shapes and the published presets)")
    args = parser.parse_args(argv)
    if (args.experiment is None) == (args.reference is None):
        parser.error("give either an experiment folder or --reference CKPT")
    if args.reference is None and args.config:
        parser.error("--config goes with --reference")
    if args.reference is not None and args.checkpoint:
        parser.error("--checkpoint goes with an experiment folder")
    try:
        if args.reference is None:
            source = export_model(args.experiment, args.out, args.checkpoint)
        else:
            print(f"settings: {export_reference(args.reference, args.out, args.config)}")
            source = args.reference
    except (FileNotFoundError, ValueError) as error:
        print(f"spmamba-export: error: {error}", file=sys.stderr)
        raise SystemExit(1)
    print(f"exported {source} to {args.out}")


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
    parser.add_argument("--model", required=True,
                        help="model folder (from spmamba-export), or a checkpoint of the reference implementation")
    parser.add_argument("--out", required=True, help="output folder: <name>_s1.wav, <name>_s2.wav, ...")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    _add_separation_options(parser)
    parser.add_argument("--output-rate", choices=OUTPUT_RATES, default="model",
                        help="write at the model's sample rate, or resample back to each input's")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    separator, _ = _separator(parser, args)
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


def evaluate_main(argv: Optional[List[str]] = None) -> None:
    """Score an exported model on mixtures with references: SI-SNR(i), SDR(i), SIR, SAR (+ STOI, PESQ).

    Writes <out>/scores.csv (one row per utterance, then "mean"), <out>/summary.json and
    <out>/si_snri.png, then one line on stdout with the means. An utterance that cannot be
    scored gets one "spmamba-evaluate: error: <ID>: <file>: <problem>" line on stderr and the others
    go on; the exit status is then 1. A bad --model, data set or --out exits with status 1, bad
    chunk settings with 2. A tqdm bar over the utterances goes to stderr (--quiet turns it off).
    """
    parser = argparse.ArgumentParser(prog="spmamba-evaluate", description=evaluate_main.__doc__)
    parser.add_argument("data", help="separation CSV (ID, mix_wav, s1_wav, ...) or folder with mix/, s1/, s2/, ...")
    parser.add_argument("--model", required=True,
                        help="model folder (from spmamba-export), or a checkpoint of the reference implementation")
    parser.add_argument("--out", required=True, help="output folder for scores.csv, summary.json, si_snri.png")
    parser.add_argument("--data-root", help="replaces $data_root in the CSV's paths")
    _add_separation_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    separator, device = _separator(parser, args)

    def fail(message: str) -> None:
        _print_error(message, parser.prog)

    try:
        utterances = read_scoring_set(args.data, separator.hparams.num_spks, args.data_root)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
        raise SystemExit(1)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        fail(f"--out {args.out}: cannot create the folder ({error.strerror or error})")
        raise SystemExit(1)
    extra_metrics = optional_metrics()
    rows = []
    for utterance in tqdm(utterances, desc="scoring", unit="utt", disable=args.quiet, file=sys.stderr):
        try:
            rows.append(score_utterance(separator, utterance, args.chunk_seconds, args.overlap_seconds, extra_metrics))
        except (AudioInputError, OSError) as error:  # this utterance's problem: report it, go on
            fail(f"{utterance.id}: {error}")
    if not rows:
        fail(f"{args.data}: no utterance could be scored")
        raise SystemExit(1)
    settings = {"sample_rate": separator.hparams.sample_rate, "num_spks": separator.hparams.num_spks,
                "chunk_seconds": args.chunk_seconds, "overlap_seconds": args.overlap_seconds, "device": device,
                "data_root": args.data_root, "metrics": list(rows[0])[1:]}
    details = {"model": args.model, "data": args.data, "failed": len(utterances) - len(rows), "settings": settings}
    means = write_report(args.out, rows, details)
    print(f"{len(rows)} of {len(utterances)} utterances scored: "
          + ", ".join(f"{name} {value:.2f}" for name, value in means.items()) + f" (in {args.out})")
    if len(rows) < len(utterances):
        raise SystemExit(1)


def _add_separation_options(parser: argparse.ArgumentParser) -> None:
    """``--chunk-seconds``, ``--overlap-seconds`` and ``--device``, shared by the commands that separate."""
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="longer files go in chunks")
    parser.add_argument("--overlap-seconds", type=float, default=2.0, help="overlap of consecutive chunks")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def _separator(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Quiet SpeechBrain's INFO logging, tune the CPU allocator, load ``--model`` on
    ``--device`` and check the chunk settings; returns the separator and the device name."""
    warnings_only = logging.StreamHandler()
    warnings_only.setLevel(logging.WARNING)  # SpeechBrain sets its own loggers to INFO
    logging.basicConfig(handlers=[warnings_only])
    device = "cuda:0" if args.device == "cuda" else args.device  # SpeechBrain wants an index
    if device == "cpu":
        keep_freed_memory()
    separator = _load_separator(args.model, device, parser.prog)
    try:
        separator.chunk_lengths(args.chunk_seconds, args.overlap_seconds)
    except ValueError as error:
        parser.error(f"--chunk-seconds / --overlap-seconds: {error}")
    return separator, device


def _print_error(message: str, prog: str = "spmamba-separate") -> None:
    """One error line on stderr, clear of any progress bar."""
    tqdm.write(f"{prog}: error: {message}", file=sys.stderr)


def _load_separator(model: str, device: str, prog: str = "spmamba-separate") -> SPMambaSeparation:
    """Load a model folder, or a reference checkpoint file (converted as ``spmamba-export
    --reference`` does, without a config), or exit with status 1 and one line (from ``prog``)
    saying what is wrong with it."""
    if os.path.isfile(model):
        with tempfile.TemporaryDirectory() as folder:
            try:
                summary = export_reference(model, folder)
            except (FileNotFoundError, ValueError) as error:
                _print_error(f"--model {model}: {error}", prog)
                raise SystemExit(1)
            print(f"{model}: reference checkpoint, {summary}", file=sys.stderr)
            return _load_separator(folder, device, prog)
    if not os.path.isdir(model):
        _print_error(f"--model {model}: no such folder", prog)
        raise SystemExit(1)
    missing = [name for name in ("hyperparams.yaml",) + MODEL_FILES if not os.path.isfile(os.path.join(model, name))]
    if missing:
        _print_error(f"--model {model}: not a model folder (no {', '.join(missing)})", prog)
        raise SystemExit(1)
    try:
        return SPMambaSeparation.from_hparams(source=model, savedir=model, run_opts={"device": device})
    except Exception as error:  # a damaged folder fails in YAML, torch.load or load_state_dict, each its own way
        reason = textwrap.shorten(str(error), width=300, placeholder=" ...")  # one line
        _print_error(f"--model {model}: cannot load it on device {device} ({reason})", prog)
        raise SystemExit(1)


def _check_outputs(path: str, outputs: List[str], written: Set[str], overwrite: bool) -> None:
    """Raise ``FileExistsError`` if ``path``'s outputs were written earlier in this run, or
    exist and ``overwrite`` is off."""
    for output in outputs:
        if output in written:
            raise FileExistsError(f"{path}: {output} was written for an earlier input of this run")
        if not overwrite and os.path.lexists(output):
            raise FileExistsError(f"{path}: {output} exists already (use --overwrite to replace it)")
