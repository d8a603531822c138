"""The hourly loop through real processes: services, the sandbox market, and the
rebalancer (in-process for speed, and as the `jangkau rebalance` command)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from jangkau.platforms.base import BudgetResult, InvalidTarget
from jangkau.platforms.sandbox import SandboxAdapter
from jangkau.rebalancer.job import RebalanceOptions
from jangkau.runtime.times import HOUR, from_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, sandbox_pb2
from tests.conftest import TOKENS
from tests.rebalancer_support import (
    BUDGET_MICROS,
    FLIGHT_END,
    FLIGHT_START,
    QUIET_START,
    SERVICES,
    campaign_loop,
    client,
    create_campaign,
    rebalancer,
    run_hours,
    sandbox_stub,
)


def stored_rows(jk, campaign_id):
    """Every (arm, hour) row metrics holds, through GetArmStats' hourly series."""
    stats = jk.metrics.arm_stats(campaign_id, FLIGHT_START, FLIGHT_END, include_series=True)
    return {
        (arm.arm_id, from_timestamp(p.hour)): (
            p.spend_micros,
            p.impressions,
            p.clicks,
            p.conversions,
        )
        for arm in stats.arms
        for p in arm.series
    }


@pytest.mark.slow
def test_days_of_hourly_rebalancing_keep_every_rule_and_metrics_hold_what_was_reported(
    start_cluster,
):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster, rejection_rate=0.05) as loop:
        jk, campaign = loop.jk, loop.campaign
        hours = int((FLIGHT_END - FLIGHT_START) / HOUR)
        summaries = run_hours(loop.rb, loop.at, hours + 1)
        assert all(not s.failed for s in summaries)

        evaluation = sandbox_stub(cluster).Evaluate(
            sandbox_pb2.EvaluateRequest(campaign_id=campaign.id)
        )
        arm_ids = list(evaluation.arm_ids)
        for hour in evaluation.hours:
            moment = from_timestamp(hour.hour)
            in_force = dict(zip(arm_ids, hour.budget_micros, strict=True))
            assert in_force["tiktok-muda"] == 0, moment
            if moment >= QUIET_START:
                assert sum(in_force.values()) == 0, f"budget in force in the quiet period {moment}"

        summary = jk.metrics.summary(campaign.id, as_of=FLIGHT_END)
        assert 0 < summary.spend_micros <= BUDGET_MICROS
        quiet = jk.metrics.timeseries(
            campaign.id,
            QUIET_START,
            FLIGHT_END,
            [metrics_pb2.METRIC_SPEND],
            metrics_pb2.BY_CAMPAIGN,
            metrics_pb2.HOURLY,
        )
        assert sum(p.values[0] for s in quiet.series for p in s.points) == 0
        tiktok = [p for p in summary.platforms if p.platform == common_pb2.TIKTOK]
        assert not tiktok or tiktok[0].spend_micros == 0

        reported = sandbox_stub(cluster).ListReported(
            sandbox_pb2.ListReportedRequest(campaign_id=campaign.id)
        )
        expected = {
            (r.arm_id, from_timestamp(r.hour)): (
                r.spend_micros,
                r.impressions,
                r.clicks,
                r.conversions,
            )
            for r in reported.reports
        }
        assert expected, "the sandbox reported nothing"
        assert sum(spend for spend, *_ in expected.values()) <= BUDGET_MICROS
        assert stored_rows(jk, campaign.id) == expected


class CutsRefused:
    """The sandbox market's adapter, behind a platform that refuses every lower
    non-zero budget (as one may while an ad set is under review); pausing works."""

    def __init__(self, inner: SandboxAdapter) -> None:
        self.inner = inner
        self.held: dict[str, int] = {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def apply_budgets(self, campaign, budgets):
        cuts = [b for b in budgets if 0 < b.daily_budget_micros < self.held.get(b.arm_id, 0)]
        results = [
            BudgetResult.refused(b.arm_id, b.daily_budget_micros, "cuts locked in review", False)
            for b in cuts
        ]
        rest = [b for b in budgets if b not in cuts]
        for result in self.inner.apply_budgets(campaign, rest) if rest else []:
            if result.accepted:
                self.held[result.arm_id] = result.applied_daily_budget_micros
            results.append(result)
        return results


@pytest.mark.slow
def test_cuts_a_platform_refuses_are_paused_rather_than_overspent(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster) as loop:
        jk, campaign, rb, at = loop.jk, loop.campaign, loop.rb, loop.at
        (sandbox,) = rb.adapters
        platform = CutsRefused(sandbox)
        rb.adapters = [platform]
        last_hours = QUIET_START - 3 * HOUR
        early = run_hours(rb, at, int((last_hours - FLIGHT_START) / HOUR))
        # With days to go, the hours ahead make up for a refused cut: nothing is paused.
        messages = [c.message for s in early for c in s.campaigns]
        assert any("cuts locked in review" in m for m in messages)
        assert not any("paused" in m for m in messages)

        # The buyer caps the arm with the biggest budget at Rp 1,000 an hour and leaves
        # the campaign, beyond what the hour not yet reported may spend, half an hour of
        # that arm's budget: the platform refuses the cut, and what it keeps in force
        # would spend more than is left.
        in_force = {arm: daily // 24 for arm, daily in platform.held.items()}
        biggest = max(in_force, key=lambda a: in_force[a])
        current = jk.budget.get_campaign(campaign.id)
        arm = next(a for a in current.arms if a.id == biggest)
        arm.max_micros_per_period = 1_000 * 1_000_000
        spent = jk.metrics.summary(campaign.id, as_of=last_hours).spend_micros
        current.total_budget_micros = spent + sum(in_force.values()) + in_force[biggest] // 2
        jk.budget.update_campaign(current, ["total_budget_micros", "arms"])
        (last,) = run_hours(rb, at, 1, start=last_hours)[0].campaigns
        assert f"{arm.id}: cuts locked in review; paused instead" in last.message
        run_hours(rb, at, 3, start=last_hours + HOUR)

        left = {
            from_timestamp(d.allocation.period.start): d.allocation.remaining_budget_micros
            for d in jk.budget.list_decisions(campaign.id)
        }
        evaluation = sandbox_stub(cluster).Evaluate(
            sandbox_pb2.EvaluateRequest(campaign_id=campaign.id)
        )
    # The budgets in force never add up to more than is left of the campaign's.
    for hour in evaluation.hours:
        moment = from_timestamp(hour.hour)
        assert sum(hour.budget_micros) <= left[moment], moment


class OnPlatforms:
    """The sandbox market's adapter for the arms of some platforms only, as a live
    adapter is; `broken` makes it raise on every push (an arm it cannot place)."""

    def __init__(self, inner: SandboxAdapter, platforms: set[int], broken: bool = False) -> None:
        self.inner = inner
        self.platforms = frozenset(platforms)
        self.broken = broken

    def apply_budgets(self, campaign, budgets):
        if self.broken:
            raise InvalidTarget(common_pb2.GOOGLE, "arm google-muda has no budget_id")
        return self.inner.apply_budgets(campaign, budgets)

    def fetch_reports(self, campaign, since, until):
        reports = self.inner.fetch_reports(campaign, since, until)
        return [r for r in reports if r.platform in self.platforms]


def test_budgets_one_platform_accepted_are_recorded_when_another_adapter_raises(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster) as loop:
        (sandbox,) = loop.rb.adapters
        others = {common_pb2.META, common_pb2.X, common_pb2.TIKTOK}
        loop.rb.adapters = [
            OnPlatforms(sandbox, others),
            OnPlatforms(sandbox, {common_pb2.GOOGLE}, broken=True),
        ]
        (first,) = run_hours(loop.rb, loop.at, 1)[0].campaigns
        recorded = loop.rb.store.last_applied("alpha", loop.campaign.id)
        # Deliver the hour, then read the budgets the market held in it.
        run_hours(loop.rb, loop.at, 1, start=FLIGHT_START + HOUR)
    evaluation = sandbox_stub(cluster).Evaluate(
        sandbox_pb2.EvaluateRequest(campaign_id=loop.campaign.id)
    )
    in_force = dict(zip(evaluation.arm_ids, evaluation.hours[0].budget_micros, strict=True))
    assert in_force.pop("google-muda") == 0
    assert in_force == {arm: daily // 24 for arm, daily in recorded.items()}
    assert (first.outcome.value, first.edits, first.refused) == ("applied", 4, 1)
    assert "google-muda: GOOGLE: arm google-muda has no budget_id" in first.message


def test_a_second_run_in_the_same_hour_applies_nothing(start_cluster):
    cluster = start_cluster(*SERVICES)
    with campaign_loop(cluster) as loop:
        # The first hour sets every arm (none was set before).
        first = run_hours(loop.rb, loop.at, 1)[-1].campaigns[0]
        loop.at[0] = loop.at[0] + timedelta(minutes=20)
        again = loop.rb.run(RebalanceOptions(at=loop.at[0], tenant="alpha"))
    assert first.outcome.value == "applied" and first.edits > 0
    assert again.campaigns[0].outcome.value == "replayed"
    assert again.campaigns[0].edits == 0
    assert again.campaigns[0].campaign_id == loop.campaign.id


def decisions_of(jk, campaign):
    """The campaign's decisions in period order: each one's seed and arm budgets."""
    decisions = sorted(
        jk.budget.list_decisions(campaign.id), key=lambda d: d.allocation.period.start.seconds
    )
    return [
        (d.allocation.seed, [(a.arm_id, a.budget_micros) for a in d.allocation.arms])
        for d in decisions
    ]


def test_a_seeded_run_decides_alike_campaigns_alike_whatever_their_ids(start_cluster):
    """Two campaigns made the same way get different ids; under a seeded run (as the
    demo makes) they see the same sandbox market and get the same decisions, hour after
    hour, so a simulation comes out the same each time it runs."""
    cluster = start_cluster(*SERVICES)
    at = [FLIGHT_START]
    with client(cluster) as jk:
        first, second = create_campaign(jk), create_campaign(jk)
        unseeded = [jk.budget.allocate(c.id, as_of=FLIGHT_START).seed for c in (first, second)]
        rb = rebalancer(cluster, jk, at)
        runs = run_hours(rb, at, 3, seed=11)
        rb.store.close()
        decided = [decisions_of(jk, c) for c in (first, second)]
    assert first.id != second.id
    assert unseeded[0] != unseeded[1]
    assert all(c.outcome.value == "applied" for run in runs for c in run.campaigns)
    assert len(decided[0]) == 3
    assert decided[0] == decided[1]
    assert len({seed for seed, _ in decided[0]}) == 3


def rebalance_command(cluster, at, *extra, token=TOKENS["alpha"]):
    env = dict(cluster.environment())
    env["JANGKAU_TOKEN"] = token
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jangkau.cli.main",
            "rebalance",
            "--at",
            at.isoformat(),
            "--json",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_rebalance_command_takes_the_seed_of_a_simulation(start_cluster):
    cluster = start_cluster(*SERVICES)
    with client(cluster) as jk:
        first, second = create_campaign(jk), create_campaign(jk)
        for h in range(2):
            at = FLIGHT_START + h * HOUR + timedelta(minutes=5)
            result = rebalance_command(cluster, at, "--seed", "11")
            assert result.returncode == 0, result.stderr
        decided = [decisions_of(jk, c) for c in (first, second)]
        opened = sandbox_stub(cluster).Evaluate(sandbox_pb2.EvaluateRequest(campaign_id=first.id))
    assert opened.seed == 11
    assert len(decided[0]) == 2
    assert decided[0] == decided[1]


def test_with_metrics_down_the_last_budgets_stay_and_the_next_run_catches_up(start_cluster):
    cluster = start_cluster(*SERVICES)
    at = [FLIGHT_START]
    with client(cluster) as jk:
        campaign = create_campaign(jk)
        rb = rebalancer(cluster, jk, at)
        run_hours(rb, at, 4)
        rb.store.close()
        before = sandbox_stub(cluster).Evaluate(
            sandbox_pb2.EvaluateRequest(campaign_id=campaign.id)
        )

        cluster.terminate("metrics")
        down = rebalance_command(cluster, FLIGHT_START + 4 * HOUR + timedelta(minutes=5))
        assert down.returncode == 1, down.stderr
        outcome = json.loads(down.stdout)["campaigns"][0]
        assert outcome["outcome"] == "failed"

        cluster.spawn("metrics")
        cluster.wait("metrics")
        up = rebalance_command(cluster, FLIGHT_START + 5 * HOUR + timedelta(minutes=5))
        assert up.returncode == 0, up.stderr + up.stdout
        after = sandbox_stub(cluster).Evaluate(sandbox_pb2.EvaluateRequest(campaign_id=campaign.id))
        # Hour 4 ran on hour 3's budgets: nothing was pushed while metrics was down.
        assert list(after.hours[4].budget_micros) == list(after.hours[3].budget_micros)
        assert list(after.hours[2].budget_micros) == list(before.hours[2].budget_micros)
        reported = sandbox_stub(cluster).ListReported(
            sandbox_pb2.ListReportedRequest(campaign_id=campaign.id)
        )
        hours_reported = {from_timestamp(r.hour) for r in reported.reports}
        hours_stored = {hour for _, hour in stored_rows(jk, campaign.id)}
        assert hours_reported == hours_stored
        assert max(hours_stored) == FLIGHT_START + 4 * HOUR


def test_one_broken_campaign_does_not_stop_the_others(start_cluster):
    cluster = start_cluster(*SERVICES)
    with client(cluster) as jk:
        good = create_campaign(jk, "Pilbup A")
        broken = create_campaign(jk, "Pilbup B")
        # Half of every hour's spend must go to an arm capped at Rp 1 an hour: no split
        # can hold.
        capped = next(a for a in broken.arms if a.id == "x-dewasa")
        capped.max_micros_per_period = 1_000_000
        broken.coverage_floors.add(name="dewasa", arm_ids=["x-dewasa"], min_share=0.5)
        jk.budget.update_campaign(broken, ["arms", "coverage_floors"])
    result = rebalance_command(cluster, FLIGHT_START + timedelta(minutes=5))
    assert result.returncode == 1, result.stderr
    outcomes = {c["campaign_id"]: c for c in json.loads(result.stdout)["campaigns"]}
    assert outcomes[good.id]["outcome"] == "applied"
    assert outcomes[broken.id]["outcome"] == "failed"
    assert "FAILED_PRECONDITION" in outcomes[broken.id]["message"]


@pytest.mark.slow
def test_killing_the_rebalancer_mid_run_then_running_again_leaves_campaigns_consistent(
    start_cluster,
):
    cluster = start_cluster(*SERVICES)
    with client(cluster) as jk:
        ids = [create_campaign(jk, f"Pilbup {i}").id for i in range(6)]
    at = FLIGHT_START + timedelta(minutes=5)
    env = dict(cluster.environment())
    env["JANGKAU_TOKEN"] = TOKENS["alpha"]
    victim = subprocess.Popen(
        [sys.executable, "-m", "jangkau.cli.main", "rebalance", "--at", at.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    again = rebalance_command(cluster, at)
    assert again.returncode == 0, again.stderr + again.stdout
    outcomes = json.loads(again.stdout)["campaigns"]
    assert {c["campaign_id"] for c in outcomes} == set(ids)
    with client(cluster) as jk:
        for campaign_id in ids:
            decisions = list(jk.budget.list_decisions(campaign_id))
            assert len(decisions) == 1, "one decision per campaign and hour"
            wanted = {a.arm_id: a.budget_micros * 24 for a in decisions[0].allocation.arms}
            period = decisions[0].allocation.period
            # Deliver the decided hour, then read the budgets the market held in it.
            sandbox_stub(cluster).FetchReports(
                sandbox_pb2.FetchReportsRequest(
                    campaign_id=campaign_id, since=period.start, until=period.end, at=period.end
                )
            )
            evaluation = sandbox_stub(cluster).Evaluate(
                sandbox_pb2.EvaluateRequest(campaign_id=campaign_id)
            )
            in_force = dict(
                zip(evaluation.arm_ids, evaluation.hours[-1].budget_micros, strict=True)
            )
            assert in_force == {arm: daily // 24 for arm, daily in wanted.items()}


def test_the_rebalancer_refuses_a_wrong_token(start_cluster):
    cluster = start_cluster(*SERVICES)
    result = rebalance_command(cluster, FLIGHT_START, token="not-a-token")
    assert result.returncode != 0
    assert "UNAUTHENTICATED" in result.stdout + result.stderr
