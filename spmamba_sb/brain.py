"""``SeparationBrain``: SpeechBrain training, validation and testing of the trio."""

import csv
import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

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
    checkpoint is kept by lowest loss. The test stage writes ``test_results.csv`` (one row
    per utterance and a mean row) and spectrogram PNGs of the first ``num_test_plots``
    utterances into ``output_folder``.

    Hyperparameters read: ``num_spks``, ``loss``, ``eval_loss``, ``lr_scheduler``,
    ``epoch_counter``, ``train_logger``, ``output_folder``, ``sample_rate``,
    ``num_test_plots``, ``n_fft``.
    """

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
        if stage == sb.Stage.TEST:
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
        """Reset the per-utterance test results."""
        if stage == sb.Stage.TEST:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal, early-stop and checkpoint after validation; write results after test."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"snr": -stage_loss, "nonfinite_batches": self.nonfinite_count}
            return
        stats = {"si-snr": -stage_loss}
        if stage == sb.Stage.VALID:
            current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, next_lr)
            if hasattr(self.hparams.epoch_counter, "update_metric"):
                self.hparams.epoch_counter.update_metric(stage_loss)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr}, train_stats=self.train_stats, valid_stats=stats
            )
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
