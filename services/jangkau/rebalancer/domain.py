"""Pure rules of the rebalancer: from an hourly decision to the platform edits."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

HOURS_PER_DAY = 24


def daily_from_hourly(hourly_micros: int) -> int:
    """Platforms take daily budgets; an hourly allocation held for a day is 24×.
    Platforms pace a daily budget over the day, so this is the rate the decision
    wants for the coming hour."""
    return hourly_micros * HOURS_PER_DAY


def hourly_from_daily(daily_micros: int) -> int:
    """The hourly rate of a daily budget (the inverse of `daily_from_hourly`)."""
    return daily_micros // HOURS_PER_DAY


@dataclass(frozen=True)
class ArmBounds:
    """The daily budgets an arm that is on may hold: at least its minimum (the arm's
    own or its platform's), at most its maximum (None: no maximum)."""

    min_daily: int = 0
    max_daily: int | None = None

    def hold(self, daily: int) -> bool:
        return self.min_daily <= daily and (self.max_daily is None or daily <= self.max_daily)


def edits_needed(
    wanted_daily: Mapping[str, int],
    last_applied: Mapping[str, int],
    min_edit_percent: float = 0.0,
    bounds: Mapping[str, ArmBounds] | None = None,
) -> dict[str, int]:
    """Arms whose platform budget must change. Every edit counts against a platform's
    learning phase (Meta resets it on a significant edit; TikTok advises few, small
    changes), so an amount within `min_edit_percent` of the one in force is left as
    it is, unless the amounts left would together keep more in force than was
    allocated (the campaign would overspend): then the cuts with the most to cut
    are pushed until they do not. Always pushed: an arm never set (even to 0, which
    pauses whatever the platform holds, so no arm runs on a budget jangkau did not
    choose), turning an arm on or off, and a change from an amount outside the arm's
    `bounds` (its minimum or maximum changed since it was set)."""
    edits = {}
    left: dict[str, int] = {}  # arm -> the amount in force, left despite a small change
    bounds = bounds or {}
    for arm, daily in wanted_daily.items():
        current = last_applied.get(arm)
        if (
            current is None
            or (current == 0) != (daily == 0)
            or current != daily
            and (
                abs(daily - current) * 100 > min_edit_percent * current
                or not bounds.get(arm, ArmBounds()).hold(current)
            )
        ):
            edits[arm] = daily
        elif current != daily:
            left[arm] = current
    above = sum(current - wanted_daily[arm] for arm, current in left.items())
    for arm in _largest_cuts_until(
        wanted_daily, left, left, above, lambda a: left[a] - wanted_daily[a]
    ):
        edits[arm] = wanted_daily[arm]
    return edits


def _largest_cuts_until(
    wanted_daily: Mapping[str, int],
    in_force_daily: Mapping[str, int],
    arms: Iterable[str],
    excess: int,
    relief: Callable[[str], int],
) -> list[str]:
    """Of `arms`, those whose amount in force is above the one wanted, the ones with the
    most to cut first, taken until `excess` (what the amounts in force come to beyond
    what they may) is gone; taking an arm takes `relief(arm)` off the excess."""
    cuts = sorted(
        (arm for arm in arms if in_force_daily.get(arm, 0) > wanted_daily.get(arm, 0)),
        key=lambda arm: wanted_daily.get(arm, 0) - in_force_daily[arm],
    )
    taken = []
    for arm in cuts:
        if excess <= 0:
            break
        taken.append(arm)
        excess -= relief(arm)
    return taken


def pauses_for_refused_cuts(
    wanted_daily: Mapping[str, int],
    in_force_daily: Mapping[str, int],
    refused: Iterable[str],
    left_micros: int,
) -> list[str]:
    """Arms whose refused cut must become a pause. A refused edit leaves the platform's
    budget as it was, so a refused cut keeps more in force than was allocated; later
    hours make that up while the campaign has budget left. Once the budgets in force
    this hour add up to more than is left of the campaign's (`left_micros`: its budget
    minus its spend so far), it would overspend, so the refused cuts with the most to
    cut are paused until they do not (the sandbox market never refuses a pause). A
    refused cut to zero was a pause already: it is not pushed again."""
    in_force = sum(hourly_from_daily(d) for d in in_force_daily.values())
    return _largest_cuts_until(
        wanted_daily,
        in_force_daily,
        [arm for arm in refused if wanted_daily.get(arm, 0) > 0],
        in_force - left_micros,
        lambda arm: hourly_from_daily(in_force_daily[arm]),
    )


@dataclass(frozen=True)
class HourBudgets:
    """The daily budgets an hour wants on the platforms, by arm: a decision's, or zeros
    without one (`decision_id` empty) in an hour the campaign may not spend in."""

    decision_id: str
    period_start: datetime
    daily: dict[str, int]
    # What is left of the campaign's budget (its budget minus its spend so far), micros.
    left_micros: int


class Outcome(StrEnum):
    APPLIED = "applied"  # new budgets pushed (or none needed)
    REPLAYED = "replayed"  # this hour was already applied: nothing pushed again
    SKIPPED = "skipped"  # a later hour was already applied: this one is decided, not pushed
    DRY_RUN = "dry_run"
    FAILED = "failed"  # fail static: the last applied budgets stay


@dataclass
class CampaignRun:
    campaign_id: str
    outcome: Outcome = Outcome.APPLIED
    message: str = ""
    reports_ingested: int = 0
    edits: int = 0
    refused: int = 0
    allocated_micros: int = 0
    arms: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        """Adds a line to what the run says about the campaign."""
        self.message = f"{self.message}; {text}" if self.message else text


@dataclass
class RunSummary:
    campaigns: list[CampaignRun] = field(default_factory=list)
    # Campaigns not reached before the run-time limit.
    not_reached: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.not_reached) or any(c.outcome is Outcome.FAILED for c in self.campaigns)
