"""benchmarks/long_audio_cpu.py separates files of the lengths asked for, each in a process of its own,
and reports each one's peak memory and time."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # three processes, each loading a model folder: about 20 s
def test_every_file_is_separated_whole_and_measured():
    command = [sys.executable, "benchmarks/long_audio_cpu.py", "--minutes", "0.005", "0.01", "--chunk-seconds", "0.1"]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    assert report["chunk_seconds"] == 0.1
    assert list(report["small_model"]) == ["0.005 min", "0.01 min"]
    measured = [*report["small_model"].values(), report["published_model_one_chunk"]]
    assert [entry["seconds_of_audio"] for entry in measured] == pytest.approx([0.3, 0.6, 0.1])
    for entry in measured:
        assert entry["peak_rss_gib"] > 0 and entry["wall_s"] >= 0
