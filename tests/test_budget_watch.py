"""Budget reuses a metrics snapshot without asking metrics while its data version
watch holds a lease, and never a stale one: on real servers, a report acknowledged
before an Allocate is in that Allocate's split, also when another watcher of the
tenant stops answering, and when metrics restarts."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jangkau.budget.allocator import MetricsGateway, campaign_from_wire
from jangkau.runtime.auth import Caller, Role, acting_as
from jangkau.runtime.channels import channel
from jangkau.runtime.server import RunningServer
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import budget_pb2, metrics_pb2
from tests import test_budget_support as support
from tests.test_budget_support import (
    RUPIAH,
    TOKENS,
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

# The GetArmStats calls metrics has served so far.
Calls = Callable[[], list[logging.LogRecord]]
# How long a watch may take to be granted its first lease.
SETTLE_SECONDS = 10.0


@pytest.fixture
def arm_stats_calls(caplog: pytest.LogCaptureFixture) -> Calls:
    """The GetArmStats calls metrics serves (its RPC log lines, at DEBUG when they succeed)."""
    caplog.set_level(logging.DEBUG, logger="jangkau.rpc")

    def calls() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "jangkau.rpc"
            and str(getattr(r, "fields", {}).get("method", "")).endswith("/GetArmStats")
        ]

    return calls


def allocate(stack: Stack, campaign_id: str) -> budget_pb2.Allocation:
    return stack.budget_stub().Allocate(
        budget_pb2.AllocateRequest(campaign_id=campaign_id, as_of=to_timestamp(in_flight(20))),
        metadata=md(),
        timeout=10,
    )


def settled(stack: Stack, campaign_id: str, calls: Calls) -> budget_pb2.Allocation:
    """Allocates until an Allocate is answered without asking metrics (the watch's
    lease runs); fails if that never happens."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        before = len(calls())
        got = allocate(stack, campaign_id)
        if len(calls()) == before:
            return got
        time.sleep(0.05)
    pytest.fail("every Allocate asked metrics: the data version watch never held a lease")


def watched_campaign(stack: Stack, calls: Calls) -> budget_pb2.Campaign:
    """A campaign with ten hours of reports, allocated until the watch holds a lease."""
    c = create(stack, wire_campaign([demographic_audience(stack)]))
    ingest(stack, [report(c, "meta-0", in_flight(h), RUPIAH, 2) for h in range(10)])
    settled(stack, c.id, calls)
    return c


def test_an_unchanged_campaign_is_allocated_without_asking_metrics(
    stack: Stack,
    arm_stats_calls,
):
    c = watched_campaign(stack, arm_stats_calls)
    first = settled(stack, c.id, arm_stats_calls)
    before = len(arm_stats_calls())
    assert [allocate(stack, c.id) for _ in range(5)] == [first] * 5
    assert len(arm_stats_calls()) == before
    assert first.spend_to_date_micros == 10 * RUPIAH


def test_a_report_acknowledged_before_an_allocate_is_in_its_split(
    stack: Stack,
    arm_stats_calls,
):
    c = watched_campaign(stack, arm_stats_calls)
    for hour in range(12, 17):
        ingest(stack, [report(c, "google-0", in_flight(hour), 5 * RUPIAH, 1)])
        before = len(arm_stats_calls())
        got = allocate(stack, c.id)
        assert got.spend_to_date_micros == (10 + 5 * (hour - 11)) * RUPIAH
        # The watch told budget of the write: it asked metrics once, for the new data.
        assert len(arm_stats_calls()) == before + 1


def test_reports_of_the_period_or_later_leave_the_split_without_asking_metrics(
    stack: Stack,
    arm_stats_calls,
):
    c = watched_campaign(stack, arm_stats_calls)
    first = settled(stack, c.id, arm_stats_calls)
    before = len(arm_stats_calls())
    # The Allocate's period starts at hour 20: its evidence is the hours before.
    for hour in (20, 21, 30):
        ingest(stack, [report(c, "google-0", in_flight(hour), 5 * RUPIAH, 1)])
        assert allocate(stack, c.id) == first
    assert len(arm_stats_calls()) == before
    # An hour before the period, written late (a restatement's way), is in the next split.
    ingest(stack, [report(c, "google-0", in_flight(19), 5 * RUPIAH, 1)])
    got = allocate(stack, c.id)
    assert got.spend_to_date_micros == first.spend_to_date_micros + 5 * RUPIAH
    assert len(arm_stats_calls()) == before + 1


def test_a_watcher_that_stops_answering_delays_writes_but_nothing_goes_stale(
    stack: Stack,
    arm_stats_calls,
):
    c = watched_campaign(stack, arm_stats_calls)
    # A second watcher of the tenant takes a lease, then never applies a notice.
    requests: queue.Queue[metrics_pb2.WatchDataVersionsRequest | None] = queue.Queue()
    requests.put(metrics_pb2.WatchDataVersionsRequest(renewal=1))
    silent = stack.metrics_stub().WatchDataVersions(
        iter(requests.get, None), metadata=md(), timeout=30
    )
    assert next(silent).renewal == 1
    try:
        ingest(stack, [report(c, "google-0", in_flight(12), 5 * RUPIAH, 1)])
        assert allocate(stack, c.id).spend_to_date_micros == 15 * RUPIAH
        # Its lease has run out: writes no longer wait for it.
        ingest(stack, [report(c, "google-0", in_flight(13), 5 * RUPIAH, 1)])
        assert allocate(stack, c.id).spend_to_date_micros == 20 * RUPIAH
    finally:
        requests.put(None)
        silent.cancel()


def test_a_metrics_restart_ends_the_lease_and_nothing_goes_stale(
    stack: Stack,
    arm_stats_calls,
):
    c = watched_campaign(stack, arm_stats_calls)
    settings = stack.metrics.settings
    stack.metrics.stop(grace=0.5)
    stack.metrics = RunningServer(stack.metrics.definition, settings)
    stack.metrics.start()
    ingest(stack, [report(c, "google-0", in_flight(12), 5 * RUPIAH, 1)])
    assert allocate(stack, c.id).spend_to_date_micros == 15 * RUPIAH
    # And the watch comes back.
    assert settled(stack, c.id, arm_stats_calls).spend_to_date_micros == 15 * RUPIAH


def test_allocates_asking_the_same_at_once_share_one_call(stack: Stack):
    """A gateway of its own on a real metrics server, whose GetArmStats calls are
    slowed down so that eight concurrent asks of one snapshot overlap."""
    c = create(stack, wire_campaign([demographic_audience(stack)]))
    ingest(stack, [report(c, "meta-0", in_flight(h), RUPIAH, 2) for h in range(10)])
    ch = channel(f"127.0.0.1:{stack.metrics.port}")
    gateway = MetricsGateway(ch)
    calls: list[float] = []
    call_lock = threading.Lock()
    ask = gateway._arm_stats

    def slow_ask(request: Any) -> Any:
        with call_lock:
            calls.append(time.monotonic())
        time.sleep(0.3)
        return ask(request)

    gateway._arm_stats = slow_ask
    caller = Caller(tenant="alpha", role=Role.BUYER, token=TOKENS["alpha"])
    campaign = campaign_from_wire(c, "alpha")
    window = (campaign.flight_start, in_flight(20))

    def snapshot(_: int) -> Any:
        with acting_as(caller):
            return gateway.snapshot(campaign, window, 0.98)

    try:
        snapshot(0)  # starts the tenant's watch
        watch = gateway.watches.of(caller)
        assert watch is not None
        deadline = time.monotonic() + SETTLE_SECONDS
        while watch.session() is None:
            assert time.monotonic() < deadline, "the watch never held a lease"
            time.sleep(0.05)
        ingest(stack, [report(c, "google-0", in_flight(12), 5 * RUPIAH, 1)])
        before = len(calls)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(snapshot, range(8)))
        assert len(calls) == before + 1
        assert {version for version, _ in got} == {got[0][0]}
        assert all(s.spend_to_date_micros == 15 * RUPIAH for _, s in got)
    finally:
        gateway.close()
        ch.close()
