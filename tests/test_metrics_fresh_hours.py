"""Fresh hours skip the lookup of stored versions, whatever the interleaving of
campaigns: the store keeps, per arm, a key no stored key of the arm exceeds.
Replays and restatements of recent hours skip it too: the store remembers the
versions it wrote or looked up lately, and a replay that changes nothing runs
no SQL. The restatement rule (a row replaces a stored report only with a newer
version, the same version is a replay) must hold wherever the marks and that
memory decide: interleaved campaigns, replays and restatements of the latest and
of earlier hours, another attribution window of a stored hour, a failed write, a
restart, a memory too small to hold every hour, and streams writing the same
hours at once."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jangkau.metrics import synthetic
from jangkau.metrics.domain import Campaign, IngestCounts
from jangkau.metrics.service import MetricsService
from jangkau.metrics.store import _REPORT_VALUES, DuckDBMetricsStore, RecentVersions

TENANT = "alpha"
# Registered in this order: A's arms have the smaller arm_refs, so A's keys of an
# hour sort below B's and a global maximum would not tell A's fresh hours apart.
A = synthetic.campaign("cmp_a", arms=3, hours=24 * 10)
B = synthetic.campaign("cmp_b", arms=3, hours=24 * 10)
CAMPAIGNS = (A, B)
# Window refs follow first use: the synthetic window's is below OTHER_WINDOW's.
WINDOW = synthetic.ATTRIBUTION_WINDOW
OTHER_WINDOW = "1d_click"
# The stored values of a report, as the store writes them.
VALUES = _REPORT_VALUES


def hour(
    campaign: Campaign, number: int, *, seed: int = 0, lag_hours: int = 1, window: str = WINDOW
) -> pa.Table:
    """Every arm's report of one hour of the flight, versioned `lag_hours` after it."""
    table = synthetic.hourly_reports(
        campaign, number, 1, seed=seed, version_lag=timedelta(hours=lag_hours)
    )
    column = table.schema.get_field_index("attribution_window")
    return table.set_column(column, "attribution_window", pa.array([window] * table.num_rows))


class RestatementRule:
    """The reference: applies rows one by one."""

    def __init__(self) -> None:
        self.stored: dict[tuple, tuple] = {}

    def ingest(self, table: pa.Table) -> IngestCounts:
        counts: Counter[str] = Counter()
        for row in table.to_pylist():
            key = (row["campaign_id"], row["arm_id"], row["hour"], row["attribution_window"])
            values = tuple(row[name] for name in VALUES)
            held = self.stored.get(key)
            if held is None:
                counts["inserted"] += 1
                self.stored[key] = values
            elif row["version"] > held[-1]:
                counts["replaced"] += 1
                self.stored[key] = values
            elif row["version"] == held[-1]:
                counts["unchanged"] += 1
            else:
                counts["stale"] += 1
        return IngestCounts(**counts)

    def rows(self, campaign_id: str) -> list[tuple]:
        return sorted(
            (*key[1:], *values) for key, values in self.stored.items() if key[0] == campaign_id
        )


class Feed:
    """A store in `folder` and the reference, fed the same batches; every write is
    checked against the reference, counts and stored rows. `remembered` is the
    capacity of the store's memory of recent versions (None: the default; 0:
    nothing remembered, every older key is looked up; n: n keys, and writes of up
    to n // 4)."""

    def __init__(self, folder: Path, remembered: int | None = None) -> None:
        self.folder = folder
        self.remembered = remembered
        self.rule = RestatementRule()
        self.service = self._open()
        for campaign in CAMPAIGNS:
            self.service.register(TENANT, campaign)

    def _open(self) -> MetricsService:
        store = DuckDBMetricsStore(self.folder / "metrics.duckdb")
        if self.remembered is not None:
            store._recent = RecentVersions(self.remembered, self.remembered // 4)
        return MetricsService(store)

    @property
    def store(self) -> DuckDBMetricsStore:
        return self.service.store  # type: ignore[return-value]

    def send(self, *tables: pa.Table) -> IngestCounts:
        table = pa.concat_tables(tables)
        counts = self.service.ingest_reports(TENANT, table)
        assert counts == self.rule.ingest(table)
        self.check_stored()
        return counts

    def check_stored(self) -> None:
        for campaign in CAMPAIGNS:
            registered = self.service.campaign(TENANT, campaign.campaign_id)
            stored = self.store.report_rows(registered).to_pylist()
            assert [
                (r["arm_id"], r["hour"], r["attribution_window"], *(r[v] for v in VALUES))
                for r in stored
            ] == self.rule.rows(campaign.campaign_id)

    def restart(self) -> None:
        self.store.close()
        self.service = self._open()

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    """A feed whose store remembers no version: what the marks alone decide."""
    opened = Feed(tmp_path, remembered=0)
    yield opened
    opened.close()


@pytest.fixture
def remembering(tmp_path: Path) -> Iterator[Feed]:
    """A feed whose store remembers versions as it does in service."""
    opened = Feed(tmp_path)
    yield opened
    opened.close()


@contextmanager
def counting_lookups(store: DuckDBMetricsStore) -> Iterator[list[int]]:
    """Per lookup of stored versions in the table, how many keys it looked up."""
    looked_up: list[int] = []
    lookup = store._look_up

    def record(cur, keys):  # type: ignore[no-untyped-def]
        looked_up.append(len(keys))
        return lookup(cur, keys)

    with mock.patch.object(store, "_look_up", side_effect=record):
        yield looked_up


def interleave(feed: Feed, hours: range) -> None:
    """Fresh hours of both campaigns, B one hour ahead of A."""
    for h in hours:
        assert feed.send(hour(B, h + 1)) == IngestCounts(inserted=3)
        assert feed.send(hour(A, h)) == IngestCounts(inserted=3)


def test_interleaved_campaigns_follow_the_restatement_rule_through_a_restart(feed: Feed) -> None:
    assert feed.send(hour(B, 0)) == IngestCounts(inserted=3)
    interleave(feed, range(3))
    # The latest hour of each campaign again: keys at their arms' marks.
    assert feed.send(hour(A, 2)) == IngestCounts(unchanged=3)
    assert feed.send(hour(B, 3)) == IngestCounts(unchanged=3)
    # Earlier hours restated, one with an older version.
    assert feed.send(hour(A, 1, seed=7, lag_hours=5)) == IngestCounts(replaced=3)
    assert feed.send(hour(B, 2, seed=8, lag_hours=0)) == IngestCounts(stale=3)
    # A fresh hour beside a replay and a restatement of earlier ones.
    assert feed.send(hour(A, 3), hour(A, 2), hour(A, 0, seed=9, lag_hours=6)) == IngestCounts(
        inserted=3, replaced=3, unchanged=3
    )
    # A fresh hour twice in one batch: the newer version wins.
    assert feed.send(hour(B, 4), hour(B, 4, seed=10, lag_hours=3)) == IngestCounts(
        inserted=3, replaced=3
    )
    # Another window of a stored hour, above the arm's mark and then below it.
    assert feed.send(hour(B, 4, window=OTHER_WINDOW)) == IngestCounts(inserted=3)
    assert feed.send(hour(A, 4, window=OTHER_WINDOW)) == IngestCounts(inserted=3)
    assert feed.send(hour(A, 4)) == IngestCounts(inserted=3)
    feed.restart()
    # The marks start again from the largest key stored: replays stay replays.
    assert feed.send(hour(A, 4), hour(B, 4, seed=10, lag_hours=3)) == IngestCounts(unchanged=6)
    assert feed.send(hour(A, 4, window=OTHER_WINDOW)) == IngestCounts(unchanged=3)
    assert feed.send(hour(B, 1), hour(A, 3)) == IngestCounts(unchanged=6)
    assert feed.send(hour(A, 1, seed=11, lag_hours=8)) == IngestCounts(replaced=3)
    interleave(feed, range(5, 7))
    assert feed.send(hour(A, 6), hour(B, 7)) == IngestCounts(unchanged=6)
    feed.restart()
    assert feed.send(hour(A, 6), hour(B, 7)) == IngestCounts(unchanged=6)
    interleave(feed, range(7, 9))


def test_fresh_hours_of_interleaved_campaigns_are_not_looked_up(feed: Feed) -> None:
    with counting_lookups(feed.store) as looked_up:
        interleave(feed, range(4))
        feed.send(hour(A, 4), hour(A, 3), hour(A, 0, seed=9, lag_hours=6))
    # Only the replayed and the restated hour of the last batch.
    assert looked_up == [6]


def test_after_a_restart_an_arm_is_looked_up_until_it_passes_the_hours_stored(
    feed: Feed,
) -> None:
    interleave(feed, range(4))
    feed.restart()
    with counting_lookups(feed.store) as looked_up:
        interleave(feed, range(4, 6))
    # A's hour 4 ties B's latest stored hour (below B's keys of that hour); B is ahead.
    assert looked_up == [3]


def test_a_failed_write_stores_nothing_and_moves_no_mark(feed: Feed) -> None:
    interleave(feed, range(2))
    with (
        mock.patch.object(feed.store, "_set_default_windows", side_effect=OSError("disk full")),
        pytest.raises(OSError),
    ):
        feed.service.ingest_reports(TENANT, hour(A, 2))
    feed.check_stored()
    with counting_lookups(feed.store) as looked_up:
        # Still above A's marks, so not looked up; then at them, so looked up.
        assert feed.send(hour(A, 2)) == IngestCounts(inserted=3)
        assert feed.send(hour(A, 2)) == IngestCounts(unchanged=3)
    assert looked_up == [3]


def test_a_replay_of_remembered_hours_runs_no_sql(remembering: Feed) -> None:
    feed = remembering
    interleave(feed, range(3))
    generation = feed.store._db.generation
    with counting_lookups(feed.store) as looked_up:
        assert feed.send(hour(A, 2)) == IngestCounts(unchanged=3)
        assert feed.send(hour(B, 1), hour(A, 0)) == IngestCounts(unchanged=6)
        assert feed.store._db.generation == generation  # no transaction either
        # A restatement and a stale version of remembered hours: no lookup.
        assert feed.send(hour(A, 1, seed=7, lag_hours=5)) == IngestCounts(replaced=3)
        assert feed.send(hour(B, 2, seed=8, lag_hours=0)) == IngestCounts(stale=3)
        assert feed.send(hour(A, 1, seed=7, lag_hours=5)) == IngestCounts(unchanged=3)
    assert looked_up == []


def test_a_failed_write_is_not_remembered(remembering: Feed) -> None:
    feed = remembering
    interleave(feed, range(3))
    restated = hour(A, 1, seed=7, lag_hours=5)
    with (
        mock.patch.object(feed.store, "_set_default_windows", side_effect=OSError("disk full")),
        pytest.raises(OSError),
    ):
        feed.service.ingest_reports(TENANT, restated)
    feed.check_stored()
    with counting_lookups(feed.store) as looked_up:
        # Had the rolled-back versions been remembered, this would be "unchanged".
        assert feed.send(restated) == IngestCounts(replaced=3)
        assert feed.send(restated) == IngestCounts(unchanged=3)
    assert looked_up == []


def test_after_a_restart_versions_looked_up_once_are_remembered(remembering: Feed) -> None:
    feed = remembering
    interleave(feed, range(3))
    feed.restart()
    with counting_lookups(feed.store) as looked_up:
        assert feed.send(hour(A, 1)) == IngestCounts(unchanged=3)
        generation = feed.store._db.generation
        assert feed.send(hour(A, 1)) == IngestCounts(unchanged=3)
        assert feed.send(hour(A, 1, seed=3, lag_hours=4)) == IngestCounts(replaced=3)
        assert feed.store._db.generation == generation + 1
    assert looked_up == [3]


def test_recent_versions_hold_two_generations_and_forget_on_a_bulk_write() -> None:
    recent = RecentVersions(capacity=8, write_keys=2)
    keys = np.arange(10, dtype=np.int64)
    recent.remember(keys[:2], keys[:2] * 10)
    assert recent.versions(keys[:2]).tolist() == [0, 10]
    assert recent.versions(keys[:3]) is None
    recent.remember(keys[2:4], keys[2:4] * 10)
    recent.remember(keys[4:6], keys[4:6] * 10)
    recent.remember(keys[6:8], keys[6:8] * 10)
    # A newer version of a remembered key replaces it.
    recent.remember(keys[:1], np.array([99]))
    # The young generation (8 keys) was full: it became the old one.
    assert recent.versions(keys[:8]).tolist() == [99, 10, 20, 30, 40, 50, 60, 70]
    recent.remember(keys[8:10], keys[8:10] * 10)
    assert recent.versions(keys[:10]) is not None
    for start in (1, 3, 5):
        recent.remember(keys[start : start + 2], keys[start : start + 2])
    # Turned over again on the last write: the keys not written since the first
    # turn (7) are forgotten.
    assert recent.versions(keys[7:8]) is None
    assert recent.versions(keys[:7]).tolist() == [99, 1, 2, 3, 4, 5, 6]
    # A write of more keys than it takes in: everything is forgotten.
    recent.remember(keys[:3], keys[:3])
    assert recent.versions(keys[:1]) is None
    assert recent.versions(keys[8:10]) is None


@contextmanager
def pausing_after_commits(store: DuckDBMetricsStore) -> Iterator[None]:
    """Each write transaction pauses once committed and its write lock released,
    so that another stream's write starts before the first finishes its work."""
    transaction = store._db.transaction

    @contextmanager
    def paused() -> Iterator[object]:
        with transaction() as cur:
            yield cur
        time.sleep(0.002)

    with mock.patch.object(store._db, "transaction", paused):
        yield


@pytest.mark.parametrize("remembered", [0, None], ids=["marks-only", "remembering"])
def test_streams_writing_the_same_hours_at_once_store_each_report_once(
    tmp_path: Path, remembered: int | None
) -> None:
    feed = Feed(tmp_path, remembered)
    tables = [hour(c, h + (c is B)) for h in range(10) for c in CAMPAIGNS]
    streams = 3

    def stream(_: int) -> list[IngestCounts]:
        return [feed.service.ingest_reports(TENANT, t) for t in tables]

    with pausing_after_commits(feed.store), ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(stream, range(streams)))
    for i, table in enumerate(tables):
        counts = [out[i] for out in results]
        assert sum(c.inserted for c in counts) == table.num_rows
        assert sum(c.unchanged for c in counts) == table.num_rows * (streams - 1)
        feed.rule.ingest(table)
    feed.check_stored()
    feed.close()


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple]:
    """Steps: the next fresh hour of a campaign, an earlier hour again (a replay, a
    restatement or a stale version, perhaps under another window, perhaps with a
    fresh hour in the same batch), or a restart."""
    return draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("fresh"), st.sampled_from(CAMPAIGNS), st.integers(0, 3)),
                st.tuples(
                    st.just("again"),
                    st.sampled_from(CAMPAIGNS),
                    st.integers(0, 6),  # hours back from the campaign's latest
                    st.integers(0, 3),  # version lag: 1 is a replay of a fresh hour
                    st.sampled_from([WINDOW, OTHER_WINDOW]),
                    st.booleans(),  # with the campaign's next fresh hour
                ),
                st.tuples(st.just("restart")),
            ),
            min_size=1,
            max_size=14,
        )
    )


# Remembered versions: as in service; 12, so that a batch of one hour (3 keys) is
# remembered, one of two hours forgets everything, and generations turn over every
# few batches; none.
@pytest.mark.parametrize("remembered", [None, 12, 0], ids=["default", "small", "none"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=scenarios())
def test_any_interleaving_of_fresh_and_earlier_hours_follows_the_restatement_rule(
    remembered: int | None, steps: list[tuple]
) -> None:
    with tempfile.TemporaryDirectory(prefix="jangkau-fresh-hours-") as tmp:
        feed = Feed(Path(tmp), remembered)
        latest = {A.campaign_id: -1, B.campaign_id: -1}
        try:
            for kind, *arg in steps:
                if kind == "restart":
                    feed.restart()
                    continue
                campaign = arg[0]
                cid = campaign.campaign_id
                if kind == "fresh":
                    latest[cid] += 1
                    feed.send(hour(campaign, latest[cid], seed=arg[1]))
                    continue
                back, lag, window, with_fresh = arg[1:]
                tables = [
                    hour(
                        campaign, max(latest[cid] - back, 0), seed=lag, lag_hours=lag, window=window
                    )
                ]
                if with_fresh:
                    latest[cid] += 1
                    tables.insert(0, hour(campaign, latest[cid]))
                feed.send(*tables)
        finally:
            feed.close()
