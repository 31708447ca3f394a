"""``SeparationBrain``: SpeechBrain training, validation and testing of the trio."""

import copy
import logging
import math
import os

import soundfile as sf
import spmamba_sb.torch_pair  # noqa: F401  before SpeechBrain: a torchaudio that does not load is named
import speechbrain as sb
import torch
from speechbrain.utils.distributed import ddp_broadcast, if_main_process

from spmamba_sb.checkpoints import MASKNET_AVERAGE, RandomState, TrainingClock
from spmamba_sb.data.pipelines import SeparationDataError
from spmamba_sb.environment import avoid_mix_order_reduction
from spmamba_sb.plots import plot_separation
from spmamba_sb.schedules import TimeBudgetSchedule
from spmamba_sb.scoring import CORE_METRICS, UndefinedMetricsError, utterance_metrics, write_scores
from spmamba_sb.trio import separate

logger = logging.getLogger(__name__)

# Training augmentation flag -> the hparams it needs.
AUGMENTATION_KEYS = {
    "use_speedperturb": ("speed_perturb",),
    "use_rand_shift": ("min_shift", "max_shift"),
    "use_wavedrop": ("drop_chunk", "drop_freq"),
}
ESTIMATE_PEAK = 0.9  # peak of the estimates written by ``save_audio``


def _perturbed_length(speed_perturb, length: int) -> int:
    """The shortest length, at most ``length``, that any speed of ``speed_perturb`` makes from ``length``.

    Each of SpeechBrain's ``SpeedPerturb.resamplers`` (one per entry of ``speeds``) resamples
    ``orig_freq`` -> ``new_freq``; the length follows as in torchaudio's resampler (unchanged
    when the two are equal).
    """
    shortest = length
    for resampler in speed_perturb.resamplers:
        if resampler.orig_freq != resampler.new_freq:
            gcd = math.gcd(int(resampler.orig_freq), int(resampler.new_freq))
            orig, new = int(resampler.orig_freq) // gcd, int(resampler.new_freq) // gcd
            # torchaudio's rule, rounded as it rounds it (a float32 tensor): never longer than a source
            shortest = min(shortest, int(torch.ceil(torch.as_tensor(new * length / orig))))
    return shortest


class SeparationBrain(sb.Brain):
    """Permutation-invariant separation training with the paper's recipe.

    Training minimises ``hparams.loss`` (negative PIT SNR); validation and test report
    ``hparams.eval_loss`` (negative PIT SI-SNR). Gradient clipping, accumulation and
    non-finite handling are the base class's (``max_grad_norm``, ``skip_nonfinite_grads``,
    ``nonfinite_patience``). After each validation the learning rate follows
    ``lr_scheduler`` (a SpeechBrain scheduler such as ``ReduceLROnPlateau``), or, when
    ``lr_scheduler`` is a :class:`~spmamba_sb.schedules.TimeBudgetSchedule`, it is set before
    every optimizer step from the training minutes spent; the early stopper in ``epoch_counter`` sees the loss and a
    checkpoint is kept by lowest loss. Validation also reports SI-SNR improvement over the
    mixture (``si-snr_i``) and the training minutes so far. A validation utterance shorter than
    one STFT frame (``n_fft`` samples) stops with a ``SeparationDataError`` naming it. The test
    stage scores each utterance with :mod:`spmamba_sb.scoring`, the scorer of ``spmamba-evaluate``
    (the same figures), and writes ``test_results.csv`` (one row per utterance and a mean row; the
    columns ``ID`` and :data:`~spmamba_sb.scoring.CORE_METRICS`, those of ``spmamba-evaluate``'s
    ``scores.csv`` without its optional STOI and PESQ) and spectrogram PNGs
    of the first ``num_test_plots`` scored utterances into ``output_folder``. A test utterance
    that cannot be scored (shorter than one STFT frame, a silent reference, two identical
    references, signals BSS-Eval fails on) costs only itself: one warning names its ID and the
    problem, its row has empty fields, the mean row covers the scored utterances, and the test
    line of the log gives how many were ``scored`` and ``left_out``.

    The training options of SpeechBrain's stock separation recipes work here too (all off in
    our YAMLs). In the training stage only:

    - ``use_speedperturb``: each reference source goes through ``speed_perturb`` on its own;
    - ``use_rand_shift``: each source is rolled in time by a random integer in
      [``min_shift``, ``max_shift``). After either, the sources and the mixture are cut to a
      fixed length: the mixture's, or with speed perturbation the shortest that any of its speeds
      makes from it, so shapes stay static for a compiled model. The mixture is rebuilt as their
      sum plus its background (mixture minus the sum of its original sources, such as noise),
      and the loss is taken against them;
    - ``use_wavedrop``: the mixture then goes through ``drop_chunk`` and ``drop_freq``;
    - ``threshold_byloss``: the loss averages only the examples whose loss is above
      ``threshold``; a batch with none adds nothing to the gradients and is counted
      (``easy_batches`` in the log);
    - ``loss_upper_lim``: a batch whose loss is not below it takes no step and is counted as a
      non-finite one (``nonfinite_batches``).

    With ``save_audio`` the test stage also writes the mixture, references and estimates of the
    first ``n_audio_to_save`` utterances into ``output_folder/audio_results``.

    Checkpoints also hold the random generators' state and the training time, so a resumed
    run continues as an uninterrupted one would. With ``max_train_minutes`` set, training
    stops once that much time has been spent in the training stage (validation excluded,
    summed over resumes), then validates, checkpoints and ends; rerunning the same command
    only tests.

    With ``ema_decay`` (e.g. 0.999) the run also keeps an exponential moving average of the
    mask net's weights, updated after every optimizer step; validation and test run on the
    average, so the best checkpoint is the average's, and each checkpoint saves it beside the
    trained weights (``masknet_average.ckpt``), which ``spmamba-export`` exports as the model.

    Hyperparameters read: ``num_spks``, ``loss``, ``eval_loss``, ``lr_scheduler``,
    ``epoch_counter``, ``train_logger``, ``output_folder``, ``sample_rate``,
    ``num_test_plots``, ``n_fft``, and optionally ``max_train_minutes``, ``ema_decay``, ``use_speedperturb``
    (with ``speed_perturb``), ``use_rand_shift`` (with ``min_shift``, ``max_shift``),
    ``use_wavedrop`` (with ``drop_chunk``, ``drop_freq``), ``threshold_byloss`` (with
    ``threshold``), ``loss_upper_lim`` and ``save_audio`` (with ``n_audio_to_save``).

    Raises
    ------
    ValueError
        If an augmentation flag is True but an hparam it needs is missing.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for flag, keys in AUGMENTATION_KEYS.items():
            missing = [key for key in keys if getattr(self.hparams, key, None) is None]
            if getattr(self.hparams, flag, False) and missing:
                raise ValueError(f"{flag} is True but hparams has no {' or '.join(missing)}")
        self.easy_batches = 0
        self.training_clock = TrainingClock()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverables({"training_clock": self.training_clock, "random_state": RandomState()})
        self.masknet_average = None
        if getattr(self.hparams, "ema_decay", None):
            if self.checkpointer is None or "masknet" not in self.checkpointer.recoverables:
                raise ValueError("ema_decay needs a checkpointer that saves the mask net (its recoverable 'masknet')")
            # a copy of the mask net (the same state_dict keys): saved beside it, exported in its place
            self.masknet_average = copy.deepcopy(self.checkpointer.recoverables["masknet"]).requires_grad_(False)
            self.checkpointer.add_recoverable(MASKNET_AVERAGE, self.masknet_average)
        self._average_swapped_in = False
        self._unchecked_loss = None  # a loss whose check waits for the gradient check

    def _update_average(self) -> None:
        """Move the weight average towards the mask net's weights after an optimizer step.

        An exponential moving average with ``ema_decay``, its decay warmed up as
        ``min(ema_decay, (1 + n) / (10 + n))`` over the optimizer steps ``n`` taken (as TensorFlow's
        ``ExponentialMovingAverage`` with ``num_updates``), so early weights fade fast. One fused
        update and no device synchronisation: ``torch.optim.swa_utils.AveragedModel`` reads its
        update count on the host at every step.
        """
        decay = min(self.hparams.ema_decay, (1 + self.optimizer_step) / (10 + self.optimizer_step))
        pairs = self._average_pairs()
        floating = [(average, live) for average, live in pairs if average.is_floating_point()]
        if floating:
            averages, lives = zip(*floating)
            torch._foreach_lerp_(list(averages), list(lives), 1.0 - decay)
        for average, live in pairs:
            if not average.is_floating_point():
                average.copy_(live)

    def _average_pairs(self) -> list:
        """(average, live) tensor pairs of the mask net's state, in state_dict order."""
        live = self.checkpointer.recoverables["masknet"].state_dict()
        return list(zip(self.masknet_average.state_dict().values(), live.values()))

    @torch.no_grad()
    def _swap_average(self, swapped_in: bool) -> None:
        """Exchange the mask net's weights with the average's, in place, when they are not yet as asked."""
        if self.masknet_average is None or self._average_swapped_in == swapped_in:
            return
        for average, live in self._average_pairs():
            held = live.clone()
            live.copy_(average)
            average.copy_(held)
        self._average_swapped_in = swapped_in

    def shared_training_seconds(self) -> float:
        """Training seconds so far, the main process's figure on every process (so that every
        process takes the same decisions and learning rates)."""
        seconds = self.training_clock.elapsed
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            seconds = ddp_broadcast(seconds, src=0)
        return seconds

    def training_budget_spent(self, seconds: float) -> bool:
        """Whether ``seconds`` of training reach ``max_train_minutes``."""
        minutes = getattr(self.hparams, "max_train_minutes", None)
        return minutes is not None and seconds >= 60 * minutes

    def follow_time_schedule(self, seconds: float) -> None:
        """Set the learning rate for ``seconds`` of training when ``lr_scheduler`` is a time schedule."""
        schedule = getattr(self.hparams, "lr_scheduler", None)
        if isinstance(schedule, TimeBudgetSchedule) and self.optimizer is not None:
            for group in self.optimizer.param_groups:  # quietly: it changes every step
                group["lr"] = schedule(seconds / 60)

    def check_loss_isfinite(self, loss):
        """SpeechBrain's check of the loss before backward, deferred to :meth:`check_gradients` when
        that runs after this backward (a batch that steps, ``skip_nonfinite_grads`` on, no fp16
        scaler): the same counting and patience, one device synchronisation a step instead of two."""
        stepping = self.step % self.grad_accumulation_factor == 0
        if stepping and self.skip_nonfinite_grads and not self.scaler.is_enabled():
            self._unchecked_loss = loss.detach()
        else:
            super().check_loss_isfinite(loss)

    def check_gradients(self):
        """SpeechBrain's ``skip_nonfinite_grads`` check (each non-finite gradient is dropped, with a
        warning), and the deferred loss check, with one device synchronisation when the loss and
        every gradient are finite, the usual case: the largest absolute gradient value is finite
        exactly then. The base class synchronises once per parameter tensor (414 in the published
        model)."""
        grads = [param.grad for param in self.modules.parameters() if param.requires_grad and param.grad is not None]
        loss, self._unchecked_loss = self._unchecked_loss, None
        finite = [torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")))] if grads else []
        if loss is not None:
            finite.append(torch.isfinite(loss).all())
        if finite and not bool(torch.stack(finite).all()):
            if loss is not None:
                super().check_loss_isfinite(loss)
            super().check_gradients()

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader; a training sampler passed in ``loader_kwargs`` also gets its
        epoch set every epoch (the base class does that only for samplers it makes itself), so
        ``train_epoch_size`` draws a new subset each epoch and dynamic mixing new mixtures."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        sampler = loader_kwargs.get("sampler")
        if stage == sb.Stage.TRAIN and self.train_sampler is None and hasattr(sampler, "set_epoch"):
            self.train_sampler = sampler
        return loader

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Set a time schedule's learning rate for the next step. Once ``max_train_minutes``
        are spent, cap ``optimizer_step_limit`` at the steps taken: the base class then ends
        the epoch before the next batch and stops after validating it."""
        if should_step and self.masknet_average is not None:
            with torch.no_grad():
                self._update_average()
        seconds = self.shared_training_seconds()
        self.follow_time_schedule(seconds)
        if self.training_budget_spent(seconds):
            self.optimizer_step_limit = self.optimizer_step

    def on_fit_start(self):
        """Compile (SpeechBrain's ``--compile``, with Inductor's mix-order reduction off unless the
        environment sets it: :func:`~spmamba_sb.environment.avoid_mix_order_reduction`) and recover
        the latest checkpoint; if the time budget is already spent, train no more."""
        if self.compile:
            avoid_mix_order_reduction()
        super().on_fit_start()
        spent = self.training_budget_spent(self.shared_training_seconds())
        if spent and hasattr(self.hparams.epoch_counter, "should_stop"):
            logger.info("training time budget (%s min) already spent", self.hparams.max_train_minutes)
            self.hparams.epoch_counter.should_stop = True

    def evaluate_batch(self, batch, stage):
        """The base class's evaluation of a batch, after checking its utterances' lengths.

        A validation utterance shorter than one STFT frame raises ``SeparationDataError``. In the
        test stage each such utterance is left out (see ``_record_test``); a batch of only such
        utterances is not separated and its loss is NaN, which the base class leaves out of the
        stage's average.
        """
        lengths = self._utterance_lengths(batch)
        short = [(utterance_id, length) for utterance_id, length in zip(batch.id, lengths)
                 if length < self.hparams.n_fft]
        if short and stage == sb.Stage.VALID:
            utterance_id, length = short[0]
            raise SeparationDataError(f"validation utterance {utterance_id}: {self._too_short(length)}")
        if stage == sb.Stage.TEST and len(short) == len(lengths):
            for utterance_id, length in short:
                self._leave_out(utterance_id, self._too_short(length))
            return torch.tensor(float("nan"))
        return super().evaluate_batch(batch, stage)

    def _utterance_lengths(self, batch) -> list:
        """Each mixture's length in samples, without padding."""
        padded_length = batch.mix_sig.data.shape[1]
        return [int(round(relative.item() * padded_length)) for relative in batch.mix_sig.lengths]

    def _too_short(self, length: int) -> str:
        return f"{length} samples, shorter than one STFT frame (n_fft={self.hparams.n_fft})"

    def _leave_out(self, utterance_id: str, problem: str) -> None:
        """Log why a test utterance is not scored; give it a row with empty fields."""
        logger.warning("test utterance %s left out of the means: %s", utterance_id, problem)
        self.test_rows.append({"ID": utterance_id})
        self.test_left_out += 1

    def compute_forward(self, batch, stage):
        """Separate the batch's mixtures, augmented first in the training stage.

        Arguments
        ---------
        batch : PaddedBatch
            ``mix_sig`` and ``s1_sig`` ... ``sN_sig``, each [B, L].
        stage : sb.Stage
            Augmentation runs in ``TRAIN`` only.

        Returns
        -------
        predictions : torch.Tensor
            [B, L, S], the separated sources.
        targets : torch.Tensor
            [B, L, S], the references they are scored against (augmented with the mixture).
        """
        batch = batch.to(self.device)
        mix, targets = batch.mix_sig.data, self._targets(batch)
        if stage == sb.Stage.TRAIN:
            mix, targets = self._augment(mix, targets, batch.mix_sig.lengths)
        return separate(mix, self.modules.encoder, self.modules.masknet, self.modules.decoder), targets

    def _augment(self, mix, targets, lengths):
        """The stock recipes' training augmentation, each part behind its flag.

        Sources and mixture are cut from the start to a length that depends only on L and the
        speeds of ``speed_perturb`` (see ``_perturbed_length``), so shapes stay static for a
        compiled model.

        Arguments
        ---------
        mix : torch.Tensor
            [B, L].
        targets : torch.Tensor
            [B, L, S].
        lengths : torch.Tensor
            [B], relative lengths of ``mix`` (for ``drop_chunk``).

        Returns
        -------
        mix, targets : torch.Tensor
            [B, L'] and [B, L', S], with L' <= L.
        """
        hparams = self.hparams
        use_speedperturb = getattr(hparams, "use_speedperturb", False)
        use_rand_shift = getattr(hparams, "use_rand_shift", False)
        if use_speedperturb or use_rand_shift:
            sources = list(targets.unbind(-1))  # S x [B, L]
            if use_speedperturb:
                sources = [hparams.speed_perturb(source) for source in sources]
            if use_rand_shift:
                shifts = torch.randint(hparams.min_shift, hparams.max_shift, (len(sources),)).tolist()
                sources = [source.roll(shift, dims=1) for source, shift in zip(sources, shifts)]
            length = _perturbed_length(hparams.speed_perturb, mix.shape[1]) if use_speedperturb else mix.shape[1]
            background = (mix - targets.sum(-1))[:, :length]  # [B, L']
            targets = torch.stack([source[:, :length] for source in sources], dim=-1)  # [B, L', S]
            mix = targets.sum(-1) + background
        if getattr(hparams, "use_wavedrop", False):
            mix = hparams.drop_freq(hparams.drop_chunk(mix, lengths))
        return mix, targets

    def _targets(self, batch) -> torch.Tensor:
        """The reference sources, [B, L, S]."""
        sources = [getattr(batch, f"s{i}_sig").data for i in range(1, self.hparams.num_spks + 1)]
        return torch.stack(sources, dim=-1).to(self.device)

    def compute_objectives(self, outputs, batch, stage):
        """The batch's loss from ``compute_forward``'s outputs (see ``_training_loss`` for training).

        Validation and test return the mean loss; test also records per-utterance metrics,
        plots and audio.

        Arguments
        ---------
        outputs : tuple of torch.Tensor
            Predictions and targets, each [B, L, S].
        batch : PaddedBatch
            The batch (its ``mix_sig`` and ``id`` are read in validation and test).
        stage : sb.Stage
            Which loss and which records.
        """
        predictions, targets = outputs
        predictions = predictions.float()
        if stage == sb.Stage.TRAIN:
            return self._training_loss(self.hparams.loss(targets, predictions))
        loss = self.hparams.eval_loss(targets, predictions)  # [B]
        if stage == sb.Stage.VALID:
            mix = batch.mix_sig.data.unsqueeze(-1).expand_as(targets)
            self.valid_improvements.append((self.hparams.eval_loss(targets, mix) - loss).detach().cpu())
        else:
            self._record_test(batch, targets, predictions.detach())
        return loss.mean()

    def _training_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch from its per-example losses [B].

        With ``threshold_byloss`` the mean covers only the examples whose loss is above
        ``threshold``. If none is, the batch's mean is returned with a zero gradient (every
        process still back-propagates, so distributed training stays in step) and counted in
        ``easy_batches``. A batch whose mean is not below ``loss_upper_lim`` is returned as NaN
        with NaN gradients, so the base class handles it as a non-finite loss: it is counted in
        ``nonfinite_count`` against ``nonfinite_patience`` and, its gradients dropped by
        ``skip_nonfinite_grads`` (on in the YAMLs) or the fp16 scaler, no parameter changes on
        any process.
        """
        kept = loss
        if getattr(self.hparams, "threshold_byloss", False):
            kept = loss[~(loss <= self.hparams.threshold)]  # a NaN stays, for the base class to see
            if kept.numel() == 0:
                self.easy_batches += 1
                return loss.mean().detach() + 0 * loss.sum()
        mean = kept.mean()
        upper_limit = getattr(self.hparams, "loss_upper_lim", None)
        if upper_limit is not None and mean >= upper_limit:
            logger.info("training loss %.4g is not below loss_upper_lim %g: batch skipped", mean.item(), upper_limit)
            return loss.sum() * float("nan")
        return mean

    def _record_test(self, batch, targets, predictions):
        """Score each utterance of a test batch, plot and save the first ones; leave out (with a
        warning naming it) one shorter than one STFT frame or whose metrics are undefined."""
        mix = batch.mix_sig.data
        for index, (utterance_id, length) in enumerate(zip(batch.id, self._utterance_lengths(batch))):
            if length < self.hparams.n_fft:
                self._leave_out(utterance_id, self._too_short(length))
                continue
            refs = targets[index, :length]
            try:
                scores, ests = utterance_metrics(mix[index, :length], refs, predictions[index, :length],
                                                 self.hparams.sample_rate)
            except UndefinedMetricsError as error:
                self._leave_out(utterance_id, str(error))
                continue
            self.test_rows.append({"ID": utterance_id, **scores})
            scored = len(self.test_rows) - self.test_left_out
            if not if_main_process():
                continue
            if scored <= self.hparams.num_test_plots:
                plot_separation(
                    os.path.join(self.hparams.output_folder, "test_plots", f"{utterance_id}.png"),
                    mix[index, :length], refs, ests, self.hparams.sample_rate,
                    title=f"{utterance_id}: SI-SNRi {scores['si-snr_i']:.1f} dB", n_fft=self.hparams.n_fft,
                )
            if getattr(self.hparams, "save_audio", False) and scored <= self.hparams.n_audio_to_save:
                self._save_audio(utterance_id, mix[index, :length], refs, ests)

    def _save_audio(self, utterance_id: str, mix: torch.Tensor, refs: torch.Tensor, ests: torch.Tensor):
        """Write one test utterance into ``output_folder/audio_results`` as 32-bit float WAVs.

        Files: ``<ID>_mix.wav``, then ``<ID>_s<n>.wav`` and ``<ID>_s<n>_estimate.wav`` per
        source. Mixture and references are written as they are; each estimate is scaled to a
        peak of 0.9, so players that clip beyond full scale play it intact.

        Arguments
        ---------
        utterance_id : str
            The utterance's ID.
        mix : torch.Tensor
            [L].
        refs, ests : torch.Tensor
            [L, S], estimates in their best permutation.
        """
        folder = os.path.join(self.hparams.output_folder, "audio_results")
        os.makedirs(folder, exist_ok=True)
        signals = {"mix": mix}
        for source in range(refs.shape[1]):
            estimate = ests[:, source]
            signals[f"s{source + 1}"] = refs[:, source]
            signals[f"s{source + 1}_estimate"] = ESTIMATE_PEAK * estimate / estimate.abs().max().clamp_min(1e-8)
        for name, signal in signals.items():
            path = os.path.join(folder, f"{utterance_id}_{name}.wav")
            sf.write(path, signal.cpu().numpy(), self.hparams.sample_rate, subtype="FLOAT")

    def on_stage_start(self, stage, epoch=None):
        """Start the training clock, or reset the per-utterance results."""
        if stage == sb.Stage.TRAIN:
            self.follow_time_schedule(self.shared_training_seconds())
            self.training_clock.start()
            self.easy_batches = 0
        elif stage == sb.Stage.VALID:
            self.valid_improvements = []
        else:
            self.test_rows = []
            self.test_left_out = 0
        self._swap_average(stage != sb.Stage.TRAIN)  # validate and test the weight average

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal, early-stop and checkpoint after validation; write results after test."""
        if stage == sb.Stage.TRAIN:
            self.training_clock.stop()
            self.train_stats = {"snr": -stage_loss, "nonfinite_batches": self.nonfinite_count}
            if getattr(self.hparams, "threshold_byloss", False):
                self.train_stats["easy_batches"] = self.easy_batches
            if self.training_budget_spent(self.shared_training_seconds()):
                logger.info("training time budget (%s min) spent", self.hparams.max_train_minutes)
            return
        self._swap_average(False)  # checkpoints keep the trained weights and the average apart
        if stage == sb.Stage.VALID:
            improvement = float(torch.cat(self.valid_improvements).mean()) if self.valid_improvements else 0.0
            stats = {"si-snr": -stage_loss, "si-snr_i": improvement}
            if isinstance(self.hparams.lr_scheduler, TimeBudgetSchedule):
                current_lr = self.optimizer.param_groups[0]["lr"]
            else:
                current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
                sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            if hasattr(self.hparams.epoch_counter, "update_metric"):
                self.hparams.epoch_counter.update_metric(stage_loss)
            meta = {"epoch": epoch, "lr": current_lr, "train_minutes": round(self.training_clock.elapsed / 60, 3)}
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"si-snr": stage_loss}, min_keys=["si-snr"])
        else:
            means = self._write_test_results() if if_main_process() else {}
            counts = {"scored": len(self.test_rows) - self.test_left_out, "left_out": self.test_left_out}
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current}, test_stats={**means, **counts}
            )

    def _write_test_results(self) -> dict:
        """Write ``test_results.csv`` atomically with :func:`~spmamba_sb.scoring.write_scores`: a
        row per utterance (empty fields for one left out), then the mean row over the scored ones;
        return the means (none if no utterance was scored)."""
        path = os.path.join(self.hparams.output_folder, "test_results.csv")
        means = write_scores(path, self.test_rows, CORE_METRICS)
        logger.info("test results (%d of %d utterances scored) written to %s: %s",
                    len(self.test_rows) - self.test_left_out, len(self.test_rows), path, means)
        return means
