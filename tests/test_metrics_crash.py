"""Durability: the metrics server runs as a real `jangkau serve metrics`
subprocess, reports stream into it, and it is killed with SIGKILL at a random
moment, again and again. After each restart every acknowledged batch is stored
exactly once, and every batch is either wholly stored or not at all."""

from __future__ import annotations

import functools
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jangkau.metrics import codec, synthetic
from jangkau.runtime.channels import CHANNEL_OPTIONS
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc
from tests.conftest import TOKENS, bearer

ALPHA = bearer(TOKENS["alpha"])
ARMS = 50
HOURS_PER_BATCH = 20  # 1,000 rows a batch
BATCHES = 4000
CYCLES = 10
START = datetime(2001, 1, 1, tzinfo=UTC)
CAMPAIGN = synthetic.campaign("cmp_crash", arms=ARMS, hours=BATCHES * HOURS_PER_BATCH, start=START)


def batch_table(i: int) -> pa.Table:
    return synthetic.hourly_reports(CAMPAIGN, i * HOURS_PER_BATCH, HOURS_PER_BATCH, seed=i)


class Feeder:
    """Streams batches from `first` on until the server dies; records the acks."""

    def __init__(self, address: str, first: int) -> None:
        self.address = address
        self.next = first
        self.acked: list[tuple[int, metrics_pb2.IngestReportsAck]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _requests(self):  # type: ignore[no-untyped-def]
        while self.next < BATCHES:
            i = self.next
            self.next += 1
            yield metrics_pb2.ReportBatch(
                batch_id=str(i), arrow_ipc=codec.reports_to_arrow(batch_table(i))
            )

    def _run(self) -> None:
        with grpc.insecure_channel(self.address, CHANNEL_OPTIONS) as ch:
            stub = metrics_pb2_grpc.MetricsServiceStub(ch)
            try:
                for ack in stub.IngestReports(self._requests(), metadata=ALPHA, timeout=60):
                    self.acked.append((int(ack.batch_id), ack))
            except grpc.RpcError:
                pass  # the server was killed


def stored_hours(address: str, upto: int) -> dict[int, tuple[int, int]]:
    """(spend, impressions) of the whole campaign per stored hour (from START), over
    the hours of batches below `upto`."""
    end = START + timedelta(hours=upto * HOURS_PER_BATCH)
    with grpc.insecure_channel(address, CHANNEL_OPTIONS) as ch:
        reply = metrics_pb2_grpc.MetricsServiceStub(ch).GetTimeseries(
            metrics_pb2.GetTimeseriesRequest(
                campaign_id=CAMPAIGN.campaign_id,
                window=common_pb2.TimeRange(start=to_timestamp(START), end=to_timestamp(end)),
                group_by=metrics_pb2.BY_CAMPAIGN,
                metrics=[metrics_pb2.METRIC_SPEND, metrics_pb2.METRIC_IMPRESSIONS],
            ),
            metadata=ALPHA,
            timeout=30,
        )
    return {
        (p.start.seconds - int(START.timestamp())) // 3600: (int(p.values[0]), int(p.values[1]))
        for series in reply.series
        for p in series.points
    }


@functools.cache
def sent_hours(i: int) -> dict[int, tuple[int, int]]:
    """(spend, impressions) per hour of batch i, as sent."""
    table = batch_table(i)
    first = i * HOURS_PER_BATCH
    sums = table.group_by("hour").aggregate([("spend_micros", "sum"), ("impressions", "sum")])
    hours = pc.divide(
        pc.subtract(sums.column("hour").cast(pa.int64()), int(START.timestamp() * 1e6)),
        3_600_000_000,
    ).to_pylist()
    out = {
        h: (s, m)
        for h, s, m in zip(
            hours,
            sums.column("spend_micros_sum").to_pylist(),
            sums.column("impressions_sum").to_pylist(),
            strict=True,
        )
    }
    assert sorted(out) == list(range(first, first + HOURS_PER_BATCH))
    return out


@pytest.mark.slow
def test_acknowledged_batches_survive_sigkill_exactly_once(start_cluster) -> None:
    cluster = start_cluster("metrics")
    address = cluster.addresses["metrics"]
    with grpc.insecure_channel(address, CHANNEL_OPTIONS) as ch:
        metrics_pb2_grpc.MetricsServiceStub(ch).RegisterCampaign(
            codec.register_request(CAMPAIGN), metadata=ALPHA, timeout=10
        )
    rng = random.Random(20241127)
    acked: set[int] = set()
    first = 0
    for _ in range(CYCLES):
        feeder = Feeder(address, first)
        feeder.thread.start()
        time.sleep(rng.uniform(0.1, 1.0))
        cluster.kill("metrics")
        feeder.thread.join(30)
        assert not feeder.thread.is_alive()
        for i, ack in feeder.acked:
            assert (ack.inserted, ack.replaced, ack.stale) == (ARMS * HOURS_PER_BATCH, 0, 0) or (
                ack.unchanged == ARMS * HOURS_PER_BATCH
            ), ack
            acked.add(i)
        cluster.spawn("metrics")
        cluster.wait("metrics")
        stored = stored_hours(address, feeder.next)
        for i in range(feeder.next):
            sent = sent_hours(i)
            present = [h for h in sent if h in stored]
            # Wholly there (each row once: the sums match) or not at all.
            assert present in ([], list(sent)), (i, present)
            assert not present or all(stored[h] == sent[h] for h in sent), i
            if i in acked:
                assert present, f"acknowledged batch {i} is missing"
        # A client resends from its first unacknowledged batch: replays change nothing.
        first = max(acked, default=-1) + 1
        assert first < BATCHES
    assert len(acked) > CYCLES  # the kills landed mid-stream, not before the first ack
