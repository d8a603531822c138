"""The constrained split is the optimum of the sampled curves: it matches a brute-force
search on small cases and rounds to integer micros without crossing a bound."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jangkau.budget.policy import (
    ArmSpec,
    CoverageFloorSpec,
    ExponentialCurves,
    PolicySettings,
    compile_limits,
    constrained_split,
    violations,
)

RULES = PolicySettings(exploration_floor=0.0, max_change_percent=50.0)


def total_value(theta: np.ndarray, kappa: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (theta * -np.expm1(-x / kappa)).sum(axis=-1)


def brute_force(
    theta: np.ndarray, kappa: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: int, steps: int
) -> float:
    """Best value over a fine lattice of three-arm splits within the bounds."""
    grids = [np.linspace(lo[i], hi[i], steps) for i in range(3)]
    a, b = np.meshgrid(grids[0], grids[1], indexing="ij")
    best = -np.inf
    for c in grids[2]:
        x = np.stack([a, b, np.full_like(a, c)], axis=-1)
        ok = x.sum(axis=-1) <= budget
        if ok.any():
            best = max(best, float(total_value(theta, kappa, x[ok]).max()))
    return best


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.5, 50.0), min_size=3, max_size=3),
    st.lists(st.floats(1e7, 1e9), min_size=3, max_size=3),
    st.integers(10**7, 3 * 10**9),
    st.lists(st.sampled_from([None, 2 * 10**8, 6 * 10**8]), min_size=3, max_size=3),
)
def test_split_matches_brute_force_on_three_arms(
    thetas: list[float], kappas: list[float], budget: int, maxima: list[int | None]
) -> None:
    theta, kappa = np.array(thetas), np.array(kappas)
    arms = [ArmSpec(f"a{i}", max_micros=m) for i, m in enumerate(maxima)]
    limits = compile_limits(arms, budget, RULES)
    x = constrained_split(ExponentialCurves(theta, kappa), limits).budgets
    best = brute_force(theta, kappa, limits.lo, limits.hi.astype(float), budget, 121)
    got = float(total_value(theta, kappa, x.astype(float)))
    assert got >= best - 1e-9 * abs(best) - 1e-9
    assert x.sum() <= budget


def test_split_equalises_marginal_returns_of_unbound_arms() -> None:
    theta = np.array([10.0, 20.0, 5.0, 8.0])
    kappa = np.array([2e8, 5e8, 1e8, 3e8])
    arms = [ArmSpec(f"a{i}") for i in range(4)]
    x = constrained_split(ExponentialCurves(theta, kappa), compile_limits(arms, 10**9, RULES))
    inside = x.budgets > 0
    marginal = theta / kappa * np.exp(-x.budgets / kappa)
    assert np.ptp(marginal[inside]) < 1e-6 * marginal[inside].max()


def test_split_with_minimums_matches_brute_force_over_on_off_sets() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        theta = rng.uniform(1, 20, 4)
        kappa = rng.uniform(5e7, 5e8, 4)
        mins = rng.choice([0, 10**8, 3 * 10**8], 4)
        budget = int(rng.uniform(2e8, 1.2e9))
        arms = [ArmSpec(f"a{i}", min_micros=int(m)) for i, m in enumerate(mins)]
        limits = compile_limits(arms, budget, RULES)
        x = constrained_split(ExponentialCurves(theta, kappa), limits).budgets
        assert violations(arms, x, budget, RULES) == []
        got = float(total_value(theta, kappa, x.astype(float)))
        best = 0.0
        for on in itertools.product([False, True], repeat=4):
            sel = np.flatnonzero(on)
            if mins[sel].sum() > budget:
                continue
            sub = [ArmSpec(f"a{i}", min_micros=int(mins[i])) for i in sel]
            if not sub:
                continue
            sub_limits = compile_limits(sub, budget, RULES)
            # With the on-set fixed the problem is concave: solve it with minimums as bounds.
            forced = type(sub_limits)(
                **{**sub_limits.__dict__, "force_on": np.ones(len(sub), bool)}
            )
            y = constrained_split(ExponentialCurves(theta[sel], kappa[sel]), forced).budgets
            best = max(best, float(total_value(theta[sel], kappa[sel], y.astype(float))))
        assert got >= 0.99 * best


def test_rounding_never_crosses_a_bound() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        arms = [
            ArmSpec(
                f"a{i}",
                min_micros=int(rng.choice([0, 7, 333])),
                max_micros=[None, 1001, 5003][int(rng.integers(3))],
                previous_micros=[None, 0, 17, 999][int(rng.integers(4))],
            )
            for i in range(n)
        ]
        floors = (CoverageFloorSpec("f", (0,), 0.01),)
        budget = int(rng.integers(0, 20_000))
        curves = ExponentialCurves(rng.uniform(0.1, 5, n), rng.uniform(50, 5000, n))
        try:
            limits = compile_limits(arms, budget, RULES, floors)
        except Exception:  # infeasible draws are tested elsewhere
            continue
        x = constrained_split(curves, limits).budgets
        assert x.dtype == np.int64
        assert violations(arms, x, budget, RULES, floors) == []
