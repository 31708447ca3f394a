"""benchmarks/cpu_efficiency.py times the published SPMamba on a CPU and relates its FLOP/s to the
machine's matrix-product FLOP/s."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # the published model, four inferences and two counting passes, in its own process
def test_a_tiny_run_reports_time_flops_and_the_top_operators():
    # its own process: the script changes the C allocator's settings for the rest of the process
    command = [sys.executable, "benchmarks/cpu_efficiency.py", "--seconds", "0.05", "--repeats", "1",
               "--matmul-size", "128", "--profile"]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    assert report["audio_seconds"] == 0.05
    assert report["inference_s"] > 0 and report["inference_s_per_audio_s_default_allocator"] > 0
    assert report["model_gflop"] > 0 and report["matmul_gflop_s"] > 0 and report["share_of_matmul_flop_s"] > 0
    assert report["keep_freed_memory"] in (True, False) and report["threads"] >= 1
    assert report["top_operators_self_cpu_s"]
