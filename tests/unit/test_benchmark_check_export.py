"""benchmarks/check_export.sh exports an experiment, separates the test split's first mixture with
spmamba-separate, and benchmarks/check_exported_model.py scores it next to SpeechBrain's
SepformerSeparation on the same model folder: the two agree."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spmamba_sb.export import export_model
from tests.conftest import ROOT, load_benchmark
from tests.unit.test_export import write_experiment

RATE = 8000  # the experiment's


def _test_split(data):
    """``data/test.csv`` with one three-speaker mixture, test_000000, laid out as the demo corpus is."""
    t = np.arange(RATE // 4) / RATE  # 0.25 s, longer than BSS-Eval's 512-tap filter
    sources = [0.2 * np.sin(2 * np.pi * f0 * t) * (t > onset) for f0, onset in ((150, 0.0), (230, 0.05), (310, 0.1))]
    row = {"ID": "test_000000", "duration": 0.25}
    for folder, signal in [("mix", sum(sources))] + [(f"s{i}", s) for i, s in enumerate(sources, start=1)]:
        path = data / "test" / folder / "test_000000.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signal.astype("float32"), RATE)
        row[f"{folder}_wav"] = str(path)
    with open(data / "test.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return data


def test_the_stock_interface_separates_and_scores_the_mixture(tmp_path, capsys):
    experiment, _ = write_experiment(tmp_path / "experiment")
    model = tmp_path / "model"
    export_model(str(experiment), str(model))
    data = _test_split(tmp_path / "data")
    load_benchmark("check_exported_model").main([str(model), str(data / "test.csv"), "test_000000", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert report["sample_rate"] == RATE and report["mixture"].endswith("test_000000.wav")
    assert set(report["SepformerSeparation"]) == {"si-snr", "si-snr_i", "sdr", "sdr_i", "sir", "sar"}
    assert "spmamba-separate" not in report


@pytest.mark.slow  # three commands in processes of their own
def test_both_ways_of_separating_an_exported_experiment_agree(tmp_path):
    experiment, _ = write_experiment(tmp_path / "experiment")
    data = _test_split(tmp_path / "data")
    out = tmp_path / "out"
    environment = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                       PYTHON=sys.executable)
    subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "check_export.sh"), str(experiment), str(data), str(out),
                    "cpu"], check=True, capture_output=True, text=True, env=environment)
    assert sorted(os.listdir(out / "separated")) == [f"test_000000_s{i}.wav" for i in (1, 2, 3)]
    report = json.loads((out / "exported_model.json").read_text(encoding="utf-8"))
    stock, ours = report["SepformerSeparation"], report["spmamba-separate"]
    assert set(stock) == set(ours)
    for name in stock:
        assert ours[name] == pytest.approx(stock[name], abs=0.05), name  # the files are 16-bit PCM
