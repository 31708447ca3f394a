#!/usr/bin/env python3
"""Validation SI-SNRi against training time for several train.py runs, as one PNG, plus a JSON
summary per run: parameters, training minutes, best validation SI-SNRi and the test means.

    python benchmarks/plot_training.py --out curves.png SPMamba=results/a/1234 TF-GridNet=results/b/1234
"""

import argparse
import csv
import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

FIELD = re.compile(r"([\w\- ]+?): (\S+?)(?:,|$| -)")


def validation_curve(experiment):
    """[(train_minutes, valid si-snr_i), ...] from an experiment's ``train_log.txt``."""
    points = []
    with open(os.path.join(experiment, "train_log.txt"), encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("epoch:"):
                continue
            fields = {key.strip(): value for key, value in FIELD.findall(line)}
            points.append((float(fields["train_minutes"]), float(fields["valid si-snr_i"])))
    return points


def test_means(experiment):
    """The mean row of ``test_results.csv`` (floats), or {} if there is none."""
    path = os.path.join(experiment, "test_results.csv")
    if not os.path.exists(path):
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: float(value) for key, value in rows[-1].items() if key != "ID"}


def parameter_count(experiment):
    """Parameters of the mask net in the experiment's newest checkpoint; None without one (an
    experiment folder brought back from another machine with its logs only)."""
    checkpoints = sorted(glob.glob(os.path.join(experiment, "save", "CKPT+*", "masknet.ckpt")), key=os.path.getmtime)
    if not checkpoints:
        return None
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    return sum(tensor.numel() for tensor in state.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=EXPERIMENT", help="train.py output folders")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()

    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=100)
    summary = {}
    for run in args.runs:
        label, experiment = run.split("=", 1)
        curve = validation_curve(experiment)
        means = test_means(experiment)
        minutes, improvements = zip(*curve)
        axis.plot(minutes, improvements, marker="o", markersize=3,
                  label=f"{label} (test SI-SNRi {means.get('si-snr_i', float('nan')):.1f} dB)")
        summary[label] = {"experiment": experiment, "parameters": parameter_count(experiment),
                          "validations": len(curve), "train_minutes": minutes[-1],
                          "best_valid_si-snr_i": max(improvements), "last_valid_si-snr_i": improvements[-1],
                          "test": means}
    axis.set_xlabel("training time (min)")
    axis.set_ylabel("validation SI-SNRi (dB)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(args.out)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
