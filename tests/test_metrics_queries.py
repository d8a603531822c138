"""The queries through gRPC: per-arm statistics for the allocator, time series
with ratios from sums, and the campaign summary with pacing."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from jangkau.budget.policy import KAPPA_GRID_MICROS
from jangkau.metrics import store as store_module
from jangkau.metrics import synthetic
from jangkau.metrics.domain import Metric
from jangkau.metrics.hourly import HourlyDeliveryCache
from jangkau.metrics.service import HOURLY_CAPACITY_CELLS, MetricsService
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc
from tests.test_metrics_support import (
    ALPHA,
    H0,
    WIDE,
    MetricsApi,
    arm_stats,
    batch,
    event,
    ingest,
    new_campaign,
    report,
    shared_metrics,  # noqa: F401 (fixture)
    window,
)


@pytest.fixture
def stub(shared_metrics: MetricsApi) -> metrics_pb2_grpc.MetricsServiceStub:  # noqa: F811
    return shared_metrics.stub


def hour(h: float):  # type: ignore[no-untyped-def]
    return H0 + timedelta(hours=h)


def test_arm_stats_list_every_arm_in_id_order_observed_or_not(stub) -> None:
    c = new_campaign(stub, arms=4)
    ingest(stub, batch(report(c, arm=2)))
    arms = arm_stats(stub, c).arms
    assert [a.arm_id for a in arms] == sorted(a.arm_id for a in c.arms)
    assert [a.hours_observed for a in arms] == [0, 0, 1, 0]
    assert [a.platform for a in arms] == [int(a.platform) for a in c.arms]
    assert not arms[0].HasField("last_hour")


def test_arm_stats_count_only_hours_starting_in_the_window(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(*[report(c, hour=hour(h), spend_micros=10**h) for h in range(5)]))
    stats = arm_stats(stub, c, window=window(hour(0.5), hour(3))).arms[0]
    assert (stats.spend_micros, stats.hours_observed) == (10 + 100, 2)
    assert stats.last_hour == to_timestamp(hour(2))


def test_arm_stats_weigh_hours_by_the_discount(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(*[report(c, hour=hour(h), clicks=h + 1) for h in range(3)]))
    stats = arm_stats(stub, c, window=window(hour(0), hour(3)), discount=0.5).arms[0]
    weights = [0.5**3, 0.5**2, 0.5]
    assert stats.discounted_hours == pytest.approx(sum(weights))
    assert stats.discounted_clicks == pytest.approx(sum(w * (h + 1) for h, w in enumerate(weights)))
    assert stats.clicks == 6


def test_arm_stats_carry_the_curve_statistics_for_each_kappa(stub) -> None:
    c = new_campaign(stub)
    spends = [0, 3 * 10**8, 2 * 10**9]
    conversions = [1.0, 2.0, 0.0]
    ingest(
        stub,
        batch(
            *[
                report(c, hour=hour(h), spend_micros=s, conversions=y)
                for h, (s, y) in enumerate(zip(spends, conversions, strict=True))
            ]
        ),
    )
    stats = arm_stats(
        stub, c, window=window(hour(0), hour(3)), discount=0.9, kappas_micros=KAPPA_GRID_MICROS
    ).arms[0]
    assert [cs.kappa_micros for cs in stats.curves] == list(KAPPA_GRID_MICROS)
    for cs in stats.curves:
        terms = [
            (0.9 ** (3 - h), s, y)
            for h, (s, y) in enumerate(zip(spends, conversions, strict=True))
            if s > 0
        ]
        f = [(w, -math.expm1(-s / cs.kappa_micros), y) for w, s, y in terms]
        assert cs.exposure == pytest.approx(sum(w * v for w, v, _ in f), rel=1e-9)
        assert cs.log_shape == pytest.approx(sum(w * y * math.log(v) for w, v, y in f), rel=1e-9)


def test_arm_stats_can_count_clicks_in_the_curves(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c, spend_micros=10**9, clicks=7, conversions=0.0)))
    by_clicks = arm_stats(
        stub, c, kappas_micros=[10**9], count_metric=metrics_pb2.COUNT_CLICKS
    ).arms[0]
    by_conversions = arm_stats(stub, c, kappas_micros=[10**9]).arms[0]
    assert by_clicks.curves[0].log_shape == pytest.approx(7 * math.log(1 - math.exp(-1)))
    assert by_conversions.curves[0].log_shape == 0.0


def test_arm_stats_series_lists_hours_in_order(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(*[report(c, hour=hour(h), spend_micros=h) for h in (2, 0, 1)]))
    arms = arm_stats(stub, c, include_series=True).arms
    assert [p.hour for p in arms[0].series] == [to_timestamp(hour(h)) for h in range(3)]
    assert [p.spend_micros for p in arms[0].series] == [0, 1, 2]
    assert not arms[1].series


def test_arm_stats_count_the_events_credited_in_the_window(stub) -> None:
    c = new_campaign(stub)
    stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(
            events=[
                event(c, "in", time=hour(1), value_micros=5),
                event(c, "in-too", time=hour(1.5), value_micros=7),
                event(c, "out", time=hour(30), value_micros=9),
                event(c, "other-arm", arm=1, time=hour(1), value_micros=11),
            ],
            as_of=to_timestamp(hour(31)),
        ),
        metadata=ALPHA,
    )
    arms = arm_stats(stub, c, window=window(hour(0), hour(24))).arms
    assert [(a.event_conversions, a.event_value_micros) for a in arms] == [(2, 12), (1, 11), (0, 0)]


def timeseries(stub, c, **fields: object) -> metrics_pb2.GetTimeseriesResponse:  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"window": WIDE, **fields}
    return stub.GetTimeseries(
        metrics_pb2.GetTimeseriesRequest(campaign_id=c.campaign_id, **values), metadata=ALPHA
    )


def test_time_series_ratios_come_from_sums(stub) -> None:
    c = new_campaign(stub)
    ingest(
        stub,
        batch(
            report(
                c, hour=hour(0), impressions=2, reach=1, clicks=1, conversions=1.0, spend_micros=100
            ),
            report(
                c,
                hour=hour(1),
                impressions=1000,
                reach=1,
                clicks=11,
                conversions=0.0,
                spend_micros=900,
            ),
        ),
    )
    reply = timeseries(
        stub,
        c,
        group_by=metrics_pb2.BY_CAMPAIGN,
        granularity=metrics_pb2.DAILY,
        metrics=[metrics_pb2.METRIC_CTR, metrics_pb2.METRIC_CPA, metrics_pb2.METRIC_CPC],
    )
    assert list(reply.metrics) == [
        metrics_pb2.METRIC_CTR,
        metrics_pb2.METRIC_CPA,
        metrics_pb2.METRIC_CPC,
    ]
    [series] = reply.series
    assert series.key == c.campaign_id
    [point] = series.points
    assert point.start == to_timestamp(H0.replace(hour=0))
    assert list(point.values) == pytest.approx([12 / 1002, 1000.0, 1000 / 12])


def test_time_series_group_by_platform_and_audience(stub) -> None:
    c = new_campaign(stub, arms=4)  # platforms META, GOOGLE, X, META
    ingest(stub, batch(*[report(c, arm=a, spend_micros=10 ** (a + 1)) for a in range(4)]))
    by_platform = timeseries(
        stub, c, group_by=metrics_pb2.BY_PLATFORM, metrics=[metrics_pb2.METRIC_SPEND]
    )
    assert {s.key: s.points[0].values[0] for s in by_platform.series} == {
        "META": 10 + 10_000,
        "GOOGLE": 100,
        "X": 1000,
    }
    by_audience = timeseries(
        stub, c, group_by=metrics_pb2.BY_AUDIENCE, metrics=[metrics_pb2.METRIC_SPEND]
    )
    assert [s.key for s in by_audience.series] == sorted(a.audience_id for a in c.arms)


def test_hourly_series_have_a_point_per_reported_hour(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(*[report(c, hour=hour(h)) for h in (0, 1, 5)]))
    reply = timeseries(stub, c, metrics=[metrics_pb2.METRIC_IMPRESSIONS])
    assert [s.key for s in reply.series] == [a.arm_id for a in c.arms]  # every arm, in order
    series = reply.series[0]
    assert [p.start for p in series.points] == [to_timestamp(hour(h)) for h in (0, 1, 5)]
    assert not reply.series[1].points


def test_the_summary_paces_spend_against_the_budget(stub) -> None:
    c = new_campaign(stub)
    request = metrics_pb2.RegisterCampaignRequest()
    request.CopyFrom(
        metrics_pb2.RegisterCampaignRequest(
            campaign_id=c.campaign_id,
            currency="IDR",
            total_budget_micros=10_000,
            flight=common_pb2.TimeRange(
                start=to_timestamp(H0), end=to_timestamp(H0 + timedelta(hours=10))
            ),
            arms=[
                metrics_pb2.ArmRef(
                    arm_id=a.arm_id, platform=int(a.platform), audience_id=a.audience_id
                )
                for a in c.arms
            ],
            revision=2,
        )
    )
    stub.RegisterCampaign(request, metadata=ALPHA)
    ingest(
        stub,
        batch(
            report(c, arm=0, hour=hour(0), spend_micros=1000),
            report(c, arm=1, hour=hour(1), spend_micros=500),
            report(c, arm=0, hour=hour(4), spend_micros=9000),  # after as_of
        ),
    )
    summary = stub.GetCampaignSummary(
        metrics_pb2.GetCampaignSummaryRequest(
            campaign_id=c.campaign_id, as_of=to_timestamp(hour(3))
        ),
        metadata=ALPHA,
    )
    assert (summary.spend_micros, summary.remaining_micros) == (1500, 8500)
    assert summary.expected_spend_micros == 3000
    assert summary.pacing_ratio == pytest.approx(0.5)
    shares = {p.platform: p.spend_share for p in summary.platforms}
    assert shares == pytest.approx(
        {common_pb2.META: 2 / 3, common_pb2.GOOGLE: 1 / 3, common_pb2.X: 0.0}
    )
    assert summary.as_of == to_timestamp(hour(3))


def test_arm_stats_see_a_restatement_of_a_day_already_asked_about(stub) -> None:
    c = new_campaign(stub)
    days = [report(c, hour=H0 + timedelta(days=d), spend_micros=100) for d in range(-3, 1)]
    ingest(stub, batch(*days))
    span = window(H0 - timedelta(days=4), H0 + timedelta(hours=2))
    assert arm_stats(stub, c, window=span, kappas_micros=[1e9]).arms[0].spend_micros == 400
    restated = report(
        c, hour=H0 - timedelta(days=2), spend_micros=1000, version=H0 + timedelta(days=1)
    )
    ingest(stub, batch(restated))
    again = arm_stats(stub, c, window=span, kappas_micros=[1e9]).arms[0]
    assert again.spend_micros == 1300
    assert again.curves[0].exposure == pytest.approx(
        3 * -math.expm1(-100 / 1e9) + -math.expm1(-1000 / 1e9)
    )


def test_arm_stats_start_afresh_when_the_change_log_no_longer_reaches_back(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(store_module, "CHANGE_LOG_ROWS", 2)
    service = MetricsService(store_module.DuckDBMetricsStore(tmp_path / "m.duckdb"))
    start = datetime(2024, 10, 1, tzinfo=UTC)
    c = synthetic.campaign("cmp_log", arms=2, hours=24 * 5, start=start)
    service.register("alpha", c)
    end = start + timedelta(days=4)
    try:
        service.ingest_reports("alpha", synthetic.hourly_reports(c, 0, 96, seed=1))
        before = service.arm_stats("alpha", c.campaign_id, start, end).stats.spend_micros
        restated = synthetic.hourly_reports(c, 5, 1, seed=9, version_lag=timedelta(days=5))
        for hour in range(90, 96):  # later writes push the restatement out of the log
            service.ingest_reports("alpha", synthetic.hourly_reports(c, hour, 1, seed=hour))
        service.ingest_reports("alpha", restated)
        for hour in range(90, 96):
            service.ingest_reports(
                "alpha",
                synthetic.hourly_reports(c, hour, 1, seed=hour, version_lag=timedelta(days=6)),
            )
        after = service.arm_stats("alpha", c.campaign_id, start, end).stats.spend_micros
        direct = service.arm_stats(
            "alpha", c.campaign_id, start, end, include_series=True
        ).stats.spend_micros
        assert after.tolist() == direct.tolist() != before.tolist()
    finally:
        service.store.close()


def test_an_hour_restated_twice_between_reads_shows_its_latest_figures(tmp_path) -> None:
    """The hourly delivery kept in memory takes in the rows written since it was read;
    when one hour was written more than once meanwhile, the last write holds."""
    service = MetricsService(store_module.DuckDBMetricsStore(tmp_path / "m.duckdb"))
    start = datetime(2024, 10, 1, tzinfo=UTC)
    c = synthetic.campaign("cmp_twice", arms=3, hours=24 * 3, start=start)
    service.register("alpha", c)
    end = start + timedelta(hours=30)
    metrics = [Metric.SPEND, Metric.CONVERSIONS]

    def series(**options: object) -> list[list[float]]:
        got = service.timeseries("alpha", c.campaign_id, start, end, metrics, **options)
        return [values.tolist() for values in got.values]

    try:
        service.ingest_reports("alpha", synthetic.hourly_reports(c, 0, 30, seed=1))
        first = series()
        for seed, lag in ((2, 5), (3, 9)):  # hour 7 restated twice, later versions
            service.ingest_reports(
                "alpha",
                synthetic.hourly_reports(c, 7, 1, seed=seed, version_lag=timedelta(hours=lag)),
            )
        from_memory = series()
        service.hourly = HourlyDeliveryCache(service.store, HOURLY_CAPACITY_CELLS)
        assert from_memory == series() != first
    finally:
        service.store.close()


def test_cached_days_give_exact_statistics_as_the_window_end_moves(tmp_path) -> None:
    service = MetricsService(store_module.DuckDBMetricsStore(tmp_path / "m.duckdb"))
    start = datetime(2024, 10, 1, tzinfo=UTC)
    c = synthetic.campaign("cmp_moving", arms=4, hours=24 * 6, start=start)
    service.register("alpha", c)
    try:
        service.ingest_reports("alpha", synthetic.hourly_reports(c, 0, 80, seed=3))
        for hours in (74.5, 75, 78, 80, 96):  # the same whole days, then one more
            end = start + timedelta(hours=hours)
            shape = dict(discount=0.97, kappas_micros=[3e8, 4e9])
            cached = service.arm_stats("alpha", c.campaign_id, start, end, **shape).stats
            direct = service.arm_stats(
                "alpha", c.campaign_id, start, end, include_series=True, **shape
            ).stats
            assert cached.spend_micros.tolist() == direct.spend_micros.tolist()
            for name in ("discounted_spend_micros", "discounted_hours", "exposure", "log_shape"):
                np.testing.assert_allclose(getattr(cached, name), getattr(direct, name), rtol=1e-9)
    finally:
        service.store.close()


def test_arm_stats_see_an_arms_first_report_after_a_read_that_resolved_the_arm_before_it(
    tmp_path, monkeypatch
) -> None:
    """A read that took the campaign before an arm's first report committed (so before
    the arm had a default attribution window) and computed after it must not leave
    the day cached without the report: every read after the acknowledgement sees it."""
    service = MetricsService(store_module.DuckDBMetricsStore(tmp_path / "m.duckdb"))
    c = synthetic.campaign("cmp_first", arms=3, hours=24 * 30, start=H0 - timedelta(days=5))
    service.register("alpha", c)
    start, end = H0 - timedelta(days=2), H0 + timedelta(days=2)  # H0's day is whole inside
    resolved, release = threading.Event(), threading.Event()
    original = MetricsService.campaign

    def paused_campaign(self, tenant, campaign_id):  # type: ignore[no-untyped-def]
        found = original(self, tenant, campaign_id)
        if threading.current_thread().name == "reader":
            resolved.set()
            release.wait(10)
        return found

    try:
        assert service.arm_stats("alpha", c.campaign_id, start, end).stats.spend_micros[0] == 0
        monkeypatch.setattr(MetricsService, "campaign", paused_campaign)
        reader = threading.Thread(
            target=lambda: service.arm_stats("alpha", c.campaign_id, start, end), name="reader"
        )
        reader.start()
        assert resolved.wait(10)
        first = synthetic.hourly_reports(c, 5 * 24, 1, seed=1).slice(0, 1)  # arm 0, at H0
        assert service.ingest_reports("alpha", first).inserted == 1
        release.set()
        reader.join(10)
        spend = first.column("spend_micros")[0].as_py()
        assert service.arm_stats("alpha", c.campaign_id, start, end).stats.spend_micros[0] == spend
    finally:
        release.set()
        service.store.close()


# Arms enough that arms × flight hours exceed what the service keeps in memory: the
# queries then bound their hours in SQL.
@pytest.mark.parametrize("arms", [3, 300], ids=["in memory", "from the store"])
def test_queries_up_to_the_last_hour_of_year_9999_answer_the_stored_reports(
    stub, arms: int
) -> None:
    c = new_campaign(stub, arms=arms)
    ingest(stub, batch(report(c, hour=H0, spend_micros=700)))
    last = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    span = window(datetime(1, 1, 1, tzinfo=UTC), last)
    assert arm_stats(stub, c, window=span).arms[0].spend_micros == 700
    assert (
        arm_stats(stub, c, window=window(last - timedelta(days=3), last)).arms[0].spend_micros == 0
    )
    series = stub.GetTimeseries(
        metrics_pb2.GetTimeseriesRequest(
            campaign_id=c.campaign_id,
            window=window(last - timedelta(days=1), last),
            metrics=[metrics_pb2.METRIC_SPEND],
        ),
        metadata=ALPHA,
        timeout=10,
    )
    assert all(not s.points for s in series.series)
    summary = stub.GetCampaignSummary(
        metrics_pb2.GetCampaignSummaryRequest(campaign_id=c.campaign_id, as_of=to_timestamp(last)),
        metadata=ALPHA,
        timeout=10,
    )
    assert summary.spend_micros == 700


def test_arm_stats_with_a_tiny_discount_stay_exact_as_the_window_end_moves_back(stub) -> None:
    c = new_campaign(stub)
    day = datetime(2024, 10, 1, tzinfo=UTC)
    ingest(stub, batch(*[report(c, hour=day - timedelta(hours=h)) for h in range(1, 30)]))
    start = day - timedelta(days=3)
    # The same whole days, weighted to an end late in a day and then to one early in it.
    for end in (day + timedelta(hours=23), day + timedelta(minutes=30)):
        shape = dict(window=window(start, end), discount=1e-15, kappas_micros=[1e9])
        cached = arm_stats(stub, c, **shape).arms[0]
        direct = arm_stats(stub, c, include_series=True, **shape).arms[0]
        assert cached.discounted_spend_micros == pytest.approx(
            direct.discounted_spend_micros, rel=1e-9, abs=0
        )
        assert cached.curves[0].exposure == pytest.approx(
            direct.curves[0].exposure, rel=1e-9, abs=0
        )
    assert direct.discounted_spend_micros > 0
