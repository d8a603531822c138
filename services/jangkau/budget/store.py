"""The budget service's DuckDB file: campaigns (their wire form, `jangkau.v1.Campaign`
bytes, next to the columns queries filter on), the audience facts cached per
campaign, and the decision log (`jangkau.v1.Allocation` bytes per campaign and
period). SQL only; every query filters by tenant."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from jangkau.budget.domain import AudienceFacts, Platform, PlatformReach
from jangkau.runtime.store import Database

MIGRATIONS = [
    """
    CREATE TABLE campaigns (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        revision BIGINT NOT NULL,
        create_time TIMESTAMP NOT NULL,  -- UTC
        body BLOB NOT NULL,              -- jangkau.v1.Campaign
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE campaign_audiences (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        audience_id VARCHAR NOT NULL,
        platform VARCHAR NOT NULL,       -- '' for an audience with no reach row
        uses_contact_lists BOOLEAN NOT NULL,
        demographic_only BOOLEAN NOT NULL,
        voters BIGINT NOT NULL,
        reachable BIGINT NOT NULL,
        targetable BOOLEAN NOT NULL,
        allowed BOOLEAN NOT NULL,
        reason VARCHAR NOT NULL,
        PRIMARY KEY (tenant, campaign_id, audience_id, platform)
    );
    CREATE TABLE decisions (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        period_start TIMESTAMP NOT NULL, -- UTC
        id VARCHAR NOT NULL,
        create_time TIMESTAMP NOT NULL,  -- UTC
        body BLOB NOT NULL,              -- jangkau.v1.Allocation
        PRIMARY KEY (tenant, campaign_id, period_start)
    );
    """,
]


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def _comparable(facts: Iterable[AudienceFacts]) -> dict[str, AudienceFacts]:
    """Facts by audience, each audience's reach in the order the table returns it."""
    return {
        f.audience_id: replace(f, reach=tuple(sorted(f.reach, key=lambda r: r.platform.value)))
        for f in facts
    }


@dataclass(frozen=True)
class StoredCampaign:
    revision: int
    body: bytes


@dataclass(frozen=True)
class StoredDecision:
    decision_id: str
    period_start: datetime
    create_time: datetime
    body: bytes


class _Index:
    """Per campaign: its revision and its decided periods, in memory.

    The process that opened the DuckDB file is its only writer (DuckDB allows one),
    and every write goes through this store, so the index is exact; it answers the
    two look-ups every Allocate makes without a query (a DuckDB query costs ~1 ms)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revisions: dict[tuple[str, str], int] = {}
        # (tenant, campaign) -> period starts, sorted, and the decision id of each.
        self.periods: dict[tuple[str, str], list[datetime]] = {}
        self.ids: dict[tuple[str, str], list[str]] = {}
        # (tenant, campaign) -> the store's write generation of the latest refresh of
        # its audience facts (none yet: absent).
        self.facts_refreshes: dict[tuple[str, str], int] = {}


class BudgetStore:
    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.db = Database(path, MIGRATIONS, threads=threads)
        self._index = _Index()
        self._campaign_writes = 0
        self._campaign_writes_lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    @property
    def generation(self) -> int:
        """Moves on with every write: the version of every read below."""
        return self.db.generation

    @property
    def campaigns_generation(self) -> int:
        """Moves on with every write of campaigns (not with decisions): the version
        of `get_campaign` and `list_campaigns`. Read it before what it versions."""
        return self._campaign_writes

    @contextmanager
    def _campaign_write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction of campaigns; `campaigns_generation` moves once it has
        ended, before the writer returns (a reader that started before may label
        the new data with the old generation, never the old data with the new)."""
        try:
            with self.db.transaction() as cur:
                yield cur
        finally:
            with self._campaign_writes_lock:
                self._campaign_writes += 1

    # ---------------------------------------------------------------- campaigns

    def insert_campaign(
        self,
        tenant: str,
        campaign_id: str,
        state: str,
        create_time: datetime,
        body: bytes,
        facts: Iterable[AudienceFacts],
    ) -> None:
        with self._campaign_write() as cur:
            cur.execute(
                "INSERT INTO campaigns VALUES (?, ?, ?, 1, ?, ?)",
                [tenant, campaign_id, state, _naive(create_time), body],
            )
            self._write_facts(cur, tenant, campaign_id, facts)
        with self._index.lock:
            key = (tenant, campaign_id)
            self._index.revisions[key] = 1
            self._index.periods[key] = []
            self._index.ids[key] = []

    def update_campaign(
        self,
        tenant: str,
        campaign_id: str,
        expected_revision: int,
        state: str,
        body: bytes,
        facts: Iterable[AudienceFacts],
    ) -> bool:
        """Replaces the campaign when its revision is still `expected_revision`;
        False when another update came first."""
        with self._campaign_write() as cur:
            row = cur.execute(
                "UPDATE campaigns SET state = ?, revision = revision + 1, body = ? "
                "WHERE tenant = ? AND id = ? AND revision = ? RETURNING revision",
                [state, body, tenant, campaign_id, expected_revision],
            ).fetchone()
            if row is None:
                return False
            cur.execute(
                "DELETE FROM campaign_audiences WHERE tenant = ? AND campaign_id = ?",
                [tenant, campaign_id],
            )
            self._write_facts(cur, tenant, campaign_id, facts)
        with self._index.lock:
            if (tenant, campaign_id) in self._index.revisions:
                self._index.revisions[(tenant, campaign_id)] = int(row[0])
        return True

    @staticmethod
    def _write_facts(cur, tenant: str, campaign_id: str, facts: Iterable[AudienceFacts]) -> None:  # type: ignore[no-untyped-def]
        rows = []
        for f in facts:
            base = [tenant, campaign_id, f.audience_id]
            flags = [f.uses_contact_lists, f.demographic_only, f.voters]
            if not f.reach:
                rows.append([*base, "", *flags, 0, True, True, ""])
            for r in f.reach:
                rows.append(
                    [
                        *base,
                        r.platform.value,
                        *flags,
                        r.reachable,
                        r.targetable,
                        r.allowed,
                        r.reason,
                    ]
                )
        if rows:
            cur.executemany(
                "INSERT INTO campaign_audiences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def _indexed(self, tenant: str, campaign_id: str) -> bool:
        """Loads the campaign into the index; False when there is no such campaign.
        Loading holds the index lock, so no write's update can slip in between."""
        key = (tenant, campaign_id)
        with self._index.lock:
            if key in self._index.revisions:
                return True
            with self.db.read() as cur:
                row = cur.execute(
                    "SELECT revision FROM campaigns WHERE tenant = ? AND id = ?",
                    [tenant, campaign_id],
                ).fetchone()
                if row is None:
                    return False
                decided = cur.execute(
                    "SELECT period_start, id FROM decisions "
                    "WHERE tenant = ? AND campaign_id = ? ORDER BY period_start",
                    [tenant, campaign_id],
                ).fetchall()
            self._index.revisions[key] = int(row[0])
            self._index.periods[key] = [_aware(p) for p, _ in decided]
            self._index.ids[key] = [str(i) for _, i in decided]
        return True

    def _remember_decision(
        self, tenant: str, campaign_id: str, period_start: datetime, decision_id: str
    ) -> None:
        key = (tenant, campaign_id)
        with self._index.lock:
            periods = self._index.periods.get(key)
            if periods is None:
                return  # not loaded yet: the next look-up reads it from the table
            at = bisect.bisect_left(periods, period_start)
            if at == len(periods) or periods[at] != period_start:
                periods.insert(at, period_start)
                self._index.ids[key].insert(at, decision_id)

    def revision_and_previous(
        self, tenant: str, campaign_id: str, period_start: datetime
    ) -> tuple[int, str | None] | None:
        """The campaign's revision and the id of its latest decision for a period
        before `period_start` (None when none); None when there is no such campaign."""
        if not self._indexed(tenant, campaign_id):
            return None
        key = (tenant, campaign_id)
        with self._index.lock:
            revision = self._index.revisions[key]
            at = bisect.bisect_left(self._index.periods.get(key, []), period_start)
            previous = self._index.ids[key][at - 1] if at else None
        return revision, previous

    def campaign_revision(self, tenant: str, campaign_id: str) -> int | None:
        if not self._indexed(tenant, campaign_id):
            return None
        with self._index.lock:
            return self._index.revisions[(tenant, campaign_id)]

    def decision(self, tenant: str, campaign_id: str, decision_id: str) -> StoredDecision | None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT id, period_start, create_time, body FROM decisions "
                "WHERE tenant = ? AND campaign_id = ? AND id = ?",
                [tenant, campaign_id, decision_id],
            ).fetchone()
        return None if row is None else _decision(row)

    def get_campaign(self, tenant: str, campaign_id: str) -> StoredCampaign | None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT revision, body FROM campaigns WHERE tenant = ? AND id = ?",
                [tenant, campaign_id],
            ).fetchone()
        return None if row is None else StoredCampaign(int(row[0]), bytes(row[1]))

    def list_campaigns(
        self, tenant: str, state: str | None, offset: int, limit: int
    ) -> list[StoredCampaign]:
        """Newest first."""
        where = "tenant = ?" + (" AND state = ?" if state else "")
        params: list[object] = [tenant, *([state] if state else [])]
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT revision, body FROM campaigns WHERE {where} "
                "ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [StoredCampaign(int(r[0]), bytes(r[1])) for r in rows]

    def facts_refresh(self, tenant: str, campaign_id: str) -> int:
        """Moves on when `refresh_facts` changes the campaign's audience facts (0 until
        then): with the revision, the version of what `audience_facts` returns. Read it
        before the facts it versions."""
        with self._index.lock:
            return self._index.facts_refreshes.get((tenant, campaign_id), 0)

    def refresh_facts(
        self, tenant: str, campaign_id: str, revision: int, facts: Iterable[AudienceFacts]
    ) -> bool:
        """Replaces the audience facts of the campaign at `revision` with `facts` (the
        audiences as they are now) unless they are the same (a read, no write), or an
        update came first (it wrote the facts of its own audiences); True when they
        changed. The campaign itself and its revision stay as they are."""
        fresh = _comparable(facts)
        if _comparable(self.audience_facts(tenant, campaign_id).values()) == fresh:
            return False
        with self.db.transaction() as cur:
            row = cur.execute(
                "SELECT revision FROM campaigns WHERE tenant = ? AND id = ?",
                [tenant, campaign_id],
            ).fetchone()
            if row is None or int(row[0]) != revision:
                return False
            cur.execute(
                "DELETE FROM campaign_audiences WHERE tenant = ? AND campaign_id = ?",
                [tenant, campaign_id],
            )
            self._write_facts(cur, tenant, campaign_id, fresh.values())
        with self._index.lock:
            self._index.facts_refreshes[(tenant, campaign_id)] = self.db.generation
        return True

    def audience_facts(self, tenant: str, campaign_id: str) -> dict[str, AudienceFacts]:
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT audience_id, platform, uses_contact_lists, demographic_only, voters, "
                "reachable, targetable, allowed, reason FROM campaign_audiences "
                "WHERE tenant = ? AND campaign_id = ? ORDER BY audience_id, platform",
                [tenant, campaign_id],
            ).fetchall()
        reach: dict[str, list[PlatformReach]] = {}
        first: dict[str, tuple] = {}
        for audience_id, platform, contact, demographic, voters, *rest in rows:
            first.setdefault(audience_id, (contact, demographic, voters))
            reach.setdefault(audience_id, [])
            if platform:
                reachable, targetable, allowed, reason = rest
                reach[audience_id].append(
                    PlatformReach(Platform(platform), int(reachable), targetable, allowed, reason)
                )
        return {
            a: AudienceFacts(a, bool(c), bool(d), int(v), tuple(reach[a]))
            for a, (c, d, v) in first.items()
        }

    # ---------------------------------------------------------------- decisions

    def insert_decision(
        self,
        tenant: str,
        campaign_id: str,
        period_start: datetime,
        decision_id: str,
        create_time: datetime,
        body: bytes,
    ) -> StoredDecision:
        """Records the decision unless the period already has one; returns the one stored."""
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [tenant, campaign_id, _naive(period_start), decision_id, _naive(create_time), body],
            )
            row = cur.execute(
                "SELECT id, period_start, create_time, body FROM decisions "
                "WHERE tenant = ? AND campaign_id = ? AND period_start = ?",
                [tenant, campaign_id, _naive(period_start)],
            ).fetchone()
        assert row is not None  # inserted or already there, inside this transaction
        stored = _decision(row)
        self._remember_decision(tenant, campaign_id, stored.period_start, stored.decision_id)
        return stored

    def decision_for(
        self, tenant: str, campaign_id: str, period_start: datetime
    ) -> StoredDecision | None:
        if self._indexed(tenant, campaign_id):
            key = (tenant, campaign_id)
            with self._index.lock:
                periods = self._index.periods.get(key, [])
                at = bisect.bisect_left(periods, period_start)
                if at == len(periods) or periods[at] != period_start:
                    return None
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT id, period_start, create_time, body FROM decisions "
                "WHERE tenant = ? AND campaign_id = ? AND period_start = ?",
                [tenant, campaign_id, _naive(period_start)],
            ).fetchone()
        return None if row is None else _decision(row)

    def list_decisions(
        self, tenant: str, campaign_id: str, offset: int, limit: int
    ) -> list[StoredDecision]:
        """Newest period first."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id, period_start, create_time, body FROM decisions "
                "WHERE tenant = ? AND campaign_id = ? "
                "ORDER BY period_start DESC LIMIT ? OFFSET ?",
                [tenant, campaign_id, limit, offset],
            ).fetchall()
        return [_decision(r) for r in rows]


def _decision(row: tuple) -> StoredDecision:
    return StoredDecision(str(row[0]), _aware(row[1]), _aware(row[2]), bytes(row[3]))
