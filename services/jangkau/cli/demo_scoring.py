"""Scores a finished simulated campaign: what the budgets jangkau applied bought
under the market's hidden curves, against a uniform split and an oracle facing the
same period budgets and rules, replayed on an identical market."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import grpc
import numpy as np

from jangkau.budget.policy import ArmSpec, CoverageFloorSpec, Infeasible
from jangkau.client import Jangkau
from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.channels import channel
from jangkau.runtime.times import from_timestamp
from jangkau.sandbox.domain import MarketArm, SandboxCampaign
from jangkau.v1 import budget_pb2, sandbox_pb2, sandbox_pb2_grpc

# Bounds under which an arm is not available that hour.
_CLOSED = {budget_pb2.BOUND_INELIGIBLE, budget_pb2.BOUND_BLACKOUT, budget_pb2.BOUND_NO_BUDGET}


@dataclass
class Scores:
    jangkau: float
    uniform: float
    oracle: float
    reported: float
    hours: list[datetime] = field(default_factory=list)
    # Cumulative expected conversions per hour.
    cumulative: dict[str, np.ndarray] = field(default_factory=dict)
    arm_ids: list[str] = field(default_factory=list)
    # Budget in force per hour and arm (micros), as the platforms held it.
    budgets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def score_run(sandbox_addr: str, jk: Jangkau, campaign: budget_pb2.Campaign) -> Scores:
    stub = sandbox_pb2_grpc.SandboxMarketStub(channel(sandbox_addr, timeout=60, token=DEV_TOKEN))
    evaluation = stub.Evaluate(sandbox_pb2.EvaluateRequest(campaign_id=campaign.id))
    decisions = {
        from_timestamp(d.allocation.period.start): d.allocation
        for d in jk.budget.list_decisions(campaign.id, page_size=1000)
    }
    arm_ids = list(evaluation.arm_ids)
    index = {arm: i for i, arm in enumerate(arm_ids)}
    replica = SandboxCampaign(
        campaign.id,
        campaign.currency,
        tuple(
            MarketArm(a.id, a.platform, a.audience_id, int(reach))
            for a, reach in zip(campaign.arms, evaluation.reachable, strict=True)
        ),
        evaluation.seed,
        evaluation.scenario,
        from_timestamp(campaign.flight.start),
        from_timestamp(campaign.flight.end),
        campaign.total_budget_micros,
    )
    market = replica.market
    minimum = {m.platform: m.min_daily_micros // 24 for m in campaign.platform_minimums}
    floors = tuple(
        CoverageFloorSpec(f.name, tuple(index[a] for a in f.arm_ids), f.min_share)
        for f in campaign.coverage_floors
    )
    change = campaign.policy.max_change_percent or 50.0
    n_hours = len(evaluation.hours)
    jangkau = np.zeros(n_hours)
    uniform = np.zeros(n_hours)
    oracle = np.zeros(n_hours)
    budgets = np.zeros((n_hours, len(arm_ids)), np.int64)
    previous: np.ndarray | None = None
    hours = []
    for h, hour in enumerate(evaluation.hours):
        moment = from_timestamp(hour.hour)
        hours.append(moment)
        budgets[h] = np.asarray(hour.budget_micros, np.int64)
        jangkau[h] = hour.expected_conversions
        allocation = decisions.get(moment)
        if allocation is None or allocation.period_budget_micros <= 0:
            previous = np.zeros(len(arm_ids), np.int64)
            continue
        open_arms = np.zeros(len(arm_ids), bool)
        for a in allocation.arms:
            open_arms[index[a.arm_id]] = a.bound not in _CLOSED
        total = allocation.period_budget_micros
        even = np.where(open_arms, total // max(int(open_arms.sum()), 1), 0)
        uniform[h] = float(market.true_expected(h, even).sum())
        specs = [
            ArmSpec(
                arm_id=a.id,
                eligible=bool(open_arms[i]),
                min_micros=minimum.get(a.platform, 0),
                previous_micros=None if previous is None else int(previous[i]),
            )
            for i, a in enumerate(campaign.arms)
        ]
        try:
            best = market.oracle_split(h, total, specs, floors, change)
        except Infeasible:
            best = even
        previous = np.asarray(best, np.int64)
        oracle[h] = float(market.true_expected(h, best).sum())
    try:
        reported = jk.metrics.summary(campaign.id).conversions
    except grpc.RpcError:
        reported = float("nan")
    return Scores(
        jangkau=float(jangkau.sum()),
        uniform=float(uniform.sum()),
        oracle=float(oracle.sum()),
        reported=reported,
        hours=hours,
        cumulative={
            "jangkau": np.cumsum(jangkau),
            "uniform split": np.cumsum(uniform),
            "oracle": np.cumsum(oracle),
        },
        arm_ids=arm_ids,
        budgets=budgets,
    )
