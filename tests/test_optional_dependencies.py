"""A plain install runs the model, training and inference; only corpus simulation needs the data extra."""

import json
import pathlib
import subprocess
import sys

import pytest

from spmamba_sb.data.extras import DATA_MODULES

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Run in a fresh interpreter where the data extra's modules cannot be imported, as if not installed:
# imports the core (train.py included), then prints what the data entry points say, as JSON.
WITHOUT_DATA_EXTRA = f"""
import contextlib, importlib.util, io, json, sys
sys.modules.update(dict.fromkeys({DATA_MODULES!r}))
import numpy as np
import spmamba_sb, spmamba_sb.data, spmamba_sb.data.dynamic_mixing, spmamba_sb.inference, spmamba_sb.cli
spec = importlib.util.spec_from_file_location("train", {str(ROOT / "train.py")!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
from spmamba_sb.data.loudness import measure_loudness
from spmamba_sb.data.prepare_cli import demo_main, echo2mix_main, real_main
from spmamba_sb.data.room import RoomSimulator
from spmamba_sb.data.simulation_config import SimulationConfig
from spmamba_sb.data.synth_speech import EspeakSynthesizer

report = {{"library": [], "commands": []}}
for call in [lambda: measure_loudness(np.zeros(8000), 8000), EspeakSynthesizer,
             lambda: RoomSimulator(SimulationConfig()).draw(np.random.default_rng(0), 2)]:
    try:
        call()
    except ImportError as error:
        report["library"].append(str(error))
for main, argv in [(demo_main, ["--out", "demo"]),
                   (echo2mix_main, ["--librispeech", "a", "--wham", "b", "--dnr", "c", "--out", "echo2mix"]),
                   (real_main, ["--source", "recordings", "--out", "real"])]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main(argv)
        except SystemExit as exit:
            report["commands"].append([exit.code, stderr.getvalue()])
print(json.dumps(report))
"""


def _message(user, name):
    return f'{user} needs the data extra (cannot import {name}): pip install "spmamba-sb[data]"'


@pytest.mark.slow  # a fresh interpreter trains and separates with a tiny model
def test_core_runs_without_the_data_extra_and_simulation_asks_for_it(tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_DATA_EXTRA], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr  # the core imported, and the calls ran
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["library"] == [_message("measure_loudness", "pyloudnorm"),
                                 _message("EspeakSynthesizer", "espeakng_loader"),
                                 _message("RoomSimulator", "pyroomacoustics")]
    assert report["commands"] == [[2, _message("spmamba-prepare-demo", "pyloudnorm") + "\n"],
                                  [2, _message("spmamba-prepare-echo2mix", "pyloudnorm") + "\n"],
                                  [2, _message("spmamba-prepare-real", "pyloudnorm") + "\n"]]
    assert not any(tmp_path.iterdir())  # the commands wrote nothing
