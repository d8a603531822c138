"""Pure rules of the rebalancer: which budget edits are pushed."""

from __future__ import annotations

from jangkau.rebalancer.domain import (
    ArmBounds,
    daily_from_hourly,
    edits_needed,
    pauses_for_refused_cuts,
)
from jangkau.rebalancer.job import arm_bounds
from jangkau.v1 import budget_pb2, common_pb2


def test_an_hourly_budget_becomes_a_daily_rate():
    assert daily_from_hourly(1_500_000) == 36_000_000


def test_an_arm_never_set_is_pushed_even_at_zero():
    assert edits_needed({"a": 0, "b": 100}, {}) == {"a": 0, "b": 100}


def test_a_small_change_is_left_alone_to_spare_the_learning_phase():
    assert edits_needed({"a": 105}, {"a": 100}, min_edit_percent=10) == {}


def test_a_change_beyond_the_threshold_is_pushed():
    assert edits_needed({"a": 111}, {"a": 100}, min_edit_percent=10) == {"a": 111}


def test_turning_an_arm_off_or_on_is_always_pushed():
    assert edits_needed({"a": 0, "b": 1}, {"a": 100, "b": 0}, min_edit_percent=50) == {
        "a": 0,
        "b": 1,
    }


def test_without_a_threshold_every_change_is_pushed():
    assert edits_needed({"a": 101, "b": 100}, {"a": 100, "b": 100}) == {"a": 101}


def test_small_cuts_are_pushed_when_leaving_them_would_overspend():
    # Left alone, a, b and c would keep 310 in force where 303 was allocated;
    # cutting b, the arm with the most to cut, is enough.
    wanted = {"a": 95, "b": 100, "c": 108}
    in_force = {"a": 100, "b": 110, "c": 100}
    assert edits_needed(wanted, in_force, min_edit_percent=10) == {"b": 100}
    assert edits_needed({"a": 95, "b": 100}, {"a": 100, "b": 110}, min_edit_percent=10) == {
        "a": 95,
        "b": 100,
    }
    # Cuts and rises that balance out are left alone: no more is in force than allocated.
    assert edits_needed({"a": 95, "b": 105}, {"a": 100, "b": 100}, min_edit_percent=10) == {}


def test_what_is_left_in_force_never_exceeds_what_was_allocated():
    wanted = {"a": 91, "b": 92, "c": 108, "d": 95}
    in_force = {"a": 100, "b": 100, "c": 100, "d": 100}
    edits = edits_needed(wanted, in_force, min_edit_percent=10)
    after = {arm: edits.get(arm, in_force[arm]) for arm in wanted}
    assert sum(after.values()) <= sum(wanted.values())
    assert edits == {"a": 91, "b": 92}  # the biggest cuts first, only as many as needed


def daily(**hourly: int) -> dict[str, int]:
    return {arm: daily_from_hourly(micros) for arm, micros in hourly.items()}


def test_a_refused_cut_is_left_while_the_campaign_has_budget_left_for_it():
    # a's cut from 100 to 60 an hour was refused: 150 in force this hour.
    wanted, in_force = daily(a=60, b=50), daily(a=100, b=50)
    assert pauses_for_refused_cuts(wanted, in_force, ["a"], left_micros=1_000) == []
    assert pauses_for_refused_cuts(wanted, in_force, ["a"], left_micros=150) == []


def test_a_refused_cut_is_paused_when_what_is_in_force_exceeds_what_is_left():
    wanted, in_force = daily(a=60, b=50), daily(a=100, b=50)
    assert pauses_for_refused_cuts(wanted, in_force, ["a"], left_micros=149) == ["a"]
    assert pauses_for_refused_cuts(wanted, in_force, ["a"], left_micros=0) == ["a"]


def test_the_refused_cuts_with_most_to_cut_are_paused_first_and_only_as_many_as_needed():
    wanted = daily(a=60, b=10, c=80, d=30)
    in_force = daily(a=100, b=100, c=90, d=30)  # refused: a (−40), b (−90), c (−10)
    # 320 in force: pausing b leaves 220, then a leaves 120.
    assert pauses_for_refused_cuts(wanted, in_force, ["a", "b", "c"], left_micros=150) == [
        "b",
        "a",
    ]
    assert pauses_for_refused_cuts(wanted, in_force, ["a", "b", "c"], left_micros=220) == ["b"]


def test_a_refused_rise_is_never_paused():
    # b's rise from 50 to 90 was refused; only cuts are paused, even with nothing left.
    wanted, in_force = daily(a=60, b=90), daily(a=100, b=50)
    assert pauses_for_refused_cuts(wanted, in_force, ["a", "b"], left_micros=0) == ["a"]
    assert pauses_for_refused_cuts(daily(b=90), daily(b=50), ["b"], left_micros=0) == []


def test_a_refused_pause_is_not_pushed_again():
    # a's pause (a blackout's zero) was refused: pausing it is what was refused.
    wanted, in_force = daily(a=0, b=0), daily(a=100, b=0)
    assert pauses_for_refused_cuts(wanted, in_force, ["a"], left_micros=0) == []


def test_a_small_change_is_pushed_when_the_amount_in_force_is_above_the_arms_maximum():
    # The buyer lowered a's maximum to 95 an hour: the amount in force, 100, is above
    # it, though the decision's 95 is within 10 % of it (and b's rise balances it out).
    wanted, in_force = daily(a=95, b=105), daily(a=100, b=100)
    bounds = {"a": ArmBounds(max_daily=daily_from_hourly(95))}
    assert edits_needed(wanted, in_force, 10, bounds) == {"a": wanted["a"]}


def test_a_small_change_is_pushed_when_the_amount_in_force_is_below_the_arms_minimum():
    wanted, in_force = daily(a=100), daily(a=95)
    bounds = {"a": ArmBounds(min_daily=daily_from_hourly(100))}
    assert edits_needed(wanted, in_force, 10, bounds) == wanted
    assert edits_needed(wanted, in_force, 10) == {}


def test_an_arms_bounds_are_its_own_and_its_platforms_held_for_a_day():
    campaign = budget_pb2.Campaign(
        arms=[
            budget_pb2.Arm(id="a", platform=common_pb2.META, min_micros_per_period=10),
            budget_pb2.Arm(id="b", platform=common_pb2.GOOGLE, max_micros_per_period=50),
        ],
        platform_minimums=[
            budget_pb2.PlatformMinimum(platform=common_pb2.GOOGLE, min_daily_micros=1)
        ],
    )
    assert arm_bounds(campaign) == {
        "a": ArmBounds(min_daily=240),
        "b": ArmBounds(min_daily=1, max_daily=1_200),
    }
