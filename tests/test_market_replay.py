"""Replaying simulated campaigns: every allocator keeps the rules, the product policy
learns, and the tuner's seeds never meet the benchmark's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jangkau.budget.policy import PolicySettings
from jangkau.market import SCENARIOS, Market
from jangkau.market.baselines import BASELINES
from jangkau.market.replay import (
    BENCHMARK_SEEDS,
    TUNING_SEEDS,
    JangkauAllocator,
    OracleAllocator,
    replay,
)


def short_market(name: str, seed: int = 5, hours: int = 48) -> Market:
    return Market(replace(SCENARIOS[name](), hours=hours), seed)


def test_tuning_and_benchmark_seeds_never_meet() -> None:
    assert not set(TUNING_SEEDS) & set(BENCHMARK_SEEDS)
    assert len(BENCHMARK_SEEDS) >= 5


@pytest.mark.parametrize("name", ["saturating", "shocks", "sparse200"])
def test_every_allocator_keeps_the_campaign_rules(name: str) -> None:
    market = short_market(name, hours=36)
    allocators = [
        OracleAllocator(market),
        JangkauAllocator(market.campaign, PolicySettings(), 5),
        JangkauAllocator(market.campaign, PolicySettings(), 5, as_served=True),
        *(baseline(market.campaign, 5) for baseline in BASELINES),
    ]
    for allocator in allocators:
        result = replay(market, allocator)
        assert result.violations == 0, (allocator.name, result.first_violation)
        assert result.spend_micros > 0


def test_replay_is_deterministic() -> None:
    market = short_market("drift")
    first = replay(market, JangkauAllocator(market.campaign, PolicySettings(), 3))
    again = replay(market, JangkauAllocator(market.campaign, PolicySettings(), 3))
    assert first == again


def test_policy_learns_to_beat_an_even_split() -> None:
    market = short_market("saturating", seed=TUNING_SEEDS[0], hours=240)
    oracle = replay(market, OracleAllocator(market)).expected
    policy = replay(market, JangkauAllocator(market.campaign, PolicySettings(), 1)).expected
    uniform = replay(market, BASELINES[0](market.campaign, 1)).expected
    assert uniform < policy <= oracle


def test_as_served_the_policy_gets_only_what_the_budget_service_sends() -> None:
    market = short_market("shocks", hours=200)
    arm, start, _ = market.disapproved[0]
    full = JangkauAllocator(market.campaign, PolicySettings(), 2)
    served = JangkauAllocator(market.campaign, PolicySettings(), 2, as_served=True)
    for allocator in (full, served):
        replay(market, allocator, hours=start + 6)
    # Without S-shaped statistics, and with full delivery even for a disapproved ad.
    assert served.evidence.s_kappas_micros is None
    assert full.evidence.s_kappas_micros is not None
    assert (served.delivery() == 1.0).all()
    assert full.delivery()[arm] < 1.0
