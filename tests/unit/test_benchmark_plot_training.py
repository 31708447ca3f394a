"""benchmarks/plot_training.py: validation and training curves, learning rates and summary from train.py output folders."""

import json
import os
import subprocess
import sys

import torch

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "plot_training.py")


def _experiment(folder, improvements, test_row=None, checkpoint=None):
    folder.mkdir()
    lines = [
        f"epoch: {i + 1}, lr: {1e-3 / (i + 1):.2e}, train_minutes: {i + 0.5:.2f} - train snr: {2.0 + i}, "
        f"train nonfinite_batches: 0 - valid si-snr: -1.0, valid si-snr_i: {value}"
        for i, value in enumerate(improvements)
    ]
    (folder / "train_log.txt").write_text("\n".join(lines) + "\n")
    if test_row is not None:
        (folder / "test_results.csv").write_text(
            "ID,si-snr_i,sdr_i\nx,1.0,1.5\nmean," + ",".join(map(str, test_row)) + "\n"
        )
    if checkpoint is not None:
        (folder / "save" / "CKPT+1").mkdir(parents=True)
        torch.save(checkpoint, folder / "save" / "CKPT+1" / "masknet.ckpt")
    return folder


def test_curves_and_summary(tmp_path):
    full = _experiment(tmp_path / "a", [0.5, 1.25, 1.0], test_row=(2.5, 2.75),
                       checkpoint={"w": torch.zeros(3, 4), "b": torch.zeros(5)})
    logs_only = _experiment(tmp_path / "b", [0.25, 0.75])
    png = tmp_path / "out" / "curves.png"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(png), f"A={full}", f"B={logs_only}"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["A"]["parameters"] == 17 and summary["A"]["validations"] == 3
    assert summary["A"]["best_valid_si-snr_i"] == 1.25 and summary["A"]["last_valid_si-snr_i"] == 1.0
    assert summary["A"]["train_minutes"] == 2.5 and summary["A"]["test"] == {"si-snr_i": 2.5, "sdr_i": 2.75}
    assert summary["A"]["last_train_snr"] == 4.0 and summary["B"]["last_train_snr"] == 3.0
    assert summary["B"]["parameters"] is None and summary["B"]["test"] == {}
    assert summary["A"]["eager_fallback"] is False
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_marked_eager_by_quick_separation_is_said_so(tmp_path):
    eager = _experiment(tmp_path / "a", [0.5])
    (eager / "eager_fallback").write_text("the compiled run failed; this run is eager\n")
    result = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(tmp_path / "curves.png"), f"batch 8={eager}"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout)["batch 8"]["eager_fallback"] is True
