"""Command-line entry points (the only module that prints)."""

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

import soundfile as sf

from spmamba_sb.inference import SPMambaSeparation, export_model


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
    """Separate audio files with an exported model; writes one wav per source."""
    parser = argparse.ArgumentParser(prog="spmamba-separate", description=separate_main.__doc__)
    parser.add_argument("inputs", nargs="+", help="audio files (any rate; channels are averaged)")
    parser.add_argument("--model", required=True, help="model folder (from spmamba-export)")
    parser.add_argument("--out", required=True, help="output folder: <name>_s1.wav, <name>_s2.wav, ...")
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="longer files go in chunks")
    parser.add_argument("--overlap-seconds", type=float, default=2.0, help="overlap of consecutive chunks")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    separator = SPMambaSeparation.from_hparams(
        source=args.model, savedir=args.model, run_opts={"device": args.device}
    )
    os.makedirs(args.out, exist_ok=True)
    rate = separator.hparams.sample_rate
    for path in args.inputs:
        start = time.perf_counter()
        sources = separator.separate_file(path, args.chunk_seconds, args.overlap_seconds)[0]  # [L, S]
        name = os.path.splitext(os.path.basename(path))[0]
        for index in range(sources.shape[1]):
            sf.write(os.path.join(args.out, f"{name}_s{index + 1}.wav"), sources[:, index].numpy(), rate)
        seconds = sources.shape[0] / rate
        print(f"{path}: {seconds:.1f} s separated into {sources.shape[1]} sources in {time.perf_counter() - start:.1f} s")
