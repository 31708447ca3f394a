#!/usr/bin/env python3
"""Parameters and multiply-accumulates (MACs) per second of 16 kHz audio, selective scan included,
for SPMamba and the TF-GridNet baseline. Prints JSON.

    python benchmarks/macs.py [--seconds 1]

Counting rules (one forward pass over ``--seconds`` of audio, divided by the seconds):

* Matrix products, convolutions (including Mamba's depthwise ``conv1d``) and attention are
  counted by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2).
* The selective scan, which no FLOP counter sees, is counted analytically: for every row, step
  and inner channel (``d_inner``), 4 MACs per state element (``exp(delta*A)`` counted as one,
  ``delta*u*B``, the state update ``h = dA*h + dBu`` and the read-out ``C.h``) plus 3 per channel
  (``delta*u``, the skip ``D*u`` and the ``silu(z)`` gate): ``rows * L * d_inner * (4 * d_state + 3)``.
* The LSTM (a fused kernel the counter does not see either) is counted analytically too: its
  four gates' input and recurrent products, ``2 directions * rows * L * 4 * H * (input + H)``.
* While the counter runs, the scan and the LSTM are replaced by no-ops, so nothing is counted twice.
* Element-wise work elsewhere (normalisation, activations, STFT) is left out, as usual.

The paper reports 78.69 G/s for SPMamba, later corrected to about 238 G/s because the first
count missed the selective scan, and 445.56 G/s for TF-GridNet (14.43 M parameters; its exact
configuration is not known to us, ours is the reference code's with H = 256).
"""

import argparse
import json
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from spmamba_sb.models.spmamba import SPMamba
from spmamba_sb.models.tfgridnet import TFGridNet
from spmamba_sb.nnet import mixer as mixer_module
from spmamba_sb.nnet.mixer import MambaMixer
from spmamba_sb.nnet.sequence import BLSTM


def recurrence_macs(model: torch.nn.Module, audio: torch.Tensor) -> int:
    """Analytic MACs of the selective scans and LSTMs of one forward pass (see the module docstring)."""
    total = 0

    def count(module, inputs, _output):
        nonlocal total
        width, rows, length = inputs[0].shape  # [input channels, rows, L]
        if isinstance(module, MambaMixer):
            total += rows * length * module.d_inner * (4 * module.d_state + 3)
        else:
            hidden = module.output_dim // 2
            total += 2 * rows * length * 4 * hidden * (width + hidden)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (MambaMixer, BLSTM))]
    with torch.no_grad():
        model(audio)
    for hook in hooks:
        hook.remove()
    return total


def counted_macs(model: torch.nn.Module, audio: torch.Tensor) -> int:
    """MACs that the FLOP counter sees, with the selective scan and the LSTM replaced by no-ops."""

    def no_scan(backend, u, *args, **kwargs):
        return u  # [rows, d_inner, L], no arithmetic

    def no_lstm(layer, x):
        return x.new_zeros(layer.output_dim, *x.shape[1:])  # [2H, rows, L], no arithmetic

    counter = FlopCounterMode(display=False)
    with mock.patch.object(mixer_module, "run_scan", no_scan), mock.patch.object(BLSTM, "forward", no_lstm):
        with counter, torch.no_grad():
            model(audio)
    return counter.get_total_flops() // 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    audio = torch.randn(1, int(16000 * args.seconds))
    results = {}
    models = (("SPMamba", SPMamba(scan_backend="torch")),
              ("TF-GridNet (H=256, hparams/tfgridnet.yaml)", TFGridNet(lstm_hidden_dim=256)))
    for name, model in models:
        model.eval()
        recurrence = recurrence_macs(model, audio)
        counted = counted_macs(model, audio)
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "GMACs_per_s": round((counted + recurrence) / args.seconds / 1e9, 2),
            "counted_GMACs_per_s": round(counted / args.seconds / 1e9, 2),
            "scan_or_lstm_GMACs_per_s": round(recurrence / args.seconds / 1e9, 2),
        }
    print(json.dumps({"seconds": args.seconds, "sample_rate": 16000, "models": results}, indent=1))


if __name__ == "__main__":
    main()
