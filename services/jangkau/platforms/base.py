"""The one interface between the rebalancer and an ad platform: apply a
campaign's daily budgets to its arms, and fetch what the arms delivered, hour by
hour. The Meta, Google Ads and X adapters speak each platform's HTTP API; the
sandbox adapter speaks gRPC to the simulated market. All of them take and return
the dataclasses below, so the rebalancer never sees a platform's wire format.

Contract every adapter keeps:

- `apply_budgets` returns exactly one `BudgetResult` per `ArmBudget`, in the
  order given, and does not raise for what a platform answers: a failure that
  hits the whole call (network, authentication, rate limit) marks each arm it
  stopped as not accepted, with `retryable` saying whether trying again later
  can help. So the rebalancer always knows which arms hold a new budget and
  keeps the last applied budget of the others (fail static).
  A daily budget of 0 turns the arm off (the platform entity is paused); a
  positive budget sets it, rounded down to the platform's unit, and turns the
  arm on. A budget that rounds down to 0 turns the arm off.
- `fetch_reports` returns the hourly delivery of the campaign's arms on the
  adapter's platforms for hours in [since, until), or raises a `PlatformError`
  (`TransientPlatformError`: try again later; `PermanentPlatformError`: fix the
  configuration). Hours a platform does not report are absent, never invented.
- Both raise `InvalidTarget` (a `PermanentPlatformError`) when the campaign's
  arms do not fit the adapter: an unknown arm, an arm of another platform,
  missing platform ids, a currency the platform does not take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from jangkau.v1 import common_pb2

# A clock returning the current time as an aware UTC datetime; passed in so
# simulated time and tests need no global fake clock.
Clock = Callable[[], datetime]

ONE_HOUR = timedelta(hours=1)


def system_clock() -> datetime:
    """The machine's clock, UTC."""
    return datetime.now(UTC)


def platform_name(platform: int) -> str:
    """The enum name of a `common_pb2.Platform` value, for messages."""
    try:
        return common_pb2.Platform.Name(common_pb2.Platform.ValueType(platform))
    except ValueError:
        return f"PLATFORM_{platform}"


def require_utc_hour(value: datetime, name: str) -> None:
    """Raise ValueError unless `value` is an aware UTC datetime on the hour."""
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be an aware UTC datetime, got {value!r}")
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValueError(f"{name} must be on the hour, got {value.isoformat()}")


def require_window(since: datetime, until: datetime) -> None:
    """Raise ValueError unless [since, until) is a non-empty span of whole UTC hours."""
    require_utc_hour(since, "since")
    require_utc_hour(until, "until")
    if until <= since:
        raise ValueError(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")


# --- what the rebalancer hands an adapter -----------------------------------


@dataclass(frozen=True)
class ArmTarget:
    """One arm of a campaign and where it lives on its platform.

    | platform | account_id              | entity_id (turned on/off, reported on)     | budget_id (holds the daily budget)        |
    |----------|-------------------------|--------------------------------------------|-------------------------------------------|
    | META     | ad account, `act_<id>`  | ad set id                                  | "" (the ad set holds it)                  |
    | GOOGLE   | customer id, digits     | campaign, `customers/<c>/campaigns/<id>`   | `customers/<c>/campaignBudgets/<id>`      |
    | X        | ads account id          | line item id                               | "" (the line item holds it)               |
    | sandbox  | market account          | the market's arm handle                    | "" or the market's budget handle          |
    """

    arm_id: str
    # A `common_pb2.Platform` value (common_pb2.META, GOOGLE, X, TIKTOK).
    platform: int
    account_id: str
    entity_id: str
    budget_id: str = ""
    # IANA time zone the platform account reports days and hours in
    # ("Asia/Jakarta"); hours are converted to UTC with it.
    time_zone: str = "UTC"


@dataclass(frozen=True)
class CampaignTarget:
    """A campaign's arms on the platforms. Every platform account of the campaign
    is billed in `currency` (ISO 4217): adapters never convert currencies."""

    campaign_id: str
    currency: str
    arms: tuple[ArmTarget, ...]

    def arm(self, arm_id: str) -> ArmTarget:
        """The arm with this id; raises InvalidTarget when the campaign has none."""
        for target in self.arms:
            if target.arm_id == arm_id:
                return target
        raise InvalidTarget(
            common_pb2.PLATFORM_UNSPECIFIED,
            f"campaign {self.campaign_id} has no arm {arm_id!r}",
        )

    def arms_on(self, platforms: frozenset[int]) -> tuple[ArmTarget, ...]:
        """The arms whose platform is one of `platforms`, in campaign order."""
        return tuple(target for target in self.arms if target.platform in platforms)


@dataclass(frozen=True)
class ArmBudget:
    """The daily budget to hold on one arm's platform from now on, integer micros
    of the campaign currency, >= 0 (0 turns the arm off). The rebalancer derives
    it from its hourly allocation."""

    arm_id: str
    daily_budget_micros: int

    def __post_init__(self) -> None:
        if self.daily_budget_micros < 0:
            raise ValueError(
                f"arm {self.arm_id}: daily_budget_micros must be >= 0, "
                f"got {self.daily_budget_micros}"
            )


# --- what an adapter hands back ----------------------------------------------


@dataclass(frozen=True)
class BudgetResult:
    """What the platform did with one arm's budget.

    `applied_daily_budget_micros`: when accepted, the daily budget the platform now
    holds (the request rounded down to the platform's unit; 0 when the arm was
    turned off); when not accepted, the rounded amount that was refused, while
    the platform keeps its previous budget. `retryable`: False when accepted or
    when the same request would be refused again (fix the budget or the
    configuration); True when a later try may succeed (rate limit, outage, the
    call never reached the platform).
    """

    arm_id: str
    accepted: bool
    applied_daily_budget_micros: int
    platform_message: str = ""
    retryable: bool = False

    @classmethod
    def refused(
        cls, arm_id: str, attempted_micros: int, message: str, retryable: bool
    ) -> BudgetResult:
        return cls(arm_id, False, attempted_micros, message, retryable)


@dataclass(frozen=True)
class PlatformReport:
    """One arm's delivery in one hour, as the platform reported it at `version`.
    Mirrors jangkau.v1.HourlyReport; the rebalancer ingests it as is."""

    campaign_id: str
    arm_id: str
    platform: int
    # Start of the hour, aware UTC, on the hour.
    hour: datetime
    # The attribution the conversions are counted under, 1..40 characters.
    attribution_window: str
    impressions: int
    # People reached in the hour; 0 where the platform gives no hourly reach
    # (Meta, Google and X do not: unique counts are not hourly).
    reach: int
    clicks: int
    conversions: float
    conversion_value_micros: int
    spend_micros: int
    currency: str
    # When the figures were pulled, aware UTC.
    version: datetime

    def __post_init__(self) -> None:
        require_utc_hour(self.hour, "hour")
        counts = {
            "impressions": self.impressions,
            "reach": self.reach,
            "clicks": self.clicks,
            "conversion_value_micros": self.conversion_value_micros,
            "spend_micros": self.spend_micros,
        }
        for name, value in counts.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.conversions < 0:
            raise ValueError(f"conversions must be >= 0, got {self.conversions}")
        if not 1 <= len(self.attribution_window) <= 40:
            raise ValueError(
                f"attribution_window must be 1..40 characters: {self.attribution_window!r}"
            )


# --- errors --------------------------------------------------------------------


class PlatformError(Exception):
    """A platform refused or could not serve a call. `status` is the HTTP status
    when there was one; `code` the platform's own error code ("100/1885272",
    "quotaError.RESOURCE_EXHAUSTED", "TOO_MANY_REQUESTS")."""

    retryable: bool = False

    def __init__(
        self, platform: int, message: str, *, status: int | None = None, code: str = ""
    ) -> None:
        # An adapter for several platforms (the sandbox market) names none.
        named = platform != common_pb2.PLATFORM_UNSPECIFIED
        super().__init__(f"{platform_name(platform)}: {message}" if named else message)
        self.platform = platform
        self.message = message
        self.status = status
        self.code = code

    @property
    def summary(self) -> str:
        """ "<code>: <message>", for logs and `BudgetResult.platform_message`."""
        return f"{self.code}: {self.message}" if self.code else self.message


class TransientPlatformError(PlatformError):
    """Outage, timeout, server error: the same call may succeed later."""

    retryable = True


class RateLimited(TransientPlatformError):
    """The platform throttled the caller. `retry_after_seconds` when it said how long."""

    def __init__(
        self,
        platform: int,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(platform, message, status=status, code=code)
        self.retry_after_seconds = retry_after_seconds


class PermanentPlatformError(PlatformError):
    """Bad request, bad credentials, no permission: retrying the same call fails again."""


class InvalidTarget(PermanentPlatformError):
    """The campaign's arms do not fit this adapter (unknown arm, other platform,
    missing ids, unsupported currency)."""


# --- the interface -------------------------------------------------------------


@runtime_checkable
class PlatformAdapter(Protocol):
    """Applies budgets to, and reports on, the arms of the platforms in `platforms`
    (one platform for Meta, Google Ads and X; every simulated one for the sandbox)."""

    platforms: frozenset[int]

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]: ...

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]: ...


def resolve_budgets(
    campaign: CampaignTarget, budgets: Sequence[ArmBudget], platform: int
) -> list[tuple[ArmBudget, ArmTarget]]:
    """Pair each budget with its arm; InvalidTarget when an arm is unknown, on another
    platform, or given twice."""
    seen: set[str] = set()
    pairs = []
    for budget in budgets:
        if budget.arm_id in seen:
            raise InvalidTarget(platform, f"arm {budget.arm_id} has two budgets in one call")
        seen.add(budget.arm_id)
        target = campaign.arm(budget.arm_id)
        if target.platform != platform:
            raise InvalidTarget(
                platform,
                f"arm {target.arm_id} is on {platform_name(target.platform)}, "
                f"not {platform_name(platform)}",
            )
        if not target.entity_id:
            raise InvalidTarget(platform, f"arm {target.arm_id} has no entity_id")
        pairs.append((budget, target))
    return pairs
