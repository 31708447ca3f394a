#!/usr/bin/env python3
"""Separate one test mixture with an exported model through SpeechBrain's stock interface
(``SepformerSeparation.from_hparams``) and score it, and score the files ``spmamba-separate``
wrote for the same mixture. Prints JSON.

    python benchmarks/check_exported_model.py MODEL_DIR DATA/test.csv test_000000 \
        --separated OUT/test_000000_s1.wav OUT/test_000000_s2.wav
"""

import argparse
import csv
import json

import torch
from speechbrain.inference.separation import SepformerSeparation

from spmamba_sb.data.audio_io import read_audio
from spmamba_sb.scoring import separation_metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder written by spmamba-export")
    parser.add_argument("csv", help="separation CSV holding the mixture")
    parser.add_argument("id", help="the mixture's ID in the CSV")
    parser.add_argument("--separated", nargs="+", default=[], help="spmamba-separate's outputs for it")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    with open(args.csv, newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["ID"] == args.id)
    device = "cuda:0" if args.device == "cuda" else args.device  # SpeechBrain names the GPU in full
    separator = SepformerSeparation.from_hparams(source=args.model, savedir=args.model,
                                                 run_opts={"device": device})
    rate = separator.hparams.sample_rate

    def read(path):
        return torch.from_numpy(read_audio(path, rate)).float()  # [L], mono at the model's rate

    mix = read(row["mix_wav"])
    references = torch.stack([read(row[k]) for k in sorted(row) if k.startswith("s") and k.endswith("_wav")], 1)
    with torch.no_grad():
        estimates = separator.separate_batch(mix.unsqueeze(0).to(device))[0].float().cpu()  # [L, S]
    report = {"mixture": row["mix_wav"], "sample_rate": rate,
              "SepformerSeparation": separation_metrics(mix, references, estimates[: len(mix)])}
    if args.separated:
        written = torch.stack([read(path) for path in args.separated], 1)
        report["spmamba-separate"] = separation_metrics(mix, references, written)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
