"""Where metrics keeps its facts: the `MetricsStore` interface the service uses,
and its DuckDB implementation (one file, one writer process). SQL lives here and
nowhere else.

Schema and keys
    campaigns(tenant, campaign_id)            currency, budget, flight, revision
    arms(arm_ref)                             the store's integer id of (tenant,
                                              campaign_id, arm_id), its platform,
                                              audience and default window
    attribution_windows(tenant, window_ref)   each tenant's dictionary of window
                                              names
    hourly_reports(report_key)                one row per (tenant, campaign, arm,
                                              platform, hour, attribution window)
    conversion_events(tenant, event_id)       deduplicated events

The report key packs (hour, arm, window) into one BIGINT, hour first:
`hour_number << 40 | arm_ref << 12 | window_ref` (arm_ref < 2^28, window_ref <
2^12, hour numbers up to the year 2900). The arm determines tenant, campaign
and platform, and window ids are numbered per tenant, so this is the (tenant,
campaign, arm, platform, hour, attribution window) key; a tenant names at most
`MAX_WINDOW_REF` windows, whatever other tenants name. Hour-first order means rows
arrive in roughly ascending key order, so DuckDB's per-row-group min/max (zone
maps) on `report_key` and `hour` keep both the restatement lookup and the window
queries to the row groups of the hours they touch.

Uniqueness of `report_key` is kept by the store, not by a DuckDB PRIMARY KEY:
each batch is classified against the stored versions of its keys with one
semi-join inside the single write transaction (writes are serialised), then new
keys are appended and newer versions update in place. Rows of fresh hours skip
the semi-join: the store remembers, per arm, a key no stored key of the arm
exceeds (`StoredKeyMarks`), and hour-major keys put an arm's next hour above it
however campaigns and platforms interleave. Replays and restatements of recent
hours skip it too: the store remembers the versions it lately wrote or looked up
(`RecentVersions`), and a batch that changes nothing then runs no SQL at all (a
9-row replay costs about 0.6 ms of CPU instead of 4.4). An ART index on the fact
table would cost more than the rest of the ingest path together (it caps a raw
Arrow insert near half a million rows a second, see bench/ingest.py), and DuckLake, the planned
backend for several writers, has no primary keys at all, so the rule has to live
in set-based SQL either way. Campaigns, arms, windows and events are small and
keep ordinary PRIMARY KEY constraints.

A report's currency is not stored per row: a row is refused unless it equals
its campaign's currency, and a campaign's currency never changes.

Batches of one report stream that are already waiting share one transaction
(a group commit; each is still acknowledged only once that commit is done).
After each commit the store notes which (arm, UTC day) pairs it wrote in an
in-memory change log, which tells cached per-day statistics what to recompute.

Durability and checkpoints
    Every write is one DuckDB transaction, committed (write-ahead log written
    and synced) before the service acknowledges it; after a crash DuckDB replays
    the log on open, so an acknowledged batch survives `kill -9` and restart
    needs no manual step, while a batch that did not commit leaves nothing.
    DuckDB checkpoints the log into the main file automatically once it exceeds
    `CHECKPOINT_THRESHOLD`; that is raised from DuckDB's 16 MB default to 256 MB
    because at ingest rates of a million rows a second the default would
    checkpoint several times a second, each pausing the writer. The cost is a
    longer log replay after a crash (a few seconds at most). A clean shutdown
    runs CHECKPOINT, so a normal restart replays nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jangkau.metrics import domain
from jangkau.metrics.domain import (
    HOUR_US,
    Arm,
    BucketSums,
    Campaign,
    DeliverySums,
    HourRows,
    IngestCounts,
    Platform,
    RegisteredCampaign,
)
from jangkau.runtime.errors import FailedPrecondition
from jangkau.runtime.store import Database
from jangkau.runtime.times import to_us

CHECKPOINT_THRESHOLD = "256MB"
# Report rows the change log keeps; older changes make caches start afresh.
CHANGE_LOG_ROWS = 1_000_000
# Report keys whose stored version a store remembers, per generation, and the most
# keys of one write it takes in (RecentVersions).
RECENT_VERSIONS = 1 << 16
RECENT_WRITE_KEYS = 1 << 12
# Bit layout of report_key (see the module docstring).
ARM_SHIFT = 12
HOUR_SHIFT = 40
MAX_ARM_REF = (1 << (HOUR_SHIFT - ARM_SHIFT)) - 1
MAX_WINDOW_REF = (1 << ARM_SHIFT) - 1

# The columns of hourly_reports (the ingest benchmark's raw baseline makes the same table).
HOURLY_REPORTS_COLUMNS = """
        report_key BIGINT NOT NULL,
        arm_ref INTEGER NOT NULL,
        window_ref SMALLINT NOT NULL,
        hour TIMESTAMPTZ NOT NULL,
        impressions BIGINT NOT NULL,
        reach BIGINT NOT NULL,
        clicks BIGINT NOT NULL,
        conversions DOUBLE NOT NULL,
        conversion_value_micros BIGINT NOT NULL,
        spend_micros BIGINT NOT NULL,
        version TIMESTAMPTZ NOT NULL
"""

MIGRATIONS = [
    f"""
    CREATE TABLE campaigns (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL,
        total_budget_micros BIGINT NOT NULL,
        flight_start TIMESTAMPTZ NOT NULL,
        flight_end TIMESTAMPTZ NOT NULL,
        revision BIGINT NOT NULL,
        PRIMARY KEY (tenant, campaign_id)
    );
    CREATE TABLE arms (
        arm_ref INTEGER PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        arm_id VARCHAR NOT NULL,
        platform TINYINT NOT NULL,
        audience_id VARCHAR NOT NULL,
        -- The window queries read by default: that of the arm's first stored report.
        window_ref SMALLINT,
        UNIQUE (tenant, campaign_id, arm_id)
    );
    CREATE TABLE attribution_windows (
        window_ref SMALLINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE
    );
    CREATE TABLE hourly_reports ({HOURLY_REPORTS_COLUMNS});
    CREATE TABLE conversion_events (
        tenant VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        arm_ref INTEGER NOT NULL,
        time TIMESTAMPTZ NOT NULL,
        value_micros BIGINT NOT NULL,
        source VARCHAR NOT NULL,
        PRIMARY KEY (tenant, event_id)
    );
    """,
    # Window ids numbered per tenant, so that one tenant's names never use up
    # another's. Each tenant keeps the ids its reports and arms already carry (an
    # arm belongs to one tenant, so every stored key stays as it was); names no
    # report of a tenant used are not the tenant's.
    """
    CREATE TABLE tenant_windows (
        tenant VARCHAR NOT NULL,
        window_ref SMALLINT NOT NULL,
        name VARCHAR NOT NULL,
        PRIMARY KEY (tenant, window_ref),
        UNIQUE (tenant, name)
    );
    INSERT INTO tenant_windows
    SELECT DISTINCT a.tenant, w.window_ref, w.name
    FROM (
        SELECT DISTINCT arm_ref, window_ref FROM hourly_reports
        UNION SELECT arm_ref, window_ref FROM arms WHERE window_ref IS NOT NULL
    ) used
    JOIN arms a ON a.arm_ref = used.arm_ref
    JOIN attribution_windows w ON w.window_ref = used.window_ref;
    DROP TABLE attribution_windows;
    ALTER TABLE tenant_windows RENAME TO attribution_windows;
    """,
]

_REPORT_VALUES = (
    "impressions",
    "reach",
    "clicks",
    "conversions",
    "conversion_value_micros",
    "spend_micros",
    "version",
)


class MetricsStore(Protocol):
    """What the metrics service needs from storage. Implementations: DuckDB (one
    file, one writer); a DuckLake implementation would keep the same contract."""

    def register_campaign(self, tenant: str, campaign: Campaign) -> bool:
        """Stores the campaign and any new arms; False (nothing changed) when a
        newer revision is already stored."""
        ...

    def campaigns(self, tenant: str, campaign_ids: Iterable[str]) -> dict[str, RegisteredCampaign]:
        """The tenant's registered campaigns among `campaign_ids`."""
        ...

    def upsert_reports(self, tenant: str, batches: Sequence[pa.Table]) -> list[IngestCounts]:
        """Applies validated batches of the tenant's arms (domain.STORED_REPORT_SCHEMA),
        in order, in one transaction under the restatement rule; returns what each
        batch did. domain.WindowNamesExhausted, and nothing applied, when they name
        more attribution windows than the tenant has room for."""
        ...

    def add_events(self, tenant: str, events: pa.Table) -> tuple[int, int]:
        """Stores events (domain.STORED_EVENT_SCHEMA) whose id is new for the
        tenant; returns (inserted, already stored)."""
        ...

    def arm_hours(
        self, registered: RegisteredCampaign, spans: Sequence[tuple[int, int]], window: str
    ) -> HourRows:
        """One snapshot: the reports of the campaign's arms for the hours of each
        span [first, stop) (epoch-hour numbers). `window` names the attribution
        window to read; empty means each arm's default."""
        ...

    def arm_events(
        self, registered: RegisteredCampaign, start: datetime, end: datetime
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per arm, the number and value of conversion events in [start, end)."""
        ...

    def change_sequence(self) -> int:
        """A number that grows with every committed report write."""
        ...

    def changed_days(self, sequence: int, arm_refs: np.ndarray) -> np.ndarray | None:
        """The epoch days (sorted, distinct) in which reports of these arms were
        written after `sequence`; None when the log no longer reaches back so far."""
        ...

    def changed_hours(
        self, sequence: int, registered: RegisteredCampaign, window: str
    ) -> BucketSums | None:
        """The reports of the campaign's arms in `window` (empty: each arm's default)
        written after `sequence`, with the values now stored: one entry per (arm
        position, hour), as bucket_sums answers hours. None when the log no longer
        reaches back so far."""
        ...

    def bucket_sums(
        self,
        registered: RegisteredCampaign,
        first_hour: int,
        stop_hour: int,
        window: str,
        daily: bool,
    ) -> BucketSums:
        """Delivery sums per (arm, hour or UTC day)."""
        ...

    def delivery_to(
        self, registered: RegisteredCampaign, stop_hour: int, window: str, as_of: datetime
    ) -> tuple[DeliverySums, int]:
        """One snapshot: delivery sums per arm over hours before `stop_hour`, and
        the number of the campaign's conversion events before `as_of`."""
        ...

    def events_before(self, registered: RegisteredCampaign, as_of: datetime) -> int:
        """The number of the campaign's conversion events before `as_of`."""
        ...

    def report_rows(self, registered: RegisteredCampaign) -> pa.Table:
        """Every stored report of the campaign: arm_id, hour, attribution_window,
        the values and the version, in (arm_id, hour, window) order (audits, tests)."""
        ...

    def close(self) -> None: ...


_NO_KEYS = np.zeros(0, dtype=np.int64)
_RESTATED_VALUES = ", ".join(f"{c} = s.{c}" for c in _REPORT_VALUES)
# The arms a query reads, as a relation of three list parameters (see _selection):
# cheaper than registering an Arrow table for every query.
SELECTION = (
    "(SELECT unnest($sel_arm_ref) AS arm_ref, unnest($sel_window_ref) AS window_ref,"
    " unnest($sel_arm) AS arm)"
)


DATABASE_FILE = "metrics.duckdb"


def open_store(
    data_dir: Path, backend: str = "duckdb", *, threads: int | None = None
) -> MetricsStore:
    """The store `jangkau serve metrics` runs on. Only DuckDB exists today; a
    DuckLake backend (catalog in PostgreSQL, Parquet files) would be another
    implementation of MetricsStore chosen here."""
    if backend == "duckdb":
        return DuckDBMetricsStore(data_dir / DATABASE_FILE, threads=threads)
    raise SystemExit(f"metrics store backend {backend!r} is not available; use 'duckdb'")


def report_keys(arm_ref: np.ndarray, hour_us: np.ndarray, window_ref: np.ndarray) -> np.ndarray:
    return ((hour_us // HOUR_US) << HOUR_SHIFT) | (arm_ref << ARM_SHIFT) | window_ref


class StoredKeyMarks:
    """Per arm, a report key that no stored key of the arm exceeds: a row whose key
    is above its arm's mark is not stored yet, and needs no lookup.

    An arm's mark is the larger of the largest key stored when the store opened
    (one bound for every arm: no aggregate over the whole table at open) and the
    largest key of the arm this process has committed since. Within one arm keys
    order by (hour, window), so the arm's next hour is above its mark whatever
    other arms wrote meanwhile; after a restart an arm pays the lookup until it
    reports past the hours stored at open. Marks only grow, which keeps them true
    (deleting rows would too) as long as this process is the file's only writer
    and moves them after each commit, before another write reads them. Memory:
    one int64 per arm_ref up to the largest seen."""

    def __init__(self, stored_max_key: int | None) -> None:
        self._floor = np.iinfo(np.int64).min if stored_max_key is None else stored_max_key
        self._marks = np.full(0, self._floor, dtype=np.int64)

    def above(self, arm_ref: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Which rows have a key above their arm's mark."""
        self._grow(int(arm_ref.max()))
        return keys > self._marks[arm_ref]

    def advance(self, arm_ref: np.ndarray, keys: np.ndarray) -> None:
        """Takes in keys that a committed transaction stored."""
        self._grow(int(arm_ref.max()))
        np.maximum.at(self._marks, arm_ref, keys)

    def _grow(self, arm_ref: int) -> None:
        if arm_ref >= len(self._marks):
            size = max(arm_ref + 1, 2 * len(self._marks))
            grown = np.full(size, self._floor, dtype=np.int64)
            grown[: len(self._marks)] = self._marks
            self._marks = grown


class RecentVersions:
    """The stored version of report keys this process wrote or looked up lately, so
    that a replay or a restatement of recent hours (what a platform's next pulls
    bring) is classified without a lookup, and a replay that changes nothing runs
    no SQL at all.

    Two generations of at most `capacity` keys each: when the young one is full it
    becomes the old one and the old one is dropped. A remembered version is the
    stored one as long as this process is the file's only writer and remembers
    every version it commits; a write of more than `write_keys` keys (a bulk load,
    looked up in SQL where zone maps serve it, and too dear to take in key by key)
    forgets everything instead. Memory: about 100 bytes a key, 13 MB at the
    default capacity."""

    def __init__(
        self, capacity: int = RECENT_VERSIONS, write_keys: int = RECENT_WRITE_KEYS
    ) -> None:
        self._capacity = capacity
        self._write_keys = min(write_keys, capacity)
        self._young: dict[int, int] = {}
        self._old: dict[int, int] = {}

    def versions(self, keys: np.ndarray) -> np.ndarray | None:
        """The stored version of each key, or None when one is not remembered."""
        young, old = self._young, self._old
        out = []
        for key in keys.tolist():
            version = young.get(key)
            if version is None:
                version = old.get(key)
                if version is None:
                    return None
            out.append(version)
        return np.array(out, dtype=np.int64)

    def remember(self, keys: np.ndarray, versions: np.ndarray) -> None:
        """Takes in versions now stored (committed, or found stored)."""
        if len(keys) > self._write_keys:
            self._young, self._old = {}, {}
            return
        if len(self._young) + len(keys) > self._capacity:
            self._young, self._old = {}, self._young
        self._young.update(zip(keys.tolist(), versions.tolist(), strict=True))


class DuckDBMetricsStore:
    """MetricsStore on one DuckDB file. This process must be the file's only
    writer: the campaign cache below is invalidated only by this process's writes."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self._db = Database(path, MIGRATIONS, threads=threads)
        with self._db.read() as cur:
            cur.execute(f"SET GLOBAL checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
            cur.execute("SET GLOBAL TimeZone = 'UTC'")
        self._cache: dict[tuple[str, str], RegisteredCampaign] = {}
        # Moves on with every invalidation of `_cache`, under `_cache_lock`.
        self._cache_generation = 0
        self._cache_lock = threading.Lock()
        # The change log: what each report commit wrote, so that caches of the
        # hourly delivery and per-day statistics know what changed.
        self._sequence = 0
        self._log: deque[_Written] = deque()
        self._log_size = 0
        self._log_start = 0
        self._names = itertools.count()
        with self._db.read() as cur:
            # Window names (tenant → name → id) and arms still without a default
            # window, kept in memory so that a batch of known windows and arms runs
            # no SQL for them.
            self._windows: dict[str, dict[str, int]] = {}
            for tenant, name, ref in cur.execute(
                "SELECT tenant, name, window_ref FROM attribution_windows"
            ).fetchall():
                self._windows.setdefault(tenant, {})[name] = ref
            self._windowless: set[int] = {
                int(r[0])
                for r in cur.execute("SELECT arm_ref FROM arms WHERE window_ref IS NULL").fetchall()
            }
            # Arms with conversion events: queries of a campaign with none skip the
            # events table (most campaigns count conversions from platform reports).
            self._arms_with_events: set[int] = {
                int(r[0])
                for r in cur.execute("SELECT DISTINCT arm_ref FROM conversion_events").fetchall()
            }
            stored_max_key = cur.execute("SELECT max(report_key) FROM hourly_reports").fetchall()
        self._marks = StoredKeyMarks(stored_max_key[0][0])
        self._recent = RecentVersions()
        # Report writes hold it from their lookup until the marks and the window
        # names have moved after the commit: a write reading them in between would
        # take stored keys for new, or add a window name twice.
        self._ingest_lock = threading.Lock()

    # ------------------------------------------------------------ campaigns

    def register_campaign(self, tenant: str, campaign: Campaign) -> bool:
        # Report writes wait until the new arms are known to be windowless: one that
        # ran in between would leave a new arm's default window to a later batch.
        with self._ingest_lock:
            return self._register(tenant, campaign)

    def _register(self, tenant: str, campaign: Campaign) -> bool:
        with self._db.transaction() as cur:
            stored = self._load(cur, tenant, [campaign.campaign_id]).get(campaign.campaign_id)
            if stored is not None and stored.campaign.revision > campaign.revision:
                return False
            if stored is not None:
                problems = domain.arm_changes(stored.campaign, campaign)
                if problems:
                    raise FailedPrecondition("; ".join(str(p) for p in problems))
            known = {a.arm_id for a in stored.arms} if stored else set()
            new_arms = [a for a in campaign.arms if a.arm_id not in known]
            new_refs: list[int] = []
            cur.execute(
                """
                INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (tenant, campaign_id) DO UPDATE SET
                    total_budget_micros = excluded.total_budget_micros,
                    flight_start = excluded.flight_start,
                    flight_end = excluded.flight_end,
                    revision = excluded.revision
                """,
                [
                    tenant,
                    campaign.campaign_id,
                    campaign.currency,
                    campaign.total_budget_micros,
                    campaign.flight_start,
                    campaign.flight_end,
                    campaign.revision,
                ],
            )
            if new_arms:
                first = cur.execute("SELECT coalesce(max(arm_ref), 0) + 1 FROM arms").fetchall()
                start = int(first[0][0])
                if start + len(new_arms) - 1 > MAX_ARM_REF:
                    raise FailedPrecondition("the metrics store holds its maximum number of arms")
                new_refs = list(range(start, start + len(new_arms)))
                arms = pa.table(
                    {
                        "arm_ref": pa.array(new_refs, pa.int32()),
                        "arm_id": [a.arm_id for a in new_arms],
                        "platform": pa.array([int(a.platform) for a in new_arms], pa.int8()),
                        "audience_id": [a.audience_id for a in new_arms],
                    }
                )
                with self._registered(cur, arms) as name:
                    cur.execute(
                        f"""
                        INSERT INTO arms
                        SELECT arm_ref, ?, ?, arm_id, platform, audience_id, NULL FROM {name}
                        """,
                        [tenant, campaign.campaign_id],
                    )
        with self._cache_lock:
            self._cache.pop((tenant, campaign.campaign_id), None)
            self._cache_generation += 1
            self._windowless.update(new_refs)
        return True

    def campaigns(self, tenant: str, campaign_ids: Iterable[str]) -> dict[str, RegisteredCampaign]:
        wanted = set(campaign_ids)
        found: dict[str, RegisteredCampaign] = {}
        with self._cache_lock:
            for cid in wanted:
                hit = self._cache.get((tenant, cid))
                if hit is not None:
                    found[cid] = hit
        missing = wanted - found.keys()
        if missing:
            with self._cache_lock:
                generation = self._cache_generation
            with self._db.read() as cur:
                loaded = self._load(cur, tenant, sorted(missing))
            with self._cache_lock:
                # Kept only if no campaign changed meanwhile: this read may predate the
                # change, and would otherwise stay cached after its invalidation.
                if self._cache_generation == generation:
                    for cid, registered in loaded.items():
                        self._cache[(tenant, cid)] = registered
            found.update(loaded)
        return found

    def _load(
        self, cur: duckdb.DuckDBPyConnection, tenant: str, campaign_ids: list[str]
    ) -> dict[str, RegisteredCampaign]:
        heads = cur.execute(
            """
            SELECT campaign_id, currency, total_budget_micros, flight_start, flight_end, revision
            FROM campaigns WHERE tenant = ? AND list_contains(?, campaign_id)
            """,
            [tenant, campaign_ids],
        ).fetchall()
        if not heads:
            return {}
        arms = cur.execute(
            """
            SELECT campaign_id, arm_id, platform, audience_id, arm_ref, coalesce(window_ref, -1)
            FROM arms WHERE tenant = ? AND list_contains(?, campaign_id)
            ORDER BY campaign_id, arm_id
            """,
            [tenant, campaign_ids],
        ).fetchall()
        by_campaign: dict[str, list[tuple]] = {}
        for row in arms:
            by_campaign.setdefault(row[0], []).append(row)
        out: dict[str, RegisteredCampaign] = {}
        for cid, currency, budget, start, end, revision in heads:
            rows = by_campaign.get(cid, [])
            campaign = Campaign(
                campaign_id=cid,
                currency=currency,
                total_budget_micros=budget,
                flight_start=start,
                flight_end=end,
                arms=tuple(Arm(r[1], Platform(r[2]), r[3]) for r in rows),
                revision=revision,
            )
            out[cid] = RegisteredCampaign(
                tenant,
                campaign,
                np.array([r[4] for r in rows], dtype=np.int64),
                np.array([r[5] for r in rows], dtype=np.int64),
            )
        return out

    # -------------------------------------------------------------- reports

    def upsert_reports(self, tenant: str, batches: Sequence[pa.Table]) -> list[IngestCounts]:
        reports = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
        n = reports.num_rows
        arm_ref = reports.column("arm_ref").to_numpy()
        hour_us = reports.column("hour").cast(pa.int64()).to_numpy()
        versions = reports.column("version").cast(pa.int64()).to_numpy()
        windows = reports.column("attribution_window").combine_chunks()
        names = pc.unique(windows).to_pylist()
        name_of_row = pc.index_in(windows, value_set=pa.array(names, pa.string())).to_numpy()
        with self._ingest_lock:
            with self._cache_lock:
                windows = self._windows.get(tenant, {})
                known = [windows.get(name) for name in names]
            plan = older = None
            if None not in known:
                # Every window named before: the keys are known now, and the stored
                # version of every row not above its arm's mark may be remembered;
                # then a batch that changes nothing (a replay) needs no SQL.
                keys = report_keys(arm_ref, hour_us, np.asarray(known, dtype=np.int64)[name_of_row])
                older = keys[~self._marks.above(arm_ref, keys)]
                remembered = self._recent.versions(older)
                if remembered is not None:
                    plan = domain.plan_upsert(keys, versions, older, remembered)
                    if not (plan.insert_rows.size or plan.replace_rows.size):
                        return _per_batch(batches, plan)
            with self._db.transaction() as cur:
                refs, new_windows = self._window_refs(cur, tenant, names)
                if len(refs) < len(names):
                    # Names past the tenant's room: refuse from the first row of one.
                    raise domain.WindowNamesExhausted(
                        [b.num_rows for b in batches],
                        int(np.argmax(name_of_row >= len(refs))),
                        MAX_WINDOW_REF,
                    )
                window_ref = np.asarray(refs, dtype=np.int64)[name_of_row]
                if older is None:
                    # A window is new here: its reference is only now assigned.
                    keys = report_keys(arm_ref, hour_us, window_ref)
                    older = keys[~self._marks.above(arm_ref, keys)]
                if plan is None:
                    stored = self._look_up(cur, older) if older.size else (_NO_KEYS, _NO_KEYS)
                    plan = domain.plan_upsert(keys, versions, *stored)
                rows = pa.table(
                    {
                        "report_key": keys,
                        "arm_ref": pa.array(arm_ref, pa.int32()),
                        "window_ref": pa.array(window_ref, pa.int16()),
                        "hour": reports.column("hour"),
                        **{name: reports.column(name) for name in _REPORT_VALUES},
                    }
                )
                # `fresh` and `restated` are Arrow tables in this frame that the SQL
                # reads by name (DuckDB's replacement scan): registering each as a
                # view would add two catalog changes and about a millisecond to
                # every write.
                if plan.insert_rows.size:
                    fresh = rows if plan.insert_rows.size == n else rows.take(plan.insert_rows)  # noqa: F841
                    cur.execute("INSERT INTO hourly_reports SELECT * FROM fresh")
                if plan.replace_rows.size:
                    restated = rows.take(plan.replace_rows)  # noqa: F841
                    cur.execute(
                        f"""
                        UPDATE hourly_reports AS r SET {_RESTATED_VALUES}
                        FROM restated s WHERE r.report_key = s.report_key
                        """
                    )
                defaults = self._set_default_windows(cur, arm_ref, window_ref, plan)
            # Marks, the remembered versions and caches change only once the
            # transaction has committed, and before the next write reads them.
            written = np.concatenate([plan.insert_rows, plan.replace_rows])
            self._marks.advance(arm_ref, keys)
            self._recent.remember(keys[written], versions[written])
            stored = rows.take(written)
            with self._cache_lock:
                self._windows.setdefault(tenant, {}).update(new_windows)
                self._windowless.difference_update(defaults)
                # Before the change sequence moves: a reader that sees the write in
                # the log finds the campaign with its arms' new default windows.
                if defaults:
                    self._forget_arms(defaults)
                self._log_changes(
                    arm_ref[written],
                    window_ref[written],
                    hour_us[written],
                    _delivery({name: stored.column(name).to_numpy() for name in _SUMMED}),
                )
        return _per_batch(batches, plan)

    def _look_up(
        self, cur: duckdb.DuckDBPyConnection, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stored (report_key, version) pairs among `keys`, from the table; they
        are remembered (they are the stored ones until this process writes them)."""
        with self._registered(cur, pa.table({"report_key": keys})) as lookup:
            # Dynamic min/max and bloom filters from the looked-up keys keep this
            # scan to the row groups of their hours.
            found = cur.sql(
                f"""
                SELECT r.report_key, epoch_us(r.version) AS version
                FROM hourly_reports r SEMI JOIN {lookup} b ON r.report_key = b.report_key
                """
            ).fetchnumpy()
        self._recent.remember(found["report_key"], found["version"])
        return found["report_key"], found["version"]

    def _window_refs(
        self, cur: duckdb.DuckDBPyConnection, tenant: str, names: list[str]
    ) -> tuple[list[int], dict[str, int]]:
        """The tenant's id of each window name, and the names this transaction adds;
        the ids stop short at the first name new to a tenant without room for it."""
        with self._cache_lock:
            windows = self._windows.get(tenant, {})
            known = {name: windows.get(name) for name in names}
        new = [name for name, ref in known.items() if ref is None]
        added: dict[str, int] = {}
        if new:
            # The lowest free ids: a store migrated from one numbering for all
            # tenants leaves gaps in each tenant's.
            free = cur.execute(
                """
                SELECT i FROM range(1, $stop) ids(i)
                ANTI JOIN attribution_windows w ON w.tenant = $tenant AND w.window_ref = ids.i
                ORDER BY i LIMIT $n
                """,
                {"stop": MAX_WINDOW_REF + 1, "tenant": tenant, "n": len(new)},
            ).fetchall()
            added = {name: int(ref) for name, (ref,) in zip(new, free, strict=False)}
            if added:
                cur.executemany(
                    "INSERT INTO attribution_windows (tenant, name, window_ref) VALUES (?, ?, ?)",
                    [(tenant, name, ref) for name, ref in added.items()],
                )
        refs: list[int] = []
        for name in names:
            ref = known[name]
            if ref is None and (ref := added.get(name)) is None:
                break
            refs.append(ref)
        return refs, added

    def _set_default_windows(
        self,
        cur: duckdb.DuckDBPyConnection,
        arm_ref: np.ndarray,
        window_ref: np.ndarray,
        plan: domain.UpsertPlan,
    ) -> list[int]:
        """Gives arms without a default window the window of their first new row."""
        if not plan.first_new_rows.size:
            return []
        first_rows = plan.first_new_rows
        arms, first = np.unique(arm_ref[first_rows], return_index=True)
        with self._cache_lock:
            windowless = np.fromiter(self._windowless, dtype=np.int64, count=len(self._windowless))
        needed = np.isin(arms, windowless)
        if not needed.any():
            return []
        defaults = pa.table(
            {
                "arm_ref": pa.array(arms[needed], pa.int32()),
                "window_ref": pa.array(window_ref[first_rows][first][needed], pa.int16()),
            }
        )
        with self._registered(cur, defaults) as first_windows:
            cur.execute(
                f"""
                UPDATE arms SET window_ref = f.window_ref FROM {first_windows} f
                WHERE arms.arm_ref = f.arm_ref AND arms.window_ref IS NULL
                """
            )
        return arms[needed].tolist()

    def _forget_arms(self, arm_refs: list[int]) -> None:
        """Drops the cached campaigns of these arms (call with the cache lock held)."""
        wanted = set(arm_refs)
        stale = [
            key
            for key, registered in self._cache.items()
            if wanted.intersection(registered.arm_refs.tolist())
        ]
        for key in stale:
            del self._cache[key]
        self._cache_generation += 1

    # --------------------------------------------------------------- events

    def add_events(self, tenant: str, events: pa.Table) -> tuple[int, int]:
        if events.num_rows == 0:
            return 0, 0
        with self._db.transaction() as cur:
            with self._registered(cur, events.select(["event_id"])) as ids:
                stored = cur.sql(
                    f"""
                    SELECT e.event_id FROM conversion_events e
                    SEMI JOIN {ids} i ON e.event_id = i.event_id
                    WHERE e.tenant = $tenant
                    """,
                    params={"tenant": tenant},
                ).to_arrow_table()
            new = events.filter(
                pc.invert(pc.is_in(events.column("event_id"), value_set=stored.column(0)))
            )
            if new.num_rows:
                with self._registered(cur, new) as name:
                    cur.execute(
                        f"""
                        INSERT INTO conversion_events
                        SELECT ?, event_id, arm_ref, time, value_micros, source FROM {name}
                        """,
                        [tenant],
                    )
        # After the commit, like every cache of the store.
        with self._cache_lock:
            self._arms_with_events.update(new.column("arm_ref").to_pylist())
        return new.num_rows, stored.num_rows

    def _has_events(self, registered: RegisteredCampaign) -> bool:
        with self._cache_lock:
            return not self._arms_with_events.isdisjoint(registered.arm_refs.tolist())

    # -------------------------------------------------------------- queries

    def _selection(self, registered: RegisteredCampaign, window: str) -> dict[str, list[int]]:
        """The parameters of SELECTION: (arm_ref, window_ref, arm position) of the
        arms a query reads."""
        n = len(registered.arms)
        if window:
            with self._cache_lock:
                ref = self._windows.get(registered.tenant, {}).get(window, -1)
            windows = np.full(n, ref, dtype=np.int64)
        else:
            windows = registered.window_refs
        return {
            "sel_arm_ref": registered.arm_refs.tolist(),
            "sel_window_ref": windows.tolist(),
            "sel_arm": list(range(n)),
        }

    def arm_hours(
        self, registered: RegisteredCampaign, spans: Sequence[tuple[int, int]], window: str
    ) -> HourRows:
        spans = [(first, stop) for first, stop in spans if stop > first]
        if not spans:
            return HourRows.empty()
        # One statement for every span: one snapshot without a transaction.
        hours = " OR ".join(
            f"(r.hour >= $start_{i} AND r.hour < $stop_{i})" for i in range(len(spans))
        )
        bounds: dict[str, object] = {}
        for i, (first, stop) in enumerate(spans):
            bounds[f"start_{i}"] = _hour_time(first)
            bounds[f"stop_{i}"] = _hour_time(stop)
        with self._db.read() as cur:
            rows = cur.execute(
                f"""
                SELECT s.arm, epoch_us(r.hour) AS hour_us, r.spend_micros,
                       r.impressions, r.clicks, r.conversions
                FROM hourly_reports r
                JOIN {SELECTION} s ON r.arm_ref = s.arm_ref AND r.window_ref = s.window_ref
                WHERE {hours}
                """,
                {**self._selection(registered, window), **bounds},
            ).fetchnumpy()
        return HourRows(
            arm=rows["arm"].astype(np.int64),
            hour_us=rows["hour_us"],
            spend_micros=rows["spend_micros"],
            impressions=rows["impressions"],
            clicks=rows["clicks"],
            conversions=rows["conversions"],
        )

    def arm_events(
        self, registered: RegisteredCampaign, start: datetime, end: datetime
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(registered.arms)
        if not self._has_events(registered):
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        with self._db.read() as cur:
            events = cur.execute(
                f"""
                SELECT s.arm, count(*) AS n, sum(e.value_micros)::BIGINT AS value
                FROM conversion_events e JOIN {SELECTION} s ON e.arm_ref = s.arm_ref
                WHERE e.time >= $start AND e.time < $stop
                GROUP BY s.arm
                """,
                {**self._selection(registered, ""), "start": start, "stop": end},
            ).fetchnumpy()
        return _scatter(events["arm"], events["n"], n), _scatter(events["arm"], events["value"], n)

    def change_sequence(self) -> int:
        with self._cache_lock:
            return self._sequence

    def _written_since(self, sequence: int) -> list[_Written] | None:
        """The log's entries after `sequence`, oldest first; None when it no longer
        reaches back so far."""
        with self._cache_lock:
            if sequence < self._log_start:
                return None
            # Newest last: walk back only over the entries after `sequence`.
            newest_first = list(
                itertools.takewhile(lambda entry: entry.sequence > sequence, reversed(self._log))
            )
        return newest_first[::-1]

    def changed_days(self, sequence: int, arm_refs: np.ndarray) -> np.ndarray | None:
        entries = self._written_since(sequence)
        if entries is None:
            return None
        if not entries:
            return _NO_KEYS
        arm_ref = np.concatenate([e.arm_ref for e in entries])
        day = np.concatenate([e.hour_us for e in entries]) // domain.DAY_US
        return np.unique(day[np.isin(arm_ref, arm_refs)])

    def changed_hours(
        self, sequence: int, registered: RegisteredCampaign, window: str
    ) -> BucketSums | None:
        entries = self._written_since(sequence)
        if entries is None:
            return None
        if not entries:
            return BucketSums.empty()
        selection = self._selection(registered, window)
        arm_refs = np.asarray(selection["sel_arm_ref"], dtype=np.int64)
        window_refs = np.asarray(selection["sel_window_ref"], dtype=np.int64)
        arm_ref = np.concatenate([e.arm_ref for e in entries])
        # Each row's arm position (a campaign's arm_refs are distinct), if selected.
        sorter = np.argsort(arm_refs)
        at = sorter[np.searchsorted(arm_refs, arm_ref, sorter=sorter).clip(max=len(arm_refs) - 1)]
        selected = (arm_refs[at] == arm_ref) & (
            window_refs[at] == np.concatenate([e.window_ref for e in entries])
        )
        arm = at[selected]
        hour_us = np.concatenate([e.hour_us for e in entries])[selected]
        sums = DeliverySums(
            *[
                np.concatenate(c)[selected]
                for c in zip(*(e.sums.columns() for e in entries), strict=True)
            ]
        )
        # A report written twice since: its latest values (entries are oldest first).
        cell = domain.arm_hours(arm, hour_us)
        _, first_of_reversed = np.unique(cell[::-1], return_index=True)
        latest = len(cell) - 1 - first_of_reversed
        return BucketSums(arm[latest], hour_us[latest], sums.take(latest))

    def _log_changes(
        self, arm_ref: np.ndarray, window_ref: np.ndarray, hour_us: np.ndarray, sums: DeliverySums
    ) -> None:
        """Records the rows a commit wrote (call with the cache lock held)."""
        self._sequence += 1
        if not len(arm_ref):
            return
        self._log.append(_Written(self._sequence, arm_ref, window_ref, hour_us, sums))
        self._log_size += len(arm_ref)
        while self._log_size > CHANGE_LOG_ROWS and len(self._log) > 1:
            dropped = self._log.popleft()
            self._log_size -= len(dropped.arm_ref)
            self._log_start = dropped.sequence

    def bucket_sums(
        self,
        registered: RegisteredCampaign,
        first_hour: int,
        stop_hour: int,
        window: str,
        daily: bool,
    ) -> BucketSums:
        size = domain.DAY_US if daily else HOUR_US
        with self._db.read() as cur:
            rows = cur.execute(
                f"""
                SELECT s.arm,
                       epoch_us(r.hour) // {size} * {size} AS bucket_us,
                       sum(r.spend_micros)::BIGINT AS spend_micros,
                       sum(r.impressions)::BIGINT AS impressions,
                       sum(r.reach)::BIGINT AS reach,
                       sum(r.clicks)::BIGINT AS clicks,
                       sum(r.conversions) AS conversions,
                       sum(r.conversion_value_micros)::BIGINT AS conversion_value_micros
                FROM hourly_reports r
                JOIN {SELECTION} s ON r.arm_ref = s.arm_ref AND r.window_ref = s.window_ref
                WHERE r.hour >= $start AND r.hour < $stop
                GROUP BY ALL
                """,
                {
                    **self._selection(registered, window),
                    "start": _hour_time(first_hour),
                    "stop": _hour_time(stop_hour),
                },
            ).fetchnumpy()
        return BucketSums(
            arm=rows["arm"].astype(np.int64),
            bucket_us=rows["bucket_us"],
            sums=_delivery(rows),
        )

    def delivery_to(
        self, registered: RegisteredCampaign, stop_hour: int, window: str, as_of: datetime
    ) -> tuple[DeliverySums, int]:
        n = len(registered.arms)
        stop = _hour_time(stop_hour)
        with self._reading(registered, window) as (cur, selected):
            rows = cur.execute(
                f"""
                SELECT s.arm,
                       sum(r.spend_micros)::BIGINT AS spend_micros,
                       sum(r.impressions)::BIGINT AS impressions,
                       sum(r.reach)::BIGINT AS reach,
                       sum(r.clicks)::BIGINT AS clicks,
                       sum(r.conversions) AS conversions,
                       sum(r.conversion_value_micros)::BIGINT AS conversion_value_micros
                FROM hourly_reports r
                JOIN {SELECTION} s ON r.arm_ref = s.arm_ref AND r.window_ref = s.window_ref
                WHERE r.hour < $stop
                GROUP BY s.arm
                """,
                {**selected, "stop": stop},
            ).fetchnumpy()
            events = self._events_before(cur, registered, as_of)
        sums = _delivery(rows)
        per_arm = DeliverySums(*[_scatter(rows["arm"], column, n) for column in sums.columns()])
        return per_arm, events

    def events_before(self, registered: RegisteredCampaign, as_of: datetime) -> int:
        with self._db.read() as cur:
            return self._events_before(cur, registered, as_of)

    def _events_before(
        self, cur: duckdb.DuckDBPyConnection, registered: RegisteredCampaign, as_of: datetime
    ) -> int:
        if not self._has_events(registered):
            return 0
        row = cur.execute(
            """
            SELECT count(*) FROM conversion_events
            WHERE list_contains($arm_refs, arm_ref) AND time < $as_of
            """,
            {"arm_refs": registered.arm_refs.tolist(), "as_of": as_of},
        ).fetchall()
        return int(row[0][0])

    def report_rows(self, registered: RegisteredCampaign) -> pa.Table:
        arms = pa.table(
            {
                "arm_ref": pa.array(registered.arm_refs, pa.int32()),
                "arm_id": registered.arm_ids,
            }
        )
        with self._snapshot() as cur, self._registered(cur, arms) as campaign_arms:
            return cur.sql(
                f"""
                SELECT a.arm_id, r.hour, w.name AS attribution_window, r.impressions, r.reach,
                       r.clicks, r.conversions, r.conversion_value_micros, r.spend_micros,
                       r.version
                FROM hourly_reports r
                JOIN {campaign_arms} a ON r.arm_ref = a.arm_ref
                JOIN attribution_windows w
                    ON w.tenant = $tenant AND r.window_ref = w.window_ref
                ORDER BY a.arm_id, r.hour, w.name
                """,
                params={"tenant": registered.tenant},
            ).to_arrow_table()

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _registered(self, cur: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
        """Makes an Arrow table readable by SQL under a fresh name for the block."""
        name = f"arrow_{next(self._names)}"
        cur.register(name, table)
        try:
            yield name
        finally:
            cur.unregister(name)

    @contextmanager
    def _reading(
        self, registered: RegisteredCampaign, window: str
    ) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, list[int]]]]:
        """A snapshot, and the parameters of the SELECTION a query joins with."""
        with self._snapshot() as cur:
            yield cur, self._selection(registered, window)

    @contextmanager
    def _snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read transaction: the queries of one RPC see one committed state."""
        with self._db.read() as cur:
            cur.begin()
            try:
                yield cur
            finally:
                cur.rollback()

    def close(self) -> None:
        self._db.checkpoint()
        self._db.close()


def _hour_time(hour_number: int) -> datetime:
    """The start of an hour, as a bound of a query's hours. The hour after the last
    one of year 9999 is no datetime: its last moment bounds the same stored hours."""
    return domain.from_us(min(hour_number * HOUR_US, _LAST_US))


_LAST_US = to_us(datetime.max.replace(tzinfo=UTC))


@dataclass(frozen=True)
class _Written:
    """One report commit's rows (each key once, with the values it stored)."""

    sequence: int
    arm_ref: np.ndarray
    window_ref: np.ndarray
    hour_us: np.ndarray
    sums: DeliverySums


# The report columns DeliverySums adds up.
_SUMMED = tuple(f.name for f in fields(DeliverySums))


def _per_batch(batches: Sequence[pa.Table], plan: domain.UpsertPlan) -> list[IngestCounts]:
    """What each batch of an upsert did (the plan's rows are the batches' in order)."""
    if len(batches) == 1:
        return [plan.counts]
    batch_of_row = np.repeat(np.arange(len(batches)), [b.num_rows for b in batches])
    per_batch = np.bincount(batch_of_row * 4 + plan.outcome, minlength=4 * len(batches))
    return [IngestCounts(*row) for row in per_batch.reshape(-1, 4).tolist()]


def _delivery(rows: dict[str, np.ndarray]) -> DeliverySums:
    return DeliverySums(
        spend_micros=np.asarray(rows["spend_micros"], dtype=np.int64),
        impressions=np.asarray(rows["impressions"], dtype=np.int64),
        reach=np.asarray(rows["reach"], dtype=np.int64),
        clicks=np.asarray(rows["clicks"], dtype=np.int64),
        conversions=np.asarray(rows["conversions"], dtype=np.float64),
        conversion_value_micros=np.asarray(rows["conversion_value_micros"], dtype=np.int64),
    )


def _scatter(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=values.dtype)
    out[np.asarray(index, dtype=np.int64)] = values
    return out
