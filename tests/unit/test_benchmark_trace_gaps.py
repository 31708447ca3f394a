"""benchmarks/trace_gaps.py reads a real torch profiler trace and puts GPU idle time down to the host code."""

import glob
import gzip
import json
import os

import pytest
import torch
from torch import profiler

from spmamba_sb.losses import neg_snr
from tests.conftest import load_benchmark


def _cpu_trace(folder):
    """A profiler trace as SpeechBrain's --profile_training writes it (schedule, shapes, stacks), on CPU."""
    schedule = profiler.schedule(wait=0, warmup=1, active=2, repeat=1)
    with profiler.profile(schedule=schedule, on_trace_ready=profiler.tensorboard_trace_handler(str(folder)),
                          record_shapes=True, with_stack=True) as prof:
        for _ in range(3):
            neg_snr(torch.randn(800, 2), torch.randn(800, 2))
            prof.step()
    (path,) = glob.glob(os.path.join(str(folder), "*.pt.trace.json"))
    return path


def test_idle_time_is_put_down_to_the_python_frame_running_when_the_gpu_ran_dry(tmp_path):
    trace_gaps = load_benchmark("trace_gaps")
    path = _cpu_trace(tmp_path)
    with open(path, encoding="utf-8") as handle:
        trace = json.load(handle)
    events = trace["traceEvents"]
    steps = sorted((e for e in events if e.get("ph") == "X" and e["name"].startswith("ProfilerStep#")),
                   key=lambda e: e["ts"])
    assert [e["name"] for e in steps] == ["ProfilerStep#1", "ProfilerStep#2"]
    (frame,) = [e for e in events if e.get("cat") == "python_function" and "neg_snr" in e["name"]
                and steps[0]["ts"] <= e["ts"] <= steps[0]["ts"] + steps[0]["dur"]]
    # The GPU runs from the first step's start until neg_snr begins, then idles to the end.
    events.append({"ph": "X", "cat": "kernel", "name": "k", "ts": steps[0]["ts"], "dur": frame["ts"] - steps[0]["ts"]})
    with gzip.open(tmp_path / "trace.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(trace, handle)

    report = trace_gaps.analyse(trace_gaps.load_events(str(tmp_path / "trace.json.gz")), min_gap_ms=0)

    assert [step["step"] for step in report["steps"]] == [1, 2]
    first, second = report["steps"]
    assert abs(first["busy_ms"] - (frame["ts"] - steps[0]["ts"]) / 1e3) < 0.01
    assert second["busy_ms"] == 0
    assert 0 < report["gpu_busy"] < 1
    labels = list(report["idle_ms_by_host"])
    assert any("losses.py" in label and "neg_snr" in label for label in labels), labels
    idle = sum(report["idle_ms_by_host"].values())
    assert abs(idle + first["busy_ms"] - first["wall_ms"] - second["wall_ms"]) < 0.05


def test_a_trace_without_profiler_steps_is_refused():
    with pytest.raises(SystemExit, match="ProfilerStep"):
        load_benchmark("trace_gaps").analyse([{"ph": "X", "cat": "kernel", "name": "k", "ts": 0, "dur": 1}])
