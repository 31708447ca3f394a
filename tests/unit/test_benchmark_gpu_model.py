"""benchmarks/gpu_model.py: each model it names builds with the backend and checkpointing the name says
and its options parse on any machine; on a GPU a tiny run measures training and inference."""

import json
import subprocess
import sys

import pytest

from spmamba_sb import SPMamba, TFGridNet
from spmamba_sb.nnet.mixer import MambaMixer
from tests.conftest import ROOT, load_benchmark

gpu_model = load_benchmark("gpu_model")


@pytest.mark.parametrize("name", sorted(gpu_model.MODELS))
def test_every_model_is_the_one_its_name_says(name):
    model = gpu_model.MODELS[name]()
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper's model
    family, *backend = name.removesuffix("-ckpt").removesuffix("-compile").split("-")
    assert isinstance(model, {"spmamba": SPMamba, "tfgridnet": TFGridNet}[family])
    assert {mixer.scan_backend for mixer in model.modules() if isinstance(mixer, MambaMixer)} == set(backend)
    checkpointed = [module.checkpoint_blocks for module in model.modules() if hasattr(module, "checkpoint_blocks")]
    assert checkpointed == [name.endswith("-ckpt")]


def test_options_name_known_models_and_may_leave_training_out():
    args = gpu_model.parse_args(["--models", "tfgridnet", "spmamba-torch", "--batches", "--infer-seconds", "1"])
    assert args.models == ["tfgridnet", "spmamba-torch"] and args.batches == [] and args.infer_seconds == [1.0]
    assert gpu_model.parse_args([]).models == list(gpu_model.MODELS)
    with pytest.raises(SystemExit):
        gpu_model.parse_args(["--models", "mamba2"])


@pytest.mark.gpu
@pytest.mark.slow
def test_a_tiny_run_measures_training_and_inference():
    command = [sys.executable, "benchmarks/gpu_model.py", "--models", "spmamba-torch", "tfgridnet", "--batches", "1",
               "--train-seconds", "0.25", "--infer-seconds", "0.25", "--repeats", "1"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()
    machine, *records = [json.loads(line) for line in lines]
    assert "device" in machine
    measured = [r for r in records if "work" in r]
    assert [(r["model"], r["work"], r.get("precision")) for r in measured] == [
        (model, work, precision) for model in ("spmamba-torch", "tfgridnet")
        for work, precision in (("train", "fp32"), ("train", "bf16"), ("inference", "fp32"))]
    for record in measured:
        assert "error" not in record and record["audio_s_per_s"] > 0 and record["peak_gib"] > 0
