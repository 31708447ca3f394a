#!/usr/bin/env python3
"""Validation SI-SNRi against training time for several train.py runs, as one PNG (with each run's
training SNR dashed, and its learning rate in a panel below), plus a JSON summary per run:
parameters, training minutes, best validation SI-SNRi, last training SNR, the test means, and
whether quick_separation.sh trained it eager after its compiled run failed (labelled "eager").

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


def training_log(experiment):
    """One dict per validated epoch of an experiment's ``train_log.txt``: ``minutes``, ``lr``,
    ``train`` (training SNR) and ``valid`` (validation SI-SNRi)."""
    epochs = []
    with open(os.path.join(experiment, "train_log.txt"), encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("epoch:"):
                continue
            fields = {key.strip(): value for key, value in FIELD.findall(line)}
            epochs.append({"minutes": float(fields["train_minutes"]), "lr": float(fields["lr"]),
                           "train": float(fields["train snr"]), "valid": float(fields["valid si-snr_i"])})
    return epochs


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

    figure, (axis, lr_axis) = plt.subplots(2, 1, sharex=True, figsize=(6, 4.8), dpi=100,
                                           gridspec_kw={"height_ratios": [3, 1]})
    summary = {}
    for run in args.runs:
        label, experiment = run.split("=", 1)
        epochs = training_log(experiment)
        means = test_means(experiment)
        minutes = [epoch["minutes"] for epoch in epochs]
        improvements = [epoch["valid"] for epoch in epochs]
        eager_fallback = os.path.exists(os.path.join(experiment, "eager_fallback"))  # quick_separation.sh's mark
        line, = axis.plot(minutes, improvements, marker="o", markersize=3,
                          label=f"{label}{', eager' if eager_fallback else ''} "
                                f"(test SI-SNRi {means.get('si-snr_i', float('nan')):.1f} dB)")
        axis.plot(minutes, [epoch["train"] for epoch in epochs], linestyle="--", linewidth=1, color=line.get_color())
        lr_axis.plot(minutes, [epoch["lr"] for epoch in epochs], marker=".", color=line.get_color())
        summary[label] = {"experiment": experiment, "parameters": parameter_count(experiment),
                          "eager_fallback": eager_fallback,
                          "validations": len(epochs), "train_minutes": minutes[-1],
                          "best_valid_si-snr_i": max(improvements), "last_valid_si-snr_i": improvements[-1],
                          "last_train_snr": epochs[-1]["train"], "test": means}
    axis.set_ylabel("SI-SNRi (dB)")
    axis.set_title("validation SI-SNRi (solid), training SNR (dashed)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    lr_axis.set_xlabel("training time (min)")
    lr_axis.set_ylabel("learning rate")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.savefig(args.out)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
