"""Allocate reuses the metrics snapshot of an unchanged campaign (GetArmStats
`if_version_not`), and never a stale one: a report written since, or a metrics
service restarted since, gives a fresh read."""

from __future__ import annotations

import pytest

from jangkau.budget import allocator
from jangkau.runtime.server import RunningServer
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import budget_pb2
from tests import test_budget_support as support
from tests.test_budget_support import (
    RUPIAH,
    Stack,
    create,
    demographic_audience,
    in_flight,
    ingest,
    md,
    report,
    wire_campaign,
)

stack = support.stack
shared_stack = support.shared_stack


@pytest.fixture(scope="module")
def audience_id(shared_stack: Stack) -> str:
    return demographic_audience(shared_stack)


def allocate(stack: Stack, campaign_id: str, hours: int, seed: int = 3) -> budget_pb2.Allocation:
    return stack.budget_stub().Allocate(
        budget_pb2.AllocateRequest(
            campaign_id=campaign_id, as_of=to_timestamp(in_flight(hours)), seed=seed
        ),
        metadata=md(),
        timeout=10,
    )


def test_repeated_allocate_of_an_unchanged_campaign_gives_the_same_split(
    shared_stack, audience_id, monkeypatch
):
    built = []
    original = allocator._snapshot_from

    def counted(c, response):  # type: ignore[no-untyped-def]
        built.append(c.campaign_id)
        return original(c, response)

    monkeypatch.setattr(allocator, "_snapshot_from", counted)
    c = create(shared_stack, wire_campaign([audience_id]))
    ingest(shared_stack, [report(c, "meta-0", in_flight(h), RUPIAH, 2) for h in range(10)])
    first = allocate(shared_stack, c.id, 20)
    assert [allocate(shared_stack, c.id, 20) for _ in range(3)] == [first] * 3
    assert first.spend_to_date_micros == 10 * RUPIAH
    # Metrics' statistics were decoded once: the later calls were answered not_modified.
    assert built.count(c.id) == 1


def test_a_report_written_after_an_allocate_is_seen_by_the_next(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    ingest(shared_stack, [report(c, "meta-0", in_flight(h), RUPIAH, 2) for h in range(10)])
    assert allocate(shared_stack, c.id, 20).spend_to_date_micros == 10 * RUPIAH
    ingest(shared_stack, [report(c, "google-0", in_flight(12), 5 * RUPIAH, 1)])
    got = allocate(shared_stack, c.id, 20)
    assert got.spend_to_date_micros == 15 * RUPIAH
    assert got.hours_observed == 10


def test_a_report_written_after_a_metrics_restart_is_seen(stack: Stack):
    audience = demographic_audience(stack)
    c = create(stack, wire_campaign([audience]))
    ingest(stack, [report(c, "meta-0", in_flight(0), RUPIAH, 2)])
    assert allocate(stack, c.id, 20).spend_to_date_micros == RUPIAH
    # As many writes after the restart as before it: only the epoch tells them apart.
    settings = stack.metrics.settings
    stack.metrics.stop(grace=0.5)
    stack.metrics = RunningServer(stack.metrics.definition, settings)
    stack.metrics.start()
    ingest(stack, [report(c, "meta-0", in_flight(1), RUPIAH, 2)])
    ingest(stack, [report(c, "meta-0", in_flight(2), RUPIAH, 2)])
    assert allocate(stack, c.id, 20).spend_to_date_micros == 3 * RUPIAH
