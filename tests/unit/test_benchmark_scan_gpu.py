"""benchmarks/scan_gpu.py: its options and the bytes it says a scan must move, on any machine with Triton;
on a GPU a run at the published shapes in fp32 times the Triton scan against its ceilings."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from tests.conftest import ROOT, load_benchmark  # noqa: E402

scan_gpu = load_benchmark("scan_gpu")


def test_the_fewest_bytes_are_every_input_read_and_every_output_written_once():
    rows, length = 2, 3
    channel_tensor, state_tensor = rows * 512 * length * 2, rows * 16 * length * 2  # bf16 [rows, D, L], [rows, N, L]
    forward = 4 * channel_tensor + 2 * state_tensor  # u, delta, z read, out written; B, C read
    backward = 7 * channel_tensor + 4 * state_tensor  # u, delta, z, dout read, du, ddelta, dz written; B, C, dB, dC
    assert scan_gpu.minimum_bytes(rows, length, scan_gpu.DTYPES["bf16"], backward=False) == forward
    assert scan_gpu.minimum_bytes(rows, length, scan_gpu.DTYPES["bf16"], backward=True) == forward + backward
    assert scan_gpu.minimum_bytes(rows, length, scan_gpu.DTYPES["fp32"], backward=False) == 2 * forward


def test_options_default_to_the_time_major_layout_in_both_types():
    args = scan_gpu.parse_args([])
    assert args.layouts == ["time-major"] and args.dtypes == ["bf16", "fp32"] and not args.sweep
    assert scan_gpu.parse_args(["--layouts", "channel-first", "--dtypes", "fp32"]).layouts == ["channel-first"]
    with pytest.raises(SystemExit):
        scan_gpu.parse_args(["--dtypes", "fp16"])


@pytest.mark.gpu
@pytest.mark.slow
def test_a_run_times_the_triton_scan_at_both_published_shapes():
    command = [sys.executable, "benchmarks/scan_gpu.py", "--dtypes", "fp32"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    machine = next(record for record in records if "device" in record)
    assert machine["copy_GBps"] > 0 and machine["exp2_Gexp_per_s"] > 0
    timed = [record for record in records if record.get("backend") == "triton time-major"]
    assert [record["shape"] for record in timed] == [[501, 512, 250, 16], [257, 512, 494, 16]]
    for record in timed:
        assert record["forward_ms"] > 0 and record["forward_backward_ms"] > 0 and record["deterministic"]
