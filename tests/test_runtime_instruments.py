"""The metric instruments are recorded by the services that own them: ingest rows
and rejects by metrics, allocations and allocated spend by budget."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from jangkau.runtime.times import to_timestamp
from jangkau.v1 import budget_pb2, metrics_pb2
from tests.test_budget_support import (
    create,
    demographic_audience,
    in_flight,
    md,
    report,
    stack,  # noqa: F401  (fixture)
    wire_campaign,
)

_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    """This process's meter provider, reading into memory (the services run in-process)."""
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        pytest.skip("another meter provider is already installed in this process")
    return _READER


def totals(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    """Counter sums by (instrument, jangkau.kind attribute)."""
    found: dict[tuple[str, str], float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    kind = str(point.attributes.get("jangkau.kind", ""))
                    key = (metric.name, kind)
                    if hasattr(point, "value"):
                        found[key] = found.get(key, 0) + point.value
    return found


def test_ingest_allocate_and_rebalance_record_their_counters(reader, stack):  # noqa: F811
    before = totals(reader)
    audience = demographic_audience(stack)
    campaign = create(stack, wire_campaign([audience]))
    hour = in_flight(2)
    rows = [report(campaign, "meta-0", hour, 5_000_000_000, 3.0)]
    rows.append(report(campaign, "google-0", hour, 4_000_000_000, 2.0))
    metrics_stub = stack.metrics_stub()
    acks = list(
        metrics_stub.IngestReports(
            iter([metrics_pb2.ReportBatch(rows=metrics_pb2.ReportRows(rows=rows))]),
            metadata=md(),
            timeout=10,
        )
    )
    assert acks[0].inserted == 2
    bad = report(campaign, "meta-0", hour + timedelta(hours=1), 1, 1.0)
    bad.clicks = bad.impressions + 1
    with pytest.raises(grpc.RpcError):
        list(
            metrics_stub.IngestReports(
                iter([metrics_pb2.ReportBatch(rows=metrics_pb2.ReportRows(rows=[bad, bad, bad]))]),
                metadata=md(),
                timeout=10,
            )
        )
    stack.budget_stub().Allocate(
        budget_pb2.AllocateRequest(campaign_id=campaign.id, as_of=to_timestamp(in_flight(3))),
        metadata=md(),
        timeout=10,
    )
    decision = stack.budget_stub().Rebalance(
        budget_pb2.RebalanceRequest(campaign_id=campaign.id, as_of=to_timestamp(in_flight(3))),
        metadata=md(),
        timeout=10,
    )
    after = totals(reader)

    def delta(name: str, kind: str = "") -> float:
        return after.get((name, kind), 0) - before.get((name, kind), 0)

    assert delta("jangkau.ingest.rows", "report") == 2
    assert delta("jangkau.ingest.rejects", "report") == 3
    assert delta("jangkau.allocations") == 2
    assert delta("jangkau.spend.allocated") == decision.allocation.allocated_micros > 0
