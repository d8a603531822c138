"""The allocation policy never breaks a rule, refuses infeasible rule sets with a message
naming the conflict, and is reproducible by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jangkau.budget.policy import (
    ArmSpec,
    CoverageFloorSpec,
    Evidence,
    Infeasible,
    PolicySettings,
    allocate,
    violations,
)

BUDGET = 1_000_000_000  # Rp 1,000 an hour


def broken_rules(
    arms: list[ArmSpec],
    budgets: list[int],
    budget: int,
    max_change_percent: float,
    floors: tuple[CoverageFloorSpec, ...] = (),
) -> list[str]:
    """The documented rules, checked independently of the policy module."""
    found = []
    for arm, x in zip(arms, budgets, strict=True):
        if not isinstance(x, int) or x < 0:
            found.append(f"{arm.arm_id}: not a non-negative integer")
            continue
        if x == 0:
            continue
        if not arm.eligible:
            found.append(f"{arm.arm_id}: ineligible but on")
        if x < arm.min_micros:
            found.append(f"{arm.arm_id}: below minimum")
        if arm.max_micros is not None and x > arm.max_micros:
            found.append(f"{arm.arm_id}: above maximum")
        prev = arm.previous_micros
        if prev:
            delta = math.floor(prev * max_change_percent / 100)
            low, high = prev - delta, prev + delta
            top = arm.max_micros if arm.max_micros is not None else math.inf
            if high < arm.min_micros:
                allowed = x == arm.min_micros
            elif low > top:
                allowed = x == top
            else:
                allowed = low <= x <= high
            if not allowed:
                found.append(f"{arm.arm_id}: outside the change limit of {prev}")
    for floor in floors:
        if not any(arms[i].eligible for i in floor.arm_indices):
            continue  # dropped: a floor of ineligible arms cannot be met
        got = sum(budgets[i] for i in set(floor.arm_indices))
        if got < floor.min_share * budget - 1e-6:
            found.append(f"floor {floor.name}: {got} < {floor.min_share} of {budget}")
    if sum(budgets) > budget:
        found.append("over the period budget")
    return found


@st.composite
def arm_specs(draw: st.DrawFn, index: int) -> ArmSpec:
    minimum = draw(st.sampled_from([0, 0, 1, 10**6, 5 * 10**7, 3 * 10**8]))
    maximum = draw(st.sampled_from([None, None, 10**6, 2 * 10**8, 6 * 10**8, 2 * 10**9]))
    previous = draw(st.sampled_from([None, 0, 1, 3, 10**6, 10**8, 4 * 10**8, 9 * 10**8]))
    return ArmSpec(
        arm_id=f"arm{index}",
        eligible=draw(st.booleans()) or draw(st.booleans()),
        reason="platform policy",
        min_micros=minimum,
        max_micros=maximum,
        previous_micros=previous,
        value_weight=draw(st.sampled_from([1.0, 0.5, 2.0])),
        prior_theta=draw(st.floats(0.01, 100.0)),
        prior_kappa_micros=draw(st.floats(1e6, 1e11)),
        delivery_ratio=draw(st.sampled_from([1.0, 0.9, 0.3, 0.001])),
    )


@st.composite
def campaigns(
    draw: st.DrawFn,
) -> tuple[list[ArmSpec], Evidence, int, PolicySettings, tuple[CoverageFloorSpec, ...]]:
    n = draw(st.integers(1, 8))
    arms = [draw(arm_specs(i)) for i in range(n)]
    budget = draw(st.sampled_from([0, 1, 999, BUDGET, 7 * BUDGET // 3, 40 * BUDGET]))
    floors = tuple(
        CoverageFloorSpec(
            f"floor{j}",
            tuple(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))),
            draw(st.floats(0.01, 0.6)),
        )
        for j in range(draw(st.integers(0, 2)))
    )
    rules = PolicySettings(
        prior_strength=draw(st.floats(0.5, 50.0)),
        discount=draw(st.floats(0.9, 1.0)),
        exploration_floor=draw(st.sampled_from([0.0, 0.01, 0.2])),
        max_change_percent=draw(st.sampled_from([10.0, 50.0, 100.0, 250.0])),
    )
    hours = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spend = rng.uniform(0, 2 * max(budget, 1) / n, (n, hours)) * (rng.random((n, hours)) < 0.8)
    counts = rng.poisson(spend / 1e7)
    evidence = Evidence.from_history(spend, counts, rules.discount)
    return arms, evidence, budget, rules, floors


@settings(max_examples=300, deadline=None)
@given(campaigns(), st.integers(0, 2**63 - 1))
def test_no_allocation_breaks_a_rule(campaign, seed: int) -> None:
    arms, evidence, budget, rules, floors = campaign
    try:
        result = allocate(arms, evidence, budget, rules, seed, floors)
    except Infeasible as refused:
        assert str(refused)
        return
    budgets = [d.budget_micros for d in result.arms]
    assert broken_rules(arms, budgets, budget, rules.max_change_percent, floors) == []
    assert violations(arms, budgets, budget, rules, floors) == []
    assert result.allocated_micros == sum(budgets)


@settings(max_examples=150, deadline=None)
@given(campaigns(), st.integers(0, 2**63 - 1))
def test_without_coverage_floors_a_split_is_always_found(campaign, seed: int) -> None:
    arms, evidence, budget, rules, _ = campaign
    result = allocate(arms, evidence, budget, rules, seed)
    budgets = [d.budget_micros for d in result.arms]
    assert broken_rules(arms, budgets, budget, rules.max_change_percent) == []


@settings(max_examples=100, deadline=None)
@given(campaigns(), st.integers(0, 2**63 - 1))
def test_same_seed_gives_the_same_split(campaign, seed: int) -> None:
    arms, evidence, budget, rules, floors = campaign
    try:
        first = allocate(arms, evidence, budget, rules, seed, floors)
    except Infeasible:
        return
    again = allocate(arms, evidence, budget, rules, seed, floors)
    assert [d.budget_micros for d in first.arms] == [d.budget_micros for d in again.arms]


def _splits(arms: list[ArmSpec], seeds: range) -> set[tuple[int, ...]]:
    return {
        tuple(
            d.budget_micros
            for d in allocate(arms, Evidence.empty(len(arms)), BUDGET, PolicySettings(), s).arms
        )
        for s in seeds
    }


def test_different_seeds_sample_different_splits() -> None:
    # Off before (previous 0): not a first split, so each seed samples its own curves.
    arms = [
        ArmSpec(f"a{i}", prior_theta=10.0, prior_kappa_micros=3e8, previous_micros=0)
        for i in range(5)
    ]
    assert len(_splits(arms, range(5))) > 1


def test_a_first_split_is_solved_on_the_expected_curves_not_drawn() -> None:
    # No arm has a previous budget: every seed gives the same split, arms alike get
    # alike budgets, and the better prior gets more.
    arms = [
        ArmSpec("meta-a", prior_theta=10.0, prior_kappa_micros=3e8),
        ArmSpec("meta-b", prior_theta=10.0, prior_kappa_micros=3e8),
        ArmSpec("google", prior_theta=4.0, prior_kappa_micros=3e8),
    ]
    (split,) = _splits(arms, range(8))
    assert abs(split[0] - split[1]) <= 1
    assert split[0] > split[2] > 0
    result = allocate(arms, Evidence.empty(3), BUDGET, PolicySettings(), 1)
    assert "the expected curves of a first split" in result.arms[0].reason


def test_ineligible_arm_gets_zero_with_its_reason() -> None:
    arms = [
        ArmSpec("tiktok", eligible=False, reason="TikTok bans paid political ads"),
        ArmSpec("meta"),
    ]
    result = allocate(arms, Evidence.empty(2), BUDGET, PolicySettings(), 1)
    assert result.arms[0].budget_micros == 0
    assert result.arms[0].bound == "ineligible"
    assert "TikTok bans paid political ads" in result.arms[0].reason
    assert result.arms[1].budget_micros == BUDGET


def test_whole_budget_is_spent_when_the_rules_allow() -> None:
    arms = [ArmSpec(f"a{i}", prior_theta=5.0 + i, prior_kappa_micros=2e8) for i in range(4)]
    result = allocate(arms, Evidence.empty(4), BUDGET + 7, PolicySettings(), 3)
    assert result.allocated_micros == BUDGET + 7


def test_arm_above_its_change_limit_is_capped_and_says_so() -> None:
    arms = [
        ArmSpec("strong", prior_theta=100.0, prior_kappa_micros=1e10, previous_micros=10**8),
        ArmSpec("weak", prior_theta=0.01, prior_kappa_micros=1e8, previous_micros=9 * 10**8),
    ]
    rules = PolicySettings(max_change_percent=50.0, exploration_floor=0.0)
    result = allocate(arms, Evidence.empty(2), BUDGET, rules, 2)
    assert result.arms[0].budget_micros == 150_000_000
    assert result.arms[0].bound == "change_limit"


def test_reasons_name_amounts_in_the_campaigns_currency() -> None:
    arms = [
        ArmSpec("capped", prior_theta=100.0, prior_kappa_micros=1e10, max_micros=250_000_000),
        ArmSpec("held", prior_theta=100.0, prior_kappa_micros=1e10, previous_micros=10**8),
        ArmSpec("rest", prior_theta=1.0, prior_kappa_micros=1e8),
    ]
    rules = PolicySettings(max_change_percent=50.0, exploration_floor=0.0)
    rupiah = allocate(arms, Evidence.empty(3), BUDGET, rules, 2).arms
    assert [a.bound for a in rupiah[:2]] == ["maximum", "change_limit"]
    assert rupiah[0].reason == "at its maximum of Rp 250 an hour"
    assert rupiah[1].reason == "held within the change limit from its previous Rp 100"
    dollars = allocate(arms, Evidence.empty(3), BUDGET, rules, 2, currency="USD").arms
    assert dollars[0].reason == "at its maximum of 250.00 USD an hour"
    assert all("micros" not in a.reason for a in (*rupiah, *dollars))


def test_a_change_limit_too_large_for_int64_leaves_the_arms_unlimited() -> None:
    arms = [ArmSpec("a", previous_micros=10**9), ArmSpec("b", previous_micros=4 * 10**18)]
    rules = PolicySettings(max_change_percent=1e300)
    result = allocate(arms, Evidence.empty(2), 2 * BUDGET, rules, 4)
    budgets = [d.budget_micros for d in result.arms]
    assert sum(budgets) == 2 * BUDGET
    assert violations(arms, budgets, 2 * BUDGET, rules) == []


def test_arm_that_was_off_may_restart_at_any_level() -> None:
    arms = [ArmSpec("restart", prior_theta=100.0, prior_kappa_micros=1e10, previous_micros=0)]
    result = allocate(arms, Evidence.empty(1), BUDGET, PolicySettings(max_change_percent=10.0), 4)
    assert result.arms[0].budget_micros == BUDGET


def test_arm_may_always_be_switched_off() -> None:
    arms = [
        ArmSpec("big", previous_micros=9 * 10**8, min_micros=8 * 10**8),
        ArmSpec("small", previous_micros=10**8),
    ]
    # The period budget collapsed: keeping "big" within its change limit would overspend.
    result = allocate(arms, Evidence.empty(2), 10**8, PolicySettings(max_change_percent=10.0), 5)
    assert result.arms[0].budget_micros == 0
    assert result.arms[0].bound == "off"
    assert broken_rules(arms, [d.budget_micros for d in result.arms], 10**8, 10.0) == []


def test_coverage_floor_raises_its_arms() -> None:
    arms = [
        ArmSpec("urban", prior_theta=100.0, prior_kappa_micros=1e10),
        ArmSpec("rural", prior_theta=0.1, prior_kappa_micros=1e8),
    ]
    floors = (CoverageFloorSpec("rural", (1,), 0.3),)
    rules = PolicySettings(exploration_floor=0.0)
    result = allocate(arms, Evidence.empty(2), BUDGET, rules, 6, floors)
    assert result.arms[1].budget_micros == 300_000_000
    assert result.arms[1].bound == "coverage_floor"
    assert "rural" in result.arms[1].reason


def test_floor_whose_arms_are_all_ineligible_is_dropped_and_says_so() -> None:
    arms = [
        ArmSpec("urban"),
        ArmSpec("rural-a", eligible=False, reason="audience aud_1 no longer exists"),
        ArmSpec("rural-b", eligible=False, reason="TikTok bans paid political ads"),
    ]
    floors = (CoverageFloorSpec("rural", (1, 2), 0.3),)
    result = allocate(arms, Evidence.empty(3), BUDGET, PolicySettings(), 6, floors)
    assert [a.budget_micros for a in result.arms] == [BUDGET, 0, 0]
    for decision in result.arms[1:]:
        assert decision.bound == "ineligible"
        assert "coverage floor 'rural' dropped: none of its arms is eligible" in decision.reason
    assert violations(arms, [BUDGET, 0, 0], BUDGET, PolicySettings(), floors) == []


def test_floor_with_one_eligible_arm_left_is_met_by_it() -> None:
    arms = [
        ArmSpec("urban", prior_theta=100.0, prior_kappa_micros=1e10),
        ArmSpec("rural-a", eligible=False, reason="audience aud_1 no longer exists"),
        ArmSpec("rural-b", prior_theta=0.1, prior_kappa_micros=1e8),
    ]
    floors = (CoverageFloorSpec("rural", (1, 2), 0.3),)
    rules = PolicySettings(exploration_floor=0.0)
    result = allocate(arms, Evidence.empty(3), BUDGET, rules, 6, floors)
    assert [a.budget_micros for a in result.arms] == [700_000_000, 0, 300_000_000]
    assert "dropped" not in result.arms[1].reason


def test_floor_beyond_its_arms_maxima_is_refused_by_name() -> None:
    arms = [ArmSpec("a", max_micros=10**8), ArmSpec("b", max_micros=10**8), ArmSpec("c")]
    floors = (CoverageFloorSpec("rural", (0, 1), 0.5),)
    with pytest.raises(
        Infeasible, match="coverage floor 'rural' needs 500000000 .* allow 200000000"
    ):
        allocate(arms, Evidence.empty(3), BUDGET, PolicySettings(), 1, floors)


def test_floor_whose_minimums_exceed_the_budget_is_refused_naming_the_arms() -> None:
    arms = [ArmSpec("a", min_micros=2 * BUDGET), ArmSpec("b", min_micros=3 * BUDGET), ArmSpec("c")]
    floors = (CoverageFloorSpec("rural", (0, 1), 0.1),)
    with pytest.raises(Infeasible, match=r"minimums of arms a,b sum to 5000000000 > period budget"):
        allocate(arms, Evidence.empty(3), BUDGET, PolicySettings(), 1, floors)


def test_floors_that_together_need_more_than_the_budget_are_refused() -> None:
    arms = [ArmSpec("a"), ArmSpec("b"), ArmSpec("c")]
    floors = (CoverageFloorSpec("rural", (0,), 0.6), CoverageFloorSpec("papua", (1,), 0.6))
    with pytest.raises(Infeasible, match="coverage floors 'rural','papua' need"):
        allocate(arms, Evidence.empty(3), BUDGET, PolicySettings(), 1, floors)


def test_floor_blocked_by_the_change_limit_is_refused() -> None:
    arms = [ArmSpec("rural", previous_micros=10**7), ArmSpec("urban", previous_micros=9 * 10**8)]
    floors = (CoverageFloorSpec("rural", (0,), 0.5),)
    with pytest.raises(Infeasible, match="coverage floor 'rural'"):
        allocate(
            arms, Evidence.empty(2), BUDGET, PolicySettings(max_change_percent=50.0), 1, floors
        )


def test_every_decision_is_explained() -> None:
    arms = [
        ArmSpec("a", prior_theta=20.0, prior_kappa_micros=3e8, previous_micros=3 * 10**8),
        ArmSpec("b", prior_theta=5.0, prior_kappa_micros=1e8, min_micros=10**8),
        ArmSpec("c", eligible=False, reason="no political ads"),
    ]
    history = np.array([[3e8] * 10, [1e8] * 10, [0.0] * 10])
    evidence = Evidence.from_history(history, np.full((3, 10), 4.0), 0.99)
    result = allocate(arms, evidence, BUDGET, PolicySettings(), 9)
    for decision in result.arms:
        assert decision.bound in {
            "optimal",
            "ineligible",
            "minimum",
            "off",
            "maximum",
            "change_limit",
            "coverage_floor",
            "exploration",
        }
        assert decision.reason and "\n" not in decision.reason
        assert decision.expected_low <= decision.expected <= decision.expected_high
        assert decision.posterior_sd >= 0 and decision.marginal_return >= 0
    assert result.arms[0].expected > 0
