"""benchmarks/quick_separation.sh passes each task's corpus and model settings (in ``versus``,
``ablation`` and ``warmup``, each arm's) to the public commands (recorded by stand-ins for the
project's commands and Python), and the 16 kHz settings it passes build the published 16 kHz
STFT from the quick recipe."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "quick_separation.sh"


def _run(tmp_path, stage, **environment):
    """Run a stage with recording stand-ins; returns the recorded command lines."""
    record = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("spmamba-prepare-demo", "spmamba-export", "spmamba-separate", "spmamba-evaluate", "fake-python"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\n')
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=str(bin_dir / "fake-python"),
               DEVICE="cpu", WORKERS="2")
    env.update(environment)
    result = subprocess.run(["bash", str(SCRIPT), *stage.split()], env=env, capture_output=True, text=True, timeout=60)
    return result, record.read_text().splitlines() if record.exists() else []


def test_clean_8k_task_is_the_default(tmp_path):
    result, calls = _run(tmp_path, "prepare")
    assert result.returncode == 0, result.stderr
    assert calls[0].split()[:7] == ["spmamba-prepare-demo", "--out", "data/demo-clean8k", "--preset", "clean",
                                    "--sample-rate", "8000"]
    result, calls = _run(tmp_path, "train")
    train = calls[-1].split()
    assert train[1:3] == ["train.py", "hparams/spmamba-8k-quick.yaml"]
    assert "--sample_rate" not in train and "results/quick-clean8k/spmamba-8k-quick/1234" in train


def test_noisy_16k_task_prepares_noisy_16k_mixtures_and_sets_the_16k_stft(tmp_path):
    result, calls = _run(tmp_path, "prepare", TASK="noisy16k")
    assert result.returncode == 0, result.stderr
    prepare = calls[0].split()
    assert prepare[:5] == ["spmamba-prepare-demo", "--out", "data/demo-noisy16k", "--sample-rate", "16000"]
    assert "--preset" not in prepare
    result, calls = _run(tmp_path, "train", TASK="noisy16k", BUDGET="3")
    train = calls[-1].split()
    settings = {key: value for key, value in zip(train, train[1:]) if key.startswith("--")}
    assert settings["--sample_rate"] == "16000" and settings["--n_fft"] == "512"
    assert settings["--hop_length"] == "128" and settings["--training_signal_len"] == "32000"
    assert settings["--max_train_minutes"] == "3" and settings["--output_folder"].startswith("results/quick-noisy16k/")


def test_an_override_of_a_task_setting_replaces_it(tmp_path):
    result, calls = _run(tmp_path, "train", TASK="noisy16k", EXTRA_ARGS="--batch_size 1 --training_signal_len 8000")
    assert result.returncode == 0, result.stderr
    train = calls[-1].split()
    assert train.count("--training_signal_len") == 1 and train[train.index("--training_signal_len") + 1] == "8000"
    assert train[train.index("--n_fft") + 1] == "512" and train[train.index("--batch_size") + 1] == "1"


def test_versus_trains_both_models_under_the_recipe_for_the_same_minutes(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "versus", ABLATION="6", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    spmamba, tfgridnet, plot = calls
    for train, name in ((spmamba, "spmamba"), (tfgridnet, "tfgridnet")):
        words = train.split()
        assert words[1:3] == ["train.py", "hparams/spmamba-8k-quick.yaml"]
        assert f"{results}/{name}/1234" in words and words[words.index("--max_train_minutes") + 1] == "6"
    assert "--sequence_layer" not in spmamba and tfgridnet.endswith("--sequence_layer !ref <blstm>")
    assert plot.split()[1:] == ["benchmarks/plot_training.py", "--out", f"{results}/versus.png",
                                f"SPMamba={results}/spmamba/1234", f"TF-GridNet={results}/tfgridnet/1234"]


def test_ablation_trains_three_arms_for_the_same_minutes_and_plots_them(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "ablation", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    fixed, dynamic, augmented, plot = calls
    for train, name in ((fixed, "fixed"), (dynamic, "dynamic"), (augmented, "dynamic-augmented")):
        words = train.split()
        assert f"{results}/{name}/1234" in words and words[words.index("--max_train_minutes") + 1] == "8"
    assert fixed.endswith("--dynamic_mixing False") and "--dynamic_mixing" not in dynamic + augmented
    assert augmented.endswith("--use_speedperturb True --use_rand_shift True --use_wavedrop True")
    assert "--use_speedperturb" not in fixed + dynamic
    assert plot.split()[1:4] == ["benchmarks/plot_training.py", "--out", f"{results}/ablation.png"]


def test_warmup_compiles_each_model_and_the_augmented_arm_on_a_tiny_corpus_of_the_task(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "warmup", TASK="noisy16k", COMPILE="1", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    prepare, *trains = calls
    assert prepare.split()[:5] == ["spmamba-prepare-demo", "--out", f"{results}/warmup/data", "--sample-rate", "16000"]
    runs = {}  # the runs go side by side, so their order in the record varies
    for train in trains:
        settings = dict(zip(train.split(), train.split()[1:]))
        assert settings["--data_folder"] == f"{results}/warmup/data"
        assert settings["--n_fft"] == "512" and settings["--train_epoch_size"] == "80" and "--compile" in settings
        runs[settings["--output_folder"]] = train
    spmamba, augmented, tfgridnet, batch8, crop1s = (
        runs.pop(f"{results}/warmup/{name}/1234")
        for name in ("spmamba", "spmamba-augmented", "tfgridnet", "batch8", "crop1s"))
    assert not runs
    assert "--sequence_layer" not in spmamba + augmented and tfgridnet.endswith("--sequence_layer !ref <blstm>")
    assert "--use_speedperturb True" in augmented and "--use_speedperturb" not in spmamba + tfgridnet
    assert batch8.endswith("--batch_size 8") and crop1s.endswith("--training_signal_len 16000")
    assert crop1s.count("--training_signal_len") == 1  # the 1 s crop replaces the task's 2 s


@pytest.mark.parametrize("task, one_second", [("clean8k", "8000"), ("noisy16k", "16000")])
def test_learning_trains_four_arms_for_the_same_minutes_and_plots_them(tmp_path, task, one_second):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "learning", TASK=task, ABLATION="5", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    recipe, si_snr, batch8, crop1s, plot = calls
    for train, name in ((recipe, "recipe"), (si_snr, "si-snr"), (batch8, "batch8"), (crop1s, "crop1s")):
        words = train.split()
        assert f"{results}/{name}/1234" in words and words[words.index("--max_train_minutes") + 1] == "5"
    assert si_snr.endswith("--loss !name:spmamba_sb.losses.pit_si_snr_loss") and "--loss" not in recipe
    assert batch8.endswith("--batch_size 8") and "--batch_size" not in recipe + si_snr + crop1s
    words = crop1s.split()
    assert words.count("--training_signal_len") == 1 and words[words.index("--training_signal_len") + 1] == one_second
    assert plot.split(" ", 1)[1] == (f"benchmarks/plot_training.py --out {results}/learning.png "
                                     f"recipe={results}/recipe/1234 SI-SNR loss={results}/si-snr/1234 "
                                     f"batch 8={results}/batch8/1234 1 s crops={results}/crop1s/1234")


def test_warmup_stops_when_a_warm_up_run_fails(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    failing = bin_dir / "failing-python"
    failing.write_text('#!/bin/sh\ncase "$*" in *sequence_layer*) exit 3 ;; esac\n')
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    result, _ = _run(tmp_path, "warmup", COMPILE="1", RESULTS=str(tmp_path / "results"), PYTHON=str(failing))
    assert result.returncode == 3


def test_a_run_that_fails_compiled_trains_again_eager_and_is_marked(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "tries.txt"
    compile_fails = bin_dir / "compile-fails-python"
    compile_fails.write_text(f'#!/bin/sh\necho "$*" >> "{record}"\ncase "$*" in *--compile*) exit 1 ;; esac\n')
    compile_fails.chmod(compile_fails.stat().st_mode | stat.S_IEXEC)
    results = tmp_path / "results"
    result, _ = _run(tmp_path, "train 3", COMPILE="1", RESULTS=str(results), PYTHON=str(compile_fails))
    assert result.returncode == 0, result.stderr
    compiled, eager = record.read_text().splitlines()
    assert "--compile --compile_module_keys masknet" in compiled and "--compile" not in eager
    assert "'spmamba-8k-quick' failed compiled; it trains again eager" in result.stderr
    assert (results / "spmamba-8k-quick" / "1234" / "eager_fallback").exists()


def test_a_run_that_trains_compiled_is_not_marked(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "train 3", COMPILE="1", RESULTS=str(results))
    assert result.returncode == 0 and len(calls) == 1 and "--compile" in calls[0]
    assert not (results / "spmamba-8k-quick" / "1234" / "eager_fallback").exists()


def test_warmup_without_compile_does_nothing(tmp_path):
    result, calls = _run(tmp_path, "warmup", RESULTS=str(tmp_path / "results"))
    assert result.returncode == 0 and "nothing to warm up" in result.stdout and not calls


def test_unknown_task_is_refused(tmp_path):
    result, calls = _run(tmp_path, "prepare", TASK="noisy8k")
    assert result.returncode == 2 and "TASK must be clean8k or noisy16k" in result.stderr and not calls


def test_16k_overrides_build_the_published_16k_front_end(tmp_path):
    pytest.importorskip("speechbrain")
    from hyperpyyaml import load_hyperpyyaml

    overrides = {"data_folder": "unused", "output_folder": str(tmp_path / "quick"), "sample_rate": 16000,
                 "n_fft": 512, "hop_length": 128, "training_signal_len": 32000}
    with open(REPO / "hparams" / "spmamba-8k-quick.yaml") as handle:
        quick = load_hyperpyyaml(handle, overrides)
    with open(REPO / "hparams" / "spmamba.yaml") as handle:
        published = load_hyperpyyaml(handle, {"data_folder": "unused", "output_folder": str(tmp_path / "published")})
    for key in ("sample_rate", "n_fft", "hop_length"):
        assert quick[key] == published[key], key
    assert quick["Encoder"].n_fft == 512 and quick["Encoder"].hop_length == 128


def test_voices_trains_espeak_and_wide_voices_for_the_same_minutes_and_scores_both_on_real(tmp_path):
    results, real = tmp_path / "results", tmp_path / "real"
    result, calls = _run(tmp_path, "voices", ABLATION="6", RESULTS=str(results), REAL=str(real), COMPILE="1",
                         DATA=str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    prepare_wide, prepare_tiny, warm, espeak, wide, *scoring, plot = calls
    assert prepare_wide.split()[:3] == ["spmamba-prepare-demo", "--out", f"{tmp_path}/demo-wide"]
    assert "--voice-variety wide" in prepare_wide and "--compile" in warm
    for train, name, data in ((espeak, "espeak", "demo"), (wide, "wide", "demo-wide")):
        settings = dict(zip(train.split(), train.split()[1:]))
        assert settings["--output_folder"] == f"{results}/{name}/1234" and settings["--max_train_minutes"] == "6"
        assert settings["--data_folder"] == f"{tmp_path}/{data}"
    assert [line.split()[0] for line in scoring] == ["spmamba-export", "spmamba-evaluate", "spmamba-evaluate"] * 2
    assert scoring[1].split()[1:6] == [f"{real}/test.csv", "--model", f"{results}/espeak/model", "--out",
                                       f"{results}/espeak/real"]
    assert scoring[5].split()[1:6] == [f"{tmp_path}/demo/test.csv", "--model", f"{results}/wide/model", "--out",
                                       f"{results}/wide/espeak-test"]
    assert plot.split()[1:4] == ["benchmarks/plot_training.py", "--out", f"{results}/voices.png"]


@pytest.mark.parametrize("real", [None, "real-16k"])
def test_check_scores_the_exported_model_on_the_recorded_speech_set_when_given(tmp_path, real):
    results = tmp_path / "results"
    results.mkdir()  # as the training run leaves it
    environment = {"REAL": str(tmp_path / real)} if real else {}
    result, calls = _run(tmp_path, "check", TASK="noisy16k", RESULTS=str(results), **environment)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in calls[:3]] == ["spmamba-export", "spmamba-separate", "fake-python"]
    scoring = [line for line in calls if line.startswith("spmamba-evaluate")]
    if real is None:
        assert not scoring
    else:
        assert scoring[0].split()[1:6] == [f"{tmp_path / real}/test.csv", "--model", f"{results}/model", "--out",
                                           f"{results}/real"]


def test_voices_needs_a_recorded_speech_set(tmp_path):
    result, calls = _run(tmp_path, "voices", RESULTS=str(tmp_path / "results"))
    assert result.returncode == 2 and "voices needs REAL" in result.stderr and not calls


def _settings(call):
    words = call.split()
    return {key: value for key, value in zip(words, words[1:]) if key.startswith("--")}


def test_curriculum_trains_on_clean_8k_then_starts_the_noisy_run_from_that_model(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "curriculum", TASK="noisy16k", BUDGET="20", RESULTS=str(results),
                         CLEAN_DATA="data/clean", EXTRA_ARGS="--loss !name:spmamba_sb.losses.pit_si_snr_loss")
    assert result.returncode == 0, result.stderr
    clean, export, noisy = calls
    clean, noisy = _settings(clean), _settings(noisy)
    assert clean["--data_folder"] == "data/clean" and clean["--max_train_minutes"] == "7"
    assert clean["--attention_qk_dim"] == "258" and "--sample_rate" not in clean and "--n_fft" not in clean
    assert clean["--output_folder"] == f"{results}/clean-phase/spmamba-8k-quick/1234"
    assert export.split() == ["spmamba-export", f"{results}/clean-phase/spmamba-8k-quick/1234",
                              "--out", f"{results}/clean-phase/model", "--overwrite"]
    assert noisy["--init_from"] == f"{results}/clean-phase/model" and noisy["--max_train_minutes"] == "13"
    assert noisy["--n_fft"] == "512" and noisy["--data_folder"] == "data/demo-noisy16k"
    assert "--attention_qk_dim" not in noisy  # the published 16 kHz network
    assert clean["--loss"] == noisy["--loss"] == "!name:spmamba_sb.losses.pit_si_snr_loss"
    _, calls = _run(tmp_path, "curriculum 2 3", TASK="noisy16k", NOISY_ARGS="--lr 0.001",
                    CLEAN_ARGS="--lr_decay_fraction 0.1")
    clean, noisy = _settings(calls[-3]), _settings(calls[-1])
    assert "--lr" not in clean and noisy["--lr"] == "0.001"
    assert clean["--lr_decay_fraction"] == "0.1" and "--lr_decay_fraction" not in noisy
    assert clean["--max_train_minutes"] == "2" and noisy["--max_train_minutes"] == "3"
    refused, _ = _run(tmp_path, "curriculum")
    assert refused.returncode == 2 and "TASK=noisy16k" in refused.stderr


def test_the_clean_phase_has_the_shapes_of_the_published_16k_network():
    """attention_qk_dim 258 at n_fft 256 gives the attention the channels that 512 gives at 512,
    so every parameter but the per-bin norms has one shape in both phases."""
    import torch
    from spmamba_sb.nnet.sequence import sequence_layer_factory
    from spmamba_sb.trio import MaskNet

    def shapes(n_fft, qk):
        layer = sequence_layer_factory("mamba", d_state=16, expand=4, scan_backend="torch")
        masknet = MaskNet(num_spks=2, n_fft=n_fft, emb_dim=16, emb_kernel_size=8, num_blocks=1, num_heads=4,
                          attention_qk_dim=qk, sequence_layer=layer)
        return {name: tuple(value.shape) for name, value in masknet.state_dict().items()}

    clean, published = shapes(256, 258), shapes(512, 512)
    differ = {name for name in published if clean[name] != published[name]}
    assert differ and all(name.endswith(("norm.gamma", "norm.beta")) for name in differ)
    assert all(clean[name][-1] == 129 and published[name][-1] == 257 for name in differ)


def test_warmup_for_the_curriculum_compiles_both_phases_only(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "warmup curriculum", TASK="noisy16k", COMPILE="1", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    prepares = sorted(call.split()[2] for call in calls if call.startswith("spmamba-prepare-demo"))
    assert prepares == [f"{results}/clean-phase/warmup/data", f"{results}/warmup/data"]
    trains = sorted((_settings(call) for call in calls if call.startswith("fake-python")),
                    key=lambda settings: settings["--output_folder"])
    assert [settings["--output_folder"] for settings in trains] == [
        f"{results}/clean-phase/warmup/spmamba-8k-quick/1234", f"{results}/warmup/spmamba-8k-quick/1234"]
    clean, noisy = trains
    assert clean["--attention_qk_dim"] == "258" and "--n_fft" not in clean and "--compile" in clean
    assert noisy["--n_fft"] == "512" and "--attention_qk_dim" not in noisy and "--compile" in noisy


@pytest.mark.parametrize("task, stft, rate", [("clean8k", ["256", "64"], "8000"), ("noisy16k", ["512", "128"], "16000")])
def test_profile_traces_train_py_steps_and_times_the_model_alone_at_the_same_shapes(tmp_path, task, stft, rate):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "profile", TASK=task, COMPILE="1", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    train, gaps, model = calls
    settings = _settings(train)
    assert "--profile_training" in settings and settings["--profile_warmup"] == "10"
    assert settings["--profile_steps"] == "5" and "--compile" in settings
    assert settings["--output_folder"] == f"{results}/profile/1234"
    assert gaps.split()[1] == "benchmarks/trace_gaps.py" and f"{results}/profile/1234/profiler_logs/" in gaps
    words = model.split()
    assert words[1] == "benchmarks/profile_step.py" and "--compile" in words
    assert words[words.index("--n-fft") + 1:words.index("--n-fft") + 4] == [stft[0], "--hop-length", stft[1]]
    assert words[words.index("--sample-rate") + 1] == rate and words[words.index("--batches") + 1] == "4"


def test_gpus_trains_through_torchrun_one_process_per_gpu(tmp_path):
    result, calls = _run(tmp_path, "curriculum 2 3", TASK="noisy16k", GPUS="4", DEVICE="cuda")
    assert result.returncode == 0, result.stderr
    trains = [call.split() for call in calls if " train.py " in call]
    assert len(trains) == 2  # the clean phase and the noisy run, both on the four GPUs
    for train in trains:
        assert train[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "train.py"]
        assert train[train.index("--device") + 1] == "cuda"
    result, calls = _run(tmp_path, "train")
    assert calls[-1].split()[1] == "train.py"  # one GPU: train.py itself


@pytest.mark.parametrize("gpus, device, message", [("two", "cuda", "whole number"), ("0", "cuda", "whole number"),
                                                   ("2", "cpu", "needs DEVICE=cuda")])
def test_gpus_is_checked(tmp_path, gpus, device, message):
    result, calls = _run(tmp_path, "train", GPUS=gpus, DEVICE=device)
    assert result.returncode == 2 and message in result.stderr and calls == []


def test_warmup_for_learning_compiles_its_arms_only(tmp_path):
    results = tmp_path / "results"
    result, calls = _run(tmp_path, "warmup learning", TASK="noisy16k", COMPILE="1", RESULTS=str(results))
    assert result.returncode == 0, result.stderr
    trains = {_settings(call)["--output_folder"]: call for call in calls if call.startswith("fake-python")}
    assert sorted(trains) == [f"{results}/warmup/{name}/1234" for name in ("batch8", "crop1s", "spmamba")]
    assert trains[f"{results}/warmup/batch8/1234"].endswith("--batch_size 8")
    assert trains[f"{results}/warmup/crop1s/1234"].endswith("--training_signal_len 16000")
    assert all("--compile" in call and "--sequence_layer" not in call for call in trains.values())
