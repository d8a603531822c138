"""The metrics use cases, independent of gRPC: each composes the domain's rules
with a `MetricsStore`. The edge translates messages into these calls; the
benchmarks call them in-process as the baseline of the gRPC path."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jangkau.metrics import domain
from jangkau.metrics.day_stats import DayStatsCache
from jangkau.metrics.domain import (
    HOUR_US,
    ArmStatsTable,
    BucketSums,
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
from jangkau.metrics.hourly import HourlyDeliveryCache
from jangkau.metrics.store import MetricsStore
from jangkau.metrics.watch import VersionWatches
from jangkau.runtime.errors import DomainError, NotFound
from jangkau.runtime.times import to_us, utcnow
from jangkau.runtime.versions import ANY_TIME_US, ChangeHistory

# A campaign whose arms × flight hours stay within this keeps its hourly delivery in
# memory (about 64 bytes an hour of an arm; see metrics.hourly), so that timeseries and
# summaries after a write cost a query of the days written, not a query each; larger
# ones query per call.
MAX_HOURLY_CELLS = 200_000
# Hours of arms kept in memory, all campaigns together.
HOURLY_CAPACITY_CELLS = 1_000_000


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


class DataVersions:
    """Per (tenant, campaign), versions of its data that follow time
    (runtime.versions): every write of the campaign's reports or events and every
    registration is a change, with the earliest instant it may have touched, and
    the version of the data before some `end` is that of the latest change that
    touched an instant before it. Reports of a fresh hour leave the version of
    every window ending at or before that hour as it was.

    Versions are `<epoch>-<sequence>`: the sequence is one counter for the whole
    process (so versions only ever grow), the epoch is random per process (so a
    restarted service never hands out a version it gave before, even for a
    campaign it has not seen written since). Writers add their change after they
    commit and readers take the version before they read, so an answer is never
    labelled with a version newer than its data. Every change is pushed to the
    tenant's watches (see metrics.watch) before the write it follows is
    acknowledged."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(8)
        self.watches = VersionWatches()
        self._initial = f"{self.epoch}-0"
        self._sequence = 0
        self._histories: dict[tuple[str, str], ChangeHistory] = {}
        self._lock = threading.Lock()

    def before(self, tenant: str, campaign_id: str, end: datetime) -> str:
        """The version of the campaign's data before `end`."""
        with self._lock:
            history = self._histories.get((tenant, campaign_id))
            if history is None:
                return self._initial
            return history.version_before(to_us(end)) or self._initial

    def bump(self, tenant: str, changes: Mapping[str, int]) -> None:
        """Records committed changes (campaign id → the earliest instant written,
        µs since the epoch) and tells the tenant's watches."""
        if not changes:
            return
        with self._lock:
            self._sequence += 1
            version = f"{self.epoch}-{self._sequence}"
            for cid, earliest_us in changes.items():
                history = self._histories.get((tenant, cid))
                if history is None:
                    history = self._histories[(tenant, cid)] = ChangeHistory(self._initial)
                history.add(version, earliest_us)
        self.watches.publish(
            tenant, {cid: (version, earliest_us) for cid, earliest_us in changes.items()}
        )

    @contextmanager
    def writing(
        self, tenant: str, campaign_ids: Iterable[str]
    ) -> Iterator[Callable[[Mapping[str, int]], None]]:
        """Around a write of the campaigns: the block reports what it changed
        (campaign id → earliest instant written; nothing when it changed nothing).
        A write that raised changes every instant of every campaign it wrote (it
        may have committed part-way)."""
        changed: dict[str, int] = {}

        def report(earliest: Mapping[str, int]) -> None:
            for cid, earliest_us in earliest.items():
                changed[cid] = min(earliest_us, changed.get(cid, earliest_us))

        try:
            yield report
        except BaseException:
            self.bump(tenant, dict.fromkeys(campaign_ids, ANY_TIME_US))
            raise
        self.bump(tenant, changed)


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
        self.hourly = HourlyDeliveryCache(store, HOURLY_CAPACITY_CELLS)
        self.day_stats = DayStatsCache(store, self._arm_hours)
        self.versions = DataVersions()

    def register(self, tenant: str, campaign: Campaign) -> bool:
        domain.check_campaign(campaign)
        with self.versions.writing(tenant, [campaign.campaign_id]) as changed:
            applied = self.store.register_campaign(tenant, campaign)
            if applied:
                changed({campaign.campaign_id: ANY_TIME_US})
        return applied

    def data_version(self, tenant: str, campaign_id: str, end: datetime) -> str:
        """The version of the campaign's data before `end` (NOT_FOUND when the
        tenant has not registered it). Take it before reading the data it labels."""
        self.campaign(tenant, campaign_id)
        return self.versions.before(tenant, campaign_id, end)

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
        written: set[str] = set()
        refusal: DomainError | None = None
        now = self.clock()
        for reports in batches:
            ids = pc.unique(reports.column("campaign_id")).to_pylist()
            campaigns = self.store.campaigns(tenant, [c for c in ids if c])
            try:
                valid.append(domain.validate_reports(reports, campaigns, now))
                written.update(campaigns)
            except DomainError as exc:
                refusal = exc
                break
        if not valid:
            return [], refusal
        with self.versions.writing(tenant, written) as changed:
            try:
                counts = self.store.upsert_reports(tenant, valid)
            except domain.WindowNamesExhausted as exc:
                # The batches before the one naming a window past the tenant's
                # limit are valid: they commit, as before any other refusal.
                refusal, valid = exc, valid[: exc.batch]
                counts = self.store.upsert_reports(tenant, valid) if valid else []
            if any(c.inserted or c.replaced for c in counts):
                # The valid batches are the first ones, as they came.
                changed(domain.earliest_by_campaign(batches[: len(valid)], "hour"))
        return counts, refusal

    def ingest_events(self, tenant: str, events: pa.Table, as_of: datetime | None) -> EventsResult:
        now = self.clock()
        ids = pc.unique(events.column("campaign_id")).to_pylist()
        campaigns = self.store.campaigns(tenant, [c for c in ids if c])
        intake = domain.validate_events(events, campaigns, as_of or now, now, self.event_lateness)
        with self.versions.writing(tenant, [c for c in ids if c]) as changed:
            inserted, stored = self.store.add_events(tenant, intake.accepted)
            if inserted > 0:
                changed(domain.earliest_by_campaign([events], "time"))
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
            rows = self._arm_hours(tenant, registered, [(first, stop)], attribution_window)
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

    def _hourly_delivery(
        self, tenant: str, registered: RegisteredCampaign, window: str
    ) -> BucketSums | None:
        """Every stored hour of the campaign's arms in `window`, from memory; None
        for a campaign too large to keep."""
        c = registered.campaign
        flight_hours = (c.flight_end - c.flight_start) // timedelta(microseconds=HOUR_US)
        if len(c.arms) * max(flight_hours, 1) > MAX_HOURLY_CELLS:
            return None
        return self.hourly.hours(tenant, registered, window)

    def _arm_hours(
        self,
        tenant: str,
        registered: RegisteredCampaign,
        spans: Sequence[tuple[int, int]],
        window: str,
    ) -> HourRows:
        """The campaign's reports of the hours in `spans`: from its hourly delivery
        in memory when it is small (after a write, the day written is then read once
        for every kind of query), else from the store."""
        hourly = self._hourly_delivery(tenant, registered, window)
        if hourly is None:
            return self.store.arm_hours(registered, spans, window)
        return hourly.hour_rows(spans)

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
        hourly = self._hourly_delivery(tenant, registered, attribution_window)
        if hourly is None:
            buckets = self.store.bucket_sums(registered, first, stop, attribution_window, daily)
        else:
            buckets = hourly.hours(first, stop, daily)
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
        hourly = self._hourly_delivery(tenant, registered, attribution_window)
        if hourly is None:
            per_arm, events = self.store.delivery_to(registered, stop, attribution_window, moment)
        else:
            per_arm = hourly.per_arm_before(stop, len(registered.arms))
            events = self.store.events_before(registered, moment)
        return domain.summarise(registered, per_arm, events, moment)
