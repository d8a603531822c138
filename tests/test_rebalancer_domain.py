"""Pure rules of the rebalancer: which budget edits are pushed."""

from __future__ import annotations

from jangkau.rebalancer.domain import daily_from_hourly, edits_needed


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
