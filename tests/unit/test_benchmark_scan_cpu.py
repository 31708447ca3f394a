"""benchmarks/scan_cpu.py runs on the scan's current layout, and its implementations agree."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _benchmark():
    spec = importlib.util.spec_from_file_location("scan_cpu", os.path.join(ROOT, "benchmarks", "scan_cpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_implementation_matches_the_reference_forward_and_backward():
    (row_forward, row_backward) = _benchmark().timing_pass([(2, 50, 8, 4, ("forward", "backward"))], repeats=1,
                                                           slow_s=10.0, seed=0)
    for row in (row_forward, row_backward):
        assert set(row["implementations"]) == {"reference", "ours", "mambapy"}
        for name, entry in row["implementations"].items():
            assert entry["max_abs_diff_vs_reference"] < 1e-4, (row["mode"], name)
