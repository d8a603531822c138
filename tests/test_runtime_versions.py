"""Data versions that follow time (runtime.versions): a label names one state of
the data before its `end`, and a snapshot is reused only while no change since
touched that data, however few changes each side keeps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jangkau.runtime.versions import (
    ANY_TIME_US,
    ChangeHistory,
    changed_from_us,
    changed_from_wire,
)

# Instants are small numbers here: only their order matters.
instants = st.integers(min_value=0, max_value=8)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.one_of(instants, st.just(ANY_TIME_US))),
        st.tuples(st.just("read"), instants),
        st.tuples(st.just("check"), st.integers(min_value=0, max_value=1_000)),
    ),
    max_size=80,
)


def test_a_change_from_an_instant_on_leaves_the_versions_before_it():
    history = ChangeHistory("v0")
    history.add("v1", 5)
    assert history.version_before(5) == "v0"
    assert history.version_before(6) == "v1"
    history.add("v2", ANY_TIME_US)
    assert history.version_before(0) == "v2"


def test_forgotten_changes_answer_with_the_latest_forgotten():
    history = ChangeHistory(None, capacity=2)
    for version, earliest in (("v1", 1), ("v2", 7), ("v3", 8)):
        history.add(version, earliest)
    # v1 is forgotten: the data before 5 is as it was at v1, or later.
    assert history.base == "v1"
    assert history.version_before(5) == "v1"
    assert history.version_before(8) == "v2"


def test_the_earliest_instant_round_trips_through_the_wire():
    assert changed_from_us(changed_from_wire(ANY_TIME_US)) == ANY_TIME_US
    for us in (0, 1, 1_727_769_600_000_000, -1):
        assert changed_from_us(changed_from_wire(us)) == us


@settings(max_examples=300, deadline=None)
@given(operations)
def test_labels_name_one_state_and_reuse_is_never_stale(ops):
    """A model of metrics (which labels reads) and budget (which keeps snapshots
    and learns of every change through its watch), each keeping only 3 changes.
    The state of the data before `end` is the latest change that touched an
    instant before it (0: none)."""
    metrics = ChangeHistory("v0", capacity=3)
    budget = ChangeHistory(None, capacity=3)
    changes: list[int] = []  # earliest instant of change n+1

    def state(end: int) -> int:
        return max((n + 1 for n, e in enumerate(changes) if e < end), default=0)

    named: dict[tuple[int, str], int] = {}
    # (end, label, state when read)
    snapshots: list[tuple[int, str, int]] = []
    for op, value in ops:
        if op == "write":
            changes.append(value)
            version = f"v{len(changes)}"
            metrics.add(version, value)
            budget.add(version, value)
        elif op == "read":
            label = metrics.version_before(value)
            assert label is not None
            # One label, one state of the data before `end`.
            assert named.setdefault((value, label), state(value)) == state(value)
            snapshots.append((value, label, state(value)))
        elif snapshots:
            end, label, seen = snapshots[value % len(snapshots)]
            if budget.version_before(end) in (None, label):
                assert state(end) == seen, "a snapshot was reused after its data changed"
