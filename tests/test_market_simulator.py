"""The simulated market: deterministic, reports like a platform, and an oracle no
split under the same rules can beat."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from jangkau.budget.policy import (
    Evidence,
    PolicySettings,
    allocate,
    compile_limits,
    violations,
)
from jangkau.market import SCENARIOS, Market
from jangkau.market.scenarios import Scenario, saturating, shocks, sparse200


def small(scenario: Scenario) -> Scenario:
    """The same recipe over three days, for fast tests."""
    return replace(scenario, hours=72)


def even_split(market: Market) -> np.ndarray:
    budget = market.campaign.hourly_budget_micros
    return np.full(market.n_arms, budget // market.n_arms, np.int64)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_seed_same_market_and_reports(name: str) -> None:
    first, again = Market(small(SCENARIOS[name]()), 7), Market(small(SCENARIOS[name]()), 7)
    budgets = even_split(first)
    for hour in (5, 0, 30):  # any order
        a, b = first.step(hour, budgets), again.step(hour, budgets)
        for field in ("spend_micros", "impressions", "reach", "clicks", "conversions"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(first.campaign.prior_theta, again.campaign.prior_theta)


def test_different_seeds_draw_different_campaigns() -> None:
    assert not np.allclose(Market(saturating(), 1).theta, Market(saturating(), 2).theta)


def test_reports_are_consistent_like_a_platform_report() -> None:
    market = Market(small(saturating()), 3)
    budgets = even_split(market)
    for hour in range(48):
        report = market.step(hour, budgets)
        assert (report.spend_micros <= budgets).all()
        assert (report.conversions <= report.clicks).all()
        assert (report.clicks <= report.impressions).all()
        assert (report.reach <= report.impressions).all()
        assert report.spend_micros.dtype == np.int64


def test_platforms_under_deliver() -> None:
    market = Market(small(saturating()), 4)
    budgets = even_split(market)
    spent = sum(market.step(h, budgets).spend_micros.sum() for h in range(24))
    assert spent < 0.99 * budgets.sum() * 24


def test_counts_are_over_dispersed() -> None:
    market = Market(saturating(), 5)
    budgets = even_split(market)
    hours = range(0, 1440, 24)  # the same hour of the day
    counts = np.array([market.step(h, budgets).conversions[0] for h in hours], float)
    expected = np.array([market.true_expected(h, budgets)[0] for h in hours])
    assert np.var(counts - expected) > 1.5 * expected.mean()


def test_daily_cycle_peaks_in_the_evening() -> None:
    market = Market(saturating(), 6)
    budgets = even_split(market)
    by_hour = [market.true_expected(h, budgets).sum() for h in range(24)]
    assert 17 <= int(np.argmax(by_hour)) <= 23
    assert min(by_hour) < 0.6 * max(by_hour)


def test_disapproved_ad_delivers_nothing_for_two_days() -> None:
    market = Market(shocks(), 8)
    arm, start, end = market.disapproved[0]
    assert end - start == 48
    budgets = even_split(market)
    assert market.step(start + 10, budgets).spend_micros[arm] == 0
    assert market.true_expected(start + 10, budgets)[arm] == 0


def test_restated_report_adds_late_conversions_and_settles() -> None:
    market = Market(small(saturating()), 9, restatements=True)
    budgets = even_split(market) * 3
    first = market.step(10, budgets)
    later = market.report(10, 10 + 30)
    final = market.report(10, 10 + 100)
    assert (first.conversions <= later.conversions).all()
    assert (later.conversions <= final.conversions).all()
    assert final.conversions.sum() > first.conversions.sum()
    assert np.array_equal(first.spend_micros, final.spend_micros)
    assert np.array_equal(final.conversions, market.report(10, 10 + 500).conversions)


def test_sparse200_has_200_arms_with_few_conversions_each() -> None:
    market = Market(sparse200(), 1)
    budgets = even_split(market)
    expected = market.true_expected(20, budgets)
    assert market.n_arms == 200
    assert expected.mean() < 0.5


@pytest.mark.parametrize("name", ["saturating", "s_shaped"])
def test_oracle_beats_every_split_under_the_same_rules(name: str) -> None:
    market = Market(SCENARIOS[name](), 11)
    campaign = market.campaign
    budget = campaign.hourly_budget_micros
    rules = campaign.rules()
    rng = np.random.default_rng(0)
    previous = None
    for hour in (0, 13, 20):
        arms = campaign.arm_table(previous)
        oracle = market.oracle_split(hour, budget, arms, campaign.coverage_floors)
        assert violations(arms, oracle, budget, rules, campaign.coverage_floors) == []
        best = market.true_expected(hour, oracle).sum()
        policy = allocate(
            arms, Evidence.empty(len(arms)), budget, rules, hour, campaign.coverage_floors
        )
        rivals = [np.array([d.budget_micros for d in policy.arms])]
        limits = compile_limits(arms, budget, rules, campaign.coverage_floors)
        for _ in range(200):  # random splits that keep the rules
            weights = rng.dirichlet(np.ones(market.n_arms) * 0.5)
            x = np.clip(np.floor(weights * budget), limits.lo, limits.hi).astype(np.int64)
            if not violations(arms, x, budget, rules, campaign.coverage_floors):
                rivals.append(x)
        assert len(rivals) > 1
        for x in rivals:
            assert market.true_expected(hour, x).sum() <= best * (1 + 1e-9)
        previous = oracle


def test_oracle_moves_money_away_from_a_disapproved_ad() -> None:
    market = Market(shocks(), 8)
    arm, start, _ = market.disapproved[0]
    campaign = market.campaign
    split = market.oracle_split(
        start + 5, campaign.hourly_budget_micros, campaign.arm_table(), campaign.coverage_floors
    )
    assert split[arm] == 0 or split[arm] == campaign.min_micros[arm]


def test_policy_settings_of_the_campaign_rules_have_no_exploration() -> None:
    rules = Market(saturating(), 1).campaign.rules()
    assert rules == PolicySettings(exploration_floor=0.0, max_change_percent=50.0)
