"""Spend stops when a campaign may no longer spend: the rebalancer pushes zeros to
the budgets it left in force on a campaign that was paused or whose flight ended, and
in a blackout even while reports or metrics are down; and it never pushes an hour's
budgets over those of a later hour."""

from __future__ import annotations

from datetime import timedelta

from jangkau.platforms.base import TransientPlatformError
from jangkau.rebalancer.job import RebalanceOptions
from jangkau.runtime.times import HOUR, from_timestamp, to_timestamp
from jangkau.v1 import budget_pb2, common_pb2, sandbox_pb2
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


def test_a_catch_up_run_for_a_missed_hour_leaves_a_later_hours_budgets_in_force(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster) as loop:
        rb, campaign_id = loop.rb, loop.campaign.id
        run_hours(rb, loop.at, 2)
        run_hours(rb, loop.at, 1, start=FLIGHT_START + 3 * HOUR)  # hour 2 was missed
        applied = rb.store.last_applied("alpha", campaign_id)
        # An operator catches up hour 2 after hour 3 was applied.
        loop.at[0] = FLIGHT_START + 2 * HOUR + timedelta(minutes=5)
        options = RebalanceOptions(
            at=loop.at[0], tenant="alpha", campaign_id=campaign_id, min_edit_percent=0
        )
        (caught_up,) = rb.run(options).campaigns
        after = rb.store.last_applied("alpha", campaign_id)
        decided = {
            from_timestamp(d.allocation.period.start)
            for d in loop.jk.budget.list_decisions(campaign_id)
        }
    in_force = budgets_in_force(cluster, campaign_id, 4)
    assert in_force[3] == {arm: daily // 24 for arm, daily in applied.items()}
    assert after == applied
    assert (caught_up.outcome.value, caught_up.edits) == ("skipped", 0)
    assert "already applied" in caught_up.message
    # The missed hour is decided all the same, for the decision log.
    assert FLIGHT_START + 2 * HOUR in decided


def black_out(jk, campaign_id, start, end):
    """A blackout window the buyer adds to the campaign: no spend in [start, end)."""
    campaign = jk.budget.get_campaign(campaign_id)
    window = campaign.blackouts.add(reason="debat kandidat")
    window.range.start.CopyFrom(to_timestamp(start))
    window.range.end.CopyFrom(to_timestamp(end))
    jk.budget.update_campaign(campaign, ["blackouts"])


class ReportsDown:
    """The sandbox market's adapter with its reporting down from `down_from` on (the
    rebalancer's clock); budgets are still pushed."""

    def __init__(self, inner, clock, down_from) -> None:
        self.inner = inner
        self.clock = clock
        self.down_from = down_from

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def fetch_reports(self, campaign, since, until):
        if self.clock() >= self.down_from:
            raise TransientPlatformError(common_pb2.META, "reporting: 503 Service Unavailable")
        return self.inner.fetch_reports(campaign, since, until)


def test_a_blackout_starts_with_zeros_pushed_while_the_reports_are_down(start_cluster):
    cluster = start_cluster(*SERVICES)
    blackout = FLIGHT_START + 2 * HOUR
    with campaign_loop(cluster) as loop:
        black_out(loop.jk, loop.campaign.id, blackout, blackout + 2 * HOUR)
        (sandbox,) = loop.rb.adapters
        loop.rb.adapters = [ReportsDown(sandbox, lambda: loop.at[0], blackout)]
        runs = run_hours(loop.rb, loop.at, 3)
    in_force = budgets_in_force(cluster, loop.campaign.id, 3)
    assert sum(in_force[1].values()) > 0
    assert sum(in_force[2].values()) == 0
    (first_blacked_out,) = runs[2].campaigns
    assert first_blacked_out.outcome.value == "applied"
    assert "reporting: 503 Service Unavailable" in first_blacked_out.message


def test_a_blackout_starts_with_zeros_pushed_while_metrics_is_down(start_cluster):
    cluster = start_cluster(*SERVICES)
    blackout = FLIGHT_START + 2 * HOUR
    with campaign_loop(cluster) as loop:
        black_out(loop.jk, loop.campaign.id, blackout, blackout + 2 * HOUR)
        run_hours(loop.rb, loop.at, 2)
        cluster.terminate("metrics")
        (first_blacked_out,) = run_hours(loop.rb, loop.at, 1, start=blackout)[0].campaigns
    in_force = budgets_in_force(cluster, loop.campaign.id, 3)
    assert sum(in_force[1].values()) > 0
    assert sum(in_force[2].values()) == 0
    assert first_blacked_out.outcome.value == "applied"
    assert "blackout: debat kandidat: zeros without a decision" in first_blacked_out.message
