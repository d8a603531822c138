"""The rebalancer's own DuckDB file: what each platform accepted, how far reports
were pulled, and each run. DuckDB lets one process open the file for writing at a
time, and the operating system drops that lock when the process dies: that is the
lease that keeps to one rebalancer at a time, without a stale lease to clean up."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from jangkau.runtime.store import Database

MIGRATIONS = [
    """
    -- Append-only: every budget a platform accepted; the latest per arm is in force.
    CREATE TABLE applied_budget (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        arm_id VARCHAR NOT NULL,
        daily_budget_micros BIGINT NOT NULL,
        decision_id VARCHAR NOT NULL,
        period_start TIMESTAMPTZ NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE applied_period (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        period_start TIMESTAMPTZ NOT NULL,
        decision_id VARCHAR NOT NULL,
        edits INTEGER NOT NULL,
        refused INTEGER NOT NULL,
        PRIMARY KEY (tenant, campaign_id, period_start)
    );
    CREATE TABLE report_pull (
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        platforms VARCHAR NOT NULL,
        pulled_until TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, campaign_id, platforms)
    );
    CREATE TABLE run_log (
        started_at TIMESTAMPTZ NOT NULL,
        as_of TIMESTAMPTZ NOT NULL,
        tenant VARCHAR NOT NULL,
        campaign_id VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        edits INTEGER NOT NULL,
        reports INTEGER NOT NULL
    );
    """
]


# The budget in force on each arm of a tenant's campaigns (the one parameter: the tenant):
# the one of the latest hour, as hours are applied in order (the job pushes nothing for an
# hour before one already applied).
IN_FORCE = """
    SELECT campaign_id, arm_id, arg_max(daily_budget_micros, period_start) AS daily_budget_micros
    FROM applied_budget WHERE tenant = ? GROUP BY campaign_id, arm_id
"""


class LeaseHeld(Exception):
    """Another rebalancer holds the lease (has the state file open)."""


class RebalancerStore:
    def __init__(self, path: Path) -> None:
        try:
            self.db = Database(path, MIGRATIONS)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise LeaseHeld(f"another rebalancer is running ({path} is locked)") from None
            raise

    def close(self) -> None:
        self.db.close()

    def last_applied(self, tenant: str, campaign_id: str) -> dict[str, int]:
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT arm_id, daily_budget_micros FROM ({IN_FORCE}) WHERE campaign_id = ?",
                [tenant, campaign_id],
            ).fetchall()
        return {arm: int(micros) for arm, micros in rows}

    def campaigns_in_force(self, tenant: str) -> list[str]:
        """The tenant's campaigns with a budget above zero in force on some arm."""
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT DISTINCT campaign_id FROM ({IN_FORCE}) WHERE daily_budget_micros > 0"
                " ORDER BY campaign_id",
                [tenant],
            ).fetchall()
        return [campaign_id for (campaign_id,) in rows]

    def applied_hours(
        self, tenant: str, campaign_id: str, period_start: datetime
    ) -> tuple[bool, datetime | None]:
        """Whether the campaign's hour starting at `period_start` was applied, and the
        start of the latest hour applied for it (None: none yet)."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT coalesce(bool_or(period_start = ?), false), max(period_start)"
                " FROM applied_period WHERE tenant = ? AND campaign_id = ?",
                [period_start, tenant, campaign_id],
            ).fetchone()
        return (bool(row[0]), row[1]) if row else (False, None)

    def record_applied(
        self,
        tenant: str,
        campaign_id: str,
        decision_id: str,
        period_start: datetime,
        accepted: dict[str, int],
        refused: int,
        applied_at: datetime,
    ) -> None:
        """Accepted budgets become the ones in force; refused arms keep theirs. The
        period is marked done in the same transaction."""
        with self.db.transaction() as cur:
            if accepted:
                # One statement for all arms: DuckDB is slow at row-by-row inserts.
                rows = [
                    (tenant, campaign_id, arm_id, micros, decision_id, period_start, applied_at)
                    for arm_id, micros in accepted.items()
                ]
                placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
                cur.execute(
                    f"INSERT INTO applied_budget VALUES {placeholders}",
                    [value for row in rows for value in row],
                )
            cur.execute(
                "INSERT OR REPLACE INTO applied_period VALUES (?, ?, ?, ?, ?, ?)",
                [tenant, campaign_id, period_start, decision_id, len(accepted), refused],
            )

    def pulled_until(self, tenant: str, campaign_id: str, platforms: str) -> datetime | None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT pulled_until FROM report_pull WHERE tenant = ? AND campaign_id = ?"
                " AND platforms = ?",
                [tenant, campaign_id, platforms],
            ).fetchone()
        return row[0] if row else None

    def record_pull(self, tenant: str, campaign_id: str, platforms: str, until: datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO report_pull VALUES (?, ?, ?, ?)",
                [tenant, campaign_id, platforms, until],
            )

    def log_run(
        self,
        started_at: datetime,
        as_of: datetime,
        tenant: str,
        campaign_id: str,
        outcome: str,
        message: str,
        edits: int,
        reports: int,
    ) -> None:
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO run_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [started_at, as_of, tenant, campaign_id, outcome, message, edits, reports],
            )

    def edits_total(self, tenant: str, campaign_id: str) -> int:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT coalesce(sum(edits), 0) FROM applied_period"
                " WHERE tenant = ? AND campaign_id = ?",
                [tenant, campaign_id],
            ).fetchone()
        return int(row[0]) if row else 0
