"""``SeparationBrain``: SpeechBrain training, validation and testing of the trio."""

import csv
import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import ddp_broadcast, if_main_process

from spmamba_sb.checkpoints import RandomState, TrainingClock
from spmamba_sb.evaluation import plot_separation, separation_metrics
from spmamba_sb.losses import best_permutations
from spmamba_sb.trio import separate

logger = logging.getLogger(__name__)

METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i")


class SeparationBrain(sb.Brain):
    """Permutation-invariant separation training with the paper's recipe.

    Training minimises ``hparams.loss`` (negative PIT SNR); validation and test report
    ``hparams.eval_loss`` (negative PIT SI-SNR). Gradient clipping, accumulation and
    non-finite handling are the base class's (``max_grad_norm``, ``skip_nonfinite_grads``,
    ``nonfinite_patience``). After each validation the learning rate follows
    ``lr_scheduler``, the early stopper in ``epoch_counter`` sees the loss and a
    checkpoint is kept by lowest loss. Validation also reports SI-SNR improvement over the
    mixture (``si-snr_i``) and the training minutes so far. The test stage writes
    ``test_results.csv`` (one row per utterance and a mean row) and spectrogram PNGs of the
    first ``num_test_plots`` utterances into ``output_folder``.

    Checkpoints also hold the random generators' state and the training time, so a resumed
    run continues as an uninterrupted one would. With ``max_train_minutes`` set, training
    stops once that much time has been spent in the training stage (validation excluded,
    summed over resumes), then validates, checkpoints and ends; rerunning the same command
    only tests.

    Hyperparameters read: ``num_spks``, ``loss``, ``eval_loss``, ``lr_scheduler``,
    ``epoch_counter``, ``train_logger``, ``output_folder``, ``sample_rate``,
    ``num_test_plots``, ``n_fft``, and optionally ``max_train_minutes``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.training_clock = TrainingClock()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverables({"training_clock": self.training_clock, "random_state": RandomState()})

    @property
    def training_budget_spent(self) -> bool:
        """Whether ``max_train_minutes`` of training time have been used (the same on every process)."""
        minutes = getattr(self.hparams, "max_train_minutes", None)
        if minutes is None:
            return False
        spent = self.training_clock.elapsed >= 60 * minutes
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            spent = ddp_broadcast(spent, src=0)
        return spent

    @property
    def _optimizer_step_limit_exceeded(self):
        # The base class's training loop checks this before every batch and after each epoch.
        return super()._optimizer_step_limit_exceeded or self.training_budget_spent

    def on_fit_start(self):
        """Recover the latest checkpoint; if the time budget is already spent, train no more."""
        super().on_fit_start()
        if self.training_budget_spent and hasattr(self.hparams.epoch_counter, "should_stop"):
            logger.info("training time budget (%s min) already spent", self.hparams.max_train_minutes)
            self.hparams.epoch_counter.should_stop = True

    def compute_forward(self, batch, stage):
        """Separate the batch's mixtures: [B, L] -> [B, L, S]."""
        batch = batch.to(self.device)
        mix, _ = batch.mix_sig
        return separate(mix, self.modules.encoder, self.modules.masknet, self.modules.decoder)

    def _targets(self, batch) -> torch.Tensor:
        """The reference sources, [B, L, S]."""
        sources = [getattr(batch, f"s{i}_sig").data for i in range(1, self.hparams.num_spks + 1)]
        return torch.stack(sources, dim=-1).to(self.device)

    def compute_objectives(self, predictions, batch, stage):
        """Mean loss over the batch; at test time also per-utterance metrics and plots."""
        targets = self._targets(batch)
        predictions = predictions.float()
        loss_fn = self.hparams.loss if stage == sb.Stage.TRAIN else self.hparams.eval_loss
        loss = loss_fn(targets, predictions)  # [B]
        if stage == sb.Stage.VALID:
            mix = batch.mix_sig.data.unsqueeze(-1).expand_as(targets)
            self.valid_improvements.append((loss_fn(targets, mix) - loss).detach().cpu())
        elif stage == sb.Stage.TEST:
            self._record_test(batch, targets, predictions.detach())
        return loss.mean()

    def _record_test(self, batch, targets, predictions):
        mix = batch.mix_sig.data
        orders = best_permutations(targets, predictions)
        for index, utterance_id in enumerate(batch.id):
            length = int(round(batch.mix_sig.lengths[index].item() * mix.shape[1]))
            refs, ests = targets[index, :length], predictions[index, :length][:, list(orders[index])]
            row = {"ID": utterance_id, **separation_metrics(mix[index, :length], refs, ests)}
            self.test_rows.append(row)
            if len(self.test_rows) <= self.hparams.num_test_plots and if_main_process():
                plot_separation(
                    os.path.join(self.hparams.output_folder, "test_plots", f"{utterance_id}.png"),
                    mix[index, :length], refs, ests, self.hparams.sample_rate,
                    title=f"{utterance_id}: SI-SNRi {row['si-snr_i']:.1f} dB", n_fft=self.hparams.n_fft,
                )

    def on_stage_start(self, stage, epoch=None):
        """Start the training clock, or reset the per-utterance results."""
        if stage == sb.Stage.TRAIN:
            self.training_clock.start()
        elif stage == sb.Stage.VALID:
            self.valid_improvements = []
        else:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal, early-stop and checkpoint after validation; write results after test."""
        if stage == sb.Stage.TRAIN:
            self.training_clock.stop()
            self.train_stats = {"snr": -stage_loss, "nonfinite_batches": self.nonfinite_count}
            if self.training_budget_spent:
                logger.info("training time budget (%s min) spent", self.hparams.max_train_minutes)
            return
        stats = {"si-snr": -stage_loss}
        if stage == sb.Stage.VALID:
            stats["si-snr_i"] = float(torch.cat(self.valid_improvements).mean()) if self.valid_improvements else 0.0
            current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            if hasattr(self.hparams.epoch_counter, "update_metric"):
                self.hparams.epoch_counter.update_metric(stage_loss)
            meta = {"epoch": epoch, "lr": current_lr, "train_minutes": round(self.training_clock.elapsed / 60, 3)}
            self.hparams.train_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"si-snr": stage_loss}, min_keys=["si-snr"])
        else:
            means = self._write_test_results() if if_main_process() else {}
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current}, test_stats={**stats, **means}
            )

    def _write_test_results(self) -> dict:
        """Write ``test_results.csv`` with a mean row; return the means."""
        means = {key: sum(row[key] for row in self.test_rows) / max(len(self.test_rows), 1) for key in METRICS}
        path = os.path.join(self.hparams.output_folder, "test_results.csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["ID", *METRICS])
            writer.writeheader()
            writer.writerows(self.test_rows)
            writer.writerow({"ID": "mean", **means})
        logger.info("test results (%d utterances) written to %s: %s", len(self.test_rows), path, means)
        return means
