"""SeparationBrain: skipped steps, the stock recipes' training options and saved test audio."""

import os

import pytest
import soundfile as sf
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.augment.time_domain import SpeedPerturb
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import make_dataloader

import spmamba_sb.brain
from spmamba_sb.brain import SeparationBrain
from spmamba_sb.data.pipelines import separation_datasets
from tests.conftest import TINY_OVERRIDES, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENGTH = 4000  # samples of the synthetic utterances


def _overrides(**extra):
    pairs = dict(zip(TINY_OVERRIDES[::2], TINY_OVERRIDES[1::2]))
    pairs = {key.lstrip("-"): value for key, value in pairs.items()}
    pairs.update(extra)
    return "\n".join(f"{key}: {value}" for key, value in pairs.items())


def _hparams(tmp_path, **extra):
    """The tiny spmamba.yaml as a dict, with ``extra`` overrides."""
    overrides = {"data_folder": str(tmp_path / "data"), "output_folder": str(tmp_path / "out"), **extra}
    with open(os.path.join(ROOT, "hparams", "spmamba.yaml"), encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, _overrides(**overrides))


def _brain(hparams):
    return SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                           run_opts={"device": "cpu"}, checkpointer=None)


def _batch(lengths=(LENGTH, LENGTH), seed=0):
    """Two-source utterances whose mixtures also hold a background: mix = s1 + s2 + noise."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index, length in enumerate(lengths):
        s1, s2, noise = torch.randn(3, length, generator=generator) * torch.tensor([[0.3], [0.2], [0.05]])
        items.append({"id": f"u{index}", "mix_sig": s1 + s2 + noise, "s1_sig": s1, "s2_sig": s2})
    return PaddedBatch(items)


def _sources(batch):
    return torch.stack([batch.s1_sig.data, batch.s2_sig.data], dim=-1)  # [B, L, S]


@pytest.fixture
def model_inputs(monkeypatch):
    """Stand in for the model: record each mixture it gets and return silence."""
    inputs = []

    def fake_separate(mix, *modules):
        inputs.append(mix.clone())
        return torch.zeros(*mix.shape, 2)

    monkeypatch.setattr(spmamba_sb.brain, "separate", fake_separate)
    return inputs


def test_nonfinite_loss_skips_the_step_and_is_counted(tmp_path):
    data = write_corpus(tmp_path / "data")
    hparams = _hparams(tmp_path, data_folder=str(data))
    train, _, _ = separation_datasets([hparams["train_data"]] * 3, 2, 16000, training_signal_len=4000)
    brain = _brain(hparams)
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


def test_a_non_finite_loss_with_finite_gradients_is_counted_and_patience_still_stops(tmp_path):
    """The loss check waits for the gradient check after backward (one device synchronisation a
    step): a loss made non-finite by a term without gradient is counted as before, and once
    ``nonfinite_patience`` is exhausted the step is refused before any parameter changes."""
    hparams = _hparams(tmp_path, nonfinite_patience=1)
    brain = _brain(hparams)
    brain.on_fit_start()
    brain.nonfinite_count = 0
    real = brain.compute_objectives
    brain.compute_objectives = lambda *args: real(*args) + torch.tensor(float("inf"))
    brain.fit_batch(_batch())  # counted (1 of 1 allowed); the gradients are finite, so it steps
    assert brain.nonfinite_count == 1
    before = {n: p.detach().clone() for n, p in brain.modules.named_parameters()}
    with pytest.raises(ValueError, match="patience is exhausted"):
        brain.fit_batch(_batch(seed=1))
    assert brain.nonfinite_count == 2
    assert all(torch.equal(before[n], p) for n, p in brain.modules.named_parameters())


@pytest.mark.parametrize("speed", [90, 110])
def test_speed_perturbation_changes_each_source_and_rebuilds_the_mixture(tmp_path, model_inputs, speed):
    brain = _brain(_hparams(tmp_path, use_speedperturb=True))
    brain.hparams.speed_perturb = SpeedPerturb(orig_freq=16000, speeds=[speed])
    batch = _batch()
    _, targets = brain.compute_forward(batch, sb.Stage.TRAIN)

    sources = _sources(batch)
    perturbed = [SpeedPerturb(orig_freq=16000, speeds=[speed])(sources[..., s]) for s in range(2)]
    length = min(LENGTH, perturbed[0].shape[1])  # slower sources are longer: cut to the mixture
    assert (length < LENGTH) == (speed > 100)
    assert targets.shape == (2, length, 2)
    for source in range(2):
        assert torch.allclose(targets[..., source], perturbed[source][:, :length], atol=1e-6)
        assert not torch.allclose(targets[..., source], sources[:, :length, source], atol=1e-2)
    background = batch.mix_sig.data - sources.sum(-1)
    assert torch.allclose(model_inputs[0], targets.sum(-1) + background[:, :length], atol=1e-6)


@pytest.mark.parametrize("rand_shift", [False, True])
def test_speed_perturbation_crops_every_batch_to_one_fixed_length(tmp_path, model_inputs, rand_shift):
    brain = _brain(_hparams(tmp_path, use_speedperturb=True, use_rand_shift=rand_shift, min_shift=-20, max_shift=20))
    brain.hparams.speed_perturb = SpeedPerturb(orig_freq=16000, speeds=[95, 100, 105])
    produced = [resampler(torch.zeros(1, LENGTH)).shape[1] for resampler in brain.hparams.speed_perturb.resamplers]
    assert min(produced) < LENGTH < max(produced)
    torch.manual_seed(0)
    speeds = set()
    for draw in range(8):
        batch = _batch(seed=draw)
        _, targets = brain.compute_forward(batch, sb.Stage.TRAIN)
        speeds.add(int(brain.hparams.speed_perturb.samp_index))
        assert targets.shape == (2, min(produced), 2)
        background = batch.mix_sig.data - _sources(batch).sum(-1)
        assert model_inputs[draw].shape == (2, min(produced))
        assert torch.allclose(model_inputs[draw], targets.sum(-1) + background[:, :min(produced)], atol=1e-6)
    assert len(speeds) > 1  # several speeds were drawn, yet the length never changed


def test_random_shift_rolls_each_source_within_range(tmp_path, model_inputs):
    brain = _brain(_hparams(tmp_path, use_rand_shift=True, min_shift=-20, max_shift=20))
    batch = _batch()
    sources = _sources(batch)
    shifts = set()
    for draw in range(8):
        _, targets = brain.compute_forward(batch, sb.Stage.TRAIN)
        assert targets.shape == sources.shape
        for source in range(2):
            matches = [k for k in range(-20, 20) if torch.equal(targets[..., source], sources[..., source].roll(k, 1))]
            assert len(matches) == 1
            shifts.add((source, matches[0]))
        background = batch.mix_sig.data - sources.sum(-1)
        assert torch.allclose(model_inputs[draw], targets.sum(-1) + background, atol=1e-6)
    assert len({shift for _, shift in shifts}) > 2  # the shifts are drawn, not fixed


def test_wavedrop_changes_only_the_mixture(tmp_path, model_inputs):
    brain = _brain(_hparams(tmp_path, use_wavedrop=True))
    batch = _batch()
    _, targets = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert torch.equal(targets, _sources(batch))
    assert model_inputs[0].shape == batch.mix_sig.data.shape
    assert not torch.allclose(model_inputs[0], batch.mix_sig.data, atol=1e-3)


def test_a_step_with_every_augmentation_trains(tmp_path):
    hparams = _hparams(tmp_path, use_speedperturb=True, use_rand_shift=True, use_wavedrop=True, threshold_byloss=True)
    brain = _brain(hparams)
    brain.on_fit_start()
    before = {n: p.detach().clone() for n, p in brain.modules.named_parameters()}
    assert torch.isfinite(brain.fit_batch(_batch()))
    assert any(not torch.equal(before[n], p) for n, p in brain.modules.named_parameters())


@pytest.mark.parametrize("stage", [sb.Stage.VALID, sb.Stage.TEST])
def test_augmentation_is_off_outside_training(tmp_path, model_inputs, stage):
    brain = _brain(_hparams(tmp_path, use_speedperturb=True, use_rand_shift=True, use_wavedrop=True))

    def refuse(*args):
        raise AssertionError("augmentation called outside training")

    brain.hparams.speed_perturb = brain.hparams.drop_chunk = brain.hparams.drop_freq = refuse
    batch = _batch()
    _, targets = brain.compute_forward(batch, stage)
    assert torch.equal(targets, _sources(batch))
    assert torch.equal(model_inputs[0], batch.mix_sig.data)


@pytest.mark.parametrize("flag,key", [("use_speedperturb", "speed_perturb"), ("use_wavedrop", "drop_freq")])
def test_missing_augmentation_object_is_a_clear_error(tmp_path, flag, key):
    hparams = _hparams(tmp_path, **{flag: True})
    del hparams[key]
    with pytest.raises(ValueError, match=f"{flag} is True but hparams has no {key}"):
        _brain(hparams)


def _at_snrs(targets, snrs_db):
    """Estimates of ``targets`` [B, L, S] at the given SNR per utterance."""
    noise = torch.randn(targets.shape, generator=torch.Generator().manual_seed(1))
    scale = targets.norm(dim=1, keepdim=True) / noise.norm(dim=1, keepdim=True)
    return targets + noise * scale * 10 ** (-torch.tensor(snrs_db).view(-1, 1, 1) / 20)


def test_threshold_byloss_averages_only_the_examples_above_threshold(tmp_path):
    brain = _brain(_hparams(tmp_path, threshold_byloss=True, threshold=-30))
    targets = _sources(_batch(lengths=(LENGTH,) * 3))
    estimates = _at_snrs(targets, [40.0, 20.0, 10.0]).requires_grad_()
    per_example = brain.hparams.loss(targets, estimates).detach()
    assert per_example[0] < -30 < per_example[1]
    loss = brain.compute_objectives((estimates, targets), None, sb.Stage.TRAIN)
    assert torch.isclose(loss, per_example[1:].mean())
    loss.backward()
    assert torch.equal(estimates.grad[0], torch.zeros_like(estimates.grad[0])) and estimates.grad[1:].abs().sum() > 0

    easy = _at_snrs(targets, [40.0, 45.0, 50.0]).requires_grad_()
    loss = brain.compute_objectives((easy, targets), None, sb.Stage.TRAIN)
    assert torch.isclose(loss, brain.hparams.loss(targets, easy).mean())  # reported, but
    loss.backward()
    assert torch.equal(easy.grad, torch.zeros_like(easy.grad))  # no gradient
    brain.nonfinite_count = 0  # as Brain.fit starts it
    brain.on_stage_end(sb.Stage.TRAIN, 0.5, epoch=1)
    assert brain.train_stats["easy_batches"] == 1


def test_loss_upper_lim_skips_the_step_and_is_counted(tmp_path):
    brain = _brain(_hparams(tmp_path, loss_upper_lim=-1000))  # every loss is above -1000 dB
    brain.on_fit_start()
    brain.nonfinite_count = 0  # as Brain.fit starts it
    batch = _batch()
    before = {n: p.detach().clone() for n, p in brain.modules.named_parameters()}
    assert not torch.isfinite(brain.fit_batch(batch)) and brain.nonfinite_count == 1
    assert all(torch.equal(before[n], p) for n, p in brain.modules.named_parameters())

    brain.hparams.loss_upper_lim = 999999
    assert torch.isfinite(brain.fit_batch(batch)) and brain.nonfinite_count == 1
    assert any(not torch.equal(before[n], p) for n, p in brain.modules.named_parameters())
    brain.on_stage_end(sb.Stage.TRAIN, 0.5, epoch=1)
    assert brain.train_stats["nonfinite_batches"] == 1


def test_save_audio_writes_the_first_utterances(tmp_path, monkeypatch):
    brain = _brain(_hparams(tmp_path, save_audio=True, n_audio_to_save=1, num_test_plots=0))
    batch = _batch(lengths=(3000, LENGTH))
    sources = _sources(batch)
    # The "model" returns the sources swapped and scaled, so the files show the best order.
    monkeypatch.setattr(spmamba_sb.brain, "separate", lambda mix, *modules: 3 * sources[..., [1, 0]])
    brain.on_stage_start(sb.Stage.TEST)
    brain.evaluate_batch(batch, sb.Stage.TEST)

    folder = tmp_path / "out" / "audio_results"
    names = ["u0_mix", "u0_s1", "u0_s2", "u0_s1_estimate", "u0_s2_estimate"]
    assert sorted(os.listdir(folder)) == sorted(f"{name}.wav" for name in names)
    audio = {}
    for name in names:
        audio[name], sample_rate = sf.read(folder / f"{name}.wav", dtype="float32")
        assert sample_rate == 16000 and audio[name].shape == (3000,)
    assert torch.allclose(torch.from_numpy(audio["u0_mix"]), batch.mix_sig.data[0, :3000])
    for source in (1, 2):
        reference = getattr(batch, f"s{source}_sig").data[0, :3000]
        estimate = torch.from_numpy(audio[f"u0_s{source}_estimate"])
        assert torch.allclose(torch.from_numpy(audio[f"u0_s{source}"]), reference)
        assert torch.allclose(estimate, 0.9 * reference / reference.abs().max(), atol=1e-6)


def test_a_given_training_sampler_gets_a_new_epoch_each_epoch(tmp_path):
    """SpeechBrain sets the epoch only of samplers it makes; ours pass theirs in, and a sampler
    left at epoch 0 would draw the same ``train_epoch_size`` subset every epoch."""
    from speechbrain.dataio.sampler import ReproducibleRandomSampler

    write_corpus(tmp_path / "data", sizes=(("train", 8), ("valid", 1), ("test", 1)))
    hparams = _hparams(tmp_path)
    train, _, _ = separation_datasets([str(tmp_path / "data" / f"{split}.csv") for split in ("train", "valid", "test")],
                                      num_spks=2, sample_rate=16000)
    brain = _brain(hparams)
    sampler = ReproducibleRandomSampler(train, seed=0, num_samples=3)
    brain.make_dataloader(train, sb.Stage.TRAIN, sampler=sampler, batch_size=1)
    assert brain.train_sampler is sampler
    subsets = []
    for epoch in (1, 2):
        brain.train_sampler.set_epoch(epoch)
        subsets.append(list(sampler))
    assert subsets[0] != subsets[1]


def test_a_time_schedule_sets_the_learning_rate_from_the_training_clock(tmp_path):
    """Before each step the rate is the schedule's at the training minutes so far (the clock is
    what checkpoints keep, so a resumed run continues the schedule); validation leaves it alone."""
    from spmamba_sb.schedules import TimeBudgetSchedule

    hparams = _hparams(tmp_path)
    schedule = TimeBudgetSchedule(lr=1e-3, total_minutes=10, warmup_minutes=1)
    hparams["lr_scheduler"] = schedule
    brain = _brain(hparams)
    brain.init_optimizers()
    brain.training_clock.seconds = 5 * 60  # as recovered from a checkpoint
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    assert brain.optimizer.param_groups[0]["lr"] == pytest.approx(schedule(5))
    brain.fit_batch(_batch())
    minutes = brain.training_clock.elapsed / 60
    assert 5 < minutes < 5.5
    assert brain.optimizer.param_groups[0]["lr"] == pytest.approx(schedule(minutes), rel=1e-3)
    assert brain.optimizer.param_groups[0]["lr"] < schedule(5)
    brain.training_clock.stop()
    brain.train_stats = {}
    rate = brain.optimizer.param_groups[0]["lr"]
    brain.on_stage_start(sb.Stage.VALID, epoch=1)
    brain.hparams.train_logger = type("Log", (), {"log_stats": lambda self, **kw: setattr(self, "meta", kw)})()
    brain.hparams.epoch_counter = object()
    brain.checkpointer = type("Ckpt", (), {"save_and_keep_only": lambda self, **kw: None})()
    brain.on_stage_end(sb.Stage.VALID, -2.0, epoch=1)
    assert brain.optimizer.param_groups[0]["lr"] == rate
    assert brain.hparams.train_logger.meta["stats_meta"]["lr"] == rate


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_the_gradient_check_drops_exactly_the_non_finite_gradients(tmp_path, bad):
    brain = _brain(_hparams(tmp_path))
    params = list(brain.modules.parameters())
    for index, param in enumerate(params):
        param.grad = torch.full_like(param, 1e30 if index % 2 else -2.0)  # finite, some huge
    if bad is not None:
        params[3].grad.view(-1)[0] = bad
    expected = [param.grad.clone() for param in params]
    brain.check_gradients()
    for index, param in enumerate(params):
        if bad is not None and index == 3:
            assert param.grad is None
        else:
            assert torch.equal(param.grad, expected[index])


@pytest.mark.parametrize("compile_flag", [False, True])
def test_compiling_turns_off_inductor_mix_order_reduction(tmp_path, monkeypatch, compile_flag):
    """With ``--compile``, the start of fit wraps the mask net in ``torch.compile`` with the pass off
    (pytorch/pytorch#178080); without it nothing changes."""
    from torch._inductor import config

    monkeypatch.delenv("TORCHINDUCTOR_MIX_ORDER_REDUCTION", raising=False)
    hparams = _hparams(tmp_path)
    with config.patch({"triton.mix_order_reduction": True}):
        brain = SeparationBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                                run_opts={"device": "cpu", "compile": compile_flag, "compile_module_keys": ["masknet"]},
                                checkpointer=None)
        brain.on_fit_start()
        assert config.triton.mix_order_reduction is not compile_flag
    assert isinstance(brain.modules.masknet, torch._dynamo.eval_frame.OptimizedModule) is compile_flag
