#!/usr/bin/env python3
"""Where a profiled training run's GPU waits: busy share per step and the host code behind its idle gaps.

Reads a torch profiler trace (Chrome JSON, ``*.pt.trace.json``), such as the one SpeechBrain
writes under ``<output_folder>/profiler_logs`` for ``train.py ... --profile_training
--profile_warmup 10 --profile_steps 5``. For each profiler step (``ProfilerStep#N``, from the
start of one to the start of the next) it gives the wall time and the time the GPU runs kernels,
copies or fills. Then, over all steps, every GPU idle gap of at least ``--min-gap-ms`` is put
down to the host code running at its start: the innermost Python frame from a file matching
``--frames`` (default: this project, SpeechBrain and train.py), and any CUDA runtime call then
(``cudaStreamSynchronize``, a blocking copy, ...). Prints one JSON object.

    python benchmarks/trace_gaps.py results/quick/1234/profiler_logs/*.pt.trace.json
"""

import argparse
import bisect
import gzip
import json
import re
from collections import defaultdict

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
STEP = re.compile(r"ProfilerStep#(\d+)")


def load_events(path):
    """The trace's complete ("X") events."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        trace = json.load(handle)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [event for event in events if event.get("ph") == "X" and "dur" in event]


def busy_intervals(events):
    """The GPU's busy time as sorted, disjoint [start, end] intervals (microseconds)."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") in GPU_CATEGORIES)
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def idle_gaps(intervals, start, end):
    """The idle [gap_start, gap_end] stretches between busy intervals inside [start, end]."""
    gaps, cursor = [], start
    for a, b in intervals:
        if b <= start:
            continue
        if a >= end:
            break
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def host_label(host, starts, at):
    """What the host does at time ``at``: the innermost Python frame of ``host`` running then, and
    any CUDA runtime call. ``host`` is sorted by start; a frame that starts later and still runs
    at ``at`` is nested deeper, so the walk back stops at the first one."""
    frame, runtime = None, None
    for index in range(bisect.bisect_right(starts, at) - 1, -1, -1):
        event = host[index]
        if event["ts"] + event["dur"] < at:
            continue
        if event["cat"] == "cuda_runtime":
            runtime = runtime or event["name"]
        else:
            frame = event["name"]
            break
    return f"{frame or '(no matching frame)'}{' / ' + runtime if runtime else ''}"


def analyse(events, min_gap_ms=0.05, frames=r"spmamba_sb|speechbrain|train\.py", top=15):
    """Per-step wall and GPU-busy milliseconds and the idle time by host label (see module docstring).

    Example
    -------
    >>> events = [{"ph": "X", "cat": "cpu_op", "name": "ProfilerStep#0", "ts": 0, "dur": 100},
    ...           {"ph": "X", "cat": "cpu_op", "name": "ProfilerStep#1", "ts": 100, "dur": 100},
    ...           {"ph": "X", "cat": "python_function", "name": "spmamba_sb/losses.py(9): f", "ts": 0, "dur": 50},
    ...           {"ph": "X", "cat": "kernel", "name": "k", "ts": 40, "dur": 160}]
    >>> report = analyse(events, min_gap_ms=0.01)
    >>> [step["busy_ms"] for step in report["steps"]], report["idle_ms_by_host"]
    ([0.06, 0.1], {'spmamba_sb/losses.py(9): f': 0.04})
    """
    frames = re.compile(frames)
    spans = {int(STEP.fullmatch(e["name"]).group(1)): (e["ts"], e["ts"] + e["dur"])  # host side only
             for e in events if e.get("cat") in ("cpu_op", "user_annotation") and STEP.fullmatch(e.get("name", ""))}
    steps = [(number, start, end) for number, (start, end) in sorted(spans.items())]
    if not steps:
        raise SystemExit("no ProfilerStep#N events in the trace (was it written by a profiler with a schedule?)")
    busy = busy_intervals(events)
    host = sorted((e for e in events
                   if (e.get("cat") == "python_function" and frames.search(e.get("name", "")))
                   or (e.get("cat") == "cuda_runtime" and "Launch" not in e.get("name", ""))), key=lambda e: e["ts"])
    starts = [e["ts"] for e in host]
    bounds = [start for _, start, _ in steps] + [max(steps[-1][2], busy[-1][1] if busy else steps[-1][2])]
    report, idle_by_host = {"steps": []}, defaultdict(float)
    for (number, _, _), start, end in zip(steps, bounds, bounds[1:]):
        gaps = idle_gaps(busy, start, end)
        idle = sum(gap_end - gap_start for gap_start, gap_end in gaps)
        report["steps"].append({"step": number, "wall_ms": round((end - start) / 1e3, 2),
                                "busy_ms": round((end - start - idle) / 1e3, 2)})
        for gap_start, gap_end in gaps:
            if gap_end - gap_start >= min_gap_ms * 1e3:
                idle_by_host[host_label(host, starts, gap_start)] += (gap_end - gap_start) / 1e3
    wall = sum(step["wall_ms"] for step in report["steps"])
    report["gpu_busy"] = round(sum(step["busy_ms"] for step in report["steps"]) / wall, 3) if wall else None
    largest = sorted(idle_by_host.items(), key=lambda kv: -kv[1])[:top]
    report["idle_ms_by_host"] = {label: round(ms, 2) for label, ms in largest}
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="a torch profiler trace, *.pt.trace.json[.gz]")
    parser.add_argument("--min-gap-ms", type=float, default=0.05, help="shorter idle stretches are not attributed")
    parser.add_argument("--frames", default=r"spmamba_sb|speechbrain|train\.py",
                        help="regular expression: Python frames to attribute idle time to")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(analyse(load_events(args.trace), args.min_gap_ms, args.frames, args.top), indent=1))


if __name__ == "__main__":
    main()
