"""ema_decay: an exponential moving average of the mask net's weights, validated, tested and
checkpointed beside the trained weights (tests/unit/test_export.py: exported in their place)."""

import os

import pytest
import speechbrain as sb
import torch

from spmamba_sb.brain import SeparationBrain
from spmamba_sb.checkpoints import MASKNET_AVERAGE
from spmamba_sb.data.pipelines import separation_datasets
from spmamba_sb.tensor_files import load_tensor_file
from tests.conftest import write_corpus
from tests.unit.test_brain import _batch, _hparams


def _brain(tmp_path, decay=0.9):
    hparams = _hparams(tmp_path, ema_decay=decay)
    brain = SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                            run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"])
    brain.on_fit_start()
    return brain


def _state(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def test_without_ema_decay_there_is_no_average(tmp_path):
    hparams = _hparams(tmp_path)
    brain = SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                            run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"])
    assert brain.masknet_average is None and MASKNET_AVERAGE not in brain.checkpointer.recoverables


def test_the_average_follows_each_step_with_a_warmed_up_decay(tmp_path):
    brain = _brain(tmp_path, decay=0.9)
    masknet = brain.checkpointer.recoverables["masknet"]
    assert all(torch.equal(a, b) for a, b in zip(_state(brain.masknet_average).values(), _state(masknet).values()))
    for step in range(1, 4):
        before = _state(brain.masknet_average)
        brain.fit_batch(_batch(seed=step))
        decay = min(0.9, (1 + step) / (10 + step))  # 0.1818..., 0.25, 0.3077: the warm-up, below 0.9
        live = _state(masknet)
        for name, average in _state(brain.masknet_average).items():
            torch.testing.assert_close(average, decay * before[name] + (1 - decay) * live[name])
    assert any(not torch.equal(a, b) for a, b in zip(_state(brain.masknet_average).values(), live.values()))
    assert not any(parameter.requires_grad for parameter in brain.masknet_average.parameters())


def test_validation_and_test_run_on_the_average_and_checkpoints_keep_both(tmp_path):
    brain = _brain(tmp_path)
    masknet = brain.checkpointer.recoverables["masknet"]
    for seed in range(3):
        brain.fit_batch(_batch(seed=seed))
    trained, average = _state(masknet), _state(brain.masknet_average)
    brain.on_stage_start(sb.Stage.VALID, epoch=1)
    assert all(torch.equal(_state(masknet)[name], average[name]) for name in average)
    brain.valid_improvements = [torch.zeros(1)]
    brain.train_stats = {}
    brain.hparams.train_logger = type("Log", (), {"log_stats": lambda self, **kw: None})()
    brain.on_stage_end(sb.Stage.VALID, -1.0, epoch=1)  # swaps back, then checkpoints
    assert all(torch.equal(_state(masknet)[name], trained[name]) for name in trained)
    checkpoint = brain.checkpointer.find_checkpoint(min_key="si-snr").path
    saved_live = load_tensor_file(os.path.join(checkpoint, "masknet.ckpt"))
    saved_average = load_tensor_file(os.path.join(checkpoint, f"{MASKNET_AVERAGE}.ckpt"))
    assert all(torch.equal(saved_live[name], trained[name]) for name in trained)
    assert all(torch.equal(saved_average[name], average[name]) for name in average)
    brain.on_stage_start(sb.Stage.TEST)
    assert all(torch.equal(_state(masknet)[name], average[name]) for name in average)
    brain.on_stage_start(sb.Stage.TEST)  # a second swap in changes nothing
    assert all(torch.equal(_state(masknet)[name], average[name]) for name in average)
    brain.on_stage_start(sb.Stage.TRAIN, epoch=2)  # training goes on from the trained weights
    assert all(torch.equal(_state(masknet)[name], trained[name]) for name in trained)


def test_a_run_with_ema_decay_resumes_its_average(tmp_path):
    data = write_corpus(tmp_path / "data", sizes=(("train", 4), ("valid", 1), ("test", 1)))
    hparams = _hparams(tmp_path, data_folder=str(data), ema_decay=0.99, N_epochs=1)
    train, valid, _ = separation_datasets([hparams[f"{split}_data"] for split in ("train", "valid", "test")], 2,
                                          16000, training_signal_len=4000)
    brain = SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                            run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train, valid, train_loader_kwargs={"batch_size": 2},
              valid_loader_kwargs={"batch_size": 1})
    average = _state(brain.masknet_average)
    trained = _state(brain.checkpointer.recoverables["masknet"])
    assert any(not torch.equal(average[name], trained[name]) for name in average)

    again = _hparams(tmp_path, data_folder=str(data), ema_decay=0.99, N_epochs=1)
    resumed = SeparationBrain(modules=again["modules"], opt_class=again["optimizer"], hparams=again,
                              run_opts={"device": "cpu"}, checkpointer=again["checkpointer"])
    resumed.on_fit_start()
    assert all(torch.equal(_state(resumed.masknet_average)[name], average[name]) for name in average)


def test_ema_decay_needs_a_checkpointer_that_saves_the_mask_net(tmp_path):
    hparams = _hparams(tmp_path, ema_decay=0.99)
    with pytest.raises(ValueError, match="ema_decay needs a checkpointer"):
        SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                        run_opts={"device": "cpu"}, checkpointer=None)
