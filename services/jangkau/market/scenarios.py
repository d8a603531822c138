"""Scenarios of the simulated market: how many arms, how their hidden response curves
look and move, what the platforms do to delivery, and the campaign's own rules.

A scenario is a recipe; `Market(scenario, seed)` draws one concrete campaign from it.
Money is micros per hour. The default scale is a Pilkada campaign of Rp 5 billion over
60 days: 5e15 micros / 1,440 hours ≈ 3.5e12 micros an hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PILKADA_HOURLY_BUDGET_MICROS = 3_500_000_000_000
CAMPAIGN_HOURS = 1_440


@dataclass(frozen=True)
class Scenario:
    name: str
    n_arms: int
    hours: int = CAMPAIGN_HOURS
    hourly_budget_micros: int = PILKADA_HOURLY_BUDGET_MICROS
    # Response curve family: θ·(1 − e^(−x/κ)) or the S-shaped Hill θ·xⁿ/(xⁿ + κⁿ).
    curve: Literal["exponential", "hill"] = "exponential"
    hill_shape: tuple[float, float] = (1.5, 2.5)
    # Cost of a conversion at the first micro of spend, median over arms, and its spread
    # (ln units); θ_i = κ_i / cost_i, so f'(0) = 1 / cost_i.
    cost_per_conversion_micros: float = 1.5e10
    cost_spread: float = 0.45
    # Saturation scale κ around an even share of the hourly budget (ln-unit spread).
    kappa_spread: float = 0.6
    # Hour-of-day multiplier of θ: 1 + amplitude·cos(2π(h − peak)/24), peak near 20:00 WIB,
    # each arm's peak shifted by a normal number of hours.
    diurnal_amplitude: float = 0.5
    diurnal_phase_sd_hours: float = 1.0
    # Slow drift: daily random-walk steps of ln θ and ln κ, and a per-arm trend of ln θ
    # over the whole flight (normal with this sd).
    drift_daily_sd: float = 0.015
    drift_trend_sd: float = 0.0
    # Costs rise towards voting day: κ grows by this share by the end of the flight.
    cost_rise: float = 0.0
    # Sudden shocks: ads disapproved (no delivery) for `disapproval_hours`, and
    # step changes of an arm's θ (creative fatigue, a new creative, a rival's push).
    disapprovals: int = 0
    disapproval_hours: int = 48
    response_shocks: int = 0
    # Gamma-Poisson counts: shape of the Gamma mixing (smaller: more over-dispersed).
    dispersion: float = 8.0
    # Share of the budget a platform delivers, per arm, and its hourly jitter.
    delivery_range: tuple[float, float] = (0.85, 1.0)
    delivery_jitter: float = 0.04
    # Inventory: spend an arm can absorb in an hour, in units of κ at the diurnal peak.
    inventory_kappas: float = 8.0
    # Platform cost of 1,000 impressions (Rp 25,000) and click-through rates.
    cpm_micros: float = 2.5e10
    ctr_range: tuple[float, float] = (0.004, 0.02)
    # Noise (ln units) of the cold-start guesses of θ and κ that audience reach and
    # platform cost benchmarks give the policy.
    prior_noise: float = 0.5
    # Campaign rules: change limit between consecutive hours (percent); a coverage floor
    # over a share of the arms ("rural": lower connectivity, converting at
    # `floor_efficiency` of the others); per-arm minimums as shares of an even split;
    # a maximum (as a multiple of an even split) on a share of the arms.
    change_limit_percent: float = 50.0
    floor_share: float = 0.2
    floor_arm_share: float = 0.25
    floor_efficiency: float = 0.6
    minimum_levels: tuple[float, ...] = (0.05, 0.05, 0.25)
    capped_arm_share: float = 0.25
    cap_multiple: float = 2.5


def saturating() -> Scenario:
    """12 arms with saturating exponential curves, mild drift."""
    return Scenario("saturating", 12)


def s_shaped() -> Scenario:
    """10 arms whose response is S-shaped (Hill curves): little return from small budgets."""
    return Scenario("s_shaped", 10, curve="hill")


def shocks() -> Scenario:
    """12 arms; four ads disapproved for two days and four sudden changes of response."""
    return Scenario("shocks", 12, disapprovals=4, response_shocks=4)


def drift() -> Scenario:
    """12 arms whose curves wander and trend, with costs rising towards voting day."""
    return Scenario("drift", 12, drift_daily_sd=0.06, drift_trend_sd=0.5, cost_rise=0.5)


def sparse200() -> Scenario:
    """200 arms (province × platform × age band), a few conversions an hour in all."""
    return Scenario(
        "sparse200",
        200,
        cost_per_conversion_micros=1.2e11,
        cost_spread=0.5,
        kappa_spread=0.8,
        minimum_levels=(0.05, 0.1, 0.25),
    )


SCENARIOS = {
    "saturating": saturating,
    "s_shaped": s_shaped,
    "shocks": shocks,
    "drift": drift,
    "sparse200": sparse200,
}
