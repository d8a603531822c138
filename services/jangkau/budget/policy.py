"""The allocation policy: a Bayesian bandit over saturating response curves and
the exact constrained split (DESIGN.md §4). Pure numpy, vectorised over arms; no
gRPC, no SQL.

Model, per arm i: the objective count in hour t is Poisson(θ_i·(1 − e^(−x_t/κ_i)))
where x_t is the hour's delivered spend in micros. For each κ on KAPPA_GRID_MICROS, θ
has a conjugate Gamma posterior; the grid weights come from the marginal likelihood.
When the evidence also carries the sums for S-shaped curves θ·z²/(1 + z²), z = x/κ
(Hill curves, n = 2: little return until spend nears κ), those grid curves join the
mixture with prior probability `s_shaped_prior`, so an arm that only pays at scale is
recognised instead of being starved at a small budget. Counts are over-dispersed
(daily cycles, bursts): the evidence is tempered by 1/`overdispersion`.

One call of `allocate`:

1. posterior per arm: a Gamma(shape, rate_k) for θ under every grid curve k and
   grid weights w_k ∝ prior(k)·p(evidence | k);
2. Thompson sample: one grid curve from the weights, then one θ from its Gamma, per arm
   (a campaign's first split, when no arm has a previous budget, is solved on each
   arm's expected curve instead: the change limit holds that split for days, and a
   draw from the priors alone would put nearly all of it on one arm by chance);
3. exact split of the period budget for the sampled curves under every constraint
   (`compile_limits` + `constrained_split`): bisection on the Lagrange multiplier,
   finished exactly on the piecewise-linear total, x_i = κ_i·ln(θ_i/(κ_i·λ)) clipped
   (an S-shaped sample enters by its concave part, see `ExponentialCurves`); which arms
   with minimums are on follows the Lagrangian rule, polished by local search;
4. integer micros whose rounding never crosses a bound, then a check of every rule
   (`violations`) before the split leaves this module;
5. an explanation per arm: posterior mean and 90% interval of the period's objective at
   the budget, marginal return, posterior sd of θ, the binding constraint and why.

The κ grid is geometric, 5 points a decade from 1e8 to 1e14 micros per hour (Rp 100
to Rp 100 million of spend per hour before an arm saturates): that spans a small test
campaign's arm and a Pilkada arm of Rp 5 billion over 60 days (≈ 3.5e12 micros an hour
shared by 8–20 arms) with room on both sides; neighbouring points differ by ×1.58,
finer than the posterior can tell apart from a few days of data.

Constraint rules (in order of precedence; `violations` checks exactly these):

- ineligible (platform policy, blackout) → 0;
- minimum: an arm is either off (0) or at least `min_micros`;
- maximum: at most `max_micros`; above the period budget never;
- change limit, with p = max_change_percent/100 and prev = `previous_micros`:
  prev > 0 → the arm is off or within [prev − ⌊p·prev⌋, prev + ⌊p·prev⌋]. Switching an
  arm off is always allowed: a pause is not a budget edit, and a falling period budget
  (pacing, blackout) must never force spend. Where that band misses [min, max] the
  higher rule wins: the arm may sit at its minimum (band below it) or at its maximum
  (band above it). prev = 0 (the arm was off) or None (first decision) → no limit:
  a stopped arm has no delivery or learning phase to protect, and after a blackout every
  arm restarts from 0;
- coverage floors: the arms of a floor together get at least ⌈min_share·budget⌉; a floor
  none of whose arms is eligible (audience deleted, platform banned) is dropped, said so in
  its arms' reasons: it cannot be met, and refusing every split would leave the arms'
  old budgets in force;
- total: the sum never exceeds the period budget.

The exploration floor is the policy's own wish, not a constraint: every eligible arm
whose minimum allows it is kept on at ≥ min(exploration_floor, 0.2/n)·budget (so all
floors together take at most a fifth of the budget), dropped silently when it would
clash with a coverage floor.

INTERFACE CONTRACT (used by the budget service and the benchmarks):
    allocate(arms, evidence, period_budget_micros, settings, seed) -> PolicyResult
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from opentelemetry import trace

from jangkau.runtime.money import money

# Saturation scales κ (micros of spend per hour) the posterior mixes over. The
# metrics service computes the sufficient statistics for exactly these values
# (GetArmStatsRequest.kappas_micros).
KAPPA_GRID_MICROS: tuple[float, ...] = tuple(float(k) for k in np.geomspace(1e8, 1e14, 31))

# S-shaped curves (Hill, n = 2) the posterior also weighs, on the same κ grid.
S_KAPPA_GRID_MICROS: tuple[float, ...] = KAPPA_GRID_MICROS

# Spread of the log-normal prior over κ around the arm's cold-start guess, in ln units:
# a platform cost benchmark is trusted to within a factor of about e.
KAPPA_PRIOR_SD = 1.0

# The settings Optuna tunes; tuned_defaults.json holds their tuned values.
TUNED_DEFAULTS_PATH = Path(__file__).with_name("tuned_defaults.json")

# Stands for "no maximum" in int64 arithmetic.
NO_MAX_MICROS = np.iinfo(np.int64).max // 4

BOUNDS = (
    "optimal",
    "ineligible",
    "minimum",
    "off",
    "maximum",
    "change_limit",
    "coverage_floor",
    "exploration",
)

# Looked up once (a lookup costs as much as a span); the API's proxy follows the
# provider a process sets up later.
_TRACER = trace.get_tracer("jangkau.policy")

# The exploration floors of all arms together take at most this share of the budget.
EXPLORATION_SHARE_CAP = 0.2

_Z90 = 1.6448536269514722  # standard normal quantile of 0.95: a central 90% interval
_TINY = 1e-300


@dataclass(frozen=True)
class PolicySettings:
    """Tunable settings (tuned by Optuna; a campaign may override each)."""

    # Weight of the cold-start prior of θ, in pseudo-observations (the shape of its
    # Gamma prior: relative spread 1/√prior_strength).
    prior_strength: float = 4.0
    # Per-hour discount of old evidence, (0, 1].
    discount: float = 0.99
    # Share of the period budget kept for exploring each eligible arm, [0, 0.5).
    exploration_floor: float = 0.01
    # Largest change of an arm's budget between consecutive periods, percent.
    max_change_percent: float = 50.0
    # Variance of the hourly counts over their Poisson variance (daily cycles, bursts):
    # the evidence counts 1/overdispersion as much as Poisson counts would, >= 1.
    overdispersion: float = 1.0
    # Prior probability that an arm's curve is S-shaped rather than saturating, (0, 1)
    # (used when the evidence carries S-shaped statistics).
    s_shaped_prior: float = 0.1

    def __post_init__(self) -> None:
        if not self.prior_strength > 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not 0 <= self.exploration_floor < 0.5:
            raise ValueError(f"exploration_floor must be in [0, 0.5), got {self.exploration_floor}")
        if not self.max_change_percent > 0:
            raise ValueError(f"max_change_percent must be > 0, got {self.max_change_percent}")
        if not self.overdispersion >= 1:
            raise ValueError(f"overdispersion must be >= 1, got {self.overdispersion}")
        if not 0 < self.s_shaped_prior < 1:
            raise ValueError(f"s_shaped_prior must be in (0, 1), got {self.s_shaped_prior}")


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(PolicySettings))


_defaults_cache: dict[int, PolicySettings] = {}


def default_settings() -> PolicySettings:
    """The tuned defaults (tuned_defaults.json), or the built-in ones without that file.
    Read again only when the file changes (Allocate asks on every call)."""
    try:
        stamp = TUNED_DEFAULTS_PATH.stat().st_mtime_ns
    except FileNotFoundError:
        return PolicySettings()
    cached = _defaults_cache.get(stamp)
    if cached is None:
        stored = json.loads(TUNED_DEFAULTS_PATH.read_text())
        cached = PolicySettings(
            **{name: float(stored[name]) for name in SETTING_NAMES if name in stored}
        )
        _defaults_cache.clear()
        _defaults_cache[stamp] = cached
    return cached


def settings_with_overrides(
    overrides: Mapping[str, float], base: PolicySettings | None = None
) -> PolicySettings:
    """`base` (the tuned defaults) with each non-zero override in force; 0 keeps the default."""
    chosen = {name: float(v) for name, v in overrides.items() if v and name in SETTING_NAMES}
    return replace(base or default_settings(), **chosen)


@dataclass(frozen=True)
class ArmSpec:
    """One arm as the policy sees it. Budgets are integer micros per period."""

    arm_id: str
    # False: the arm gets 0 (platform policy, blackout...). `reason` says why.
    eligible: bool = True
    reason: str = ""
    # When on, at least this much (the larger of the arm's and the platform's minimum).
    min_micros: int = 0
    # At most this much; None means no limit.
    max_micros: int | None = None
    # Budget at the previous decision; None when there was none (no change limit).
    previous_micros: int | None = None
    # Value of one unit of the objective on this arm.
    value_weight: float = 1.0
    # Cold-start prior: expected objective count per hour at saturation (θ) and
    # a guess of the saturation scale κ in micros per hour, from audience reach
    # and platform cost benchmarks.
    prior_theta: float = 1.0
    prior_kappa_micros: float = 1e9
    # Share of recent budgets the platform actually delivered, (0, 1] (see
    # `delivery_ratio`); the split plans with spend = delivery_ratio × budget.
    delivery_ratio: float = 1.0


@dataclass(frozen=True)
class CoverageFloorSpec:
    name: str
    arm_indices: tuple[int, ...]
    # Minimum share of the period budget, (0, 1].
    min_share: float


_EMPTY_COLUMNS = tuple(np.zeros(0, t) for t in (np.int64,) * 3 + (float,) * 4)


@dataclass(frozen=True)
class ArmTable:
    """The arms as columns, for vectorised work (built once per call from ArmSpecs)."""

    arm_ids: tuple[str, ...]
    eligible: np.ndarray  # bool
    reasons: tuple[str, ...]
    min_micros: np.ndarray  # int64
    max_micros: np.ndarray  # int64, NO_MAX_MICROS for none
    previous_micros: np.ndarray  # int64, -1 for none
    value_weight: np.ndarray
    prior_theta: np.ndarray
    prior_kappa_micros: np.ndarray
    delivery_ratio: np.ndarray

    @classmethod
    def of(cls, arms: Sequence[ArmSpec] | ArmTable) -> ArmTable:
        if isinstance(arms, ArmTable):
            return arms
        rows = [
            (
                a.arm_id,
                a.eligible,
                a.reason,
                a.min_micros,
                NO_MAX_MICROS if a.max_micros is None else min(a.max_micros, NO_MAX_MICROS),
                -1 if a.previous_micros is None else a.previous_micros,
                a.value_weight,
                a.prior_theta,
                a.prior_kappa_micros,
                a.delivery_ratio,
            )
            for a in arms
        ]
        if not rows:
            return cls((), np.zeros(0, bool), (), *_EMPTY_COLUMNS)
        ids, eligible, reasons, mins, maxs, prev, value, theta0, kappa0, ratio = zip(
            *rows, strict=True
        )
        return cls(
            ids,
            np.array(eligible, bool),
            reasons,
            np.array(mins, np.int64),
            np.array(maxs, np.int64),
            np.array(prev, np.int64),
            np.array(value, float),
            np.array(theta0, float),
            np.array(kappa0, float),
            np.array(ratio, float),
        )

    def __len__(self) -> int:
        return len(self.arm_ids)


def exposure_exponential(spend: np.ndarray, kappas: np.ndarray) -> np.ndarray:
    """1 − e^(−x/κ): the share of θ that spend x brings on a saturating curve."""
    return -np.expm1(-spend[..., None] / kappas)


def exposure_s_shaped(spend: np.ndarray, kappas: np.ndarray) -> np.ndarray:
    """z²/(1 + z²) with z = x/κ: the share of θ on an S-shaped (Hill, n = 2) curve."""
    z2 = (spend[..., None] / kappas) ** 2
    return z2 / (1.0 + z2)


def _exposure_stats(
    spend: np.ndarray, counts: np.ndarray, kappas: np.ndarray, shape_fn: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """Per hour and κ: exposure g and y·ln g (0 where the spend is 0)."""
    exposed = shape_fn(spend, kappas)
    with np.errstate(divide="ignore"):
        log_exposed = np.where(spend[..., None] > 0, np.log(exposed), 0.0)
    return exposed, counts[..., None] * log_exposed


@dataclass(frozen=True)
class Evidence:
    """Discounted sufficient statistics per arm (rows follow the arms list).

    exposure[i, k]  = Σ_t w_t·(1 − e^(−x_t/κ_k))
    log_shape[i, k] = Σ_t w_t·y_t·ln(1 − e^(−x_t/κ_k))   (hours with x_t = 0 skipped)
    count[i]        = Σ_t w_t·y_t
    hours[i]        = Σ_t w_t

    x_t is the spend the platform delivered in hour t, y_t the objective count and
    w_t = discount^(age of hour t in hours), 1 for the latest hour.

    Optionally the same sums for S-shaped curves, g = z²/(1 + z²) with z = x/κ, on the
    grid `s_kappas_micros`: with them the posterior also weighs S-shaped curves (little
    return until spend reaches κ), without them (None) only saturating ones.
    `from_history` and `updated` compute both; the metrics service's GetArmStats sums
    give the saturating ones.
    """

    kappas_micros: np.ndarray  # (K,)
    exposure: np.ndarray  # (A, K)
    log_shape: np.ndarray  # (A, K)
    count: np.ndarray  # (A,)
    hours: np.ndarray  # (A,)
    s_kappas_micros: np.ndarray | None = None  # (K2,)
    s_exposure: np.ndarray | None = None  # (A, K2)
    s_log_shape: np.ndarray | None = None  # (A, K2)

    @classmethod
    def empty(
        cls,
        n_arms: int,
        kappas: Sequence[float] = KAPPA_GRID_MICROS,
        s_kappas: Sequence[float] | None = S_KAPPA_GRID_MICROS,
    ) -> Evidence:
        k = len(kappas)
        k2 = 0 if s_kappas is None else len(s_kappas)
        return cls(
            np.asarray(kappas, dtype=float),
            np.zeros((n_arms, k)),
            np.zeros((n_arms, k)),
            np.zeros(n_arms),
            np.zeros(n_arms),
            None if s_kappas is None else np.asarray(s_kappas, dtype=float),
            None if s_kappas is None else np.zeros((n_arms, k2)),
            None if s_kappas is None else np.zeros((n_arms, k2)),
        )

    @classmethod
    def from_history(
        cls,
        spend: np.ndarray,
        counts: np.ndarray,
        discount: float,
        kappas: Sequence[float] = KAPPA_GRID_MICROS,
        s_kappas: Sequence[float] | None = S_KAPPA_GRID_MICROS,
    ) -> Evidence:
        """The statistics of hourly histories: spend and counts are (A, T), oldest hour first."""
        x = np.asarray(spend, dtype=float)
        y = np.asarray(counts, dtype=float)
        if x.shape != y.shape or x.ndim != 2:
            raise ValueError(f"spend and counts must be (arms, hours), got {x.shape}, {y.shape}")
        hours = x.shape[1]
        weights = float(discount) ** np.arange(hours - 1, -1, -1, dtype=float)
        kap = np.asarray(kappas, dtype=float)
        exposed, logged = _exposure_stats(x, y, kap, exposure_exponential)
        s_kap = s_exp = s_log = None
        if s_kappas is not None:
            s_kap = np.asarray(s_kappas, dtype=float)
            s_exposed, s_logged = _exposure_stats(x, y, s_kap, exposure_s_shaped)
            s_exp = np.einsum("t,atk->ak", weights, s_exposed)
            s_log = np.einsum("t,atk->ak", weights, s_logged)
        return cls(
            kap,
            np.einsum("t,atk->ak", weights, exposed),
            np.einsum("t,atk->ak", weights, logged),
            y @ weights,
            np.full(x.shape[0], weights.sum()),
            s_kap,
            s_exp,
            s_log,
        )

    def updated(self, spend: np.ndarray, counts: np.ndarray, discount: float) -> Evidence:
        """These statistics one hour later: old evidence discounted, the new hour added."""
        x = np.asarray(spend, dtype=float)
        y = np.asarray(counts, dtype=float)
        exposed, logged = _exposure_stats(x, y, self.kappas_micros, exposure_exponential)
        s_exp = s_log = None
        if self.s_kappas_micros is not None:
            assert self.s_exposure is not None and self.s_log_shape is not None
            s_exposed, s_logged = _exposure_stats(x, y, self.s_kappas_micros, exposure_s_shaped)
            s_exp = discount * self.s_exposure + s_exposed
            s_log = discount * self.s_log_shape + s_logged
        return Evidence(
            self.kappas_micros,
            discount * self.exposure + exposed,
            discount * self.log_shape + logged,
            discount * self.count + y,
            discount * self.hours + 1.0,
            self.s_kappas_micros,
            s_exp,
            s_log,
        )


def delivery_ratio(
    budgets: np.ndarray, spend: np.ndarray, discount: float, prior_hours: float = 2.0
) -> np.ndarray:
    """Discounted delivered spend / budget per arm from (A, T) histories, oldest hour first,
    shrunk towards 1 by `prior_hours` hours of full delivery; in (0, 1]."""
    b = np.asarray(budgets, dtype=float)
    s = np.asarray(spend, dtype=float)
    weights = float(discount) ** np.arange(b.shape[1] - 1, -1, -1, dtype=float)
    return shrunk_delivery(np.minimum(s, b) @ weights, b @ weights, weights.sum(), prior_hours)


def shrunk_delivery(
    delivered: np.ndarray, budgeted: np.ndarray, hours: float, prior_hours: float = 2.0
) -> np.ndarray:
    """Delivered / budgeted per arm, both sums over `hours` hours (discounted: their
    total weight), shrunk towards 1 by `prior_hours` hours of full delivery; in (0, 1]."""
    scale = np.where(budgeted > 0, budgeted / max(float(hours), 1.0), 1.0)
    ratio = (delivered + prior_hours * scale) / (budgeted + prior_hours * scale)
    return np.clip(ratio, 1e-6, 1.0)


@dataclass(frozen=True)
class ArmDecision:
    budget_micros: int
    expected: float
    expected_low: float
    expected_high: float
    # d(objective)/d(spend) per 1,000,000 micros at the budget.
    marginal_return: float
    posterior_sd: float
    # One of: "optimal", "ineligible", "minimum", "off", "maximum",
    # "change_limit", "coverage_floor", "exploration".
    bound: str
    reason: str


@dataclass(frozen=True)
class PolicyResult:
    arms: list[ArmDecision] = field(default_factory=list)
    allocated_micros: int = 0


class Infeasible(Exception):
    """The constraints cannot all hold; the message names the conflict."""


# ---------------------------------------------------------------------------
# Posterior


@dataclass(frozen=True)
class Posterior:
    """Per arm: weights over the curve grid (every κ of each family) and the Gamma
    posterior of θ under each grid curve."""

    kappas_micros: np.ndarray  # (C,) κ of each grid curve
    s_shaped: np.ndarray  # (C,) bool: an S-shaped grid curve (else saturating)
    weights: np.ndarray  # (A, C), rows sum to 1
    shape: np.ndarray  # (A,), the same under every grid curve
    rate: np.ndarray  # (A, C)

    @property
    def K(self) -> int:
        return int(self.kappas_micros.shape[0])

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One curve per arm: (θ, κ, S-shaped?) — the grid curve from the weights, then θ
        from its Gamma."""
        n_arms = self.weights.shape[0]
        u = np.asarray(rng.random(n_arms))
        k = np.minimum((np.cumsum(self.weights, axis=1) < u[:, None]).sum(axis=1), self.K - 1)
        rate = self.rate[np.arange(n_arms), k]
        theta = rng.gamma(self.shape, 1.0 / rate)
        return theta, self.kappas_micros[k], self.s_shaped[k]

    def expected(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One curve per arm without chance: (θ, κ, S-shaped?) of its likeliest grid
        curve, θ at its posterior mean under that curve."""
        k = np.argmax(self.weights, axis=1)
        rate = self.rate[np.arange(self.weights.shape[0]), k]
        return self.shape / rate, self.kappas_micros[k], self.s_shaped[k]

    def _exposure(self, spend: np.ndarray) -> np.ndarray:
        kap = self.kappas_micros
        return np.where(
            self.s_shaped, exposure_s_shaped(spend, kap), exposure_exponential(spend, kap)
        )

    def theta_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of θ (objective per hour at saturation)."""
        mean_k = self.shape[:, None] / self.rate
        mean = (self.weights * mean_k).sum(axis=1)
        second = (self.weights * (mean_k**2 + mean_k / self.rate)).sum(axis=1)
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def response_moments(self, spend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of θ·g(spend) per arm."""
        g = self._exposure(spend)
        mean_k = self.shape[:, None] / self.rate * g
        mean = (self.weights * mean_k).sum(axis=1)
        second = (self.weights * (mean_k**2 + mean_k * g / self.rate)).sum(axis=1)
        return mean, np.maximum(second - mean**2, 0.0)

    def marginal(self, spend: np.ndarray) -> np.ndarray:
        """Posterior mean of d/dx θ·g(x) at x = spend, per micro."""
        kap = self.kappas_micros[None, :]
        z = spend[:, None] / kap
        slope_g = np.where(self.s_shaped, 2.0 * z / (1.0 + z**2) ** 2, np.exp(-z)) / kap
        return (self.weights * self.shape[:, None] / self.rate * slope_g).sum(axis=1)


def posterior(
    arms: Sequence[ArmSpec] | ArmTable, evidence: Evidence, settings: PolicySettings
) -> Posterior:
    """The posterior of every arm's curve (vectorised over arms and the curve grid).

    Cold-start prior, independent in θ and κ: ln κ is normal around prior_kappa_micros
    (sd KAPPA_PRIOR_SD) and θ is Gamma with mean prior_theta and shape prior_strength,
    the same under every grid curve. The shape is a count of pseudo-observations, so
    the prior's relative spread (1/√strength) does not depend on how busy an arm is: a
    reach or cost benchmark is as rough for a busy arm as for a quiet one. S-shaped
    curves (when the evidence has them) start with prior probability s_shaped_prior.
    """
    table = ArmTable.of(arms)
    n_arms = len(table)
    kap = np.asarray(evidence.kappas_micros, dtype=float)
    if evidence.exposure.shape != (n_arms, kap.shape[0]):
        raise ValueError(
            f"evidence has {evidence.exposure.shape} statistics for {n_arms} arms "
            f"and {kap.shape[0]} kappas"
        )
    exposure, log_shape = evidence.exposure, evidence.log_shape
    family = np.zeros(kap.shape[0], bool)
    log_family = np.zeros(kap.shape[0])
    if evidence.s_kappas_micros is not None and evidence.s_kappas_micros.size:
        assert evidence.s_exposure is not None and evidence.s_log_shape is not None
        s_kap = np.asarray(evidence.s_kappas_micros, dtype=float)
        kap = np.concatenate([kap, s_kap])
        exposure = np.concatenate([exposure, evidence.s_exposure], axis=1)
        log_shape = np.concatenate([log_shape, evidence.s_log_shape], axis=1)
        family = np.concatenate([family, np.ones(s_kap.shape[0], bool)])
        # Each family's prior mass is spread evenly over its grid.
        s_prior = settings.s_shaped_prior
        log_family = np.where(
            family,
            math.log(s_prior) - math.log(s_kap.shape[0]),
            math.log(1 - s_prior) - math.log(evidence.kappas_micros.shape[0]),
        )
    theta0 = np.maximum(table.prior_theta, 1e-9)
    kappa0 = np.maximum(table.prior_kappa_micros, 1.0)
    shape0 = np.full(n_arms, settings.prior_strength)
    rate0 = shape0 / theta0
    temper = 1.0 / settings.overdispersion
    shape = shape0 + temper * np.maximum(evidence.count, 0.0)
    rate = rate0[:, None] + temper * np.maximum(exposure, 0.0)
    # log p(evidence | curve) up to terms equal for every curve (the prior's and lgamma
    # terms cancel).
    log_like = temper * log_shape - shape[:, None] * np.log(rate)
    log_prior = -0.5 * ((np.log(kap)[None, :] - np.log(kappa0)[:, None]) / KAPPA_PRIOR_SD) ** 2
    log_w = log_like + log_prior + log_family[None, :]
    log_w -= log_w.max(axis=1, keepdims=True)
    weights = np.exp(log_w)
    weights /= weights.sum(axis=1, keepdims=True)
    return Posterior(kap, family, weights, shape, rate)


# ---------------------------------------------------------------------------
# Constraints


@dataclass(frozen=True)
class FloorNeed:
    name: str
    members: np.ndarray  # arm indices, unique
    min_share: float
    need_micros: int


@dataclass(frozen=True)
class Limits:
    """The constraints of one period compiled into per-arm ranges.

    An arm is off (0) or inside its on-range [lo, hi]; `on_ok` False means off only.
    `force_on` arms are kept on at ≥ `lo_explore` by the exploration floor.
    """

    budget: int
    on_ok: np.ndarray  # bool (A,)
    lo: np.ndarray  # int64 (A,)
    hi: np.ndarray  # int64 (A,)
    force_on: np.ndarray  # bool (A,)
    lo_explore: np.ndarray  # int64 (A,), lo raised to the exploration amount where forced
    min_micros: np.ndarray  # int64 (A,)
    max_micros: np.ndarray  # int64 (A,), NO_MAX_MICROS for none
    has_band: np.ndarray  # bool (A,)
    band_lo: np.ndarray  # int64 (A,)
    band_hi: np.ndarray  # int64 (A,)
    floors: tuple[FloorNeed, ...]  # the floors in force (not dropped)
    off_reason: tuple[str, ...]  # why an arm that is not on_ok is off


def change_band(previous: np.ndarray, max_change_percent: float) -> tuple[np.ndarray, ...]:
    """(has_band, band_lo, band_hi): prev ± ⌊p·prev⌋ where prev > 0 (-1 marks "none")."""
    prev = np.asarray(previous, dtype=np.int64)
    has_band = prev > 0
    # Capped as floats: a large limit times a large budget is beyond int64 (and beyond
    # float range for a limit near 1e308); any share above NO_MAX_MICROS means no limit.
    share = min(max_change_percent / 100.0, float(NO_MAX_MICROS))
    delta = np.minimum(np.floor(np.maximum(prev, 0).astype(float) * share), NO_MAX_MICROS)
    delta = delta.astype(np.int64)
    return has_band, prev - delta, np.minimum(prev + delta, NO_MAX_MICROS)


def _on_range(
    mins: np.ndarray,
    maxs: np.ndarray,
    has_band: np.ndarray,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of an arm that is on, before the period budget: min, max, then change limit."""
    lo = np.where(has_band, np.maximum(mins, band_lo), mins)
    hi = np.where(has_band, np.minimum(maxs, band_hi), maxs)
    below = has_band & (band_hi < mins)  # the minimum wins: sit at it
    above = has_band & (band_lo > maxs)  # the maximum wins: sit at it
    lo = np.where(below, mins, np.where(above, maxs, lo))
    hi = np.where(below, mins, np.where(above, maxs, hi))
    return lo, hi


def _floor_needs(
    floors: Sequence[CoverageFloorSpec], eligible: np.ndarray, budget: int
) -> tuple[tuple[FloorNeed, ...], tuple[FloorNeed, ...]]:
    """(in force, dropped): a floor none of whose arms is eligible is dropped."""
    n_arms = eligible.size
    needs = []
    for floor in floors:
        members = np.unique(np.asarray(floor.arm_indices, dtype=np.int64))
        if members.size == 0:
            raise ValueError(f"coverage floor '{floor.name}' has no arms")
        if members.min() < 0 or members.max() >= n_arms:
            raise ValueError(f"coverage floor '{floor.name}' names an arm index out of range")
        if not 0 < floor.min_share <= 1:
            raise ValueError(f"coverage floor '{floor.name}' min_share must be in (0, 1]")
        needs.append(
            FloorNeed(floor.name, members, floor.min_share, math.ceil(floor.min_share * budget))
        )
    in_force = tuple(f for f in needs if eligible[f.members].any())
    return in_force, tuple(f for f in needs if not eligible[f.members].any())


def _least_group_spend(lo: np.ndarray, hi: np.ndarray, need: int) -> tuple[int, np.ndarray]:
    """Smallest spend ≥ need that arms with on-ranges [lo, hi] can make, and the arms used."""
    if need <= 0:
        return 0, np.zeros(0, dtype=np.int64)
    single = np.flatnonzero((lo <= need) & (hi >= need))
    if single.size:
        return need, single[:1]
    order = np.argsort(lo, kind="stable")
    reach = np.cumsum(hi[order])
    k = int(np.searchsorted(reach, need))
    used = order[: k + 1]
    return max(need, int(lo[used].sum())), used


def compile_limits(
    arms: Sequence[ArmSpec] | ArmTable,
    period_budget_micros: int,
    settings: PolicySettings,
    coverage_floors: Sequence[CoverageFloorSpec] = (),
) -> Limits:
    """Every constraint of the period as per-arm on-ranges; Infeasible names a conflict."""
    table = ArmTable.of(arms)
    n_arms = len(table)
    budget = int(period_budget_micros)
    if budget < 0:
        raise ValueError(f"period budget must be >= 0, got {budget}")
    eligible = table.eligible
    mins, maxs, prev = table.min_micros, table.max_micros, table.previous_micros
    if (mins < 0).any() or (maxs < 0).any() or (prev < -1).any():
        raise ValueError("minimums, maximums and previous budgets must be >= 0")
    has_band, band_lo, band_hi = change_band(prev, settings.max_change_percent)
    lo, hi = _on_range(mins, maxs, has_band, band_lo, band_hi)
    hi = np.minimum(hi, budget)
    lo = np.maximum(lo, 0)
    on_ok = eligible & (mins <= maxs) & (lo <= hi) & (hi > 0)
    off_reason = [""] * n_arms
    for i in np.flatnonzero(~on_ok).tolist():
        if not eligible[i]:
            off_reason[i] = (
                f"not eligible: {table.reasons[i]}" if table.reasons[i] else "not eligible"
            )
        elif mins[i] > maxs[i]:
            off_reason[i] = "off: its minimum is above its maximum"
        elif budget == 0:
            off_reason[i] = "off: no period budget"
        else:
            off_reason[i] = "off: the change limit keeps it above what the period budget allows"
    lo = np.where(on_ok, lo, 0)
    hi = np.where(on_ok, hi, 0)

    floors, dropped = _floor_needs(coverage_floors, eligible, budget)
    for floor in dropped:
        for i in floor.members.tolist():
            off_reason[i] += (
                f"; coverage floor '{floor.name}' dropped: none of its arms is eligible"
            )
    least = []
    for floor in floors:
        able = floor.members[on_ok[floor.members]]
        capacity = int(hi[able].sum())
        if capacity < floor.need_micros:
            message = (
                f"coverage floor '{floor.name}' needs {floor.need_micros} micros but its arms' "
                f"maxima (after eligibility and the change limit) allow {capacity}"
            )
            blocked = floor.members[eligible[floor.members] & (mins[floor.members] > budget)]
            if blocked.size:
                names = ",".join(table.arm_ids[i] for i in blocked)
                message += (
                    f"; the minimums of arms {names} sum to {int(mins[blocked].sum())} "
                    f"> period budget {budget}"
                )
            raise Infeasible(message)
        spend, used = _least_group_spend(lo[able], hi[able], floor.need_micros)
        if spend > budget:
            names = ",".join(table.arm_ids[i] for i in able[used])
            raise Infeasible(
                f"coverage floor '{floor.name}' needs {floor.need_micros} micros but the "
                f"minimums of arms {names} sum to {spend} > period budget {budget}"
            )
        least.append(spend)
    members = [f.members for f in floors]
    disjoint = sum(m.size for m in members) == (
        np.unique(np.concatenate(members)).size if members else 0
    )
    if disjoint and sum(least) > budget:
        names = ",".join(f"'{f.name}'" for f in floors)
        raise Infeasible(
            f"coverage floors {names} need at least {sum(least)} micros together "
            f"> period budget {budget}"
        )

    n_on = int(on_ok.sum())
    explore = 0
    if n_on and settings.exploration_floor > 0:
        explore = int(min(settings.exploration_floor, EXPLORATION_SHARE_CAP / n_on) * budget)
    force_on = on_ok & (explore > 0) & (lo <= explore)
    lo_explore = np.where(force_on, np.minimum(np.maximum(lo, explore), hi), lo)
    if force_on.any() and floors:
        # Exploration gives way when together with the floors it would not fit.
        extra = 0
        for floor, spend in zip(floors, least, strict=True):
            extra += max(0, spend - int(lo_explore[floor.members][force_on[floor.members]].sum()))
        if int(lo_explore[force_on].sum()) + extra > budget:
            force_on = np.zeros(n_arms, bool)
            lo_explore = lo.copy()
    return Limits(
        budget,
        on_ok,
        lo.astype(np.int64),
        hi.astype(np.int64),
        force_on,
        lo_explore.astype(np.int64),
        mins,
        maxs,
        has_band,
        band_lo,
        band_hi,
        floors,
        tuple(off_reason),
    )


def violations(
    arms: Sequence[ArmSpec] | ArmTable,
    budgets: Sequence[int] | np.ndarray,
    period_budget_micros: int,
    settings: PolicySettings,
    coverage_floors: Sequence[CoverageFloorSpec] = (),
) -> list[str]:
    """Every rule of the module docstring that `budgets` break, one line each; [] when none."""
    table = ArmTable.of(arms)
    n_arms = len(table)
    x = np.asarray(budgets, dtype=np.int64)
    if x.shape != (n_arms,):
        return [f"expected {n_arms} budgets, got shape {x.shape}"]
    found: list[str] = []
    mins, maxs = table.min_micros, table.max_micros
    has_band, band_lo, band_hi = change_band(table.previous_micros, settings.max_change_percent)
    lo, hi = _on_range(mins, maxs, has_band, band_lo, band_hi)
    on = x != 0

    def report(mask: np.ndarray, text: str) -> None:
        for i in np.flatnonzero(mask):
            found.append(f"arm {table.arm_ids[i]}: {text} (budget {x[i]})")

    report(x < 0, "negative budget")
    report(on & ~table.eligible, "ineligible arm has a budget")
    report(on & (x < mins), "below its minimum")
    report(on & (x > maxs), "above its maximum")
    report(on & has_band & ((x < lo) | (x > hi)), "outside the change limit")
    for floor in _floor_needs(coverage_floors, table.eligible, int(period_budget_micros))[0]:
        got = int(x[floor.members].sum())
        if got < floor.need_micros:
            found.append(f"coverage floor '{floor.name}': {got} < {floor.need_micros} micros")
    total = int(x.sum())
    if total > period_budget_micros:
        found.append(f"total {total} > period budget {period_budget_micros}")
    return found


# ---------------------------------------------------------------------------
# The exact split


class ResponseCurves(Protocol):
    """Objective value per hour as a function of an arm's budget, for the split."""

    @property
    def start(self) -> np.ndarray | None:
        """Per arm, the budget from which its curve pays (the arm is off or at least
        there); None when every curve pays from the first micro."""
        ...

    def value(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """f_i(x_i) for arms idx."""
        ...

    def best_on(self, idx: np.ndarray, lam: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """argmax over [lo, hi] of f_i(x) − λ·x for arms idx."""
        ...

    def fill(
        self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float
    ) -> tuple[np.ndarray, float]:
        """The maximiser of Σ f_i over lo ≤ x ≤ hi, Σ x ≤ budget, and its multiplier λ."""
        ...


@dataclass(frozen=True)
class ExponentialCurves:
    """f_i(x) = offset_i + θ_i·(1 − e^(−(x − start_i)/κ_i)) in budget micros for
    x ≥ start_i; θ already value-weighted. start = offset = 0 is the saturating curve.

    An S-shaped sample θ·z²/(1 + z²), z = x/κ, enters as its concave part: from the
    point where its tangent passes through the origin (z = 1, the best average
    return, where it has θ/2) on, an exponential tail with the same value, slope and
    limit (start κ, offset θ/2, θ/2, κ). Below that point the arm is off or, kept on by
    a rule, valued on the tail's extension. `start` is then also where the split lets
    the arm switch on (like a minimum). See `sampled`."""

    theta: np.ndarray
    kappa: np.ndarray
    start: np.ndarray | None = None
    offset: np.ndarray | None = None

    @classmethod
    def linear(cls, rate: np.ndarray, budget: float) -> ExponentialCurves:
        """Curves that are straight lines (f = rate·x) over any budget up to `budget`."""
        kappa = np.full(np.shape(rate), max(float(budget), 1.0) * 1e4)
        return cls(np.maximum(np.asarray(rate, float), 0.0) * kappa, kappa)

    @classmethod
    def sampled(
        cls, theta: np.ndarray, kappa: np.ndarray, s_shaped: np.ndarray, hi: np.ndarray
    ) -> ExponentialCurves:
        """Curves of a posterior sample: saturating ones as they are, S-shaped ones by
        their concave part; an S-shaped one whose concave part starts beyond the arm's
        largest budget `hi` by its chord from 0 to hi (its concave envelope there)."""
        hi = np.maximum(hi.astype(float), 1.0)
        beyond = s_shaped & (kappa >= hi)
        s_part = s_shaped & ~beyond
        z2 = (hi / kappa) ** 2
        chord = cls.linear(theta * z2 / (1.0 + z2) / hi, float(hi.max()))  # Hill value at hi
        return cls(
            np.where(beyond, chord.theta, np.where(s_part, theta * 0.5, theta)),
            np.where(beyond, chord.kappa, kappa),
            np.where(s_part, kappa, 0.0),
            np.where(s_part, theta * 0.5, 0.0),
        )

    def _start(self, idx: np.ndarray) -> np.ndarray | float:
        return 0.0 if self.start is None else self.start[idx]

    def value(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        tail = self.theta[idx] * -np.expm1(-(x - self._start(idx)) / self.kappa[idx])
        return tail if self.offset is None else tail + self.offset[idx]

    def _level(self, idx: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self.theta[idx], _TINY) / self.kappa[idx])

    def best_on(self, idx: np.ndarray, lam: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if lam <= 0:
            return hi.astype(float)
        x = self._start(idx) + self.kappa[idx] * (self._level(idx) - math.log(lam))
        return np.clip(x, lo, hi)

    def fill(
        self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float
    ) -> tuple[np.ndarray, float]:
        if self.start is None:
            return _fill_exponential(self._level(idx), self.kappa[idx], lo, hi, budget)
        shift = self.start[idx]
        x, lam = _fill_exponential(
            self._level(idx), self.kappa[idx], lo - shift, hi - shift, budget - shift.sum()
        )
        return x + shift, lam


def _fill_exponential(
    a: np.ndarray, kap: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float
) -> tuple[np.ndarray, float]:
    """x_i(μ) = clip(κ_i·(a_i − μ), lo_i, hi_i) with μ = ln λ solving Σ x = budget.

    Σ x(μ) is continuous, decreasing and piecewise linear in μ with a breakpoint where
    each arm leaves its upper and its lower bound; sorting the breakpoints locates the
    segment holding the budget, on which μ is solved exactly (the bisection of §4, done
    in one pass)."""
    lo = lo.astype(float)
    hi = hi.astype(float)
    if a.size == 0:
        return np.zeros(0), 0.0
    if budget >= hi.sum():
        return hi.copy(), 0.0
    if budget <= lo.sum():
        return lo.copy(), math.inf
    leave_hi = a - hi / kap  # below this μ the arm sits at hi
    leave_lo = a - lo / kap  # above this μ the arm sits at lo
    points = np.concatenate([leave_hi, leave_lo])
    step = np.concatenate([-kap, kap])
    order = np.argsort(points, kind="stable")
    points = points[order]
    slope = np.cumsum(step[order])  # slope of Σx just right of each point
    totals = hi.sum() + np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(points))])
    # totals decrease: find the last point whose total is still >= budget.
    j = int(np.searchsorted(-totals, -budget, side="right")) - 1
    j = min(max(j, 0), points.size - 1)
    mu = points[j] + (budget - totals[j]) / slope[j] if slope[j] < 0 else points[j]
    x = np.clip(kap * (a - mu), lo, hi)
    # Float cancellation (nearly straight curves have huge κ) can leave a residue.
    inside = (x > lo) & (x < hi)
    if inside.any():
        x[inside] += (budget - x.sum()) * kap[inside] / kap[inside].sum()
        x = np.clip(x, lo, hi)
    return x, math.exp(mu) if mu < 700 else math.inf


# Up to this many optional arms, the Lagrangian on/off choice is polished by local search.
_LOCAL_SEARCH_ARMS = 24


def _solve_set(
    curves: ResponseCurves,
    idx: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    optional: np.ndarray,
    budget: float,
    at_least: bool,
) -> np.ndarray:
    """Best x for arms idx spending ≤ budget (or, with at_least, ≥ budget as little above
    as the minimums allow). Optional arms are off or within [lo, hi]; the others are on.

    The on/off choice is the Lagrangian one: at the multiplier λ of the relaxed problem an
    optional arm is on when max over [lo, hi] of f(x) − λx beats staying off; then the
    continuous problem of the arms that are on is solved exactly; twice more to settle.
    When the minimums of the arms worth switching on do not all fit (where that rule is
    weakest) and optional arms are few, single switches (one arm on, the weakest others
    off to fit; or one arm off) are then tried while they improve the total."""
    x = np.zeros(idx.size)
    if idx.size == 0:
        return x
    lo_i, hi_i, opt = lo[idx].astype(float), hi[idx].astype(float), optional[idx]
    fixed_on = ~opt
    relaxed_lo = np.where(opt, 0.0, lo_i)
    _, lam = curves.fill(idx, relaxed_lo, hi_i, budget)
    gain = np.zeros(idx.size)
    crowded = [False]  # the minimums of the arms worth switching on did not all fit

    def fitted(want: np.ndarray, keep: int = -1) -> np.ndarray:
        """`want`, minus the weakest optional arms (never `keep`) until the minimums fit,
        plus the strongest while an at-least target is out of reach."""
        want = want.copy()
        spare = budget - lo_i[want].sum()
        if spare < 0:
            crowded[0] = True
            candidates = np.flatnonzero(want & opt)
            candidates = candidates[candidates != keep]
            ranked = candidates[np.argsort(gain[candidates] / np.maximum(lo_i[candidates], 1.0))]
            freed = np.cumsum(lo_i[ranked])
            want[ranked[: int(np.searchsorted(freed, -spare)) + 1]] = False
        if at_least and hi_i[want].sum() < budget:
            candidates = np.flatnonzero(~want & opt)
            ranked = candidates[np.argsort(-gain[candidates])]
            reach = np.cumsum(hi_i[ranked])
            want[ranked[: int(np.searchsorted(reach, budget - hi_i[want].sum())) + 1]] = True
        return want

    def solved(on: np.ndarray) -> tuple[np.ndarray, float, float]:
        sel = np.flatnonzero(on)
        x_on, lam_on = curves.fill(idx[sel], lo_i[sel], hi_i[sel], budget)
        full = np.zeros(idx.size)
        full[sel] = x_on
        return full, lam_on, float(curves.value(idx[sel], x_on).sum())

    on = fixed_on.copy()
    total = -math.inf
    for round_ in range(3):
        if math.isfinite(lam):
            probe = curves.best_on(idx, lam, lo_i, hi_i)
            gain = curves.value(idx, probe) - lam * probe
        else:  # the minimums already fill the budget: no optional arm pays
            gain = np.full(idx.size, -np.inf)
        want = fitted(fixed_on | (opt & (gain > 0)))
        if (want == on).all() and round_ > 0:
            break
        on = want
        x, lam, total = solved(on)
    if crowded[0] and 0 < int(opt.sum()) <= _LOCAL_SEARCH_ARMS:
        for _ in range(2):
            best = (total, on, x)
            for i in np.flatnonzero(opt).tolist():
                trial = on.copy()
                trial[i] = not on[i]
                trial = fitted(trial, keep=i if trial[i] else -1)
                if (trial == on).all() or lo_i[trial].sum() > budget and not at_least:
                    continue
                x_t, _, total_t = solved(trial)
                if at_least and x_t.sum() < budget * (1 - 1e-12):
                    continue
                if total_t > best[0] * (1 + 1e-12) + 1e-300:
                    best = (total_t, trial, x_t)
            if best[0] <= total:
                break
            total, on, x = best
    return x


@dataclass(frozen=True)
class Split:
    """A split in integer micros and the floors that bound it."""

    budgets: np.ndarray  # int64 (A,)
    binding_floors: tuple[str, ...]
    floor_bound: np.ndarray  # bool (A,): raised by a binding floor


def constrained_split(curves: ResponseCurves, limits: Limits) -> Split:
    """Maximise Σ f_i(x_i) under `limits`: integer micros, every rule held."""
    n_arms = limits.on_ok.size
    budget = limits.budget
    lo = np.where(limits.force_on, limits.lo_explore, limits.lo)
    hi = limits.hi
    start = curves.start
    if start is not None:
        # A curve that pays only from `start` on is off or at least there (within hi).
        from_start = np.ceil(np.minimum(start, hi)).astype(np.int64)
        lo = np.where(limits.force_on, lo, np.maximum(lo, from_start))
    optional = limits.on_ok & ~limits.force_on & (lo > 0)
    free = limits.on_ok.copy()
    x = np.zeros(n_arms)
    idx = np.flatnonzero(free)
    x[idx] = _solve_set(curves, idx, lo, hi, optional, budget, at_least=False)
    binding: list[FloorNeed] = []
    floor_bound = np.zeros(n_arms, bool)
    for _ in range(len(limits.floors)):
        open_floors = [f for f in limits.floors if f not in binding]
        short = [(f.need_micros - x[f.members].sum()) / max(f.need_micros, 1) for f in open_floors]
        if not short or max(short) <= 1e-12:
            break
        floor = open_floors[int(np.argmax(short))]
        group = floor.members[free[floor.members]]
        need = floor.need_micros - x[floor.members[~free[floor.members]]].sum()
        if need > 0:
            x[group] = _solve_set(curves, group, lo, hi, optional, need, at_least=True)
        free[group] = False
        floor_bound[group] = True
        binding.append(floor)
        left = budget - x[~free].sum()
        if left < -0.5:
            raise Infeasible(
                f"coverage floors {','.join(repr(f.name) for f in binding)} need "
                f"{x[~free].sum():.0f} micros > period budget {budget}"
            )
        rest = np.flatnonzero(free)
        x[rest] = _solve_set(curves, rest, lo, hi, optional, max(left, 0.0), at_least=False)
    unmet = [f.name for f in limits.floors if x[f.members].sum() < f.need_micros * (1 - 1e-9) - 1]
    if unmet:
        raise Infeasible(
            f"coverage floors {','.join(repr(n) for n in unmet)} cannot all be met "
            f"within the period budget {budget} and the arms' limits"
        )
    budgets = _to_micros(x, lo, hi, limits)
    return Split(budgets, tuple(f.name for f in binding), floor_bound)


def _to_micros(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, limits: Limits) -> np.ndarray:
    """Round a float split to integer micros without crossing any bound."""
    on = x > 0.5
    xi = np.where(on, np.clip(np.floor(x), lo, hi), 0).astype(np.int64)
    frac = np.where(on, x - np.floor(x), -1.0)
    target = min(limits.budget, int(math.floor(float(x[on].sum()) + 0.5)))

    def add(amount: int, pool: np.ndarray) -> int:
        """Add up to `amount` micros to arms in pool with room, largest fraction first."""
        while amount > 0:
            room = np.where(pool & on, hi - xi, 0)
            holders = np.flatnonzero(room > 0)
            if holders.size == 0:
                break
            holders = holders[np.argsort(-frac[holders], kind="stable")]
            share = max(1, amount // holders.size)
            gift = np.minimum(room[holders], share)
            gift_cum = np.cumsum(gift)
            cut = int(np.searchsorted(gift_cum, amount))
            gift = gift[: cut + 1]
            gift[-1] -= max(0, int(gift.sum()) - amount)
            xi[holders[: cut + 1]] += gift
            amount -= int(gift.sum())
        return amount

    def remove(amount: int, pool: np.ndarray) -> int:
        """Take up to `amount` micros from arms in pool above their lower bound, keeping floors."""
        while amount > 0:
            slack = np.where(pool & on, xi - lo, 0)
            for floor in limits.floors:
                spare = int(xi[floor.members].sum()) - floor.need_micros
                cap = np.zeros_like(slack)
                cap[floor.members] = max(spare, 0)
                member = np.zeros(slack.size, bool)
                member[floor.members] = True
                slack = np.where(member, np.minimum(slack, cap), slack)
            holders = np.flatnonzero(slack > 0)
            if holders.size == 0:
                break
            i = holders[np.argmin(frac[holders])]
            take = int(min(slack[i], amount))
            xi[i] -= take
            amount -= take
        return amount

    everyone = np.ones(x.size, bool)
    if int(xi.sum()) < target:
        add(target - int(xi.sum()), everyone)
    for floor in limits.floors:
        short = floor.need_micros - int(xi[floor.members].sum())
        if short > 0:
            pool = np.zeros(x.size, bool)
            pool[floor.members] = True
            add(short, pool)
    over = int(xi.sum()) - limits.budget
    if over > 0:
        remove(over, everyone)
    return xi


# ---------------------------------------------------------------------------
# allocate


def allocate(
    arms: Sequence[ArmSpec] | ArmTable,
    evidence: Evidence,
    period_budget_micros: int,
    settings: PolicySettings,
    seed: int,
    coverage_floors: tuple[CoverageFloorSpec, ...] = (),
    currency: str = "IDR",
) -> PolicyResult:
    """The split of `period_budget_micros` across `arms` for one period; the reasons
    name amounts in `currency`."""
    if not arms:
        return PolicyResult([], 0)
    table = ArmTable.of(arms)
    limits = compile_limits(table, period_budget_micros, settings, coverage_floors)
    # Business spans for traces (the API alone: a no-op where tracing is not set up).
    with _TRACER.start_as_current_span("posterior", attributes={"jangkau.arms": len(arms)}):
        post = posterior(table, evidence, settings)
        # A campaign's first split is held by the change limit for days: drawn by
        # chance, it would put nearly everything on whichever arm drew highest (of
        # two arms alike, one); the expected curves split on what is known.
        first = bool((table.previous_micros < 0).all())
        theta, kappa, s_shaped = (
            post.expected() if first else post.sample(np.random.default_rng(seed))
        )
    ratio = np.clip(table.delivery_ratio, 1e-6, 1.0)
    # Budget space: a budget x delivers ratio·x of spend.
    value = np.maximum(table.value_weight, 0.0) * theta
    with _TRACER.start_as_current_span(
        "solve", attributes={"jangkau.period_budget_micros": period_budget_micros}
    ) as span:
        curves = ExponentialCurves.sampled(value, kappa / ratio, s_shaped, limits.hi)
        split = constrained_split(curves, limits)
        span.set_attribute("jangkau.allocated_micros", int(split.budgets.sum()))
    broken = violations(table, split.budgets, period_budget_micros, settings, coverage_floors)
    if broken:
        raise RuntimeError(f"the split breaks its own rules: {'; '.join(broken[:5])}")
    basis = "the expected curves of a first split" if first else "this hour's posterior sample"
    return _explain(table, post, ratio, limits, split, currency, basis)


def _explain(
    table: ArmTable,
    post: Posterior,
    ratio: np.ndarray,
    limits: Limits,
    split: Split,
    currency: str,
    basis: str,
) -> PolicyResult:
    x = split.budgets
    spend = x.astype(float) * ratio
    mean, var = post.response_moments(spend)
    low, high = _gamma_interval(mean, var)
    marginal = post.marginal(spend) * ratio * 1e6
    _, theta_sd = post.theta_moments()
    code = _bound_codes(x, table, limits, split)
    floor_of: dict[int, FloorNeed] = {}
    for floor in limits.floors:
        if floor.name in split.binding_floors:
            for i in floor.members.tolist():
                floor_of.setdefault(i, floor)
    budgets = x.tolist()
    decisions = [
        ArmDecision(
            b,
            m,
            lo_,
            hi_,
            r,
            sd,
            BOUNDS[c],
            _reason(c, i, b, table, limits, floor_of, currency, basis),
        )
        for i, (b, m, lo_, hi_, r, sd, c) in enumerate(
            zip(
                budgets,
                mean.tolist(),
                low.tolist(),
                high.tolist(),
                marginal.tolist(),
                theta_sd.tolist(),
                code.tolist(),
                strict=True,
            )
        )
    ]
    return PolicyResult(decisions, int(x.sum()))


def _bound_codes(x: np.ndarray, table: ArmTable, limits: Limits, split: Split) -> np.ndarray:
    """Index into BOUNDS of the rule that set each budget, the first that applies."""
    at_band = limits.has_band & ((x == limits.band_lo) | (x == limits.band_hi))
    conditions = [
        ~table.eligible,
        x == 0,
        x == limits.max_micros,
        at_band,
        (x == limits.min_micros) & (x > 0),
        limits.force_on & (x == limits.lo_explore) & (x > limits.lo),
        split.floor_bound,
    ]
    names = ("ineligible", "off", "maximum", "change_limit", "minimum", "exploration")
    choices = [BOUNDS.index(b) for b in (*names, "coverage_floor")]
    return np.select(conditions, choices, default=0)


def _reason(
    code: int,
    i: int,
    budget: int,
    table: ArmTable,
    limits: Limits,
    floor_of: dict[int, FloorNeed],
    currency: str,
    basis: str,
) -> str:
    """One line for the buyer: why this arm got this budget, amounts in the
    campaign's currency; `basis` names the curves the split was solved on."""
    bound = BOUNDS[code]
    if bound == "ineligible" or (bound == "off" and not limits.on_ok[i]):
        return limits.off_reason[i]
    if bound == "off":
        return (
            f"off: at its minimum of {money(limits.lo[i], currency)} it returns less than "
            "the other arms at the margin"
        )
    if bound == "maximum":
        return f"at its maximum of {money(budget, currency)} an hour"
    if bound == "change_limit":
        previous = money(table.previous_micros[i], currency)
        return f"held within the change limit from its previous {previous}"
    if bound == "minimum":
        return f"at its minimum of {money(budget, currency)}"
    if bound == "exploration":
        return (
            f"kept at the exploration floor of {money(budget, currency)}: on {basis} "
            "it returns less than the other arms at the margin"
        )
    if bound == "coverage_floor" and i in floor_of:
        floor = floor_of[i]
        return f"raised to meet coverage floor '{floor.name}' ({floor.min_share:.0%} of the budget)"
    return f"optimal on {basis}: marginal returns equalised"


def _gamma_interval(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central 90% interval of a Gamma with this mean and variance (Wilson–Hilferty)."""
    safe_mean = np.maximum(mean, _TINY)
    shape = np.maximum(safe_mean**2 / np.maximum(var, _TINY), 1e-3)
    c = 1.0 / (9.0 * shape)
    low = safe_mean * np.maximum(1.0 - c - _Z90 * np.sqrt(c), 0.0) ** 3
    high = safe_mean * (1.0 - c + _Z90 * np.sqrt(c)) ** 3
    zero = mean <= 0
    return np.where(zero, 0.0, low), np.where(zero, 0.0, high)
