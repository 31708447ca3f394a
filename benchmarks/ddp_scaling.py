#!/usr/bin/env python3
"""Multi-GPU scaling of ``train.py``: throughput on 1 and N processes at the same per-process
batch, the scaling efficiency, the validation loss after the same number of mixtures, and a
killed N-process run that resumes. Prints JSON.

    python benchmarks/ddp_scaling.py --data DATA --out results/ddp [--world-sizes 1 2]
        [--epoch-size 250] [--epochs 4] [--kill-after-checkpoint] [-- more train.py overrides]

Each world size trains ``--epochs`` epochs of ``--epoch-size`` mixtures in all (SpeechBrain
splits an epoch between the processes, so N processes take 1/N of the optimiser steps of
``batch_size * N`` mixtures each). Throughput is seconds of training audio per second of
training-stage time (rank 0's clock, validation excluded), taken over the epochs after the
first so that start-up costs stay out. One process runs ``python train.py``, more run
``python -m torch.distributed.run --nproc_per_node=N train.py``, the SpeechBrain way, with
NVLink multicast kept off (``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``,
``NVSHMEM_DISABLE_NVLS=1``). With ``--kill-after-checkpoint`` a further run at the largest
world size is killed (SIGKILL to every process) once its first intra-epoch checkpoint is on
disk and then restarted with the same command; the JSON says whether it resumed, which epochs
its log holds and how many checkpoints it kept.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
FIELD = re.compile(r"([\w\- ]+?): (\S+?)(?:,|$| -)")


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def train_command(world_size: int, hparams: str, data: str, out: str, overrides) -> list:
    """``train.py`` on one process, or through torchrun on ``world_size`` processes."""
    script = [os.path.join(ROOT, "train.py"), hparams, "--data_folder", data, "--output_folder", out, *overrides]
    if world_size == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world_size}",
            "--master_port", _free_port(), *script]


def _readable(command: list) -> str:
    """The command as typed in the repository root (``python``, relative paths)."""
    return " ".join(["python"] + [os.path.relpath(part, ROOT) if part.startswith(ROOT) else part for part in command[1:]])


def epochs_logged(out: str) -> list:
    """One dict per ``epoch:`` line of ``train_log.txt`` (values as strings)."""
    path = os.path.join(out, "train_log.txt")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [{key.strip(): value for key, value in FIELD.findall(line)} for line in handle if line.startswith("epoch:")]


def crop_seconds(out: str) -> float:
    """Training crop length in seconds, from the experiment's saved ``hyperparams.yaml``."""
    with open(os.path.join(out, "hyperparams.yaml"), encoding="utf-8") as handle:
        text = handle.read()
    length = int(re.search(r"^training_signal_len: (\d+)", text, re.M).group(1))
    rate = int(re.search(r"^sample_rate: (\d+)", text, re.M).group(1))
    return length / rate


def summarise(out: str, epoch_size: int) -> dict:
    """Throughput and validation loss per mixtures seen, from one finished run."""
    epochs = epochs_logged(out)
    minutes = [float(epoch["train_minutes"]) for epoch in epochs]
    first = 1 if len(epochs) > 1 else 0
    timed_minutes = minutes[-1] - (minutes[0] if first else 0.0)
    audio = (len(epochs) - first) * epoch_size * crop_seconds(out)
    return {
        "train_minutes": minutes[-1],
        "audio_seconds_per_second": audio / (60 * timed_minutes),
        "valid": [{"mixtures": (index + 1) * epoch_size, "si-snr": float(epoch["valid si-snr"]),
                   "si-snr_i": float(epoch["valid si-snr_i"])} for index, epoch in enumerate(epochs)],
    }


def _checkpoints(save: str) -> list:
    if not os.path.isdir(save):
        return []
    return sorted(name for name in os.listdir(save) if os.path.isfile(os.path.join(save, name, "CKPT.yaml")))


def _intra_epoch_checkpoint(save: str) -> bool:
    for name in _checkpoints(save):
        with open(os.path.join(save, name, "CKPT.yaml"), encoding="utf-8") as handle:
            if re.search(r"^end-of-epoch: false", handle.read(), re.M):
                return True
    return False


def _kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (torchrun's workers run in
    sessions of their own, so a process group kill would miss them)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    os.kill(int(entry), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


def kill_and_resume(command_for, out: str, log, timeout: float) -> dict:
    """Start a run, SIGKILL it after its first intra-epoch checkpoint, rerun it to the end."""
    save = os.path.join(out, "save")
    process = subprocess.Popen(command_for(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not _intra_epoch_checkpoint(save):
        if process.poll() is not None:
            raise RuntimeError(f"the run to be killed ended first (exit {process.returncode}); see the log")
        if time.time() > deadline:
            raise RuntimeError(f"no intra-epoch checkpoint within {timeout:.0f} s")
        time.sleep(0.2)
    _kill_processes_mentioning(out)
    process.wait()
    epochs_before = len(epochs_logged(out))
    log.write(b"\n=== killed; restarting the same command ===\n")
    log.flush()
    resumed = subprocess.run(command_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log.write(resumed.stdout)
    return {
        "exit_code": resumed.returncode,
        "epochs_before_kill": epochs_before,
        "loaded_checkpoint": b"Loading a checkpoint from" in resumed.stdout,
        "epochs_logged": [int(epoch["epoch"]) for epoch in epochs_logged(out)],
        "checkpoints_kept": len(_checkpoints(save)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder with train.csv, valid.csv, test.csv")
    parser.add_argument("--out", required=True, help="one experiment folder per world size goes here")
    parser.add_argument("--hparams", default=os.path.join(ROOT, "hparams", "spmamba.yaml"))
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epoch-size", type=int, default=250, help="mixtures per epoch, all processes together")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--kill-after-checkpoint", action="store_true",
                        help="also kill a run at the largest world size after its first intra-epoch checkpoint and resume it")
    parser.add_argument("--ckpt-interval-steps", type=int, default=50, help="intra-epoch checkpoints of the killed run")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the killed run's checkpoint")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: more train.py overrides")
    args = parser.parse_args(argv)
    extra = [item for item in args.overrides if item != "--"]
    if 1 not in args.world_sizes:
        parser.error("--world-sizes must include 1 (the baseline of the scaling efficiency)")
    if os.path.exists(args.out):  # train.py would resume the old runs instead of measuring
        parser.error(f"--out {args.out} exists; give a new folder")
    os.environ.update(MULTICAST_OFF)
    os.makedirs(args.out)
    overrides = ["--seed", str(args.seed), "--precision", args.precision, "--train_epoch_size", str(args.epoch_size),
                 "--N_epochs", str(args.epochs), *extra]

    result = {"hparams": os.path.relpath(args.hparams, ROOT), "epoch_size": args.epoch_size, "epochs": args.epochs,
              "overrides": overrides, "environment": MULTICAST_OFF, "runs": {}}
    for world_size in args.world_sizes:
        out = os.path.join(args.out, f"{world_size}-proc")
        command = train_command(world_size, args.hparams, args.data, out, ["--ckpt_interval_minutes", "0", *overrides])
        with open(os.path.join(args.out, f"{world_size}-proc.log"), "wb") as log:
            started = time.time()
            finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if finished.returncode != 0:
            raise SystemExit(f"{world_size} process(es) failed (exit {finished.returncode}); see {log.name}")
        result["runs"][str(world_size)] = {"command": _readable(command), "wall_seconds": time.time() - started,
                                           **summarise(out, args.epoch_size)}
    baseline = result["runs"]["1"]["audio_seconds_per_second"]
    result["scaling_efficiency"] = {
        size: run["audio_seconds_per_second"] / (int(size) * baseline) for size, run in result["runs"].items()
    }
    if args.kill_after_checkpoint:
        world_size = max(args.world_sizes)
        out = os.path.join(args.out, f"{world_size}-proc-killed")
        steps = ["--ckpt_interval_minutes", "0", "--ckpt_interval_steps", str(args.ckpt_interval_steps)]
        with open(os.path.join(args.out, f"{world_size}-proc-killed.log"), "wb") as log:
            report = kill_and_resume(lambda: train_command(world_size, args.hparams, args.data, out, [*steps, *overrides]),
                                     out, log, args.timeout)
        result["killed_and_resumed"] = {"world_size": world_size, **report}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
