"""Command-line entry points (the only module that prints)."""

import argparse
import ctypes
import logging
import os
import sys
import tempfile
import textwrap
import time
from typing import List, NoReturn, Optional, Set

from tqdm import tqdm

from spmamba_sb.console import command, disk_error_message
from spmamba_sb.data.audio_io import write_audio
from spmamba_sb.environment import apply_scan_environment, scan_environment
from spmamba_sb.outputs import OutputExistsError, atomic_outputs, check_outputs, check_writable
from spmamba_sb.export import export_model, export_reference, weight_average
from spmamba_sb.inference import OUTPUT_RATES, AudioInputError, SPMambaSeparation
from spmamba_sb.model_folder import FOLDER_FILES
from spmamba_sb.model_trust import UntrustedModelError
from spmamba_sb.scoring import REPORT_FILES, UndefinedMetricsError, optional_metrics, write_report
from spmamba_sb.scoring_sets import read_scoring_set, score_utterance
from spmamba_sb.settings import SettingsError
from spmamba_sb.tensor_files import TensorFileError


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


@command("spmamba-export")
def export_main(argv: Optional[List[str]] = None) -> None:
    """Write a model folder: from a training experiment's best checkpoint, or from a checkpoint of
    the reference implementation (--reference).

    The folder's four files are written all or none. Those of an existing model folder are
    replaced only with --overwrite, and a file that is read (the experiment's hyperparams.yaml and
    checkpoint, the --reference checkpoint, its --config) never."""
    parser = argparse.ArgumentParser(prog="spmamba-export", description=export_main.__doc__)
    parser.add_argument("experiment", nargs="?", help="output_folder of a train.py run (holds hyperparams.yaml and save/)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a model folder there")
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
            source = export_model(args.experiment, args.out, args.checkpoint, args.overwrite)
        else:
            print(f"settings: {export_reference(args.reference, args.out, args.config, args.overwrite)}")
            source = args.reference
    except OutputExistsError as error:
        _exit_with_error(f"{error} (use --overwrite to replace it)", parser.prog)
    except ValueError as error:  # includes a file to write that is one of the inputs
        _exit_with_error(str(error), parser.prog)
    except OSError as error:  # a missing input; a full or read-only disk
        _exit_with_error(_describe(error), parser.prog)
    average = args.reference is None and weight_average(source) is not None
    print(f"exported {source}{' (the weight average of its mask net)' if average else ''} to {args.out}")


@command("spmamba-separate")
def separate_main(argv: Optional[List[str]] = None) -> None:
    """Separate audio files with an exported model; writes one float wav per source.

    A file that cannot be separated (unreadable, empty, too short, NaN samples, outputs that
    exist already, a full disk) gets one "spmamba-separate: error: <file>: <problem>" line on
    stderr and the other files go on; the exit status is then 1. A file's outputs are written all
    or none. A bad --model or --out, or an output that would replace one of the inputs (even with
    --overwrite), exits with status 1 before any file is separated; bad chunk settings with 2.

    Each separated file prints "<file>: <duration> s separated into <S> sources in <time> s
    (<time / duration>x real time)" on stdout. A file that goes in more than one chunk shows a
    progress bar over its chunks on stderr (--quiet turns it off); there is no bar over the
    files, as the result lines already count them and a second bar would be redrawn among them.
    """
    parser = argparse.ArgumentParser(prog="spmamba-separate", description=separate_main.__doc__)
    parser.add_argument("inputs", nargs="+",
                        help="audio files (any rate; a multi-channel file is read at its first channel)")
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
    num_spks = separator.hparams.num_spks
    planned = []  # (input, its outputs)
    for path in args.inputs:
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        planned.append((path, [os.path.join(args.out, f"{name}_s{index + 1}.wav") for index in range(num_spks)]))
    _refuse_inputs_as_outputs([output for _, outputs in planned for output in outputs],
                              [*args.inputs, *_model_files(args.model)], parser.prog)
    _prepare_out(args.out, parser.prog)
    written: Set[str] = set()  # outputs of this run, which a later input must not replace
    failures = 0
    for path, outputs in planned:
        start = time.perf_counter()
        try:
            _check_outputs(path, outputs, written, args.overwrite)
            sources = separator.separate_file(  # [L, S]
                path, args.chunk_seconds, args.overlap_seconds, progress=not args.quiet, output_rate=args.output_rate,
            )[0]
            rate = separator.output_sample_rate(path, args.output_rate)
            with atomic_outputs(outputs) as partials:
                for partial, source in zip(partials, sources.T.contiguous()):  # source: [L]
                    write_audio(partial, source.numpy(), rate)
        except (AudioInputError, OSError) as error:  # this file's problem: report it, go on with the next
            system_error = isinstance(error, OSError) and error.errno is not None  # names the output, not the input
            _print_error(f"{path}: {_describe(error)}" if system_error else str(error))
            failures += 1
            continue
        written.update(outputs)
        duration, elapsed = sources.shape[0] / rate, time.perf_counter() - start
        print(f"{path}: {duration:.1f} s separated into {num_spks} sources in {elapsed:.1f} s "
              f"({elapsed / duration:.2f}x real time)")
    if failures:
        raise SystemExit(1)


@command("spmamba-evaluate")
def evaluate_main(argv: Optional[List[str]] = None) -> None:
    """Score an exported model on mixtures with references: SI-SNR(i), SDR(i), SIR, SAR (+ STOI, PESQ).

    Writes <out>/scores.csv (one row per utterance, then "mean"), <out>/summary.json and
    <out>/si_snri.png, all or none, then one line on stdout with the means. Existing ones are
    replaced only with --overwrite, and never a file that is read (the data, the model). A CSV
    row that cannot be read gets one "spmamba-evaluate: error: <csv>: line <n>: <problem>" line,
    an utterance that cannot be scored (a file that cannot be read, a silent reference, two
    identical references) one "spmamba-evaluate: error: <ID>: <file>: <problem>" line on stderr,
    and the others go on; the exit status is then 1. A bad --model, data set or --out exits with
    status 1 before any scoring, bad chunk settings with 2. A tqdm bar over the utterances goes to
    stderr (--quiet turns it off).
    """
    parser = argparse.ArgumentParser(prog="spmamba-evaluate", description=evaluate_main.__doc__)
    parser.add_argument("data", help="separation CSV (ID, mix_wav, s1_wav, ...) or folder with mix/, s1/, s2/, ...")
    parser.add_argument("--model", required=True,
                        help="model folder (from spmamba-export), or a checkpoint of the reference implementation")
    parser.add_argument("--out", required=True, help="output folder for scores.csv, summary.json, si_snri.png")
    parser.add_argument("--overwrite", action="store_true", help="replace a report that exists already")
    parser.add_argument("--data-root", help="replaces $data_root in the CSV's paths")
    _add_separation_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    separator, device = _separator(parser, args)

    def fail(message: str) -> None:
        _print_error(message, parser.prog)

    try:
        utterances, malformed = read_scoring_set(args.data, separator.hparams.num_spks, args.data_root)
    except (FileNotFoundError, ValueError) as error:
        _exit_with_error(str(error), parser.prog)
    outputs = [os.path.join(args.out, name) for name in REPORT_FILES]
    audio = [path for utterance in utterances for path in (utterance.mix, *utterance.sources)]
    _refuse_inputs_as_outputs(outputs, [args.data, *_model_files(args.model), *audio], parser.prog)
    try:
        check_outputs(outputs, overwrite=args.overwrite)
    except OutputExistsError as error:
        _exit_with_error(f"{error} (use --overwrite to replace it)", parser.prog)
    _prepare_out(args.out, parser.prog)
    for message in malformed:
        fail(message)
    extra_metrics = optional_metrics()
    rows = []
    for utterance in tqdm(utterances, desc="scoring", unit="utt", disable=args.quiet, file=sys.stderr):
        try:
            rows.append(score_utterance(separator, utterance, args.chunk_seconds, args.overlap_seconds, extra_metrics))
        except (AudioInputError, UndefinedMetricsError, OSError) as error:  # this utterance's problem: report it, go on
            fail(f"{utterance.id}: {_describe(error)}")
    total = len(utterances) + len(malformed)
    if not rows:
        _exit_with_error(f"{args.data}: no utterance could be scored", parser.prog)
    settings = {"sample_rate": separator.hparams.sample_rate, "num_spks": separator.hparams.num_spks,
                "chunk_seconds": args.chunk_seconds, "overlap_seconds": args.overlap_seconds, "device": device,
                "data_root": args.data_root, "metrics": list(rows[0])[1:]}
    details = {"model": args.model, "data": args.data, "failed": total - len(rows), "settings": settings}
    means = write_report(args.out, rows, details)
    print(f"{len(rows)} of {total} utterances scored: "
          + ", ".join(f"{name} {value:.2f}" for name, value in means.items()) + f" (in {args.out})")
    if len(rows) < total:
        raise SystemExit(1)


def _add_separation_options(parser: argparse.ArgumentParser) -> None:
    """``--chunk-seconds``, ``--overlap-seconds``, ``--device`` and ``--trust-model-code``, shared by
    the commands that separate."""
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="longer files go in chunks")
    parser.add_argument("--overlap-seconds", type=float, default=2.0, help="overlap of consecutive chunks")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--trust-model-code", action="store_true",
                        help="build whatever the model folder's hyperparams.yaml names, running its code (by "
                             "default only an allow-list of this package's, SpeechBrain's and torch.nn's classes)")


def _separator(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Quiet SpeechBrain's INFO logging, tune the CPU allocator, load ``--model`` on
    ``--device`` and check the chunk settings; returns the separator and the device name."""
    warnings_only = logging.StreamHandler()
    warnings_only.setLevel(logging.WARNING)  # SpeechBrain sets its own loggers to INFO
    logging.basicConfig(handlers=[warnings_only])
    device = "cuda:0" if args.device == "cuda" else args.device  # SpeechBrain wants an index
    if device == "cpu":
        keep_freed_memory()
    separator = _load_separator(args.model, device, parser.prog, args.trust_model_code)
    try:
        separator.chunk_lengths(args.chunk_seconds, args.overlap_seconds)
    except ValueError as error:
        parser.error(f"--chunk-seconds / --overlap-seconds: {error}")
    return separator, device


def _print_error(message: str, prog: str = "spmamba-separate") -> None:
    """One error line on stderr, clear of any progress bar."""
    tqdm.write(f"{prog}: error: {message}", file=sys.stderr)


def _load_separator(model: str, device: str, prog: str = "spmamba-separate",
                    trust_code: bool = False) -> SPMambaSeparation:
    """Load a model folder (its ``hyperparams.yaml`` checked against the allow-list unless
    ``trust_code``), or a reference checkpoint file (converted as ``spmamba-export --reference``
    does, without a config), or exit with status 1 and one line (from ``prog``) saying what is
    wrong with it. Its Mamba layers get what ``SPMAMBA_SCAN_BACKEND`` and ``SPMAMBA_COMPILE_SCAN``
    ask (:mod:`spmamba_sb.environment`; a bad value exits with status 2)."""
    if os.path.isfile(model):
        with tempfile.TemporaryDirectory() as folder:
            try:
                summary = export_reference(model, folder)
            except TensorFileError as error:  # names the file already
                _print_error(str(error), prog)
                raise SystemExit(1)
            except (FileNotFoundError, ValueError) as error:
                _print_error(f"--model {model}: {error}", prog)
                raise SystemExit(1)
            print(f"{model}: reference checkpoint, {summary}", file=sys.stderr)
            return _load_separator(folder, device, prog, trust_code)
    if not os.path.isdir(model):
        _print_error(f"--model {model}: no such folder", prog)
        raise SystemExit(1)
    missing = [name for name in FOLDER_FILES if not os.path.isfile(os.path.join(model, name))]
    if missing:
        _print_error(f"--model {model}: not a model folder (no {', '.join(missing)})", prog)
        raise SystemExit(1)
    try:
        environment = scan_environment()
    except SettingsError as error:
        _print_error(str(error), prog)
        raise SystemExit(2)
    try:
        separator = SPMambaSeparation.from_hparams(source=model, savedir=model, run_opts={"device": device},
                                                   trust_code=trust_code)
    except UntrustedModelError as error:  # names the file, the line and the tag; nothing was built
        _print_error(str(error), prog)
        raise SystemExit(1)
    except Exception as error:  # a damaged folder fails in YAML, torch.load or load_state_dict, each its own way
        reason = textwrap.shorten(str(error), width=300, placeholder=" ...")  # one line
        _print_error(f"--model {model}: cannot load it on device {device} ({reason})", prog)
        raise SystemExit(1)
    apply_scan_environment(separator.mods.values(), environment)
    return separator


def _check_outputs(path: str, outputs: List[str], written: Set[str], overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming ``path`` if its outputs were written earlier in this run,
    or exist and ``overwrite`` is off."""
    earlier = [output for output in outputs if output in written]
    if earlier:
        raise FileExistsError(f"{path}: {earlier[0]} was written for an earlier input of this run")
    try:
        check_outputs(outputs, overwrite=overwrite)
    except OutputExistsError as error:
        raise FileExistsError(f"{path}: {error} (use --overwrite to replace it)") from None


def _refuse_inputs_as_outputs(outputs: List[str], inputs: List[str], prog: str) -> None:
    """Exit with status 1 and one line if one of ``outputs`` is one of ``inputs`` (whatever ``--overwrite``)."""
    try:
        check_outputs(outputs, inputs, overwrite=True)  # overwrite: only the inputs are checked here
    except ValueError as error:
        _exit_with_error(f"{error} (choose another --out)", prog)


def _model_files(model: str) -> List[str]:
    """The files ``--model`` names: a checkpoint file, or a model folder and the files in it."""
    if not os.path.isdir(model):
        return [model]
    return [model] + [os.path.join(model, name) for name in sorted(os.listdir(model))]


def _prepare_out(out: str, prog: str) -> None:
    """Create the folder ``out`` if needed and check that files can be written there, or exit
    with status 1 and one line: before the long work, not after it."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        _exit_with_error(f"--out {out}: cannot create the folder ({error.strerror or error})", prog)
    try:
        check_writable(out)
    except OSError as error:
        _exit_with_error(f"--out {out}: cannot write there: {disk_error_message(OSError(error.errno, error.strerror))}",
                         prog)


def _describe(error: Exception) -> str:
    """An error's message; for a system error (an ``OSError`` with an errno) ``"<file>: <reason>"``."""
    if isinstance(error, OSError) and error.errno is not None:
        return disk_error_message(error)
    return str(error)


def _exit_with_error(message: str, prog: str) -> NoReturn:
    """One error line from ``prog``, then exit with status 1."""
    _print_error(message, prog)
    raise SystemExit(1)
