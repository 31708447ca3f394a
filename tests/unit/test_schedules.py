"""TimeBudgetSchedule: warm-up, a constant phase, then linear decay to the floor at the end of the time budget."""

import pytest

from spmamba_sb.schedules import TimeBudgetSchedule


def test_warms_up_then_decays_linearly_to_the_floor_at_the_budget():
    schedule = TimeBudgetSchedule(lr=4e-3, total_minutes=21, warmup_minutes=1, final_lr=1e-4)
    assert schedule(0) == 0
    assert schedule(0.25) == pytest.approx(1e-3)
    assert schedule(1) == pytest.approx(4e-3)
    assert schedule(11) == pytest.approx((4e-3 + 1e-4) / 2)
    assert schedule(21) == pytest.approx(1e-4) and schedule(30) == pytest.approx(1e-4)
    rates = [schedule(minute / 10) for minute in range(10, 211)]
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))


def test_no_warm_up():
    assert TimeBudgetSchedule(lr=1e-3, total_minutes=5, warmup_minutes=0)(0) == pytest.approx(1e-3)


@pytest.mark.parametrize("total, warmup", [(None, 1), (1, 1), (5, -1)])
def test_a_schedule_without_room_after_its_warm_up_is_a_clear_error(total, warmup):
    with pytest.raises(ValueError, match="warmup_minutes < total_minutes"):
        TimeBudgetSchedule(lr=1e-3, total_minutes=total, warmup_minutes=warmup)


def test_holds_the_peak_then_decays_over_the_last_fraction_of_the_budget():
    schedule = TimeBudgetSchedule(lr=2e-3, total_minutes=20, warmup_minutes=1, decay_fraction=0.25)
    assert schedule(0.5) == pytest.approx(1e-3)
    assert schedule(1) == schedule(10) == schedule(15) == pytest.approx(2e-3)
    assert schedule(17.5) == pytest.approx(1e-3)
    assert schedule(20) == 0 and schedule(22) == 0
    rates = [schedule(minute / 10) for minute in range(150, 201)]
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))


def test_a_decay_longer_than_the_time_after_the_warm_up_starts_at_the_warm_up():
    assert TimeBudgetSchedule(lr=1e-3, total_minutes=4, warmup_minutes=2, decay_fraction=0.9)(3) == pytest.approx(5e-4)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_a_decay_fraction_outside_0_1_is_a_clear_error(fraction):
    with pytest.raises(ValueError, match="decay_fraction"):
        TimeBudgetSchedule(lr=1e-3, total_minutes=10, decay_fraction=fraction)
