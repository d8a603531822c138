"""Property: any sequence of report batches (replays, restatements, versions out
of order, a key repeated within a batch), event requests (duplicate and late
ids) and restarts leaves the stored reports, and every query, exactly as a
simple reference model that applies rows one by one says."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jangkau.metrics import codec, synthetic
from jangkau.metrics import service as service_module
from jangkau.metrics.domain import CountMetric, GroupBy, IngestCounts, Metric, Platform
from jangkau.metrics.service import MetricsService
from jangkau.metrics.store import DuckDBMetricsStore
from tests.test_metrics_support import event as event_message
from tests.test_metrics_support import report as report_message

TENANT = "alpha"
BASE = datetime(2024, 10, 1, tzinfo=UTC)  # midnight: the window holds two whole days
CAMPAIGN = synthetic.campaign("cmp_model", arms=3, hours=24 * 10, start=BASE - timedelta(days=2))
# Hours (from BASE) reports may be for: one before the window, the rest in it.
HOUR_OFFSETS = (-6, -3, 0, 5, 23, 24, 40, 49, 52)
WINDOWS = ("1d_click", "7d_click")
START, END = BASE - timedelta(hours=4), BASE + timedelta(hours=52, minutes=30)
AS_OF = END
LATENESS = timedelta(days=7)
DISCOUNT = 0.9
KAPPAS = (1e8, 2e9)


@dataclass(frozen=True)
class Row:
    arm: int
    hour: int
    window: str
    version: int
    impressions: int
    reach: int
    clicks: int
    conversions: float
    value: int
    spend: int

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.arm, self.hour, self.window)

    @property
    def start(self) -> datetime:
        return BASE + timedelta(hours=HOUR_OFFSETS[self.hour])

    @property
    def in_window(self) -> bool:
        return START <= self.start < END

    def message(self):  # type: ignore[no-untyped-def]
        hour = self.start
        return report_message(
            CAMPAIGN,
            arm=self.arm,
            hour=hour,
            attribution_window=self.window,
            impressions=self.impressions,
            reach=self.reach,
            clicks=self.clicks,
            conversions=self.conversions,
            conversion_value_micros=self.value,
            spend_micros=self.spend,
            version=hour + timedelta(hours=1, minutes=self.version),
        )


@dataclass(frozen=True)
class Event:
    event_id: str
    arm: int
    time: datetime
    value: int


@dataclass
class Model:
    reports: dict[tuple[int, int, str], Row] = field(default_factory=dict)
    default_window: dict[int, str] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)

    def ingest(self, rows: list[Row]) -> IngestCounts:
        counts: Counter[str] = Counter()
        first_new: dict[int, str] = {}
        for row in rows:
            stored = self.reports.get(row.key)
            if stored is None:
                counts["inserted"] += 1
                self.reports[row.key] = row
                first_new.setdefault(row.arm, row.window)
            elif row.version > stored.version:
                counts["replaced"] += 1
                self.reports[row.key] = row
            elif row.version == stored.version:
                counts["unchanged"] += 1
            else:
                counts["stale"] += 1
        for arm, window in first_new.items():
            self.default_window.setdefault(arm, window)
        return IngestCounts(**counts)

    def ingest_events(self, events: list[Event]) -> tuple[int, int, dict[str, int]]:
        inserted = duplicates = late = 0
        for e in events:
            if e.time < AS_OF - LATENESS:
                late += 1
            elif e.event_id in self.events:
                duplicates += 1
            else:
                self.events[e.event_id] = e
                inserted += 1
        return inserted, duplicates, ({"late": late} if late else {})

    def rows_read(self, arm: int, window: str = "", everything: bool = False) -> list[Row]:
        """The rows a query reads for an arm: one window's (the arm's default when
        unnamed), in the query window unless `everything`."""
        chosen = window or self.default_window.get(arm)
        return sorted(
            (
                r
                for r in self.reports.values()
                if r.arm == arm and r.window == chosen and (everything or r.in_window)
            ),
            key=lambda r: r.hour,
        )


@st.composite
def rows(draw: st.DrawFn) -> Row:
    impressions = draw(st.integers(0, 1000))
    return Row(
        arm=draw(st.integers(0, len(CAMPAIGN.arms) - 1)),
        hour=draw(st.integers(0, len(HOUR_OFFSETS) - 1)),
        window=draw(st.sampled_from(WINDOWS)),
        version=draw(st.integers(1, 4)),
        impressions=impressions,
        reach=draw(st.integers(0, impressions)),
        clicks=draw(st.integers(0, impressions)),
        conversions=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        value=draw(st.integers(0, 10**9)),
        spend=draw(st.sampled_from([0, 10**6, 5 * 10**8, 3 * 10**9]) | st.integers(0, 10**10)),
    )


events = st.builds(
    Event,
    event_id=st.sampled_from([f"ev-{i}" for i in range(5)]),
    arm=st.integers(0, len(CAMPAIGN.arms) - 1),
    time=st.sampled_from(
        [AS_OF - timedelta(days=8), START - timedelta(hours=1), BASE, BASE + timedelta(hours=30)]
    ),
    value=st.integers(0, 10**8),
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(rows(), min_size=1, max_size=8)),
        st.tuples(st.just("replay"), st.integers(0, 50)),
        st.tuples(st.just("events"), st.lists(events, min_size=1, max_size=5)),
        st.tuples(st.just("restart"), st.none()),
    ),
    min_size=1,
    max_size=8,
)


def open_service(folder: Path) -> MetricsService:
    return MetricsService(DuckDBMetricsStore(folder / "metrics.duckdb"), LATENESS)


def check_stored_reports(service: MetricsService, model: Model) -> None:
    registered = service.campaign(TENANT, CAMPAIGN.campaign_id)
    stored = service.store.report_rows(registered).to_pylist()
    expected = sorted(model.reports.values(), key=lambda r: (r.arm, r.hour, r.window))
    assert [
        (
            s["arm_id"],
            s["hour"],
            s["attribution_window"],
            s["version"],
            s["impressions"],
            s["reach"],
            s["clicks"],
            s["conversions"],
            s["conversion_value_micros"],
            s["spend_micros"],
        )
        for s in stored
    ] == [
        (
            CAMPAIGN.arms[r.arm].arm_id,
            r.start,
            r.window,
            r.start + timedelta(hours=1, minutes=r.version),
            r.impressions,
            r.reach,
            r.clicks,
            r.conversions,
            r.value,
            r.spend,
        )
        for r in expected
    ]


def weight(row: Row) -> float:
    return DISCOUNT ** ((END - row.start) / timedelta(hours=1))


def check_arm_stats(service: MetricsService, model: Model, window: str) -> None:
    result = service.arm_stats(
        TENANT,
        CAMPAIGN.campaign_id,
        START,
        END,
        discount=DISCOUNT,
        kappas_micros=KAPPAS,
        metric=CountMetric.CLICKS,
        attribution_window=window,
    )
    s = result.stats
    if window:
        check_against_model(s, result, model, window)
        return
    # The per-day cache gives what reading every row gives.
    direct = service.arm_stats(
        TENANT,
        CAMPAIGN.campaign_id,
        START,
        END,
        discount=DISCOUNT,
        kappas_micros=KAPPAS,
        metric=CountMetric.CLICKS,
        attribution_window=window,
        include_series=True,
    ).stats
    for name in ("spend_micros", "clicks", "impressions", "hours_observed", "last_hour_us"):
        assert getattr(s, name).tolist() == getattr(direct, name).tolist(), name
    for name in ("discounted_spend_micros", "discounted_hours", "exposure", "log_shape"):
        np.testing.assert_allclose(getattr(s, name), getattr(direct, name), rtol=1e-9, atol=1e-12)
    check_against_model(s, result, model, window)


def check_against_model(s, result, model: Model, window: str) -> None:  # type: ignore[no-untyped-def]
    for arm in range(len(CAMPAIGN.arms)):
        read = model.rows_read(arm, window)
        assert s.spend_micros[arm] == sum(r.spend for r in read)
        assert s.impressions[arm] == sum(r.impressions for r in read)
        assert s.clicks[arm] == sum(r.clicks for r in read)
        assert s.conversions[arm] == pytest.approx(sum(r.conversions for r in read))
        assert s.hours_observed[arm] == len(read)
        assert s.discounted_hours[arm] == pytest.approx(sum(weight(r) for r in read))
        assert s.discounted_spend_micros[arm] == pytest.approx(
            sum(weight(r) * r.spend for r in read)
        )
        assert s.discounted_clicks[arm] == pytest.approx(sum(weight(r) * r.clicks for r in read))
        last = max((r.start for r in read), default=None)
        assert s.last_hour_us[arm] == (-1 if last is None else last.timestamp() * 1e6)
        for k, kappa in enumerate(KAPPAS):
            spent = [r for r in read if r.spend > 0]
            # 1 − e^(−x) as −expm1(−x): exact where x is tiny.
            exposure = sum(weight(r) * -math.expm1(-r.spend / kappa) for r in spent)
            log_shape = sum(
                weight(r) * r.clicks * math.log(-math.expm1(-r.spend / kappa)) for r in spent
            )
            assert s.exposure[arm, k] == pytest.approx(exposure, rel=1e-9, abs=1e-12)
            assert s.log_shape[arm, k] == pytest.approx(log_shape, rel=1e-9, abs=1e-12)
        credited = [e for e in model.events.values() if e.arm == arm and START <= e.time < END]
        assert result.event_count[arm] == len(credited)
        assert result.event_value[arm] == sum(e.value for e in credited)


def check_timeseries(service: MetricsService, model: Model) -> None:
    metrics = [Metric.SPEND, Metric.REACH, Metric.CONVERSION_VALUE, Metric.CTR, Metric.CPC]
    table = service.timeseries(TENANT, CAMPAIGN.campaign_id, START, END, metrics)
    got = {
        (key, int(start)): list(values)
        for key, starts, rows_ in zip(table.keys, table.starts, table.values, strict=True)
        for start, values in zip(starts, rows_, strict=True)
    }
    expected = {}
    for arm in range(len(CAMPAIGN.arms)):
        for r in model.rows_read(arm):
            start = int(r.start.timestamp() * 1_000_000)
            expected[(CAMPAIGN.arms[arm].arm_id, start)] = [
                r.spend,
                r.reach,
                r.value,
                r.clicks / r.impressions if r.impressions else 0.0,
                r.spend / r.clicks if r.clicks else 0.0,
            ]
    assert got.keys() == expected.keys()
    for cell, values in expected.items():
        assert got[cell] == pytest.approx(values)

    daily = service.timeseries(
        TENANT,
        CAMPAIGN.campaign_id,
        START,
        END,
        [Metric.CPA],
        group_by=GroupBy.PLATFORM,
        daily=True,
    )
    got_daily = {
        (key, int(start)): float(row[0])
        for key, starts, rows_ in zip(daily.keys, daily.starts, daily.values, strict=True)
        for start, row in zip(starts, rows_, strict=True)
    }
    cells: dict[tuple[str, int], list[Row]] = {}
    for arm, a in enumerate(CAMPAIGN.arms):
        for r in model.rows_read(arm):
            day = r.start.replace(hour=0)
            cells.setdefault((a.platform.name, int(day.timestamp() * 1_000_000)), []).append(r)
    assert got_daily.keys() == cells.keys()
    for cell, read in cells.items():
        spend, conversions = sum(r.spend for r in read), sum(r.conversions for r in read)
        assert got_daily[cell] == pytest.approx(spend / conversions if conversions else 0.0)


def check_summary(service: MetricsService, model: Model) -> None:
    summary = service.summary(TENANT, CAMPAIGN.campaign_id, AS_OF)
    read = [r for arm in range(len(CAMPAIGN.arms)) for r in model.rows_read(arm, everything=True)]
    assert summary.spend_micros == sum(r.spend for r in read)
    assert int(summary.totals.clicks[0]) == sum(r.clicks for r in read)
    assert summary.event_conversions == sum(1 for e in model.events.values() if e.time < AS_OF)
    by_platform = {p.platform: int(p.sums.spend_micros[0]) for p in summary.platforms}
    for platform in (Platform.META, Platform.GOOGLE, Platform.X):
        arms = [i for i, a in enumerate(CAMPAIGN.arms) if a.platform is platform]
        assert by_platform[platform] == sum(
            r.spend for i in arms for r in model.rows_read(i, everything=True)
        )


@pytest.mark.slow
@pytest.mark.parametrize("hourly_cells", [service_module.MAX_HOURLY_CELLS, 0])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=steps)
def test_the_store_and_every_query_follow_the_reference_model(
    plan: list,  # type: ignore[type-arg]
    hourly_cells: int,
) -> None:
    """With the campaign's hourly delivery kept in memory between writes (the
    default for a campaign this small), and with every query read from the store."""
    with (
        mock.patch.object(service_module, "MAX_HOURLY_CELLS", hourly_cells),
        tempfile.TemporaryDirectory(prefix="jangkau-metrics-model-") as tmp,
    ):
        folder = Path(tmp)
        service = open_service(folder)
        service.register(TENANT, CAMPAIGN)
        model = Model()
        batches: list[list[Row]] = []
        try:
            for kind, arg in plan:
                if kind == "restart":
                    service.store.close()
                    service = open_service(folder)
                    continue
                if kind == "events":
                    messages = [
                        event_message(CAMPAIGN, e.event_id, e.arm, e.time, value_micros=e.value)
                        for e in arg
                    ]
                    result = service.ingest_events(TENANT, codec.events_table(messages), AS_OF)
                    assert (
                        result.inserted,
                        result.duplicates,
                        result.refused,
                    ) == model.ingest_events(arg)
                else:
                    if kind == "replay":
                        if not batches:
                            continue
                        arg = batches[arg % len(batches)]
                    batches.append(arg)
                    table = codec.reports_from_rows([r.message() for r in arg])
                    assert service.ingest_reports(TENANT, table) == model.ingest(arg)
                check_stored_reports(service, model)
                for window in ("", *WINDOWS):
                    check_arm_stats(service, model, window)
                check_timeseries(service, model)
                check_summary(service, model)
        finally:
            service.store.close()


def test_the_reference_model_applies_rows_in_order() -> None:
    model = Model()
    row = Row(0, 2, "1d_click", 2, 10, 5, 1, 0.0, 0, 100)
    older = Row(0, 2, "1d_click", 1, 10, 5, 1, 0.0, 0, 999)
    assert model.ingest([row, older, row]) == IngestCounts(inserted=1, stale=1, unchanged=1)
    assert model.reports[row.key].spend == 100
    assert np.isclose(weight(row), DISCOUNT**52.5)  # BASE to END
