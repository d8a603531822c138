"""The budget service's domain: campaigns and their arms, validation with field
paths, the platform × campaign-kind eligibility table, blackout windows (with the
Pilkada 2024 quiet-period preset), pacing of the remaining budget into one
period's budget, effective minimums, cold-start priors from audience reach and
platform cost benchmarks, and `decide`: the service-level rules wrapped around
the allocation policy. Pure: dataclasses and functions, no gRPC, no SQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from jangkau.budget.policy import (
    KAPPA_GRID_MICROS,
    ArmSpec,
    CoverageFloorSpec,
    Evidence,
    PolicyResult,
    PolicySettings,
    settings_with_overrides,
)
from jangkau.platforms import eligibility
from jangkau.platforms.eligibility import EligibilityRule as EligibilityRule
from jangkau.runtime.errors import Violations
from jangkau.runtime.ids import period_seed

HOUR = timedelta(hours=1)
MICROS = 1_000_000


class Platform(StrEnum):
    META = "META"
    GOOGLE = "GOOGLE"
    X = "X"
    TIKTOK = "TIKTOK"


class CampaignKind(StrEnum):
    POLITICAL = "POLITICAL"
    CIVIC = "CIVIC"
    COMMERCIAL = "COMMERCIAL"


class Objective(StrEnum):
    CONVERSIONS = "CONVERSIONS"
    CLICKS = "CLICKS"
    IMPRESSIONS = "IMPRESSIONS"


class PacingMode(StrEnum):
    EVEN = "EVEN"
    FRONT_LOADED = "FRONT_LOADED"
    BACK_LOADED = "BACK_LOADED"
    HOURLY_PROFILE = "HOURLY_PROFILE"


class CampaignState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


class Bound(StrEnum):
    """Which rule set an arm's budget (the wire enum `jangkau.v1.Bound`)."""

    OPTIMAL = "OPTIMAL"
    INELIGIBLE = "INELIGIBLE"
    BLACKOUT = "BLACKOUT"
    MINIMUM = "MINIMUM"
    OFF = "OFF"
    MAXIMUM = "MAXIMUM"
    CHANGE_LIMIT = "CHANGE_LIMIT"
    COVERAGE_FLOOR = "COVERAGE_FLOOR"
    EXPLORATION = "EXPLORATION"
    NO_BUDGET = "NO_BUDGET"


# The policy names its bounds in lower case; anything it adds later reads as OPTIMAL.
_POLICY_BOUNDS: dict[str, Bound] = {
    "optimal": Bound.OPTIMAL,
    "ineligible": Bound.INELIGIBLE,
    "minimum": Bound.MINIMUM,
    "off": Bound.OFF,
    "maximum": Bound.MAXIMUM,
    "change_limit": Bound.CHANGE_LIMIT,
    "coverage_floor": Bound.COVERAGE_FLOOR,
    "exploration": Bound.EXPLORATION,
}

# Bounds the service sets before the policy runs: the arm was off for a reason
# outside the optimisation, so its zero must not hold it down through the change limit.
SERVICE_ZERO_BOUNDS = frozenset({Bound.INELIGIBLE, Bound.BLACKOUT, Bound.NO_BUDGET})


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Arm:
    """One thing to buy: a platform × an audience, optionally × a creative."""

    arm_id: str
    platform: Platform
    audience_id: str
    creative: str = ""
    # Per period (one hour), micros. 0 max means no limit.
    min_micros_per_period: int = 0
    max_micros_per_period: int = 0
    # Value of one unit of the objective on this arm; 0 means 1.
    value_weight: float = 0.0


@dataclass(frozen=True)
class BlackoutWindow:
    """[start, end): the campaign spends nothing on any platform."""

    start: datetime
    end: datetime
    reason: str = ""

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True)
class PlatformMinimum:
    platform: Platform
    min_daily_micros: int


@dataclass(frozen=True)
class CoverageFloor:
    name: str
    arm_ids: tuple[str, ...]
    min_share: float


@dataclass(frozen=True)
class Pacing:
    mode: PacingMode = PacingMode.EVEN
    hourly_profile: tuple[float, ...] = ()


@dataclass(frozen=True)
class PolicyOverrides:
    """A campaign's overrides of the tuned policy settings; 0 means the default."""

    prior_strength: float = 0.0
    discount: float = 0.0
    exploration_floor: float = 0.0
    max_change_percent: float = 0.0


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    tenant: str
    name: str
    kind: CampaignKind
    currency: str
    total_budget_micros: int
    flight_start: datetime
    flight_end: datetime
    time_zone: str = "Asia/Jakarta"
    blackouts: tuple[BlackoutWindow, ...] = ()
    skip_default_blackouts: bool = False
    arms: tuple[Arm, ...] = ()
    platform_minimums: tuple[PlatformMinimum, ...] = ()
    coverage_floors: tuple[CoverageFloor, ...] = ()
    objective: Objective = Objective.CONVERSIONS
    pacing: Pacing = field(default_factory=Pacing)
    political_authorization: bool = False
    policy: PolicyOverrides = field(default_factory=PolicyOverrides)
    state: CampaignState = CampaignState.ACTIVE
    create_time: datetime | None = None
    update_time: datetime | None = None
    revision: int = 0


@dataclass(frozen=True)
class PlatformReach:
    """What the audience service estimated for one audience on one platform."""

    platform: Platform
    reachable: int
    targetable: bool = True
    allowed: bool = True
    reason: str = ""


@dataclass(frozen=True)
class AudienceFacts:
    """An audience as the budget service keeps it: read at campaign create and
    update, and again before each rebalance records a decision, so that Allocate
    never needs the audience service."""

    audience_id: str
    uses_contact_lists: bool
    demographic_only: bool
    voters: int = 0
    reach: tuple[PlatformReach, ...] = ()

    def reach_on(self, platform: Platform) -> PlatformReach | None:
        return next((r for r in self.reach if r.platform is platform), None)


# ------------------------------------------------------------------ calendar presets

WIB = timezone(timedelta(hours=7), "WIB")
WIT = timezone(timedelta(hours=9), "WIT")

PILKADA_2024_QUIET_REASON = (
    "Pilkada 2024 masa tenang (quiet period) and voting day, 24-27 Nov 2024 local time"
)
# Reasons a stored preset carries: this one, and the one of the preset that ended
# before voting day and started at 00:00 WIB (campaigns stored before are re-derived).
_PRESET_REASONS = frozenset(
    {PILKADA_2024_QUIET_REASON, "Pilkada 2024 masa tenang (quiet period), 24-26 Nov 2024 WIB"}
)
# No campaign ads from the quiet period's first day (24 Nov) to the end of voting day
# (27 Nov) in the voters' local time, wherever they are: from 00:00 WIT, the earliest
# of the three Indonesian zones, to 24:00 WIB, the latest. A campaign's time_zone is
# not trusted for this (it defaults to WIB and only shapes hourly profiles).
PILKADA_2024_QUIET_PERIOD = BlackoutWindow(
    start=datetime(2024, 11, 24, tzinfo=WIT).astimezone(UTC),
    end=datetime(2024, 11, 28, tzinfo=WIB).astimezone(UTC),
    reason=PILKADA_2024_QUIET_REASON,
)


def _is_preset(window: BlackoutWindow) -> bool:
    q = PILKADA_2024_QUIET_PERIOD
    return window.reason in _PRESET_REASONS and q.start <= window.start and window.end <= q.end


def without_presets(blackouts: tuple[BlackoutWindow, ...]) -> tuple[BlackoutWindow, ...]:
    """The windows a caller set, without those a preset added."""
    return tuple(w for w in blackouts if not _is_preset(w))


def with_default_blackouts(campaign: Campaign) -> tuple[BlackoutWindow, ...]:
    """The campaign's blackouts with the presets applied: the quiet period (clipped to
    the flight) for a POLITICAL campaign whose flight crosses it, unless skipped.
    A preset already present is replaced, so that a changed flight or kind re-derives it."""
    own = without_presets(campaign.blackouts)
    q = PILKADA_2024_QUIET_PERIOD
    if (
        campaign.kind is CampaignKind.POLITICAL
        and not campaign.skip_default_blackouts
        and q.overlaps(campaign.flight_start, campaign.flight_end)
    ):
        clipped = BlackoutWindow(
            max(q.start, campaign.flight_start), min(q.end, campaign.flight_end), q.reason
        )
        return (*own, clipped)
    return own


# --------------------------------------------------------------------- eligibility


# Platform × campaign kind, applied before any optimisation: the platforms' one
# table (jangkau.platforms.eligibility), keyed by budget's own names.
ELIGIBILITY: dict[tuple[Platform, CampaignKind], EligibilityRule] = {
    (Platform[platform.name], CampaignKind[kind.name]): rule
    for (platform, kind), rule in eligibility.ELIGIBILITY.items()
}


def ineligibility(
    kind: CampaignKind,
    arm: Arm,
    audience: AudienceFacts | None,
    political_authorization: bool,
) -> str | None:
    """Why the arm may not run for this campaign kind; None when it may."""
    rule = ELIGIBILITY[(arm.platform, kind)]
    if not rule.allowed:
        return rule.reason
    if rule.needs_authorization and not political_authorization:
        return rule.reason + "; the campaign has no political_authorization"
    if audience is None:
        return f"audience {arm.audience_id} no longer exists"
    refused = rule.refuses_audience(audience.uses_contact_lists, audience.demographic_only)
    if refused is not None:
        return f"{rule.reason}; audience {audience.audience_id} {refused}"
    reach = audience.reach_on(arm.platform)
    if reach is not None and not reach.allowed:
        return reach.reason or f"the audience service does not allow it on {arm.platform}"
    if reach is not None and not reach.targetable:
        return reach.reason or f"audience too small to target on {arm.platform}"
    return None


# ------------------------------------------------------------------- priors


@dataclass(frozen=True)
class CostBenchmark:
    """Typical delivery costs of one platform in Indonesia, in rupiah."""

    cpm_idr: float
    # Clicks per impression.
    ctr: float
    # Conversions (sign-ups, volunteer forms) per click.
    conversion_rate: float
    source: str


# Cold-start benchmarks: deliberately middle-of-the-range values, only a prior (the
# posterior moves off them within hours of data). Sources and assumptions:
# - CPM: Meta/TikTok social "IDR 10,000-40,000", programmatic display "IDR 3,000-15,000"
#   (marsx.media, "CPM vs CPC advertising Indonesia"); Meta "Rp15.000-Rp45.000" in 2025
#   (xposure.id, "Cost per mile adalah ..."). X has no Indonesian source found: assumed
#   like TikTok. Google is a display/YouTube mix: assumed at the top of programmatic.
# - CTR and click-to-sign-up rates: assumptions within commonly quoted global ranges
#   (social 0.8-1.5 %, display 0.3-0.6 %; lead forms 3-8 %).
COST_BENCHMARKS: dict[Platform, CostBenchmark] = {
    Platform.META: CostBenchmark(25_000.0, 0.010, 0.05, "marsx.media; xposure.id; CTR/CVR assumed"),
    Platform.GOOGLE: CostBenchmark(15_000.0, 0.005, 0.04, "marsx.media; CTR/CVR assumed"),
    Platform.X: CostBenchmark(20_000.0, 0.006, 0.03, "assumed (no Indonesian source found)"),
    Platform.TIKTOK: CostBenchmark(20_000.0, 0.008, 0.03, "marsx.media; CTR/CVR assumed"),
}

# Rupiah per unit of a campaign currency, to carry the benchmarks over (mid-2024 rates,
# rounded; a prior needs the order of magnitude, not the day's rate). Unknown
# currencies are treated like USD.
IDR_PER_UNIT: dict[str, float] = {
    "IDR": 1.0,
    "USD": 16_000.0,
    "EUR": 17_500.0,
    "GBP": 20_500.0,
    "SGD": 12_000.0,
    "MYR": 3_500.0,
    "AUD": 10_700.0,
    "JPY": 105.0,
    "KRW": 11.8,
    "THB": 450.0,
    "PHP": 280.0,
    "VND": 0.63,
    "INR": 190.0,
    "CNY": 2_250.0,
}

# Saturation assumption: an audience absorbs at most this many impressions per
# reachable person per day before extra spend buys (almost) nothing.
IMPRESSIONS_PER_PERSON_PER_DAY = 1.5
# A cold arm's expected objective count per hour at saturation is never below this.
MIN_PRIOR_THETA = 1e-3


def cold_start_prior(
    platform: Platform, reachable: int, objective: Objective, currency: str
) -> tuple[float, float]:
    """(θ, κ) of an arm with no history: θ, the objective count per hour at
    saturation = impressions the audience absorbs per hour × CTR × conversion rate;
    κ, the spend scale, = the cost of those impressions at the benchmark CPM, so that
    the curve's initial slope θ/κ is one over the benchmark cost per objective."""
    bench = COST_BENCHMARKS[platform]
    impressions_per_hour = max(reachable, 0) * IMPRESSIONS_PER_PERSON_PER_DAY / 24.0
    per_impression = {
        Objective.IMPRESSIONS: 1.0,
        Objective.CLICKS: bench.ctr,
        Objective.CONVERSIONS: bench.ctr * bench.conversion_rate,
    }[objective]
    theta = max(impressions_per_hour * per_impression, MIN_PRIOR_THETA)
    cpm_micros = bench.cpm_idr / IDR_PER_UNIT.get(currency, IDR_PER_UNIT["USD"]) * MICROS
    kappa = impressions_per_hour * cpm_micros / 1000.0
    lo, hi = KAPPA_GRID_MICROS[0], KAPPA_GRID_MICROS[-1]
    return theta, float(min(max(kappa, lo), hi))


# ------------------------------------------------------------------- validation

ARM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_ARMS = 5000
MAX_FLIGHT = timedelta(days=366)
# Bounds of a campaign's settings, far beyond any sensible value, so that the policy's
# float arithmetic never overflows (weights are summed over a flight's hours and
# multiply objective counts; the change limit multiplies budgets). The checks below
# are closed ranges: a comparison with NaN is false, so NaN and infinities are refused.
MAX_WEIGHT = 1e6
MAX_CHANGE_PERCENT = 1000.0
# Below this the prior's Gamma draws collapse to zero and a campaign stops spending.
MIN_PRIOR_STRENGTH = 0.01
MAX_PRIOR_STRENGTH = 1e6

# ISO 4217 active codes.
_ISO_4217_CODES = """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
    BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
    FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD
    JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT
    MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG
    QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB
    TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF
    YER ZAR ZMW ZWG"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())

# Time zones a campaign may name even where the host has no tz database (no DST in any).
_FIXED_ZONES: dict[str, tzinfo] = {
    "UTC": UTC,
    "Asia/Jakarta": timezone(timedelta(hours=7), "WIB"),
    "Asia/Pontianak": timezone(timedelta(hours=7), "WIB"),
    "Asia/Makassar": timezone(timedelta(hours=8), "WITA"),
    "Asia/Jayapura": timezone(timedelta(hours=9), "WIT"),
}


def zone(name: str) -> tzinfo | None:
    """The tzinfo of an IANA name, or None when unknown."""
    try:
        return ZoneInfo(name)
    # OSError: a name too long for a file name, or one naming a folder of zones ("Asia").
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return _FIXED_ZONES.get(name)


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, int]:
    """The first whole UTC hour inside [start, end) and how many whole hours follow:
    a period counts as inside only when the whole hour is."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += HOUR
    count = int((end - first) // HOUR) if end > first else 0
    return first, count


def validate_campaign(campaign: Campaign, v: Violations, prefix: str = "campaign") -> None:
    """Adds every semantic violation of `campaign` to `v`, with its field path. The
    campaign's blackouts are the caller's (presets not applied yet)."""
    p = prefix
    v.check(1 <= len(campaign.name) <= 200, f"{p}.name", "must be 1..200 characters")
    v.check(
        campaign.currency in ISO_4217,
        f"{p}.currency",
        f"must be an ISO 4217 code such as IDR, got {campaign.currency!r}",
    )
    v.check(campaign.total_budget_micros > 0, f"{p}.total_budget_micros", "must be > 0")
    start, end = campaign.flight_start, campaign.flight_end
    if v.check(end > start, f"{p}.flight.end", "must be after flight.start"):
        v.check(end - start <= MAX_FLIGHT, f"{p}.flight", "may last at most 366 days")
        v.check(
            whole_hours(start, end)[1] >= 1,
            f"{p}.flight",
            "must contain at least one whole hour",
        )
    v.check(
        zone(campaign.time_zone) is not None,
        f"{p}.time_zone",
        f"unknown IANA time zone {campaign.time_zone!r}",
    )
    for i, w in enumerate(campaign.blackouts):
        where = f"{p}.blackouts[{i}]"
        if not v.check(w.end > w.start, f"{where}.range.end", "must be after range.start"):
            continue
        v.check(
            start <= w.start and w.end <= end,
            f"{where}.range",
            "must lie inside the flight",
        )
        v.check(len(w.reason) <= 200, f"{where}.reason", "at most 200 characters")
    _validate_arms(campaign, v, p)
    _validate_minimums(campaign, v, p)
    _validate_floors(campaign, v, p)
    _validate_pacing(campaign.pacing, v, f"{p}.pacing")
    _validate_policy(campaign.policy, v, f"{p}.policy")


def _validate_arms(campaign: Campaign, v: Violations, p: str) -> None:
    arms = campaign.arms
    v.check(1 <= len(arms) <= MAX_ARMS, f"{p}.arms", f"must hold 1..{MAX_ARMS} arms")
    ids: dict[str, int] = {}
    combos: dict[tuple[Platform, str, str], int] = {}
    minimums = {m.platform: m.min_daily_micros for m in campaign.platform_minimums}
    for i, arm in enumerate(arms):
        where = f"{p}.arms[{i}]"
        if not ARM_ID.match(arm.arm_id):
            v.add(f"{where}.id", "must be 1..64 of [A-Za-z0-9_.-]")
        elif arm.arm_id in ids:
            v.add(f"{where}.id", f"duplicates arms[{ids[arm.arm_id]}].id {arm.arm_id!r}")
        else:
            ids[arm.arm_id] = i
        v.check(bool(arm.audience_id), f"{where}.audience_id", "required")
        combo = (arm.platform, arm.audience_id, arm.creative)
        if combo in combos:
            v.add(where, f"same platform, audience and creative as arms[{combos[combo]}]")
        else:
            combos[combo] = i
        v.check(len(arm.creative) <= 100, f"{where}.creative", "at most 100 characters")
        v.check(arm.min_micros_per_period >= 0, f"{where}.min_micros_per_period", "must be >= 0")
        v.check(arm.max_micros_per_period >= 0, f"{where}.max_micros_per_period", "must be >= 0")
        if arm.max_micros_per_period > 0:
            v.check(
                arm.min_micros_per_period <= arm.max_micros_per_period,
                f"{where}.min_micros_per_period",
                "must not exceed max_micros_per_period",
            )
            platform_min = per_period_minimum(minimums.get(arm.platform, 0))
            v.check(
                platform_min <= arm.max_micros_per_period,
                f"{where}.max_micros_per_period",
                f"below the {arm.platform} minimum of {platform_min} micros per period",
            )
        v.check(
            0 <= arm.value_weight <= MAX_WEIGHT,
            f"{where}.value_weight",
            f"must be in [0, {MAX_WEIGHT:g}] (0 means 1)",
        )


def _validate_minimums(campaign: Campaign, v: Violations, p: str) -> None:
    seen: dict[Platform, int] = {}
    for i, m in enumerate(campaign.platform_minimums):
        where = f"{p}.platform_minimums[{i}]"
        if m.platform in seen:
            v.add(f"{where}.platform", f"duplicates platform_minimums[{seen[m.platform]}]")
        seen[m.platform] = i
        v.check(m.min_daily_micros >= 0, f"{where}.min_daily_micros", "must be >= 0")


def _validate_floors(campaign: Campaign, v: Violations, p: str) -> None:
    arm_ids = {a.arm_id for a in campaign.arms}
    groups: list[set[str]] = []
    for i, floor in enumerate(campaign.coverage_floors):
        where = f"{p}.coverage_floors[{i}]"
        v.check(1 <= len(floor.name) <= 100, f"{where}.name", "must be 1..100 characters")
        v.check(len(floor.arm_ids) >= 1, f"{where}.arm_ids", "name at least one arm")
        for j, arm_id in enumerate(floor.arm_ids):
            v.check(arm_id in arm_ids, f"{where}.arm_ids[{j}]", f"no arm {arm_id!r}")
        v.check(
            0 < floor.min_share <= 1,
            f"{where}.min_share",
            "must be in (0, 1]",
        )
        groups.append(set(floor.arm_ids))
    disjoint = all(a.isdisjoint(b) for i, a in enumerate(groups) for b in groups[i + 1 :])
    total = sum(f.min_share for f in campaign.coverage_floors if 0 < f.min_share <= 1)
    if groups and disjoint and total > 1 + 1e-9:
        v.add(f"{p}.coverage_floors", f"disjoint floors ask for {total:.3f} > 1 of the spend")


def _validate_pacing(pacing: Pacing, v: Violations, p: str) -> None:
    profile = pacing.hourly_profile
    if pacing.mode is PacingMode.HOURLY_PROFILE:
        if not v.check(len(profile) == 24, f"{p}.hourly_profile", "must hold 24 values"):
            return
        if v.check(
            all(0 <= w <= MAX_WEIGHT for w in profile),
            f"{p}.hourly_profile",
            f"weights must be in [0, {MAX_WEIGHT:g}]",
        ):
            v.check(any(w > 0 for w in profile), f"{p}.hourly_profile", "must not be all zero")
    else:
        v.check(not profile, f"{p}.hourly_profile", "only with mode HOURLY_PROFILE")


def _validate_policy(policy: PolicyOverrides, v: Violations, p: str) -> None:
    v.check(
        policy.prior_strength == 0
        or MIN_PRIOR_STRENGTH <= policy.prior_strength <= MAX_PRIOR_STRENGTH,
        f"{p}.prior_strength",
        f"must be in [{MIN_PRIOR_STRENGTH:g}, {MAX_PRIOR_STRENGTH:g}] (0 means the default)",
    )
    v.check(
        0 <= policy.discount <= 1,
        f"{p}.discount",
        "must be in (0, 1] (0 means the default)",
    )
    v.check(
        0 <= policy.exploration_floor < 0.5,
        f"{p}.exploration_floor",
        "must be in [0, 0.5)",
    )
    v.check(
        0 <= policy.max_change_percent <= MAX_CHANGE_PERCENT,
        f"{p}.max_change_percent",
        f"must be in (0, {MAX_CHANGE_PERCENT:g}] (0 means the default)",
    )


def arm_identity_violations(
    before: Campaign, after: Campaign, v: Violations, prefix: str = "campaign"
) -> None:
    """An arm keeps its platform and audience for life: its reports would change
    meaning otherwise (a different target needs a new arm id)."""
    known = {a.arm_id: a for a in before.arms}
    for i, arm in enumerate(after.arms):
        old = known.get(arm.arm_id)
        if old is None:
            continue
        if old.platform is not arm.platform:
            v.add(
                f"{prefix}.arms[{i}].platform",
                f"arm {arm.arm_id} is on {old.platform}; give a new arm id instead",
            )
        if old.audience_id != arm.audience_id:
            v.add(
                f"{prefix}.arms[{i}].audience_id",
                f"arm {arm.arm_id} targets {old.audience_id}; give a new arm id instead",
            )


def audience_violations(
    campaign: Campaign, known: Mapping[str, AudienceFacts], v: Violations, prefix: str = "campaign"
) -> None:
    """Every arm whose audience does not exist (for the caller's tenant)."""
    for i, arm in enumerate(campaign.arms):
        if arm.audience_id and arm.audience_id not in known:
            v.add(f"{prefix}.arms[{i}].audience_id", f"no audience {arm.audience_id!r}")


# ------------------------------------------------------------------------ pacing


def per_period_minimum(min_daily_micros: int) -> int:
    """A platform's daily minimum as a minimum per hourly period (an arm at x per
    hour runs at a daily rate of 24·x), rounded up so the daily rate never falls short."""
    return -(-max(min_daily_micros, 0) // 24)


@dataclass(frozen=True)
class PacingPlan:
    """Weights of every whole hour of the flight; w = 0 in blackouts."""

    first_hour: datetime
    weights: np.ndarray
    # tail[t] = Σ_{h ≥ t} weights[h]
    tail: np.ndarray

    def index(self, period_start: datetime) -> int:
        return int((period_start - self.first_hour) // HOUR)

    def share(self, period_start: datetime) -> float:
        """This hour's share of whatever budget remains."""
        t = self.index(period_start)
        if not 0 <= t < len(self.weights) or self.tail[t] <= 0:
            return 0.0
        return float(self.weights[t] / self.tail[t])


# Front- and back-loaded pacing: linear weights from 1.5 to 0.5 (or back) over the flight.
TAPER = 0.5


@lru_cache(maxsize=256)
def pacing_plan(
    flight_start: datetime,
    flight_end: datetime,
    blackouts: tuple[BlackoutWindow, ...],
    pacing: Pacing,
    time_zone: str,
) -> PacingPlan:
    first, n = whole_hours(flight_start, flight_end)
    position = (np.arange(n) + 0.5) / max(n, 1)
    if pacing.mode is PacingMode.FRONT_LOADED:
        weights = 1.0 + TAPER - 2 * TAPER * position
    elif pacing.mode is PacingMode.BACK_LOADED:
        weights = 1.0 - TAPER + 2 * TAPER * position
    elif pacing.mode is PacingMode.HOURLY_PROFILE:
        tz = zone(time_zone) or UTC
        profile = np.asarray(pacing.hourly_profile, dtype=float)
        local = [(first + h * HOUR).astimezone(tz).hour for h in range(n)]
        weights = profile[np.asarray(local, dtype=int)] if n else np.zeros(0)
    else:
        weights = np.ones(n)
    weights = np.array(weights, dtype=float)
    for w in blackouts:
        lo = max(0, int(math.floor((w.start - first) / HOUR)))
        hi = min(n, int(math.ceil((w.end - first) / HOUR)))
        if hi > lo:
            weights[lo:hi] = 0.0
    tail = np.cumsum(weights[::-1])[::-1] if n else np.zeros(0)
    return PacingPlan(first, weights, tail)


def period_budget(plan: PacingPlan, period_start: datetime, remaining_micros: int) -> int:
    """The remaining budget times this hour's pacing weight over the weights of every
    spendable hour left, rounded down: never more than what remains."""
    if remaining_micros <= 0:
        return 0
    return min(remaining_micros, int(math.floor(remaining_micros * plan.share(period_start))))


# ------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class MetricsSnapshot:
    """What metrics reported for the campaign up to the period, rows in arm order."""

    spend_to_date_micros: int
    hours_observed: int
    evidence: Evidence


@dataclass(frozen=True)
class PreviousDecision:
    """Budgets of the campaign's latest recorded decision before the period."""

    budgets: Mapping[str, int]
    bounds: Mapping[str, Bound]


class ArmOutcome(NamedTuple):
    """One arm's budget for the period and why (a tuple: thousands are built per call)."""

    arm_id: str
    platform: Platform
    audience_id: str
    budget_micros: int
    expected: float = 0.0
    expected_low: float = 0.0
    expected_high: float = 0.0
    marginal_return: float = 0.0
    posterior_sd: float = 0.0
    bound: Bound = Bound.OPTIMAL
    reason: str = ""
    previous_budget_micros: int = 0


@dataclass(frozen=True)
class AllocationOutcome:
    campaign_id: str
    period_start: datetime
    period_budget_micros: int
    allocated_micros: int
    remaining_budget_micros: int
    spend_to_date_micros: int
    arms: tuple[ArmOutcome, ...]
    seed: int
    settings: PolicySettings
    hours_observed: int
    objective: Objective
    currency: str
    # Campaign-wide reason when every arm is held at zero ("paused", "blackout ...").
    reason: str = ""

    @property
    def period_end(self) -> datetime:
        return self.period_start + HOUR


@dataclass(frozen=True)
class CampaignPlan:
    """Everything about a campaign revision that Allocate needs and that does not
    change from one period to the next: built once per revision."""

    campaign: Campaign
    blackouts: tuple[BlackoutWindow, ...]
    pacing: PacingPlan
    # Per arm, in campaign order: why it may not run (None: eligible).
    ineligible: tuple[str | None, ...]
    min_micros: tuple[int, ...]
    max_micros: tuple[int | None, ...]
    value_weights: tuple[float, ...]
    prior_theta: tuple[float, ...]
    prior_kappa: tuple[float, ...]
    floors: tuple[CoverageFloorSpec, ...]


def plan_campaign(campaign: Campaign, facts: Mapping[str, AudienceFacts]) -> CampaignPlan:
    minimums = {
        m.platform: per_period_minimum(m.min_daily_micros) for m in campaign.platform_minimums
    }
    ineligible: list[str | None] = []
    mins: list[int] = []
    maxs: list[int | None] = []
    weights: list[float] = []
    thetas: list[float] = []
    kappas: list[float] = []
    for arm in campaign.arms:
        audience = facts.get(arm.audience_id)
        ineligible.append(
            ineligibility(campaign.kind, arm, audience, campaign.political_authorization)
        )
        mins.append(max(arm.min_micros_per_period, minimums.get(arm.platform, 0)))
        maxs.append(arm.max_micros_per_period or None)
        weights.append(arm.value_weight or 1.0)
        reach = audience.reach_on(arm.platform) if audience else None
        theta, kappa = cold_start_prior(
            arm.platform, reach.reachable if reach else 0, campaign.objective, campaign.currency
        )
        thetas.append(theta)
        kappas.append(kappa)
    index = {a.arm_id: i for i, a in enumerate(campaign.arms)}
    floors = tuple(
        CoverageFloorSpec(f.name, tuple(index[a] for a in f.arm_ids), f.min_share)
        for f in campaign.coverage_floors
    )
    # Derived again: a campaign stored under an earlier preset gets the current one.
    blackouts = with_default_blackouts(campaign)
    return CampaignPlan(
        campaign=campaign,
        blackouts=blackouts,
        pacing=pacing_plan(
            campaign.flight_start,
            campaign.flight_end,
            blackouts,
            campaign.pacing,
            campaign.time_zone,
        ),
        ineligible=tuple(ineligible),
        min_micros=tuple(mins),
        max_micros=tuple(maxs),
        value_weights=tuple(weights),
        prior_theta=tuple(thetas),
        prior_kappa=tuple(kappas),
        floors=floors,
    )


def effective_settings(defaults: PolicySettings, overrides: PolicyOverrides) -> PolicySettings:
    """The tuned defaults with the campaign's non-zero overrides on top."""
    return settings_with_overrides(asdict(overrides), defaults)


def derive_seed(campaign_id: str, period_start: datetime) -> int:
    """The seed used when a request gives none: fixed per (campaign, period), non-zero."""
    return period_seed(campaign_id, period_start)


def evidence_window(campaign: Campaign, period_start: datetime) -> tuple[datetime, datetime] | None:
    """The hours of metrics the period's allocation reads: the flight up to the
    period. None when the period is not after the flight's start (nothing to read)."""
    end = min(period_start, campaign.flight_end)
    start = campaign.flight_start
    return (start, end) if end > start else None


def campaign_off(
    c: Campaign, blackouts: tuple[BlackoutWindow, ...], period_start: datetime
) -> tuple[Bound, str] | None:
    """Why the campaign may not spend at all in the hour, whatever its budget:
    paused, ended, outside its flight or in one of `blackouts`; None when it may."""
    if c.state is CampaignState.PAUSED:
        return Bound.NO_BUDGET, "campaign paused"
    if c.state is CampaignState.ENDED:
        return Bound.NO_BUDGET, "campaign ended"
    period_end = period_start + HOUR
    if period_start < c.flight_start or period_end > c.flight_end:
        return Bound.BLACKOUT, "outside the campaign's flight"
    for w in blackouts:
        if w.overlaps(period_start, period_end):
            return Bound.BLACKOUT, f"blackout: {w.reason or 'no spend in this window'}"
    return None


def campaign_wide_zero(
    plan: CampaignPlan, period_start: datetime, remaining_micros: int, budget_micros: int
) -> tuple[Bound, str] | None:
    """Why every arm gets zero this period, if one rule says so for the whole campaign."""
    off = campaign_off(plan.campaign, plan.blackouts, period_start)
    if off is not None:
        return off
    if remaining_micros <= 0:
        return Bound.NO_BUDGET, "campaign budget spent"
    if budget_micros <= 0:
        return Bound.NO_BUDGET, "pacing gives this hour no budget"
    return None


class AllocationBroken(RuntimeError):
    """The policy returned a split that breaks a service-level rule (a bug: refused,
    never returned to a caller)."""


# A policy, as `jangkau.budget.policy.allocate`: (arms, evidence, period budget,
# settings, seed, coverage floors, currency) -> the split with its reasons.
PolicyFunction = Callable[..., PolicyResult]


def arm_specs(plan: CampaignPlan, previous: PreviousDecision | None) -> list[ArmSpec]:
    """The arms as the policy sees them for a period after `previous`."""
    prev_budgets = previous.budgets if previous else {}
    prev_bounds = previous.bounds if previous else {}
    specs = []
    for i, arm in enumerate(plan.campaign.arms):
        why = plan.ineligible[i]
        before = prev_budgets.get(arm.arm_id)
        if prev_bounds.get(arm.arm_id) in SERVICE_ZERO_BOUNDS:
            before = None
        specs.append(
            ArmSpec(
                arm_id=arm.arm_id,
                eligible=why is None,
                reason=why or "",
                min_micros=plan.min_micros[i],
                max_micros=plan.max_micros[i],
                previous_micros=before,
                value_weight=plan.value_weights[i],
                prior_theta=plan.prior_theta[i],
                prior_kappa_micros=plan.prior_kappa[i],
            )
        )
    return specs


def decide(
    plan: CampaignPlan,
    snapshot: MetricsSnapshot,
    previous: PreviousDecision | None,
    period_start: datetime,
    seed: int,
    settings: PolicySettings,
    policy: PolicyFunction,
    specs: Sequence[ArmSpec] | None = None,
) -> AllocationOutcome:
    """The split of one period: eligibility, flight, blackout, state and pacing first,
    then the policy over what is left, then a check that nothing was broken.
    `specs` are `arm_specs(plan, previous)` when the caller already has them.
    Raises `Infeasible` (from the policy) when the constraints cannot all hold."""
    c = plan.campaign
    remaining = max(0, c.total_budget_micros - snapshot.spend_to_date_micros)
    budget = period_budget(plan.pacing, period_start, remaining)
    prev_budgets = previous.budgets if previous else {}

    def outcome(
        budget_micros: int, arms: tuple[ArmOutcome, ...], reason: str = ""
    ) -> AllocationOutcome:
        return AllocationOutcome(
            campaign_id=c.campaign_id,
            period_start=period_start,
            period_budget_micros=budget_micros,
            allocated_micros=sum(a.budget_micros for a in arms),
            remaining_budget_micros=remaining,
            spend_to_date_micros=snapshot.spend_to_date_micros,
            arms=arms,
            seed=seed,
            settings=settings,
            hours_observed=snapshot.hours_observed,
            objective=c.objective,
            currency=c.currency,
            reason=reason,
        )

    zero = campaign_wide_zero(plan, period_start, remaining, budget)
    if zero is not None:
        bound, reason = zero
        arms = tuple(
            ArmOutcome(
                arm.arm_id,
                arm.platform,
                arm.audience_id,
                0,
                bound=Bound.INELIGIBLE if why else bound,
                reason=why or reason,
                previous_budget_micros=prev_budgets.get(arm.arm_id, 0),
            )
            for arm, why in zip(c.arms, plan.ineligible, strict=True)
        )
        return outcome(0, arms, reason)

    if specs is None:
        specs = arm_specs(plan, previous)
    result = policy(list(specs), snapshot.evidence, budget, settings, seed, plan.floors, c.currency)
    arms = tuple(
        ArmOutcome(
            arm.arm_id,
            arm.platform,
            arm.audience_id,
            int(d.budget_micros),
            expected=float(d.expected),
            expected_low=float(d.expected_low),
            expected_high=float(d.expected_high),
            marginal_return=float(d.marginal_return),
            posterior_sd=float(d.posterior_sd),
            bound=_POLICY_BOUNDS.get(d.bound, Bound.OPTIMAL),
            reason=d.reason,
            previous_budget_micros=prev_budgets.get(arm.arm_id, 0),
        )
        for arm, d in zip(c.arms, result.arms, strict=True)
    )
    decided = outcome(budget, arms)
    check_outcome(plan, decided)
    return decided


def check_outcome(plan: CampaignPlan, outcome: AllocationOutcome) -> None:
    """Raises AllocationBroken when a service-level rule is broken."""
    if outcome.allocated_micros > outcome.period_budget_micros:
        raise AllocationBroken(
            f"allocated {outcome.allocated_micros} > period budget {outcome.period_budget_micros}"
        )
    if outcome.period_budget_micros > outcome.remaining_budget_micros:
        raise AllocationBroken("period budget above the remaining budget")
    for i, arm in enumerate(outcome.arms):
        if arm.budget_micros < 0:
            raise AllocationBroken(f"arm {arm.arm_id}: negative budget")
        if plan.ineligible[i] is not None and arm.budget_micros != 0:
            raise AllocationBroken(f"arm {arm.arm_id}: ineligible but funded")
        if arm.budget_micros and arm.budget_micros < plan.min_micros[i]:
            raise AllocationBroken(f"arm {arm.arm_id}: on below its minimum")
        cap = plan.max_micros[i]
        if cap is not None and arm.budget_micros > cap:
            raise AllocationBroken(f"arm {arm.arm_id}: above its maximum")
