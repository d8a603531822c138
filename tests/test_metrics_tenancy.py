"""Tenancy of the metrics service: every RPC needs a token, a caller never sees
another tenant's campaigns or rows (NOT_FOUND), and viewers only read."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from jangkau.metrics import codec, synthetic
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import metrics_pb2, metrics_pb2_grpc
from tests.test_metrics_support import (
    ALPHA,
    ALPHA_VIEWER,
    BETA,
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
)


@pytest.fixture
def stub(shared_metrics: MetricsApi) -> metrics_pb2_grpc.MetricsServiceStub:  # noqa: F811
    return shared_metrics.stub


def calls(campaign: synthetic.Campaign) -> dict[str, tuple[str, object]]:
    """One well-formed request per RPC, addressing `campaign`."""
    cid = campaign.campaign_id
    return {
        "RegisterCampaign": ("unary", codec.register_request(campaign)),
        "IngestReports": ("stream", [batch(report(campaign, hour=H0 + timedelta(hours=5)))]),
        "IngestEvents": (
            "unary",
            metrics_pb2.IngestEventsRequest(events=[event(campaign, "ev-tenancy")]),
        ),
        "GetArmStats": ("unary", metrics_pb2.GetArmStatsRequest(campaign_id=cid, window=WIDE)),
        "GetTimeseries": (
            "unary",
            metrics_pb2.GetTimeseriesRequest(
                campaign_id=cid, window=WIDE, metrics=[metrics_pb2.METRIC_SPEND]
            ),
        ),
        "GetCampaignSummary": ("unary", metrics_pb2.GetCampaignSummaryRequest(campaign_id=cid)),
    }


def call(stub, method: str, kind: str, request: object, metadata: tuple | None) -> object:
    rpc = getattr(stub, method)
    if kind == "stream":
        return list(rpc(iter(request), metadata=metadata, timeout=10))  # type: ignore[call-overload]
    return rpc(request, metadata=metadata, timeout=10)


RPCS = list(calls(synthetic.campaign("x", arms=1)))


@pytest.mark.parametrize("method", RPCS)
def test_a_call_without_a_token_is_unauthenticated(stub, method: str) -> None:
    campaign = new_campaign(stub)
    kind, request = calls(campaign)[method]
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, method, kind, request, None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("method", RPCS)
def test_a_call_with_an_unknown_token_is_unauthenticated(stub, method: str) -> None:
    campaign = new_campaign(stub)
    kind, request = calls(campaign)[method]
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, method, kind, request, (("authorization", "Bearer nobody"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("method", [m for m in RPCS if m != "RegisterCampaign"])
def test_another_tenants_campaign_is_not_found(stub, method: str) -> None:
    campaign = new_campaign(stub, ALPHA)
    kind, request = calls(campaign)[method]
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, method, kind, request, BETA)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "campaign_id" in caught.value.details()


def test_registering_another_tenants_campaign_id_makes_a_separate_campaign(stub) -> None:
    alpha = new_campaign(stub, ALPHA)
    acks, error = ingest(stub, batch(report(alpha)), metadata=ALPHA)
    assert error is None and acks[0].inserted == 1
    beta = new_campaign(stub, BETA, arms=2, campaign_id=alpha.campaign_id)
    assert [a.arm_id for a in arm_stats(stub, beta, BETA).arms] == [a.arm_id for a in beta.arms]
    assert sum(a.hours_observed for a in arm_stats(stub, beta, BETA).arms) == 0
    assert sum(a.hours_observed for a in arm_stats(stub, alpha, ALPHA).arms) == 1


def test_queries_never_return_another_tenants_rows(stub) -> None:
    alpha = new_campaign(stub, ALPHA)
    beta = new_campaign(stub, BETA, campaign_id=alpha.campaign_id)
    ingest(stub, batch(report(alpha, spend_micros=111)), metadata=ALPHA)
    ingest(stub, batch(report(beta, spend_micros=222), report(beta, arm=1)), metadata=BETA)
    assert [a.spend_micros for a in arm_stats(stub, alpha, ALPHA).arms][0] == 111
    assert arm_stats(stub, beta, BETA).arms[0].spend_micros == 222
    summary = stub.GetCampaignSummary(
        metrics_pb2.GetCampaignSummaryRequest(campaign_id=alpha.campaign_id), metadata=ALPHA
    )
    assert summary.spend_micros == 111
    series = stub.GetTimeseries(
        metrics_pb2.GetTimeseriesRequest(
            campaign_id=alpha.campaign_id,
            window=WIDE,
            metrics=[metrics_pb2.METRIC_SPEND],
            group_by=metrics_pb2.BY_CAMPAIGN,
        ),
        metadata=ALPHA,
    )
    assert [p.values[0] for s in series.series for p in s.points] == [111.0]


def test_the_same_event_id_counts_once_per_tenant(stub) -> None:
    alpha = new_campaign(stub, ALPHA)
    beta = new_campaign(stub, BETA, campaign_id=alpha.campaign_id)
    for campaign, metadata in ((alpha, ALPHA), (beta, BETA)):
        reply = stub.IngestEvents(
            metrics_pb2.IngestEventsRequest(
                events=[event(campaign, "shared-id")], as_of=to_timestamp(H0 + timedelta(hours=1))
            ),
            metadata=metadata,
        )
        assert (reply.inserted, reply.duplicates) == (1, 0)


@pytest.mark.parametrize("method", ["RegisterCampaign", "IngestReports", "IngestEvents"])
def test_a_viewer_may_not_write(stub, method: str) -> None:
    campaign = new_campaign(stub, ALPHA)
    kind, request = calls(campaign)[method]
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, method, kind, request, ALPHA_VIEWER)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("method", ["GetArmStats", "GetTimeseries", "GetCampaignSummary"])
def test_a_viewer_reads_its_tenants_campaigns(stub, method: str) -> None:
    campaign = new_campaign(stub, ALPHA)
    kind, request = calls(campaign)[method]
    assert call(stub, method, kind, request, ALPHA_VIEWER) is not None
