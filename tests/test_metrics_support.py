"""Shared pieces of the metrics tests: a metrics server on a free port (one per
module, or one per test), and builders of reports, batches and events."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from jangkau.metrics import codec, synthetic
from jangkau.metrics.domain import Campaign
from jangkau.runtime.server import RunningServer, load_definition
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc
from tests.conftest import TOKENS, bearer, settings_for, write_tokens

ALPHA = bearer(TOKENS["alpha"])
ALPHA_VIEWER = bearer(TOKENS["alpha_viewer"])
BETA = bearer(TOKENS["beta"])
H0 = datetime(2024, 10, 1, 8, tzinfo=UTC)
_ids = itertools.count()


@dataclass
class MetricsApi:
    server: RunningServer
    channel: grpc.Channel
    stub: metrics_pb2_grpc.MetricsServiceStub

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=0.5)


def start_metrics(root: Path) -> MetricsApi:
    settings = replace(
        settings_for(root / "metrics", write_tokens(root / "tokens.json")), max_workers=4
    )
    server = RunningServer(load_definition("metrics"), settings)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return MetricsApi(server, channel, metrics_pb2_grpc.MetricsServiceStub(channel))


@pytest.fixture(scope="module")
def shared_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsApi]:
    """One server for a module's tests; each test registers campaigns of its own."""
    api = start_metrics(tmp_path_factory.mktemp("metrics"))
    yield api
    api.close()


def new_campaign(
    stub: metrics_pb2_grpc.MetricsServiceStub,
    metadata: tuple = ALPHA,
    arms: int = 3,
    campaign_id: str | None = None,
) -> Campaign:
    """Registers a campaign with a fresh id: arms alternate META, GOOGLE, X; the
    flight runs 30 days from five days before H0."""
    campaign = synthetic.campaign(
        campaign_id or f"cmp_{next(_ids):04d}",
        arms=arms,
        hours=24 * 30,
        start=H0 - timedelta(days=5),
    )
    stub.RegisterCampaign(codec.register_request(campaign), metadata=metadata, timeout=10)
    return campaign


def _stamp(moment: object) -> object:
    """Datetimes become Timestamps; a Timestamp or None (unset) is kept."""
    return to_timestamp(moment) if isinstance(moment, datetime) else moment


def report(
    campaign: Campaign, arm: int = 0, hour: datetime = H0, **fields: object
) -> metrics_pb2.HourlyReport:
    values: dict[str, object] = dict(
        campaign_id=campaign.campaign_id,
        arm_id=campaign.arms[arm].arm_id,
        platform=int(campaign.arms[arm].platform),
        hour=hour,
        attribution_window="7d_click",
        impressions=1000,
        reach=800,
        clicks=20,
        conversions=2.0,
        conversion_value_micros=5_000_000,
        spend_micros=1_000_000_000,
        currency=campaign.currency,
        version=hour + timedelta(hours=2) if isinstance(hour, datetime) else None,
    )
    values.update(fields)
    values["hour"] = _stamp(values["hour"])
    values["version"] = _stamp(values["version"])
    return metrics_pb2.HourlyReport(**values)  # type: ignore[arg-type]


def batch(*rows: metrics_pb2.HourlyReport, batch_id: str = "") -> metrics_pb2.ReportBatch:
    return metrics_pb2.ReportBatch(batch_id=batch_id, rows=metrics_pb2.ReportRows(rows=rows))


def ingest(
    stub: metrics_pb2_grpc.MetricsServiceStub,
    *batches: metrics_pb2.ReportBatch,
    metadata: tuple = ALPHA,
) -> tuple[list[metrics_pb2.IngestReportsAck], grpc.RpcError | None]:
    """The acks received, and the error that ended the call (None if it did not fail)."""
    acks: list[metrics_pb2.IngestReportsAck] = []
    try:
        for ack in stub.IngestReports(iter(batches), metadata=metadata, timeout=30):
            acks.append(ack)
    except grpc.RpcError as exc:
        return acks, exc
    return acks, None


def event(
    campaign: Campaign, event_id: str, arm: int = 0, time: datetime = H0, **fields: object
) -> metrics_pb2.ConversionEvent:
    values: dict[str, object] = dict(
        event_id=event_id,
        campaign_id=campaign.campaign_id,
        arm_id=campaign.arms[arm].arm_id,
        time=_stamp(time),
        value_micros=1_000,
        source="web",
    )
    values.update(fields)
    return metrics_pb2.ConversionEvent(**values)  # type: ignore[arg-type]


def window(start: datetime, end: datetime) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=to_timestamp(start), end=to_timestamp(end))


WIDE = window(H0 - timedelta(days=10), H0 + timedelta(days=10))


def arm_stats(
    stub: metrics_pb2_grpc.MetricsServiceStub,
    campaign: Campaign,
    metadata: tuple = ALPHA,
    **fields: object,
) -> metrics_pb2.GetArmStatsResponse:
    values: dict[str, object] = {"window": WIDE, **fields}
    request = metrics_pb2.GetArmStatsRequest(campaign_id=campaign.campaign_id, **values)  # type: ignore[arg-type]
    return stub.GetArmStats(request, metadata=metadata, timeout=10)


def hours_stored(stub: metrics_pb2_grpc.MetricsServiceStub, campaign: Campaign) -> int:
    return sum(a.hours_observed for a in arm_stats(stub, campaign).arms)
