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
