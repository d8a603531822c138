"""Traces across processes: audience, metrics and budget run as real
subprocesses, each writing its finished spans to its own file
(JANGKAU_TRACE_FILE=spans-{service}.jsonl). A buyer's call carries a W3C
`traceparent` made here; the spans the services write must form one trace under
it, with the budget service's business spans."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from jangkau.client import Jangkau
from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.launcher import Cluster
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, budget_pb2_grpc, common_pb2, metrics_pb2

# The module starts three services once (about ten seconds).
pytestmark = pytest.mark.slow

SERVICES = ("audience", "metrics", "budget")
FLIGHT_START = datetime(2024, 9, 25, tzinfo=UTC)
ARMS = 2


@dataclass(frozen=True)
class CallerContext:
    """The trace context of a caller outside jangkau, sent as `traceparent`."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> CallerContext:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            ("authorization", f"Bearer {DEV_TOKEN}"),
            ("traceparent", f"00-{self.trace_id}-{self.span_id}-01"),
        )


@dataclass(frozen=True)
class Traced:
    campaign_id: str
    create: CallerContext
    allocate: CallerContext
    # Every span each service wrote, by service.
    spans: dict[str, list[dict]]

    def of_trace(self, context: CallerContext, service: str | None = None) -> list[dict]:
        return [
            span
            for name, spans in self.spans.items()
            if service in (None, name)
            for span in spans
            if span["trace_id"] == context.trace_id
        ]


def campaign(audience_id: str) -> budget_pb2.Campaign:
    return budget_pb2.Campaign(
        name="Pilgub Jabar",
        kind=common_pb2.POLITICAL,
        currency="IDR",
        total_budget_micros=5_000_000_000 * 1_000_000,
        flight=common_pb2.TimeRange(
            start=to_timestamp(FLIGHT_START),
            end=to_timestamp(datetime(2024, 11, 27, tzinfo=UTC)),
        ),
        political_authorization=True,
        arms=[
            budget_pb2.Arm(id="meta-muda", platform=common_pb2.META, audience_id=audience_id),
            budget_pb2.Arm(id="google-muda", platform=common_pb2.GOOGLE, audience_id=audience_id),
        ],
    )


def reports(campaign_id: str, hours: int) -> list[metrics_pb2.ReportBatch]:
    rows = [
        metrics_pb2.HourlyReport(
            campaign_id=campaign_id,
            arm_id=arm_id,
            platform=platform,
            hour=to_timestamp(FLIGHT_START + timedelta(hours=h)),
            attribution_window="7d_click",
            impressions=20_000,
            reach=16_000,
            clicks=240,
            conversions=float(3 + h % 4),
            spend_micros=400_000 * 1_000_000,
            currency="IDR",
            version=to_timestamp(FLIGHT_START + timedelta(hours=h + 1)),
        )
        for h in range(hours)
        for arm_id, platform in (("meta-muda", common_pb2.META), ("google-muda", common_pb2.GOOGLE))
    ]
    return [metrics_pb2.ReportBatch(batch_id="history", rows=metrics_pb2.ReportRows(rows=rows))]


def read_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """One CreateCampaign and one Allocate, each under a context made here; the
    spans are read after the services stopped (every span flushed)."""
    tmp = tmp_path_factory.mktemp("traces")
    trace_file = tmp / "spans-{service}.jsonl"
    cluster = Cluster(
        tmp / "data",
        SERVICES,
        free_ports=True,
        extra_env={"JANGKAU_TRACE_FILE": str(trace_file), "JANGKAU_GRACE_SECONDS": "1"},
    )
    create, allocate = CallerContext.new(), CallerContext.new()
    with cluster:
        addresses = cluster.addresses
        with Jangkau(
            audience_addr=addresses["audience"],
            budget_addr=addresses["budget"],
            metrics_addr=addresses["metrics"],
        ) as jk:
            audience = jk.audience.create_audience(
                "Jabar muda",
                audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
            )
        with grpc.insecure_channel(addresses["budget"]) as ch:
            budget = budget_pb2_grpc.BudgetServiceStub(ch)
            created = budget.CreateCampaign(
                budget_pb2.CreateCampaignRequest(campaign=campaign(audience.id)),
                metadata=create.metadata(),
                timeout=30,
            )
            with Jangkau(
                audience_addr=addresses["audience"],
                budget_addr=addresses["budget"],
                metrics_addr=addresses["metrics"],
            ) as jk:
                jk.metrics.ingest_reports(reports(created.id, hours=24))
            budget.Allocate(
                budget_pb2.AllocateRequest(
                    campaign_id=created.id,
                    as_of=to_timestamp(FLIGHT_START + timedelta(hours=24)),
                ),
                metadata=allocate.metadata(),
                timeout=30,
            )
    spans = {name: read_spans(tmp / f"spans-{name}.jsonl") for name in SERVICES}
    yield Traced(created.id, create, allocate, spans)


def server_span(spans: list[dict], method: str) -> dict:
    found = [s for s in spans if s["kind"] == "SERVER" and s["name"].endswith(f"/{method}")]
    assert len(found) == 1, f"{len(found)} server spans of {method}: {spans}"
    return found[0]


def test_one_allocate_call_is_one_trace_in_the_budget_and_metrics_services(traced: Traced):
    assert traced.of_trace(traced.allocate, "budget")
    assert traced.of_trace(traced.allocate, "metrics")


def test_the_budget_server_span_is_a_child_of_the_callers_context(traced: Traced):
    span = server_span(traced.of_trace(traced.allocate, "budget"), "Allocate")
    assert span["name"] == "jangkau.v1.BudgetService/Allocate"
    assert span["parent_span_id"] == traced.allocate.span_id


def test_metrics_serves_the_budget_services_call_as_a_child_of_its_client_span(traced: Traced):
    budget_spans = {s["span_id"]: s for s in traced.of_trace(traced.allocate, "budget")}
    metrics_servers = [
        s for s in traced.of_trace(traced.allocate, "metrics") if s["kind"] == "SERVER"
    ]
    assert metrics_servers
    for span in metrics_servers:
        parent = budget_spans.get(span["parent_span_id"])
        assert parent is not None, f"{span['name']} has no parent in the budget service"
        assert parent["kind"] == "CLIENT"


def test_every_span_of_an_allocate_trace_descends_from_the_callers_context(traced: Traced):
    spans = traced.of_trace(traced.allocate)
    known = {s["span_id"] for s in spans} | {traced.allocate.span_id}
    orphans = [s["name"] for s in spans if s["parent_span_id"] not in known]
    assert not orphans


def test_allocate_records_allocate_posterior_and_solve_spans(traced: Traced):
    spans = traced.of_trace(traced.allocate, "budget")
    by_name = {s["name"]: s for s in spans}
    assert {"allocate", "posterior", "solve"} <= set(by_name), sorted(by_name)
    by_id = {s["span_id"]: s for s in spans}

    def ancestors(span: dict) -> Iterator[str]:
        while (span := by_id.get(span["parent_span_id"])) is not None:
            yield span["name"]

    server = server_span(spans, "Allocate")
    assert server["name"] in ancestors(by_name["allocate"])
    assert "allocate" in ancestors(by_name["posterior"])
    assert "allocate" in ancestors(by_name["solve"])


def test_the_allocate_span_names_the_campaign_its_arms_and_the_period_budget(traced: Traced):
    spans = traced.of_trace(traced.allocate, "budget")
    allocate = next((s for s in spans if s["name"] == "allocate"), None)
    assert allocate is not None, sorted(s["name"] for s in spans)
    attributes = allocate["attributes"]
    assert attributes.get("jangkau.campaign_id") == traced.campaign_id
    assert attributes.get("jangkau.arms") == ARMS
    assert int(attributes.get("jangkau.period_budget_micros", -1)) > 0, attributes


def test_creating_a_campaign_is_one_trace_across_budget_audience_and_metrics(traced: Traced):
    server_span(traced.of_trace(traced.create, "budget"), "CreateCampaign")
    assert [s for s in traced.of_trace(traced.create, "audience") if s["kind"] == "SERVER"]
    assert [s for s in traced.of_trace(traced.create, "metrics") if s["kind"] == "SERVER"]
    spans = traced.of_trace(traced.create)
    known = {s["span_id"] for s in spans} | {traced.create.span_id}
    assert not [s["name"] for s in spans if s["parent_span_id"] not in known]
