"""The simulated market: arms with hidden response curves that the policy never sees,
hour-by-hour delivery and reports, and an oracle that knows the curves.

What a campaign learns from `step` is only what a platform reports for an hour: spend
actually delivered, impressions, reach, clicks and conversions. Everything is numpy and
deterministic in (scenario, seed, hour, budgets): the hidden paths (drift, shocks,
daily cycles, delivery) are drawn once at construction and each hour's noise comes from
its own random stream, so calling hours in any order, or the same hour for several
policies, gives the same answers for the same budgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from jangkau.budget.policy import (
    NO_MAX_MICROS,
    ArmSpec,
    ArmTable,
    CoverageFloorSpec,
    ExponentialCurves,
    Limits,
    PolicySettings,
    ResponseCurves,
    compile_limits,
    constrained_split,
)
from jangkau.market.scenarios import Scenario

# Share of conversions a platform reports late, and when (hours after the hour) the
# late ones arrive, in three tranches with these shares.
_LATE_SHARE = 0.15
_LATE_AFTER_HOURS = (6, 24, 72)
_LATE_TRANCHES = (0.5, 0.3, 0.2)


@dataclass(frozen=True)
class HourDelivery:
    """One hour as the platforms report it, per arm (all int64)."""

    hour: int
    spend_micros: np.ndarray
    impressions: np.ndarray
    reach: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray


@dataclass(frozen=True)
class CampaignSetup:
    """What the campaign team knows and sets: arms, rules, cold-start guesses."""

    arm_ids: tuple[str, ...]
    hourly_budget_micros: int
    min_micros: np.ndarray  # int64
    max_micros: np.ndarray  # int64, NO_MAX_MICROS for none
    prior_theta: np.ndarray
    prior_kappa_micros: np.ndarray
    coverage_floors: tuple[CoverageFloorSpec, ...]
    max_change_percent: float

    @property
    def n_arms(self) -> int:
        return len(self.arm_ids)

    def arm_table(
        self, previous: np.ndarray | None = None, delivery: np.ndarray | None = None
    ) -> ArmTable:
        """The arms with their hard rules and priors, as the policy's columns, with the
        previous budgets and delivered/budget ratios when known."""
        n = self.n_arms
        prev = np.full(n, -1, np.int64) if previous is None else np.asarray(previous, np.int64)
        return ArmTable(
            self.arm_ids,
            np.ones(n, bool),
            ("",) * n,
            self.min_micros,
            self.max_micros,
            prev,
            np.ones(n),
            self.prior_theta,
            self.prior_kappa_micros,
            np.ones(n) if delivery is None else np.asarray(delivery, float),
        )

    def rules(self) -> PolicySettings:
        """The campaign's hard rules as policy settings (no exploration)."""
        return PolicySettings(exploration_floor=0.0, max_change_percent=self.max_change_percent)


@dataclass(frozen=True)
class HillCurves:
    """f_i(x) = θ_i·zⁿ/(1 + zⁿ), z = x/κ_i: S-shaped for n > 1 (budget micros).

    Not concave, so the Lagrangian best response is taken over a geometric grid of
    z (3% steps) plus the bounds, and the budget left by the bisection goes to the
    arms with the best marginal gains in small chunks."""

    theta: np.ndarray
    kappa: np.ndarray
    shape: np.ndarray
    grid: np.ndarray = field(default_factory=lambda: np.geomspace(0.01, 100.0, 300))
    # > 0: candidates are this many evenly spaced points of [lo, hi] instead (for
    # narrow ranges).
    window_points: int = 0
    # Every arm pays from its first micro (ResponseCurves.start).
    start: None = None

    def value(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        z = np.maximum(x, 0.0) / self.kappa[idx]
        zn = z ** self.shape[idx]
        return self.theta[idx] * zn / (1.0 + zn)

    def _candidates(
        self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.window_points:
            steps = np.linspace(0.0, 1.0, self.window_points)
            x = lo[:, None] + (hi - lo)[:, None] * steps[None, :]
        else:
            x = np.clip(self.kappa[idx][:, None] * self.grid[None, :], lo[:, None], hi[:, None])
            x = np.concatenate([lo[:, None], x, hi[:, None]], axis=1)
        return x, self.value(idx[:, None], x)

    def best_on(self, idx: np.ndarray, lam: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        x, f = self._candidates(idx, lo, hi)
        return x[np.arange(idx.size), np.argmax(f - lam * x, axis=1)]

    def fill(
        self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float
    ) -> tuple[np.ndarray, float]:
        if idx.size == 0:
            return np.zeros(0), 0.0
        if budget >= hi.sum():
            return hi.astype(float), 0.0
        if budget <= lo.sum():
            return lo.astype(float), math.inf
        x, f = self._candidates(idx, lo, hi)
        rows = np.arange(idx.size)
        gain = f - f[:, :1]
        spent = x - x[:, :1]
        top = float(np.max(np.where(spent > 0, gain / np.maximum(spent, 1e-300), 0.0))) * 2 + 1e-300
        lo_log, hi_log = math.log(top) - 60.0, math.log(top)
        for _ in range(40):
            mid = 0.5 * (lo_log + hi_log)
            pick = x[rows, np.argmax(f - math.exp(mid) * x, axis=1)]
            if pick.sum() > budget:
                lo_log = mid
            else:
                hi_log = mid
        lam = math.exp(hi_log)
        chosen = x[rows, np.argmax(f - lam * x, axis=1)]
        left = budget - chosen.sum()
        now = self.value(idx, chosen)
        for chunks in range(8, 0, -1):
            if left <= 1.0:
                break
            step = np.minimum(left / chunks, hi - chosen)
            better = self.value(idx, chosen + step) - now
            i = int(np.argmax(better))
            chosen[i] += step[i]
            now[i] += better[i]
            left -= step[i]
        return chosen, lam


def dp_split(curves: ResponseCurves, limits: Limits, units: int = 250) -> np.ndarray:
    """The best split under `limits` for curves of any shape, by dynamic programming.

    The budget is cut into `units` equal parts; a max-plus convolution over the arms
    finds the global best levels on that lattice (each coverage floor's arms first, held
    to its need), which is exact for S-shaped curves where the Lagrangian split can
    stop at a local optimum. The levels found then bound a final exact split (each arm
    within one unit of its level, the same on/off set), so every rule holds to the micro.
    Coverage floors must not share arms; overlapping ones fall back to the Lagrangian.
    """
    budget = limits.budget
    n_arms = limits.on_ok.size
    members = [f.members for f in limits.floors]
    if budget <= 0 or (
        members and len(np.unique(np.concatenate(members))) < sum(map(len, members))
    ):
        return constrained_split(curves, limits).budgets
    unit = budget / units
    ks = np.arange(units + 1)
    amounts = np.minimum(ks * unit, budget)
    lo = np.where(limits.force_on, limits.lo_explore, limits.lo).astype(float)
    hi = limits.hi.astype(float)
    # value[i, k]: arm i at k units; -inf where a rule forbids it. Amounts round up to
    # whole units, so the lattice never spends more than the budget.
    idx = np.arange(n_arms)
    value = curves.value(np.repeat(idx, units + 1), np.tile(amounts, n_arms)).reshape(
        n_arms, units + 1
    )
    level = np.tile(amounts, (n_arms, 1))
    allowed = (amounts[None, :] >= lo[:, None]) & (amounts[None, :] <= hi[:, None])
    allowed[:, 0] |= ~limits.force_on | (lo <= 0)
    allowed &= limits.on_ok[:, None] | (ks[None, :] == 0)
    # An on-range narrower than a unit: the arm may sit at lo, costing ⌈lo/unit⌉ units.
    narrow = limits.on_ok & ~allowed[:, 1:].any(axis=1)
    for i in np.flatnonzero(narrow):
        k = min(int(math.ceil(lo[i] / unit)), units)
        allowed[i, k] = True
        level[i, k] = lo[i]
        value[i, k] = float(curves.value(np.array([i]), np.array([lo[i]]))[0])
    value = np.where(allowed, value, -np.inf)
    # rest[b, k] = b - k, the units left for the arms before; b < k points at a -inf pad.
    rest_units = ks[:, None] - ks[None, :]
    rest_units = np.where(rest_units >= 0, rest_units, units + 1)

    def convolve(table: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best value with exactly b units after adding a part with these gains per units."""
        grid = np.append(table, -np.inf)[rest_units] + gains[None, :]
        best = np.argmax(grid, axis=1)
        return grid[ks, best], best

    def group_table(arms: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        table = np.full(units + 1, -np.inf)
        table[0] = 0.0
        choices = []
        for arm in arms.tolist():
            table, best = convolve(table, value[arm])
            choices.append(best)
        return table, choices

    grouped = np.zeros(n_arms, bool)
    parts: list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = []
    for floor in limits.floors:
        table, choices = group_table(floor.members)
        need_units = math.ceil(floor.need_micros / unit - 1e-9)
        table = np.where(ks >= need_units, table, -np.inf)
        parts.append((floor.members, table, choices))
        grouped[floor.members] = True
    rest = np.flatnonzero(~grouped)
    table, choices = group_table(rest)
    parts.append((rest, table, choices))
    # Combine the parts: exact units per part, total within the budget.
    total = np.full(units + 1, -np.inf)
    total[0] = 0.0
    splits = []
    for _, part_table, _ in parts:
        total, best = convolve(total, part_table)
        splits.append(best)
    if not np.isfinite(total).any():
        return constrained_split(curves, limits).budgets
    b = int(np.argmax(total))
    x = np.zeros(n_arms)
    for (arms, _, part_choices), split in zip(reversed(parts), reversed(splits), strict=True):
        k_part = int(split[b])
        b -= k_part
        for arm, best in zip(reversed(arms.tolist()), reversed(part_choices), strict=True):
            k = int(best[k_part])
            x[arm] = level[arm, k] if k else 0.0
            k_part -= k
    # The exact finish: the same on/off set, each arm within a unit of its level.
    on = x > 0
    window_lo = np.where(on, np.maximum(limits.lo, np.floor(x - unit)), 0).astype(np.int64)
    window_hi = np.where(on, np.minimum(limits.hi, np.ceil(x + unit)), 0).astype(np.int64)
    narrowed = replace(
        limits,
        on_ok=on,
        lo=np.maximum(window_lo, limits.lo * on),
        hi=np.maximum(window_hi, np.maximum(window_lo, limits.lo * on)),
        force_on=on,
        lo_explore=np.maximum(window_lo, limits.lo * on),
    )
    if isinstance(curves, HillCurves):
        curves = replace(curves, window_points=17)
    return constrained_split(curves, narrowed).budgets


class Market:
    """One simulated campaign drawn from `scenario` with `seed`."""

    def __init__(self, scenario: Scenario, seed: int, restatements: bool = False) -> None:
        self.scenario = scenario
        self.seed = int(seed)
        self.restatements = restatements
        self._reports: dict[int, tuple[HourDelivery, np.ndarray]] = {}
        rng = np.random.default_rng([self.seed, 0])
        s = scenario
        n, hours = s.n_arms, s.hours
        even = s.hourly_budget_micros / n
        hour_axis = np.arange(hours)

        kappa = even * np.exp(rng.normal(0.0, s.kappa_spread, n))
        cost = s.cost_per_conversion_micros * np.exp(rng.normal(0.0, s.cost_spread, n))
        order = rng.permutation(n)
        rural = np.zeros(n, bool)
        rural[order[: max(1, round(n * s.floor_arm_share))]] = True
        cost = np.where(rural, cost / s.floor_efficiency, cost)
        theta = kappa / cost
        self.hill_shape = rng.uniform(*s.hill_shape, n)

        # Daily cycle, drift, trend and rising costs.
        peak = 20.0 + rng.normal(0.0, s.diurnal_phase_sd_hours, n)
        diurnal = 1.0 + s.diurnal_amplitude * np.cos(
            2 * np.pi * ((hour_axis[None, :] % 24) - peak[:, None]) / 24.0
        )
        days = hours // 24 + 2
        position = hour_axis / 24.0

        def walk(sd: float) -> np.ndarray:
            steps = rng.normal(0.0, sd, (n, days))
            steps[:, 0] = 0.0
            path = np.cumsum(steps, axis=1)
            day = np.floor(position).astype(int)
            frac = position - day
            return path[:, day] * (1 - frac) + path[:, day + 1] * frac

        trend = rng.normal(0.0, s.drift_trend_sd, n)[:, None] * (hour_axis[None, :] / hours)
        log_theta = walk(s.drift_daily_sd) + trend
        log_kappa = walk(s.drift_daily_sd / 2)
        theta_path = theta[:, None] * np.exp(log_theta)
        kappa_path = kappa[:, None] * np.exp(log_kappa) * (1.0 + s.cost_rise * hour_axis / hours)

        # Step changes of response from a random hour on.
        for _ in range(s.response_shocks):
            arm = int(rng.integers(n))
            start = int(rng.integers(72, max(73, hours - 72)))
            theta_path[arm, start:] *= float(rng.choice([0.4, 0.5, 2.0, 2.5]))

        base_delivery = rng.uniform(*s.delivery_range, n)
        delivery = np.clip(
            base_delivery[:, None] * (1.0 + s.delivery_jitter * rng.normal(size=(n, hours))),
            0.0,
            1.0,
        )
        self.disapproved: list[tuple[int, int, int]] = []
        for _ in range(s.disapprovals):
            arm = int(rng.integers(n))
            start = int(rng.integers(48, max(49, hours - s.disapproval_hours)))
            delivery[arm, start : start + s.disapproval_hours] = 0.0
            self.disapproved.append((arm, start, start + s.disapproval_hours))

        self.theta = theta_path * diurnal  # expected objective per hour at saturation
        self.kappa = kappa_path
        self.delivery = delivery
        self.inventory = s.inventory_kappas * kappa_path * diurnal / (1 + s.diurnal_amplitude)
        cpm = s.cpm_micros * np.exp(rng.normal(0.0, 0.3, n))
        self.cpm = cpm[:, None] * kappa_path / kappa[:, None]
        self.ctr = rng.uniform(*s.ctr_range, n)
        self.audience = 3.0 * kappa / cpm * 1000.0

        # The campaign: rules, and the noisy guesses reach and cost benchmarks give.
        mins = np.round(rng.choice(s.minimum_levels, n) * even).astype(np.int64)
        maxs = np.full(n, NO_MAX_MICROS, np.int64)
        capped = rng.permutation(n)[: round(n * s.capped_arm_share)]
        maxs[capped] = np.maximum(np.round(s.cap_multiple * even), mins[capped])
        noise = np.exp(rng.normal(0.0, s.prior_noise, (2, n)))
        floors: tuple[CoverageFloorSpec, ...] = ()
        if s.floor_share > 0:
            floors = (
                CoverageFloorSpec("rural", tuple(np.flatnonzero(rural).tolist()), s.floor_share),
            )
        self.campaign = CampaignSetup(
            tuple(f"{s.name}-{i:03d}" for i in range(n)),
            s.hourly_budget_micros,
            mins,
            maxs,
            theta * noise[0],
            kappa * noise[1],
            floors,
            s.change_limit_percent,
        )

    def scale_saturation(self, factor: np.ndarray) -> None:
        """Moves each arm's saturation point by `factor` (per arm, > 0), keeping its
        cost per conversion at small spend: κ, θ, the inventory an hour can absorb and
        the audience behind the reach counts all scale together."""
        factor = np.asarray(factor, dtype=float)
        self.kappa = self.kappa * factor[:, None]
        self.theta = self.theta * factor[:, None]
        self.inventory = self.inventory * factor[:, None]
        self.audience = self.audience * factor

    @property
    def n_arms(self) -> int:
        return self.scenario.n_arms

    @property
    def hours(self) -> int:
        return self.scenario.hours

    def _family(self, theta: np.ndarray, kappa: np.ndarray) -> ResponseCurves:
        """Curves of the scenario's family with these parameters."""
        if self.scenario.curve == "hill":
            return HillCurves(theta, kappa, self.hill_shape)
        return ExponentialCurves(theta, kappa)

    def _response(self, hour: int, spend: np.ndarray) -> np.ndarray:
        """Expected objective count per arm for this hour's delivered spend."""
        curves = self._family(self.theta[:, hour], self.kappa[:, hour])
        return curves.value(np.arange(self.n_arms), spend)

    def _delivered(self, hour: int, budgets: np.ndarray) -> np.ndarray:
        b = np.maximum(np.asarray(budgets, dtype=float), 0.0)
        return np.floor(np.minimum(b * self.delivery[:, hour], self.inventory[:, hour]))

    def true_expected(self, hour: int, budgets: np.ndarray) -> np.ndarray:
        """Expected conversions per arm in `hour` for these budgets (the hidden truth)."""
        return self._response(hour, self._delivered(hour, budgets))

    def step(self, hour: int, budgets: np.ndarray) -> HourDelivery:
        """Run one hour with these budgets; the platforms' first report of it."""
        rng = np.random.default_rng([self.seed, 1, hour])
        spend = self._delivered(hour, budgets)
        mean = self._response(hour, spend)
        dispersion = self.scenario.dispersion
        conversions = rng.poisson(mean * rng.gamma(dispersion, 1.0 / dispersion, self.n_arms))
        impressions = rng.poisson(spend / self.cpm[:, hour] * 1000.0)
        clicks = np.maximum(rng.binomial(impressions, self.ctr), conversions)
        impressions = np.maximum(impressions, clicks)
        reach = np.minimum(
            impressions, np.round(self.audience * -np.expm1(-impressions / self.audience))
        )
        late = np.zeros((self.n_arms, len(_LATE_TRANCHES)), np.int64)
        if self.restatements:
            pending = rng.binomial(conversions, _LATE_SHARE)
            left = pending.copy()
            share_left = 1.0
            for k, share in enumerate(_LATE_TRANCHES[:-1]):
                late[:, k] = rng.binomial(left, share / share_left)
                left -= late[:, k]
                share_left -= share
            late[:, -1] = left
        final = HourDelivery(
            hour,
            spend.astype(np.int64),
            impressions.astype(np.int64),
            reach.astype(np.int64),
            clicks.astype(np.int64),
            conversions.astype(np.int64),
        )
        self._reports[hour] = (final, late)
        return self.report(hour, hour + 1)

    def report(self, hour: int, as_of_hour: int) -> HourDelivery:
        """The report of `hour` as a pull at `as_of_hour` sees it. With restatements a later
        pull restates the hour: late conversions arrive 6, 24 and 72 hours on."""
        final, late = self._reports[hour]
        age = as_of_hour - hour
        missing = late[:, [age < after for after in _LATE_AFTER_HOURS]].sum(axis=1)
        return HourDelivery(
            hour,
            final.spend_micros,
            final.impressions,
            final.reach,
            final.clicks,
            final.conversions - missing,
        )

    def curves(self, hour: int) -> ResponseCurves:
        """The true curves of `hour` in budget micros (delivery included, inventory not:
        it lies where the curves are flat)."""
        delivery = self.delivery[:, hour]
        theta = np.where(delivery > 0, self.theta[:, hour], 0.0)
        return self._family(theta, self.kappa[:, hour] / np.maximum(delivery, 1e-9))

    def oracle_split(
        self,
        hour: int,
        budget_micros: int,
        arms: Sequence[ArmSpec] | ArmTable,
        coverage_floors: Sequence[CoverageFloorSpec] = (),
        max_change_percent: float | None = None,
    ) -> np.ndarray:
        """The best split of `hour` under the same rules a policy faces, knowing the curves."""
        change = (
            self.campaign.max_change_percent if max_change_percent is None else max_change_percent
        )
        rules = PolicySettings(exploration_floor=0.0, max_change_percent=change)
        limits = compile_limits(arms, budget_micros, rules, coverage_floors)
        if self.scenario.curve == "hill":
            return dp_split(self.curves(hour), limits)
        return constrained_split(self.curves(hour), limits).budgets
