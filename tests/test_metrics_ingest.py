"""Ingest behaviour: restated reports replace only with a newer version, replays
change nothing, events count once (also across restarts), late events are
refused and counted, and registrations never lose an arm's history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pyarrow as pa
import pytest

from jangkau.metrics import codec, synthetic
from jangkau.metrics.service import MetricsService
from jangkau.metrics.store import DuckDBMetricsStore
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import metrics_pb2, metrics_pb2_grpc
from tests.test_metrics_support import (
    ALPHA,
    H0,
    MetricsApi,
    arm_stats,
    batch,
    event,
    ingest,
    new_campaign,
    report,
    shared_metrics,  # noqa: F401 (fixture)
    start_metrics,
)


@pytest.fixture
def stub(shared_metrics: MetricsApi) -> metrics_pb2_grpc.MetricsServiceStub:  # noqa: F811
    return shared_metrics.stub


def counts(ack: metrics_pb2.IngestReportsAck) -> tuple[int, int, int, int]:
    return (ack.inserted, ack.replaced, ack.unchanged, ack.stale)


def test_each_batch_is_acknowledged_in_order_with_its_id(stub) -> None:
    c = new_campaign(stub)
    batches = [batch(report(c, hour=H0 + timedelta(hours=i)), batch_id=f"b{i}") for i in range(5)]
    acks, error = ingest(stub, *batches)
    assert error is None
    assert [a.batch_id for a in acks] == [f"b{i}" for i in range(5)]
    assert all(counts(a) == (1, 0, 0, 0) for a in acks)


def test_a_replayed_batch_changes_nothing(stub) -> None:
    c = new_campaign(stub)
    rows = [report(c, arm=a, hour=H0 + timedelta(hours=h)) for a in range(3) for h in range(4)]
    ingest(stub, batch(*rows))
    before = arm_stats(stub, c)
    acks, _ = ingest(stub, batch(*rows), batch(*rows))
    assert [counts(a) for a in acks] == [(0, 0, 12, 0), (0, 0, 12, 0)]
    assert arm_stats(stub, c) == before


def test_a_restatement_with_a_newer_version_replaces_the_report(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c, spend_micros=100, version=H0 + timedelta(hours=2))))
    acks, _ = ingest(stub, batch(report(c, spend_micros=250, version=H0 + timedelta(days=3))))
    assert counts(acks[0]) == (0, 1, 0, 0)
    stats = arm_stats(stub, c).arms[0]
    assert (stats.spend_micros, stats.hours_observed) == (250, 1)  # replaced, never added


def test_an_older_version_arriving_late_changes_nothing(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c, spend_micros=300, version=H0 + timedelta(days=3))))
    acks, _ = ingest(stub, batch(report(c, spend_micros=999, version=H0 + timedelta(hours=2))))
    assert counts(acks[0]) == (0, 0, 0, 1)
    assert arm_stats(stub, c).arms[0].spend_micros == 300


def test_a_key_twice_in_one_batch_keeps_the_newest_version(stub) -> None:
    c = new_campaign(stub)
    newer = report(c, spend_micros=7, version=H0 + timedelta(hours=5))
    older = report(c, spend_micros=3, version=H0 + timedelta(hours=3))
    acks, _ = ingest(stub, batch(older, newer, older))
    assert counts(acks[0]) == (1, 1, 0, 1)
    assert arm_stats(stub, c).arms[0].spend_micros == 7


def test_reports_under_another_attribution_window_are_kept_apart(stub) -> None:
    c = new_campaign(stub)
    acks, _ = ingest(
        stub,
        batch(
            report(c, attribution_window="7d_click", conversions=5.0),
            report(c, attribution_window="1d_click", conversions=2.0),
        ),
    )
    assert counts(acks[0]) == (2, 0, 0, 0)
    default = arm_stats(stub, c).arms[0]
    named = arm_stats(stub, c, attribution_window="1d_click").arms[0]
    # The arm's first window by default: spend, which both repeat, counts once.
    assert (default.conversions, default.spend_micros, default.hours_observed) == (
        5.0,
        1_000_000_000,
        1,
    )
    assert (named.conversions, named.spend_micros) == (2.0, 1_000_000_000)


def as_of(hours: float) -> object:
    return to_timestamp(H0 + timedelta(hours=hours))


def test_an_event_id_counts_once_within_and_across_requests(stub) -> None:
    c = new_campaign(stub)
    first = stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(events=[event(c, "e1"), event(c, "e1")], as_of=as_of(1)),
        metadata=ALPHA,
    )
    again = stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(events=[event(c, "e1"), event(c, "e2")], as_of=as_of(1)),
        metadata=ALPHA,
    )
    assert (first.inserted, first.duplicates) == (1, 1)
    assert (again.inserted, again.duplicates) == (1, 1)
    assert arm_stats(stub, c).arms[0].event_conversions == 2


def test_a_late_event_is_refused_and_counted(stub) -> None:
    c = new_campaign(stub)
    reply = stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(
            events=[event(c, "old", time=H0 - timedelta(days=8)), event(c, "fresh")],
            as_of=as_of(1),
        ),
        metadata=ALPHA,
    )
    assert (reply.inserted, reply.duplicates, dict(reply.refused)) == (1, 0, {"late": 1})


def test_the_lateness_window_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JANGKAU_EVENT_LATENESS_HOURS", "2")
    api = start_metrics(tmp_path)
    try:
        c = new_campaign(api.stub)
        reply = api.stub.IngestEvents(
            metrics_pb2.IngestEventsRequest(
                events=[event(c, "a", time=H0 - timedelta(hours=3)), event(c, "b", time=H0)],
                as_of=as_of(0),
            ),
            metadata=ALPHA,
        )
        assert (reply.inserted, dict(reply.refused)) == (1, {"late": 1})
    finally:
        api.close()


def test_reports_and_event_ids_survive_a_restart(tmp_path: Path) -> None:
    api = start_metrics(tmp_path)
    c = new_campaign(api.stub)
    ingest(api.stub, batch(report(c, spend_micros=42)))
    api.stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(events=[event(c, "e1")], as_of=as_of(1)), metadata=ALPHA
    )
    api.close()
    api = start_metrics(tmp_path)
    try:
        acks, _ = ingest(api.stub, batch(report(c, spend_micros=42)))
        again = api.stub.IngestEvents(
            metrics_pb2.IngestEventsRequest(events=[event(c, "e1")], as_of=as_of(1)),
            metadata=ALPHA,
        )
        assert counts(acks[0]) == (0, 0, 1, 0)
        assert (again.inserted, again.duplicates) == (0, 1)
        assert arm_stats(api.stub, c).arms[0].spend_micros == 42
    finally:
        api.close()


def test_an_older_revision_changes_nothing(stub) -> None:
    c = new_campaign(stub)
    request = codec.register_request(c)
    request.revision = 5
    request.total_budget_micros = 123
    assert stub.RegisterCampaign(request, metadata=ALPHA).applied
    request.revision = 4
    request.total_budget_micros = 456
    assert not stub.RegisterCampaign(request, metadata=ALPHA).applied
    summary = stub.GetCampaignSummary(
        metrics_pb2.GetCampaignSummaryRequest(campaign_id=c.campaign_id), metadata=ALPHA
    )
    assert summary.total_budget_micros == 123


def test_an_arm_dropped_from_a_newer_revision_keeps_its_history(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c, arm=2, spend_micros=77)))
    request = codec.register_request(c)
    request.revision = 2
    del request.arms[2]
    request.arms.append(metrics_pb2.ArmRef(arm_id="arm_new", platform=1, audience_id="aud_x"))
    assert stub.RegisterCampaign(request, metadata=ALPHA).applied
    arms = {a.arm_id: a for a in arm_stats(stub, c).arms}
    assert sorted(arms) == sorted([a.arm_id for a in c.arms] + ["arm_new"])
    assert arms[c.arms[2].arm_id].spend_micros == 77
    acks, error = ingest(
        stub,
        batch(report(c, hour=H0 + timedelta(hours=1), arm_id="arm_new", platform=1)),
    )
    assert error is None and acks[0].inserted == 1


def test_a_batch_of_ten_thousand_rows_is_one_acknowledged_commit(stub) -> None:
    c = new_campaign(stub, arms=100)
    table = synthetic.hourly_reports(c, 0, 100, seed=7)
    acks, error = ingest(stub, metrics_pb2.ReportBatch(arrow_ipc=codec.reports_to_arrow(table)))
    assert error is None and counts(acks[0]) == (10_000, 0, 0, 0)
    assert sum(a.hours_observed for a in arm_stats(stub, c).arms) == 10_000


def test_a_stream_ended_by_the_client_keeps_what_was_acknowledged(stub) -> None:
    c = new_campaign(stub)
    call = stub.IngestReports(
        iter([batch(report(c), batch_id="one"), batch(report(c, hour=H0 + timedelta(hours=1)))]),
        metadata=ALPHA,
    )
    assert next(call).batch_id == "one"
    call.cancel()
    with pytest.raises(grpc.RpcError):
        list(call)
    assert arm_stats(stub, c).arms[0].hours_observed >= 1


def test_batches_on_one_stream_apply_in_order(stub) -> None:
    c = new_campaign(stub)
    versions = [H0 + timedelta(hours=h) for h in (2, 4, 3)]
    batches = [batch(report(c, version=v), batch_id=str(i)) for i, v in enumerate(versions)]
    acks, error = ingest(stub, *batches)
    assert error is None
    assert [counts(a) for a in acks] == [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 1)]


def test_batches_sharing_one_commit_are_counted_each_and_stop_at_a_refusal(tmp_path: Path) -> None:
    service = MetricsService(DuckDBMetricsStore(tmp_path / "m.duckdb"))
    c = synthetic.campaign("cmp_group", arms=2)
    service.register("alpha", c)
    first = synthetic.hourly_reports(c, 0, 3, seed=1)
    restated = synthetic.hourly_reports(c, 0, 2, seed=2, version_lag=timedelta(hours=5))
    bad = synthetic.hourly_reports(c, 5, 1, seed=3)
    bad = bad.set_column(bad.schema.get_field_index("currency"), "currency", pa.array(["USD"] * 2))
    after = synthetic.hourly_reports(c, 9, 1, seed=4)
    try:
        done, refusal = service.ingest_batches("alpha", [first, restated, bad, after])
        assert [(d.inserted, d.replaced) for d in done] == [(6, 0), (0, 4)]
        assert refusal is not None and refusal.message.startswith("rows[0].currency")
        stored = service.store.report_rows(service.campaign("alpha", c.campaign_id))
        assert stored.num_rows == 6  # neither the refused batch nor the one after it
    finally:
        service.store.close()
