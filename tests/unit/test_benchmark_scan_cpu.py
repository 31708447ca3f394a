"""benchmarks/scan_cpu.py runs on the scan's current layout, and its implementations agree."""

from tests.conftest import load_benchmark


def test_every_implementation_matches_the_reference_forward_and_backward():
    scan_cpu = load_benchmark("scan_cpu")
    (row_forward, row_backward) = scan_cpu.timing_pass([(2, 50, 8, 4, ("forward", "backward"))], repeats=1,
                                                       slow_s=10.0, seed=0)
    for row in (row_forward, row_backward):
        assert set(row["implementations"]) == {"reference", "ours", "mambapy"}
        for name, entry in row["implementations"].items():
            assert entry["max_abs_diff_vs_reference"] < 1e-4, (row["mode"], name)
