"""SeparationBrain: a step with a non-finite loss changes nothing and is counted."""

import os

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataloader import make_dataloader

from spmamba_sb.brain import SeparationBrain
from spmamba_sb.data.pipelines import separation_datasets
from tests.conftest import TINY_OVERRIDES, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _overrides(**extra):
    pairs = dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2]))
    pairs = {key.lstrip("-"): value for key, value in pairs.items()}
    pairs.update(extra)
    return "\n".join(f"{key}: {value}" for key, value in pairs.items())


def test_nonfinite_loss_skips_the_step_and_is_counted(tmp_path):
    data = write_corpus(tmp_path / "data")
    with open(os.path.join(ROOT, "hparams", "spmamba.yaml"), encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, _overrides(data_folder=str(data), output_folder=str(tmp_path / "out")))
    train, _, _ = separation_datasets([hparams["train_data"]] * 3, 2, 16000, training_signal_len=4000)
    brain = SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                            run_opts={"device": "cpu"}, checkpointer=None)
    brain.on_fit_start()
    brain.nonfinite_count = 0  # as Brain.fit starts it
    batch = next(iter(make_dataloader(train, batch_size=2)))

    real = brain.compute_objectives
    brain.compute_objectives = lambda *args: real(*args) * float("nan")
    before = {n: p.detach().clone() for n, p in brain.modules.named_parameters()}
    loss = brain.fit_batch(batch)
    assert not torch.isfinite(loss) and brain.nonfinite_count == 1
    assert all(torch.equal(before[n], p) for n, p in brain.modules.named_parameters())

    brain.compute_objectives = real
    assert torch.isfinite(brain.fit_batch(batch))
    assert any(not torch.equal(before[n], p) for n, p in brain.modules.named_parameters())
    brain.on_stage_end(sb.Stage.TRAIN, 0.5, epoch=1)
    assert brain.train_stats["nonfinite_batches"] == 1
