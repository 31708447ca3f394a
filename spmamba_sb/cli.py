"""Command-line entry points (the only module that prints)."""

import argparse
import logging
import math
import os
import sys
import time
from typing import List, Optional

import soundfile as sf
import torch

from spmamba_sb.inference import SPMambaSeparation, export_model
from spmamba_sb.models.spmamba import SPMamba


def synthetic_mixture(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """Two synthetic voiced sources (harmonic tones with vibrato and syllable envelopes).

    Arguments
    ---------
    seconds : float
        Duration.
    sample_rate : int
        Samples per second.
    seed : int
        Random seed.

    Returns
    -------
    torch.Tensor
        [2, L] sources.

    Example
    -------
    >>> synthetic_mixture(0.1, 8000).shape
    torch.Size([2, 800])
    """
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    sources = []
    for f0, rate in ((120.0, 3.0), (210.0, 4.5)):
        pitch = f0 * (1 + 0.05 * torch.sin(2 * math.pi * 5 * t + torch.rand(1, generator=gen) * 6))
        phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
        voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
        envelope = torch.sin(math.pi * rate * t + torch.rand(1, generator=gen) * 3).clamp(min=0)
        sources.append(0.1 * voice * envelope)
    return torch.stack(sources)


def demo_main(argv: Optional[List[str]] = None) -> None:
    """Separate a generated two-voice mixture with an untrained SPMamba and write the wavs."""
    parser = argparse.ArgumentParser(description=demo_main.__doc__)
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--seconds", type=float, default=1.0, help="mixture duration")
    parser.add_argument("--num-blocks", type=int, default=1, help="GridNet blocks (published: 6)")
    args = parser.parse_args(argv)

    sample_rate = 16000
    torch.manual_seed(0)
    sources = synthetic_mixture(args.seconds, sample_rate)
    mix = sources.sum(0)
    model = SPMamba(num_blocks=args.num_blocks).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"SPMamba, published 16 kHz layout with {args.num_blocks} blocks: {params:,} parameters")
    print("NOTE: this model is UNTRAINED (random weights); its outputs are not separated speech.")
    start = time.perf_counter()
    with torch.no_grad():
        estimates = model(mix[None])[0]  # [S, L]
    elapsed = time.perf_counter() - start
    backend = model.masknet.blocks[0].intra.sequence.forward_mixer.last_scan_backend
    print(f"separated {args.seconds:.1f} s of audio in {elapsed:.1f} s on {mix.device} (scan backend: {backend})")
    os.makedirs(args.out, exist_ok=True)
    sf.write(os.path.join(args.out, "mixture.wav"), mix.numpy(), sample_rate)
    for index, estimate in enumerate(estimates, start=1):
        sf.write(os.path.join(args.out, f"estimate{index}.wav"), estimate.numpy(), sample_rate)
    print(f"wrote mixture.wav, estimate1.wav, estimate2.wav to {os.path.abspath(args.out)}")


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


if __name__ == "__main__":
    demo_main()
