"""Reads answered from memory are never stale: on real servers (answers cached, the
default), each read is asked, the data it reads is written, and the very same
request is asked again and sees the write."""

from __future__ import annotations

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jangkau.runtime.times import to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, metrics_pb2
from tests.test_budget_support import (
    create,
    demographic_audience,
    in_flight,
    ingest,
    md,
    report,
    stack,  # noqa: F401  (fixture)
    wire_campaign,
)


@pytest.fixture(autouse=True)
def caches_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers keep answers whatever the environment says (each reads
    JANGKAU_READ_CACHE_MB when it starts)."""
    monkeypatch.setenv("JANGKAU_READ_CACHE_MB", "64")


def test_metrics_reads_see_the_reports_ingested_after_them(stack):  # noqa: F811
    campaign = create(stack, wire_campaign([demographic_audience(stack)]))
    ingest(stack, [report(campaign, "meta-0", in_flight(2), 5_000_000_000, 3.0)])
    metrics = stack.metrics_stub()
    summary = metrics_pb2.GetCampaignSummaryRequest(
        campaign_id=campaign.id, as_of=to_timestamp(in_flight(6))
    )
    series = metrics_pb2.GetTimeseriesRequest(
        campaign_id=campaign.id,
        window=common_pb2.TimeRange(
            start=to_timestamp(in_flight(0)), end=to_timestamp(in_flight(6))
        ),
        group_by=metrics_pb2.BY_PLATFORM,
        metrics=[metrics_pb2.METRIC_SPEND],
    )

    def spend() -> tuple[int, float]:
        total = metrics.GetCampaignSummary(summary, metadata=md(), timeout=10).spend_micros
        points = metrics.GetTimeseries(series, metadata=md(), timeout=10).series
        return total, sum(p.values[0] for s in points for p in s.points)

    assert spend() == spend() == (5_000_000_000, 5e9)
    ingest(stack, [report(campaign, "google-0", in_flight(3), 2_000_000_000, 1.0)])
    assert spend() == (7_000_000_000, 7e9)


def test_budget_reads_see_updates_and_decisions(stack):  # noqa: F811
    campaign = create(stack, wire_campaign([demographic_audience(stack)]))
    budget = stack.budget_stub()
    get = budget_pb2.GetCampaignRequest(campaign_id=campaign.id)
    listing = budget_pb2.ListCampaignsRequest()
    decisions = budget_pb2.ListDecisionsRequest(campaign_id=campaign.id)
    assert budget.GetCampaign(get, metadata=md(), timeout=10).name == campaign.name
    assert [c.name for c in budget.ListCampaigns(listing, metadata=md(), timeout=10).campaigns] == [
        campaign.name
    ]
    assert not budget.ListDecisions(decisions, metadata=md(), timeout=10).decisions

    budget.UpdateCampaign(
        budget_pb2.UpdateCampaignRequest(
            campaign=budget_pb2.Campaign(id=campaign.id, name="Turnout Jabar, gelombang 2"),
            update_mask=FieldMask(paths=["name"]),
        ),
        metadata=md(),
        timeout=10,
    )
    budget.Rebalance(
        budget_pb2.RebalanceRequest(campaign_id=campaign.id, as_of=to_timestamp(in_flight(4))),
        metadata=md(),
        timeout=10,
    )
    renamed = budget.GetCampaign(get, metadata=md(), timeout=10)
    assert (renamed.name, renamed.revision) == ("Turnout Jabar, gelombang 2", 2)
    assert [c.name for c in budget.ListCampaigns(listing, metadata=md(), timeout=10).campaigns] == [
        renamed.name
    ]
    assert len(budget.ListDecisions(decisions, metadata=md(), timeout=10).decisions) == 1


def test_allocate_is_answered_again_only_while_its_evidence_is_unchanged(stack):  # noqa: F811
    campaign = create(stack, wire_campaign([demographic_audience(stack)]))
    ingest(stack, [report(campaign, "meta-0", in_flight(2), 5_000_000_000, 3.0)])
    budget = stack.budget_stub()
    asked = budget_pb2.AllocateRequest(campaign_id=campaign.id, as_of=to_timestamp(in_flight(5)))
    first = budget.Allocate(asked, metadata=md(), timeout=10)
    assert budget.Allocate(asked, metadata=md(), timeout=10) == first
    assert first.spend_to_date_micros == 5_000_000_000
    ingest(stack, [report(campaign, "google-0", in_flight(3), 4_000_000_000, 9.0)])
    after = budget.Allocate(asked, metadata=md(), timeout=10)
    assert after.spend_to_date_micros == 9_000_000_000
    assert [a.budget_micros for a in after.arms] != [a.budget_micros for a in first.arms]


def test_size_estimates_follow_the_audience_rule(stack):  # noqa: F811
    audience_id = demographic_audience(stack)
    audiences = stack.audience_stub()
    asked = audience_pb2.EstimateSizeRequest(
        audience_id=audience_id, campaign_kind=common_pb2.COMMERCIAL
    )
    wide = audiences.EstimateSize(asked, metadata=md(), timeout=10).voters
    assert audiences.EstimateSize(asked, metadata=md(), timeout=10).voters == wide
    audiences.UpdateAudience(
        audience_pb2.UpdateAudienceRequest(
            audience_id=audience_id,
            name="Jabar muda perempuan",
            rule=audience_pb2.Rule(
                all=audience_pb2.RuleList(
                    rules=[
                        audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
                        audience_pb2.Rule(age=audience_pb2.AgeRange(min=17, max=30)),
                        audience_pb2.Rule(
                            gender=audience_pb2.GenderCondition(genders=[audience_pb2.FEMALE])
                        ),
                    ]
                )
            ),
        ),
        metadata=md(),
        timeout=10,
    )
    narrow = audiences.EstimateSize(asked, metadata=md(), timeout=10).voters
    assert 0 < narrow < wide
