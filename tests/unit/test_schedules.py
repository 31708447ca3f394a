"""TimeBudgetSchedule: warm-up, then linear decay to the floor at the end of the time budget."""

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
