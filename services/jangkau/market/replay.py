"""Replaying a simulated campaign hour by hour with an allocator: the harness of the
allocation benchmark and of the Optuna tuner.

An allocator decides each hour's budgets from what it has been told so far (the
campaign's setup and the platforms' hourly reports) and is then shown the report of the
hour. The harness scores it by the true expected conversions of its budgets (the
hidden curves, so luck in the counts does not blur the comparison) and checks every
hour's split against the campaign's rules.

Seeds: the benchmark replays BENCHMARK_SEEDS, the tuner TUNING_SEEDS; the two sets
never meet, so the tuned settings are scored on campaigns they were not tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from jangkau.budget.policy import (
    Evidence,
    PolicySettings,
    allocate,
    shrunk_delivery,
    violations,
)
from jangkau.market.simulator import CampaignSetup, HourDelivery, Market

BENCHMARK_SEEDS: tuple[int, ...] = (101, 102, 103, 104, 105)
TUNING_SEEDS: tuple[int, ...] = tuple(range(9001, 9041))

# Memory of the delivered/budget ratio, per hour: a disapproved ad shows within hours.
DELIVERY_DISCOUNT = 0.8


class Allocator(Protocol):
    name: str

    def decide(self, hour: int) -> np.ndarray:
        """Budgets (int64 micros per arm) for `hour`."""
        ...

    def observe(self, hour: int, budgets: np.ndarray, report: HourDelivery) -> None:
        """What the platforms reported for `hour`, run with `budgets`."""
        ...


@dataclass(frozen=True)
class ReplayResult:
    name: str
    # Σ over hours of the true expected conversions of the chosen budgets.
    expected: float
    # Conversions the platforms reported.
    conversions: int
    spend_micros: int
    # Broken rules, counted per arm and hour (and per floor/total and hour).
    violations: int
    first_violation: str = ""


class JangkauAllocator:
    """The product policy with every input it takes: the arms with their previous
    budgets and delivered/budget ratios, and discounted evidence from the reports with
    the statistics of saturating and of S-shaped curves.

    `as_served`: only the inputs the budget service sends it today. Metrics computes
    the statistics of saturating curves only, and the service passes a delivery ratio
    of 1, so the evidence carries no S-shaped statistics and every ratio is 1."""

    def __init__(
        self,
        campaign: CampaignSetup,
        settings: PolicySettings,
        seed: int,
        *,
        as_served: bool = False,
    ) -> None:
        self.name = "as served" if as_served else "jangkau"
        self.as_served = as_served
        self.campaign = campaign
        # The campaign's change limit is a hard rule; the policy may hold a tighter one.
        change = min(settings.max_change_percent, campaign.max_change_percent)
        self.settings = replace(settings, max_change_percent=change)
        self.seed = int(seed)
        self.evidence = (
            Evidence.empty(campaign.n_arms, s_kappas=None)
            if as_served
            else Evidence.empty(campaign.n_arms)
        )
        self.previous: np.ndarray | None = None
        self.delivered = np.zeros(campaign.n_arms)
        self.budgeted = np.zeros(campaign.n_arms)
        self.weight = 0.0

    def delivery(self) -> np.ndarray:
        """Discounted delivered/budget ratio (policy.delivery_ratio's, kept as running sums)."""
        if self.as_served:
            return np.ones(self.campaign.n_arms)
        return shrunk_delivery(self.delivered, self.budgeted, self.weight)

    def decide(self, hour: int) -> np.ndarray:
        arms = self.campaign.arm_table(self.previous, self.delivery())
        result = allocate(
            arms,
            self.evidence,
            self.campaign.hourly_budget_micros,
            self.settings,
            seed=self.seed * 1_000_003 + hour,
            coverage_floors=self.campaign.coverage_floors,
        )
        return np.fromiter((d.budget_micros for d in result.arms), np.int64, len(arms))

    def observe(self, hour: int, budgets: np.ndarray, report: HourDelivery) -> None:
        self.evidence = self.evidence.updated(
            report.spend_micros, report.conversions, self.settings.discount
        )
        d = DELIVERY_DISCOUNT
        self.delivered = d * self.delivered + np.minimum(report.spend_micros, budgets)
        self.budgeted = d * self.budgeted + budgets
        self.weight = d * self.weight + 1.0
        self.previous = np.asarray(budgets, np.int64)


class OracleAllocator:
    """Knows the true curves of every hour; the same rules as everyone else."""

    name = "oracle"

    def __init__(self, market: Market) -> None:
        self.market = market
        self.previous: np.ndarray | None = None

    def decide(self, hour: int) -> np.ndarray:
        campaign = self.market.campaign
        return self.market.oracle_split(
            hour,
            campaign.hourly_budget_micros,
            campaign.arm_table(self.previous),
            campaign.coverage_floors,
        )

    def observe(self, hour: int, budgets: np.ndarray, report: HourDelivery) -> None:
        self.previous = np.asarray(budgets, np.int64)


def replay(market: Market, allocator: Allocator, hours: int | None = None) -> ReplayResult:
    """Run the campaign for `hours` (all of it by default) with this allocator."""
    campaign = market.campaign
    rules = campaign.rules()
    budget = campaign.hourly_budget_micros
    previous: np.ndarray | None = None
    expected = 0.0
    conversions = 0
    spend = 0
    broken = 0
    first = ""
    for hour in range(market.hours if hours is None else hours):
        budgets = np.asarray(allocator.decide(hour), np.int64)
        found = violations(
            campaign.arm_table(previous), budgets, budget, rules, campaign.coverage_floors
        )
        if found:
            broken += len(found)
            first = first or f"hour {hour}: {found[0]}"
        expected += float(market.true_expected(hour, budgets).sum())
        report = market.step(hour, budgets)
        conversions += int(report.conversions.sum())
        spend += int(report.spend_micros.sum())
        allocator.observe(hour, budgets, report)
        previous = budgets
    return ReplayResult(allocator.name, expected, conversions, spend, broken, first)
