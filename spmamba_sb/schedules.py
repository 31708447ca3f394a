"""Learning-rate schedules over a training-time budget.

SpeechBrain's schedulers count epochs or optimizer steps. A run planned in minutes (``max_train_minutes``)
does not know its step count in advance, so :class:`TimeBudgetSchedule` reads the training clock instead:
a linear warm-up, a constant phase, then a linear decay that reaches its floor exactly when the budget is
spent. Budget-aware linear decay is the schedule that Li, Yumer and Ramanan ("Budgeted Training: Rethinking
Deep Neural Network Training Under Resource Constraints", ICLR 2020) found best for a fixed budget; holding
the peak and decaying only over the last part of the budget ("warmup-stable-decay") matches a cosine decay over the
whole run in Hägele et al. ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations",
NeurIPS 2024) with a cool-down of about 20 %.
"""


class TimeBudgetSchedule:
    """Learning rate as a function of the training minutes spent.

    Linear warm-up from 0 to ``lr`` over ``warmup_minutes``, ``lr`` until the last ``decay_fraction``
    of ``total_minutes`` (or the end of the warm-up, if later), then linear decay to ``final_lr`` at
    ``total_minutes``, and ``final_lr`` after that. ``decay_fraction=1`` decays over all the time
    after the warm-up. :class:`~spmamba_sb.brain.SeparationBrain` sets it before every optimizer step
    from its training clock, which checkpoints keep, so a resumed run follows the same schedule.

    Arguments
    ---------
    lr : float
        Peak learning rate.
    total_minutes : float
        The training-time budget (``max_train_minutes``).
    warmup_minutes : float
        Minutes of linear warm-up.
    final_lr : float
        Learning rate at the end of the budget.
    decay_fraction : float
        The share of ``total_minutes``, at its end, over which the rate decays (0 < decay_fraction <= 1).

    Example
    -------
    >>> schedule = TimeBudgetSchedule(lr=2e-3, total_minutes=20, warmup_minutes=1)
    >>> [round(schedule(minutes), 6) for minutes in (0, 0.5, 1, 10.5, 20, 25)]
    [0.0, 0.001, 0.002, 0.001, 0.0, 0.0]
    >>> held = TimeBudgetSchedule(lr=2e-3, total_minutes=20, warmup_minutes=1, decay_fraction=0.25)
    >>> [round(held(minutes), 6) for minutes in (1, 15, 17.5, 20)]
    [0.002, 0.002, 0.001, 0.0]
    """

    def __init__(
        self,
        lr: float,
        total_minutes: float,
        warmup_minutes: float = 1.0,
        final_lr: float = 0.0,
        decay_fraction: float = 1.0,
    ):
        if total_minutes is None or not 0 <= warmup_minutes < total_minutes:
            raise ValueError(
                f"TimeBudgetSchedule needs 0 <= warmup_minutes < total_minutes (the max_train_minutes budget); "
                f"got warmup_minutes={warmup_minutes}, total_minutes={total_minutes}"
            )
        if not 0 < decay_fraction <= 1:
            raise ValueError(f"TimeBudgetSchedule needs 0 < decay_fraction <= 1; got {decay_fraction}")
        self.lr = lr
        self.total_minutes = total_minutes
        self.warmup_minutes = warmup_minutes
        self.final_lr = final_lr
        self.decay_start = max(warmup_minutes, total_minutes * (1 - decay_fraction))

    def __call__(self, minutes: float) -> float:
        """The learning rate after ``minutes`` of training."""
        if minutes < self.warmup_minutes:
            return self.lr * minutes / self.warmup_minutes
        remaining = min(1.0, max(0.0, (self.total_minutes - minutes) / (self.total_minutes - self.decay_start)))
        return self.final_lr + (self.lr - self.final_lr) * remaining
