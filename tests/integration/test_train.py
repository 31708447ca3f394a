"""train.py end to end on a tiny config: train, kill -9 and resume, test, export, separate; DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf
import yaml

from tests.conftest import TINY_OVERRIDES, write_corpus

pytestmark = pytest.mark.slow  # train.py runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def _train_command(data, out, *extra):
    return [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, "hparams", "spmamba.yaml"),
            "--data_folder", str(data), "--output_folder", str(out), "--device", "cpu", *TINY_OVERRIDES, *extra]


def _checkpoints(save):
    found = []
    for name in sorted(os.listdir(save)) if os.path.isdir(save) else []:
        meta = os.path.join(save, name, "CKPT.yaml")
        if os.path.isfile(meta):
            found.append(yaml.safe_load(open(meta, encoding="utf-8")))
    return found


def _log_lines(out):
    return open(os.path.join(out, "train_log.txt"), encoding="utf-8").read().splitlines()


def test_prepare_train_kill_resume_test_export_separate(tmp_path):
    """The public commands only: spmamba-prepare-demo, train.py, spmamba-export, spmamba-separate."""
    data = tmp_path / "data"
    prepared = subprocess.run([os.path.join(BIN, "spmamba-prepare-demo"), "--out", str(data), "--duration", "1",
                               "--hours-train", "0.0034", "--hours-valid", "0.0006", "--hours-test", "0.0006",
                               "--num-voices", "8", "--no-progress"], capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    out = tmp_path / "exp"
    # checkpoint after every step so that a kill lands mid-epoch
    command = _train_command(data, out, "--ckpt_interval_minutes", "0",
                             "--ckpt_interval_steps", "1")
    process = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not any(c.get("end-of-epoch") is False for c in _checkpoints(out / "save")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline, "no intra-epoch checkpoint within 120 s"
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    intra_epoch = [name for name in os.listdir(out / "save") if (out / "save" / name / "CKPT.yaml").exists()]
    assert intra_epoch, "no complete checkpoint survived the kill"
    saved = set(os.listdir(out / "save" / intra_epoch[-1]))
    for part in ("masknet", "optimizer", "lr_scheduler", "counter", "dataloader-TRAIN", "random_state",
                 "training_clock"):
        assert f"{part}.ckpt" in saved, saved
    assert not os.path.exists(out / "train_log.txt") or not any(l.startswith("epoch: 1") for l in _log_lines(out))

    resumed = subprocess.run(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "Loading a checkpoint from" in resumed.stdout
    lines = _log_lines(out)
    assert [l.split(",")[0] for l in lines if l.startswith("epoch:")] == ["epoch: 1", "epoch: 2"]
    assert any(l.startswith("epoch loaded: 2") for l in lines)
    results = open(out / "test_results.csv", encoding="utf-8").read().splitlines()
    assert results[0] == "ID,si-snr,si-snr_i,sdr,sdr_i,sir,sar"  # spmamba-evaluate's core columns
    assert results[-1].startswith("mean,") and len(results) == 2 + 2
    assert len(os.listdir(out / "test_plots")) == 1

    model = tmp_path / "model"
    exported = subprocess.run([os.path.join(BIN, "spmamba-export"), str(out), "--out", str(model)],
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    mixture = data / "test" / "mix" / "test_000000.wav"
    separated = subprocess.run([os.path.join(BIN, "spmamba-separate"), str(mixture),
                                "--model", str(model), "--out", str(tmp_path / "sep")], capture_output=True, text=True)
    assert separated.returncode == 0, separated.stderr
    estimate, rate = sf.read(str(tmp_path / "sep" / "test_000000_s2.wav"))
    assert rate == 16000 and len(estimate) == sf.info(str(mixture)).frames


def test_ddp_scaling_two_processes_gloo_killed_and_resumed(tmp_path):
    """benchmarks/ddp_scaling.py on CPU with gloo: 1 and 2 processes over the same mixtures, then
    a 2-process torchrun killed (SIGKILL to every process) after an intra-epoch checkpoint that
    the same command resumes and finishes; checkpoints are written once (rank 0)."""
    data = write_corpus(tmp_path / "data", sizes=(("train", 12), ("valid", 2), ("test", 2)))
    tiny = list(TINY_OVERRIDES)
    del tiny[tiny.index("--N_epochs"):tiny.index("--N_epochs") + 2]
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "ddp_scaling.py"), "--data", str(data),
               "--out", str(tmp_path / "ddp"), "--epoch-size", "12", "--epochs", "2", "--precision", "fp32",
               "--kill-after-checkpoint", "--ckpt-interval-steps", "1", "--",
               "--device", "cpu", "--distributed_backend", "gloo", *tiny]
    result = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(report["runs"]) == {"1", "2"}
    for run in report["runs"].values():
        assert run["audio_seconds_per_second"] > 0
        assert [point["mixtures"] for point in run["valid"]] == [12, 24]
    assert "torch.distributed.run --nproc_per_node=2" in report["runs"]["2"]["command"]
    assert report["scaling_efficiency"]["1"] == 1.0 and report["scaling_efficiency"]["2"] > 0
    assert report["environment"]["NCCL_NVLS_ENABLE"] == "0"
    killed = report["killed_and_resumed"]
    assert killed["world_size"] == 2 and killed["exit_code"] == 0 and killed["loaded_checkpoint"]
    assert killed["epochs_logged"] == [1, 2]
    assert killed["checkpoints_kept"] == 1  # written once, by rank 0
    lines = _log_lines(tmp_path / "ddp" / "2-proc-killed")
    assert any(line.startswith("epoch loaded: 2") for line in lines)


def test_bf16_precision_trains_without_nan(tmp_path):
    data = write_corpus(tmp_path / "data")
    out = tmp_path / "exp"
    result = subprocess.run(_train_command(data, out, "--precision", "bf16"), cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "--precision=bf16" in result.stdout
    for line in _log_lines(out):
        if line.startswith("epoch:"):
            assert "nan" not in line.lower() and "nonfinite_batches: 0" in line


def test_time_budget_stops_training_then_rerun_only_tests(tmp_path):
    data = write_corpus(tmp_path / "data", sizes=(("train", 8), ("valid", 2), ("test", 2)))
    out = tmp_path / "exp"
    # a budget spent by the first step: one step, one validation, one checkpoint, then the test
    command = _train_command(data, out, "--max_train_minutes", "0.00001", "--train_epoch_size", "6")
    first = subprocess.run(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert first.returncode == 0, first.stdout[-3000:]
    epochs = [line for line in _log_lines(out) if line.startswith("epoch:")]
    assert len(epochs) == 1 and "train_minutes: " in epochs[0] and "valid si-snr_i: " in epochs[0]
    assert "training time budget (1e-05 min) spent" in first.stdout
    assert os.path.exists(out / "test_results.csv")

    again = subprocess.run(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "already spent" in again.stdout
    assert [line for line in _log_lines(out) if line.startswith("epoch:")] == epochs
    assert len([line for line in _log_lines(out) if line.startswith("epoch loaded")]) == 2


def test_dynamic_mixing_trains_on_the_training_sources(tmp_path):
    """``--dynamic_mixing True``: training draws new mixtures of train.csv's speakers (the
    stream itself is tested in tests/unit/data/test_dynamic_mixing.py); validation and test
    stay on the fixed mixtures."""
    data = write_corpus(tmp_path / "data", sizes=(("train", 4), ("valid", 2), ("test", 2)), with_speakers=True)
    out = tmp_path / "exp"
    command = _train_command(data, out, "--dynamic_mixing", "True", "--train_epoch_size", "6")
    result = subprocess.run(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    epochs = [line for line in _log_lines(out) if line.startswith("epoch:")]
    assert len(epochs) == 2 and all("valid si-snr_i: " in line for line in epochs)
    assert os.path.exists(out / "test_results.csv")
    unlabelled = write_corpus(tmp_path / "plain", sizes=(("train", 2), ("valid", 1), ("test", 1)))
    failed = subprocess.run(_train_command(unlabelled, tmp_path / "exp2", "--dynamic_mixing", "True"),
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert failed.returncode != 0 and "s1_spk" in failed.stdout


def _tiny_command(data, out, **changes):
    """train.py on the tiny config with some of its settings changed or added."""
    settings = dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2]))
    settings.update({f"--{key}": str(value) for key, value in changes.items()})
    return [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, "hparams", "spmamba.yaml"),
            "--data_folder", str(data), "--output_folder", str(out), "--device", "cpu",
            *[word for pair in settings.items() for word in pair]]


def test_init_from_starts_a_16khz_run_from_an_8khz_model_folder(tmp_path):
    """``--init_from``: an 8 kHz model (n_fft 32; attention_qk_dim 17: one channel a head, as 33
    gives over the 33 bins of n_fft 64) starts a 16 kHz run; a resumed run keeps its checkpoint's
    weights and does not read the folder again; an untrusted folder is refused in one line."""
    sizes = (("train", 2), ("valid", 1), ("test", 1))
    data8k = write_corpus(tmp_path / "data8k", sample_rate=8000, sizes=sizes)
    first = subprocess.run(_tiny_command(data8k, tmp_path / "exp8k", sample_rate=8000, n_fft=32, hop_length=8,
                                         attention_qk_dim=17, training_signal_len=2000, N_epochs=1),
                           cwd=str(tmp_path), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    model = tmp_path / "model8k"
    exported = subprocess.run([os.path.join(BIN, "spmamba-export"), str(tmp_path / "exp8k"), "--out", str(model)],
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    data16k = write_corpus(tmp_path / "data16k", sizes=sizes)
    command = _tiny_command(data16k, tmp_path / "exp16k", init_from=model, N_epochs=1)
    started = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True)
    assert started.returncode == 0, started.stderr[-3000:]
    assert f"the mask net starts from {model} (8 parameters carried over in frequency)" in started.stderr
    again = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starts from" not in again.stderr
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    (untrusted / "hyperparams.yaml").write_text("pwn: !apply:os.system [touch marker]\n")
    refused = subprocess.run(_tiny_command(data16k, tmp_path / "exp3", init_from=untrusted),
                             cwd=str(tmp_path), capture_output=True, text=True)
    assert refused.returncode == 1 and "is not on the allow-list" in refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "marker").exists()
