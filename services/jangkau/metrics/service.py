"""The metrics use cases, independent of gRPC: each composes the domain's rules
with a `MetricsStore`. The edge translates messages into these calls; the
benchmarks call them in-process as the baseline of the gRPC path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jangkau.metrics import domain
from jangkau.metrics.day_stats import DayStatsCache
from jangkau.metrics.domain import (
    ArmStatsTable,
    Campaign,
    CountMetric,
    GroupBy,
    HourRows,
    IngestCounts,
    Metric,
    RegisteredCampaign,
    SeriesTable,
    Summary,
)
from jangkau.metrics.store import MetricsStore
from jangkau.runtime.errors import DomainError, NotFound
from jangkau.runtime.times import utcnow


@dataclass(frozen=True)
class ArmStatsResult:
    registered: RegisteredCampaign
    stats: ArmStatsTable
    event_count: np.ndarray
    event_value: np.ndarray
    # The rows behind the statistics, when the hourly series was asked for.
    rows: HourRows | None


@dataclass(frozen=True)
class EventsResult:
    inserted: int
    duplicates: int
    refused: dict[str, int]


class MetricsService:
    def __init__(
        self,
        store: MetricsStore,
        event_lateness: timedelta = domain.DEFAULT_EVENT_LATENESS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.event_lateness = event_lateness
        self.clock = clock
        self.day_stats = DayStatsCache(store)

    def register(self, tenant: str, campaign: Campaign) -> bool:
        domain.check_campaign(campaign)
        return self.store.register_campaign(tenant, campaign)

    def campaign(self, tenant: str, campaign_id: str) -> RegisteredCampaign:
        found = self.store.campaigns(tenant, [campaign_id]).get(campaign_id)
        if found is None:
            raise NotFound(f"campaign_id: campaign {campaign_id} not found")
        return found

    def ingest_reports(self, tenant: str, reports: pa.Table) -> IngestCounts:
        """Validates the whole batch, then commits it in one transaction."""
        counts, error = self.ingest_batches(tenant, [reports])
        if error is not None:
            raise error
        return counts[0]

    def ingest_batches(
        self, tenant: str, batches: Sequence[pa.Table]
    ) -> tuple[list[IngestCounts], DomainError | None]:
        """Validates each batch whole, in order, and commits the ones before the
        first invalid batch together in one transaction (a group commit: batches
        waiting on a stream share one commit). Returns what each committed batch
        did, and the refusal of the invalid batch, if any."""
        valid: list[pa.Table] = []
        refusal: DomainError | None = None
        now = self.clock()
        for reports in batches:
            ids = pc.unique(reports.column("campaign_id")).to_pylist()
            campaigns = self.store.campaigns(tenant, [c for c in ids if c])
            try:
                valid.append(domain.validate_reports(reports, campaigns, now))
            except DomainError as exc:
                refusal = exc
                break
        counts = self.store.upsert_reports(valid) if valid else []
        return counts, refusal

    def ingest_events(self, tenant: str, events: pa.Table, as_of: datetime | None) -> EventsResult:
        now = self.clock()
        ids = pc.unique(events.column("campaign_id")).to_pylist()
        campaigns = self.store.campaigns(tenant, [c for c in ids if c])
        intake = domain.validate_events(events, campaigns, as_of or now, now, self.event_lateness)
        inserted, stored = self.store.add_events(tenant, intake.accepted)
        return EventsResult(inserted, intake.repeated + stored, intake.refused)

    def arm_stats(
        self,
        tenant: str,
        campaign_id: str,
        start: datetime,
        end: datetime,
        *,
        discount: float = 1.0,
        kappas_micros: Sequence[float] = (),
        metric: CountMetric = CountMetric.CONVERSIONS,
        attribution_window: str = "",
        include_series: bool = False,
    ) -> ArmStatsResult:
        """Per-arm statistics of the hours starting in [start, end), weighted by
        discount^(hours to `end`). With `include_series` the rows come back too
        (and are read in full rather than from the per-day cache)."""
        registered = self.campaign(tenant, campaign_id)
        first, stop = domain.hours_in(start, end)
        rows = None
        if include_series:
            rows = self.store.arm_hours(registered, [(first, stop)], attribution_window)
            stats = domain.arm_statistics(
                rows, len(registered.arms), end, discount, kappas_micros, metric
            )
        else:
            stats = self.day_stats.arm_stats(
                tenant,
                registered,
                first,
                stop,
                end,
                discount,
                kappas_micros,
                metric,
                attribution_window,
            )
        event_count, event_value = self.store.arm_events(registered, start, end)
        return ArmStatsResult(registered, stats, event_count, event_value, rows)

    def timeseries(
        self,
        tenant: str,
        campaign_id: str,
        start: datetime,
        end: datetime,
        metrics: Sequence[Metric],
        *,
        group_by: GroupBy = GroupBy.ARM,
        daily: bool = False,
        attribution_window: str = "",
    ) -> SeriesTable:
        registered = self.campaign(tenant, campaign_id)
        first, stop = domain.hours_in(start, end)
        buckets = self.store.bucket_sums(registered, first, stop, attribution_window, daily)
        return domain.time_series(registered, buckets, group_by, metrics)

    def summary(
        self,
        tenant: str,
        campaign_id: str,
        as_of: datetime | None = None,
        attribution_window: str = "",
    ) -> Summary:
        registered = self.campaign(tenant, campaign_id)
        moment = as_of or self.clock()
        _, stop = domain.hours_in(moment, moment)
        per_arm, events = self.store.delivery_to(registered, stop, attribution_window, moment)
        return domain.summarise(registered, per_arm, events, moment)
