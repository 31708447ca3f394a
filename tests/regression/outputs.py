"""Fixed-seed outputs of the models, the trio, file separation, a short ``train.py`` run and the
command line (``spmamba-export``, ``spmamba-separate``), saved once before a restructuring so
that a test can show it changed no number.

    python -m tests.regression.outputs   # (re)writes tests/regression/outputs.pt

Rewrite the file only for an intended change of behaviour, and say so in the commit.
"""

import csv
import glob
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from spmamba_sb import SPMamba, TFGridNet
from spmamba_sb.cli import export_main, separate_main
from spmamba_sb.inference import SPMambaSeparation
from spmamba_sb.model_folder import write_model_folder
from spmamba_sb.nnet.bmamba import BMamba
from spmamba_sb.trio import Decoder, Encoder, MaskNet, separate

SAVED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "outputs.pt")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = 8000
TINY = dict(n_fft=64, emb_dim=4, emb_kernel_size=4, num_blocks=1, num_heads=1, attention_qk_dim=33)
MAMBA = dict(d_state=4, expand=1, scan_backend="torch")


def _mixture(samples: int) -> torch.Tensor:
    return torch.randn(2, samples, generator=torch.Generator().manual_seed(1))  # [B, L]


def _model_outputs(name: str, model: torch.nn.Module) -> dict:
    """Output and input gradient of ``model`` on a fixed mixture (fp32, the torch scan)."""
    mix = _mixture(1500).requires_grad_()
    out = model(mix)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((out * weights).sum(), mix)
    return {f"{name} output": out.detach(), f"{name} input gradient": grad}


def _training_and_command_line_outputs(folder: str) -> dict:
    """Two steps of ``train.py`` (tiny spmamba.yaml, torch scan) on a synthetic corpus: the mask
    net's weights and the test means; then the run exported and a file separated through the
    commands, chunked."""
    from tests.conftest import TINY_OVERRIDES, write_corpus

    data, experiment = Path(folder) / "data", Path(folder) / "experiment"
    write_corpus(data)
    overrides = {**dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2])), "--N_epochs": "1", "--num_test_plots": "0",
                 "--scan_backend": "torch", "--dataloader_opts": "{batch_size: 2, num_workers: 0}"}
    command = [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, "hparams", "spmamba.yaml"),
               "--data_folder", str(data), "--output_folder", str(experiment), "--device", "cpu",
               *(item for pair in overrides.items() for item in pair)]
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    (checkpoint,) = glob.glob(str(experiment / "save" / "CKPT+*" / "masknet.ckpt"))
    weights = torch.load(checkpoint, map_location="cpu")
    outputs = {"train.py mask net weights": torch.cat([weights[key].flatten() for key in sorted(weights)])}
    with open(experiment / "test_results.csv", newline="", encoding="utf-8") as handle:
        mean = next(row for row in csv.DictReader(handle) if row["ID"] == "mean")
    outputs["train.py test means"] = torch.tensor([float(mean[key]) for key in ("si-snr", "si-snr_i", "sdr", "sdr_i")])
    export_main([str(experiment), "--out", os.path.join(folder, "model")])
    path = os.path.join(folder, "long.wav")
    sf.write(path, np.random.default_rng(4).standard_normal(2 * 16000 + 700).astype(np.float32) * 0.1, 16000)
    separate_main([path, "--model", os.path.join(folder, "model"), "--out", os.path.join(folder, "separated"),
                   "--chunk-seconds", "0.75", "--overlap-seconds", "0.25", "--quiet"])
    sources = [sf.read(os.path.join(folder, "separated", f"long_s{index}.wav"), dtype="float32")[0] for index in (1, 2)]
    outputs["spmamba-separate, chunked"] = torch.from_numpy(np.stack(sources))
    return outputs


def current_outputs() -> dict:
    """Every figure the regression test compares, computed now."""
    torch.manual_seed(0)
    outputs = _model_outputs("SPMamba", SPMamba(hop_length=16, **TINY, **MAMBA))
    torch.manual_seed(0)
    outputs.update(_model_outputs("TFGridNet", TFGridNet(hop_length=16, lstm_hidden_dim=6, **TINY)))
    torch.manual_seed(0)
    bmamba = partial(BMamba, **MAMBA)
    encoder, masknet, decoder = Encoder(64, 16), MaskNet(num_spks=2, sequence_layer=bmamba, **TINY), Decoder(64, 16)
    with torch.no_grad():
        outputs["trio separate"] = separate(_mixture(1500), encoder, masknet, decoder)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        write_model_folder(os.path.join(folder, "model"), RATE, Encoder(64, 32),
                           MaskNet(num_spks=2, sequence_layer=bmamba, **TINY), save_weights=True)
        separator = SPMambaSeparation.from_hparams(source=os.path.join(folder, "model"),
                                                   savedir=os.path.join(folder, "cache"))
        path = os.path.join(folder, "mixture.wav")
        sf.write(path, np.random.default_rng(3).standard_normal(2 * RATE + 300).astype(np.float32) * 0.1, RATE)
        outputs["separate_file, chunked"] = separator.separate_file(path, chunk_seconds=0.5, overlap_seconds=0.125)
    with tempfile.TemporaryDirectory() as folder:
        outputs.update(_training_and_command_line_outputs(folder))
    return outputs


if __name__ == "__main__":
    torch.save(current_outputs(), SAVED)
    print(f"wrote {SAVED}")
