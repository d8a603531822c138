"""Spend stops when a campaign may no longer spend: the rebalancer pushes zeros to
the budgets it left in force on a campaign that was paused or whose flight ended."""

from __future__ import annotations

from jangkau.runtime.times import HOUR, to_timestamp
from jangkau.v1 import budget_pb2, sandbox_pb2
from tests.rebalancer_support import (
    FLIGHT_START,
    SERVICES,
    campaign_loop,
    run_hours,
    sandbox_stub,
)


def budgets_in_force(cluster, campaign_id, hours):
    """The hourly budgets the sandbox market held on each arm in each of the
    campaign's first `hours` hours (delivering them first)."""
    market = sandbox_stub(cluster)
    until = to_timestamp(FLIGHT_START + hours * HOUR)
    market.FetchReports(
        sandbox_pb2.FetchReportsRequest(
            campaign_id=campaign_id, since=to_timestamp(FLIGHT_START), until=until, at=until
        )
    )
    evaluation = market.Evaluate(sandbox_pb2.EvaluateRequest(campaign_id=campaign_id))
    return [dict(zip(evaluation.arm_ids, h.budget_micros, strict=True)) for h in evaluation.hours]


def test_pausing_a_campaign_stops_its_spend_at_the_next_run(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster) as loop:
        run_hours(loop.rb, loop.at, 3)
        campaign = loop.jk.budget.get_campaign(loop.campaign.id)
        campaign.state = budget_pb2.PAUSED
        loop.jk.budget.update_campaign(campaign, ["state"])
        (paused,) = run_hours(loop.rb, loop.at, 1, start=FLIGHT_START + 3 * HOUR)
        (after,) = run_hours(loop.rb, loop.at, 1, start=FLIGHT_START + 4 * HOUR)
    in_force = budgets_in_force(cluster, loop.campaign.id, 5)
    assert sum(in_force[2].values()) > 0
    assert sum(in_force[3].values()) == 0
    assert sum(in_force[4].values()) == 0
    assert [c.campaign_id for c in paused.campaigns] == [loop.campaign.id]
    assert paused.campaigns[0].edits > 0
    # Nothing is left in force: the paused campaign is not visited again.
    assert after.campaigns == []


def test_the_run_after_a_flight_ends_stops_its_spend(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster, flight_end=FLIGHT_START + 3 * HOUR) as loop:
        run_hours(loop.rb, loop.at, 3)
        (ended,) = run_hours(loop.rb, loop.at, 1, start=FLIGHT_START + 3 * HOUR)
    in_force = budgets_in_force(cluster, loop.campaign.id, 4)
    assert sum(in_force[2].values()) > 0
    # The market's hour after the flight: nothing in force.
    assert sum(in_force[3].values()) == 0
    assert [(c.campaign_id, c.outcome.value) for c in ended.campaigns] == [
        (loop.campaign.id, "applied")
    ]
