"""Baseline allocators for the allocation benchmark: what a team would do without a
model of saturation. Each sees only the platforms' reports and obeys the campaign's
rules through the same exact split as the product policy, so the benchmark compares
the decisions, not the constraint handling.

- uniform: an even split;
- eps_greedy: the arm rates (conversions per micro) so far; an even split with
  probability ε, else the budget goes to the best rates;
- ucb: upper confidence bounds of the rates (Poisson counts per unit spend);
- ts_rate: Thompson sampling of the rates from Gamma posteriors, no saturation;
- discounted_ts: the same with discounted evidence, for drift.

The rate-based baselines treat returns as linear in spend: the naive bandit of
DESIGN.md §4 that gives the most money to the arm with the best conversion rate.
"""

from __future__ import annotations

import math

import numpy as np

from jangkau.budget.policy import ExponentialCurves, compile_limits, constrained_split
from jangkau.market.simulator import CampaignSetup, HourDelivery


class _RateBaseline:
    """Keeps (optionally discounted) conversion and spend sums and splits linearly."""

    name = "baseline"

    def __init__(self, campaign: CampaignSetup, seed: int, discount: float = 1.0) -> None:
        self.campaign = campaign
        self.rules = campaign.rules()
        self.rng = np.random.default_rng([seed, 7])
        self.discount = discount
        n = campaign.n_arms
        self.conversions = np.zeros(n)
        self.spend = np.zeros(n)
        # Prior: one conversion at the cold-start guess of the rate θ/κ.
        self.prior_spend = campaign.prior_kappa_micros / np.maximum(campaign.prior_theta, 1e-9)
        self.previous: np.ndarray | None = None

    def rates(self, hour: int) -> np.ndarray:
        raise NotImplementedError

    def split(self, curves: ExponentialCurves) -> np.ndarray:
        campaign = self.campaign
        limits = compile_limits(
            campaign.arm_table(self.previous),
            campaign.hourly_budget_micros,
            self.rules,
            campaign.coverage_floors,
        )
        return constrained_split(curves, limits).budgets

    def even(self) -> ExponentialCurves:
        n = self.campaign.n_arms
        return ExponentialCurves.linear(np.ones(n), self.campaign.hourly_budget_micros)

    def decide(self, hour: int) -> np.ndarray:
        rates = self.rates(hour)
        return self.split(ExponentialCurves.linear(rates, self.campaign.hourly_budget_micros))

    def observe(self, hour: int, budgets: np.ndarray, report: HourDelivery) -> None:
        self.conversions = self.discount * self.conversions + report.conversions
        self.spend = self.discount * self.spend + report.spend_micros
        self.previous = np.asarray(budgets, np.int64)

    def posterior_mean(self) -> np.ndarray:
        return (self.conversions + 1.0) / (self.spend + self.prior_spend)


class Uniform(_RateBaseline):
    name = "uniform"

    def decide(self, hour: int) -> np.ndarray:
        return self.split(self.even())


class EpsilonGreedy(_RateBaseline):
    name = "eps_greedy"
    epsilon = 0.1

    def decide(self, hour: int) -> np.ndarray:
        if self.rng.random() < self.epsilon:
            return self.split(self.even())
        return super().decide(hour)

    def rates(self, hour: int) -> np.ndarray:
        return self.posterior_mean()


class UCB(_RateBaseline):
    name = "ucb"

    def rates(self, hour: int) -> np.ndarray:
        mean = self.posterior_mean()
        exposure = self.spend + self.prior_spend
        return mean + np.sqrt(2.0 * math.log(hour + 2) * mean / exposure)


class ThompsonRate(_RateBaseline):
    name = "ts_rate"

    def rates(self, hour: int) -> np.ndarray:
        return self.rng.gamma(self.conversions + 1.0, 1.0 / (self.spend + self.prior_spend))


class DiscountedThompson(ThompsonRate):
    name = "discounted_ts"

    def __init__(self, campaign: CampaignSetup, seed: int, discount: float = 0.99) -> None:
        super().__init__(campaign, seed, discount)


BASELINES = (Uniform, EpsilonGreedy, UCB, ThompsonRate, DiscountedThompson)
