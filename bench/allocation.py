"""Allocation benchmark: the product policy against baselines and an oracle on simulated
60-day campaigns (1,440 hourly rebalances).

Scenarios (jangkau.market.scenarios): saturating, s_shaped, shocks, drift, sparse200;
each replayed on BENCHMARK_SEEDS, which the Optuna tuner never sees (it uses
TUNING_SEEDS). Every allocator obeys the campaign's rules (per-arm minimums and maxima,
a 50% change limit between hours, a 20% coverage floor for the rural arms, the hourly
budget); every hour's split is checked and broken rules are counted.

Score: Σ over the flight of the true expected conversions of the chosen budgets, as a
percentage of the oracle's (which knows every hour's true curves), median over seeds;
"margin pp" is the policy's lead over the best baseline, "jangkau min" its worst seed.
"as served" is the policy with only the inputs the budget service sends it today (no
S-shaped curve statistics, delivery ratios of 1); its worst scenario is printed too.

    .venv/bin/python bench/allocation.py [--seeds N] [--hours H] [--workers W]

Last line: `allocation: worst scenario %oracle=<x> margin over best baseline=<x>
violations=<n>`: the lowest median %oracle of the policy over the scenarios, and the
smallest lead of the policy over the best baseline in any scenario (percentage points).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from jangkau.budget.policy import default_settings
from jangkau.market import SCENARIOS, Market
from jangkau.market.baselines import BASELINES
from jangkau.market.replay import (
    BENCHMARK_SEEDS,
    JangkauAllocator,
    OracleAllocator,
    ReplayResult,
    replay,
)

POLICY = "jangkau"
# The policy with only the inputs the budget service sends it today (see JangkauAllocator).
AS_SERVED = "as served"
BASELINE_NAMES = tuple(b.name for b in BASELINES)


def run_campaign(job: tuple[str, int, int | None]) -> tuple[str, int, list[ReplayResult]]:
    """Every allocator on one (scenario, seed) campaign."""
    name, seed, hours = job
    market = Market(SCENARIOS[name](), seed)
    campaign = market.campaign
    allocators = [
        OracleAllocator(market),
        JangkauAllocator(campaign, default_settings(), seed),
        JangkauAllocator(campaign, default_settings(), seed, as_served=True),
        *(baseline(campaign, seed) for baseline in BASELINES),
    ]
    return name, seed, [replay(market, allocator, hours) for allocator in allocators]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(BENCHMARK_SEEDS))
    parser.add_argument("--hours", type=int, default=None, help="shorter flights (smoke runs)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    seeds = BENCHMARK_SEEDS[: args.seeds]
    jobs = [(name, seed, args.hours) for name in SCENARIOS for seed in seeds]
    started = time.perf_counter()
    # pct[scenario][allocator] = %oracle per seed; broken[allocator] = violations.
    pct: dict[str, dict[str, list[float]]] = {name: {} for name in SCENARIOS}
    broken: dict[str, int] = {}
    first_broken: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, _seed, results in pool.map(run_campaign, jobs):
            oracle = results[0].expected
            for result in results:
                pct[name].setdefault(result.name, []).append(100.0 * result.expected / oracle)
                broken[result.name] = broken.get(result.name, 0) + result.violations
                if result.first_violation and result.name not in first_broken:
                    first_broken[result.name] = f"{name}/{_seed} {result.first_violation}"

    columns = [POLICY, AS_SERVED, *BASELINE_NAMES, "oracle"]
    hours = args.hours or "all"
    print(
        f"conversions as % of the oracle, median over seeds {list(seeds)}, hours={hours}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        f"{'scenario':<12}"
        + "".join(f"{c:>15}" for c in columns)
        + f"{'margin pp':>11}{'jangkau min':>13}"
    )
    worst = float("inf")
    worst_served = float("inf")
    margin = float("inf")
    for name in SCENARIOS:
        medians = {c: statistics.median(pct[name][c]) for c in columns}
        best_baseline = max(medians[b] for b in BASELINE_NAMES)
        lead = medians[POLICY] - best_baseline
        worst = min(worst, medians[POLICY])
        worst_served = min(worst_served, medians[AS_SERVED])
        margin = min(margin, lead)
        print(
            f"{name:<12}"
            + "".join(f"{medians[c]:>15.1f}" for c in columns)
            + f"{lead:>11.1f}{min(pct[name][POLICY]):>13.1f}"
        )
    print(f"{'violations':<12}" + "".join(f"{broken.get(c, 0):>15d}" for c in columns))
    for allocator, text in first_broken.items():
        print(f"first violation of {allocator}: {text}")
    print(f"as served by the budget service: worst scenario %oracle={worst_served:.1f}")
    total = broken.get(POLICY, 0)
    print(
        f"allocation: worst scenario %oracle={worst:.1f} "
        f"margin over best baseline={margin:.1f} violations={total}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
