"""benchmarks/train_step_cpu.py runs training steps of the quick model each way and reports each."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # three processes, each building the quick model
def test_every_way_runs_steps_and_reports_time_and_peak_memory():
    command = [sys.executable, "benchmarks/train_step_cpu.py", "--lengths", "256", "--threads", "1", "--steps", "1"]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    assert [row["way"] for row in report["results"]] == ["recomputed_chunk", "recomputed_autograd", "torch_checkpoint"]
    for row in report["results"]:
        assert row["samples"] == 256 and row["frames"] == 5  # 256 / hop 64 + 1
        assert row["step_s"] > 0 and row["peak_resident_mib"] > 0
