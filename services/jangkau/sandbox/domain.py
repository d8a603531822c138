"""A campaign's simulated market as a platform sees it: budgets set over time,
hours delivered with the budgets in force, reports pulled (and restated), edits
now and then refused, pulls now and then failing. Pure: no gRPC."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from jangkau.market import SCENARIOS, Market, Scenario
from jangkau.runtime.times import HOUR, floor_hour

ATTRIBUTION_WINDOW = "sandbox_7d_click"
# The market's hidden physics of saturation (the policy's benchmarks differ from it):
# impressions a reachable person absorbs a day.
HIDDEN_IMPRESSIONS_PER_PERSON_PER_DAY = 1.2


class SandboxError(Exception):
    """A request the market cannot serve; the message names the field."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class MarketHiccup(Exception):
    """A simulated platform outage (the caller should try again later)."""


@dataclass(frozen=True)
class MarketArm:
    arm_id: str
    platform: int
    audience_id: str
    reachable: int


@dataclass(frozen=True)
class ReportedRow:
    arm_id: str
    platform: int
    hour: datetime
    impressions: int
    reach: int
    clicks: int
    conversions: float
    spend_micros: int
    version: datetime


def _mix(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def pilkada_scenario(n_arms: int, hours: int, total_budget_micros: int) -> Scenario:
    """A regional-election market: saturating curves at the campaign's scale, a daily
    cycle, slow drift, costs rising a third towards voting day, one ad disapproved for
    two days, one sudden change of response."""
    return Scenario(
        "pilkada",
        n_arms,
        hours=hours,
        hourly_budget_micros=max(1, total_budget_micros // max(hours, 1)),
        drift_daily_sd=0.03,
        cost_rise=0.33,
        disapprovals=1,
        response_shocks=1,
        floor_share=0.0,
    )


def scenario_for(name: str, n_arms: int, hours: int, total_budget_micros: int) -> Scenario:
    if name in ("", "pilkada"):
        return pilkada_scenario(n_arms, hours, total_budget_micros)
    if name not in SCENARIOS:
        raise SandboxError("scenario", f"one of pilkada, {', '.join(SCENARIOS)}")
    base = SCENARIOS[name]()
    return replace(
        base,
        n_arms=n_arms,
        hours=hours,
        hourly_budget_micros=max(1, total_budget_micros // max(hours, 1)),
        floor_share=0.0,
    )


@dataclass
class SandboxCampaign:
    campaign_id: str
    currency: str
    arms: tuple[MarketArm, ...]
    seed: int
    scenario_name: str
    start: datetime
    end: datetime
    total_budget_micros: int
    rejection_rate: float = 0.0
    error_rate: float = 0.0
    market: Market = field(init=False)
    # What the market's chance is drawn from: the seed and the arms.
    _identity: int = field(default=0, init=False)
    # Per arm: (first hour index, hourly budget micros) in the order set.
    _budget_changes: list[list[tuple[int, int]]] = field(init=False)
    _delivered_hours: int = field(default=0, init=False)
    _in_force: list[np.ndarray] = field(default_factory=list, init=False)
    _expected: list[float] = field(default_factory=list, init=False)
    reported: dict[tuple[str, datetime], ReportedRow] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.start = floor_hour(self.start)
        hours = int((self.end - self.start) / HOUR) + 1
        scenario = scenario_for(self.scenario_name, len(self.arms), hours, self.total_budget_micros)
        # The same seed and arms give the same market (sandbox.proto): the hidden curves
        # and every roll of chance follow from them, not from the campaign's id, which
        # the budget service draws anew for each campaign created.
        self._identity = _mix(self.seed, *(f"{a.arm_id}/{a.platform}" for a in self.arms))
        self.market = Market(scenario, self._identity, restatements=True)
        self._scale_to_reach()
        self._budget_changes = [[] for _ in self.arms]
        self._index = {arm.arm_id: i for i, arm in enumerate(self.arms)}

    def _scale_to_reach(self) -> None:
        """Ties each arm's saturation to its audience, as on a real platform: an
        audience absorbs a limited number of impressions an hour, so κ (the spend at
        which returns flatten) is that capacity at the arm's cost per impression, and θ
        scales with it at the arm's cost per conversion. The capacity and the cost are
        hidden and noisy per arm; arms of unknown reach keep the scenario's scale."""
        reach = np.array([max(a.reachable, 0) for a in self.arms], dtype=float)
        known = reach > 0
        if not known.any():
            return
        rng = np.random.default_rng(_mix(self._identity, "reach"))
        n = len(self.arms)
        per_hour = reach * HIDDEN_IMPRESSIONS_PER_PERSON_PER_DAY / 24.0
        capacity = per_hour * np.exp(rng.normal(0.0, 0.6, n))
        # At the market's own cost of impressions (the one its reports count with).
        cpm = self.market.cpm[:, 0]
        kappa_now = self.market.kappa[:, 0]
        self.market.scale_saturation(np.where(known, capacity * cpm / 1000.0 / kappa_now, 1.0))

    @property
    def hours(self) -> int:
        return self.market.hours

    def hour_index(self, moment: datetime) -> int:
        return int((floor_hour(moment) - self.start) / HOUR)

    def same_arms(self, arms: tuple[MarketArm, ...]) -> bool:
        return [a.arm_id for a in arms] == [a.arm_id for a in self.arms]

    def set_budgets(
        self, at: datetime, daily_budgets: dict[str, int]
    ) -> list[tuple[str, bool, int, str]]:
        """(arm, accepted, daily micros held or refused, message) per edit. An edit
        applies from the hour containing `at`; hours already delivered stay as they were."""
        hour = max(self.hour_index(at), self._delivered_hours)
        outcomes = []
        for arm_id, daily in daily_budgets.items():
            if arm_id not in self._index:
                raise SandboxError("budgets.arm_id", f"unknown arm {arm_id!r}")
            if daily < 0:
                raise SandboxError("budgets.daily_budget_micros", "must be >= 0")
            roll = _mix(self._identity, arm_id, hour, "edit") / 2**64
            if daily > 0 and roll < self.rejection_rate:
                outcomes.append((arm_id, False, daily, "edit rejected: ad set under review"))
                continue
            self._budget_changes[self._index[arm_id]].append((hour, daily // 24))
            outcomes.append((arm_id, True, daily, ""))
        return outcomes

    def _budgets_at(self, hour: int) -> np.ndarray:
        budgets = np.zeros(len(self.arms), np.int64)
        for i, changes in enumerate(self._budget_changes):
            for first, hourly in changes:
                if first <= hour:
                    budgets[i] = hourly
        return budgets

    def deliver_until(self, hour: int) -> None:
        """Runs every hour before `hour` not yet run, with the budgets then in force."""
        hour = min(hour, self.market.hours)
        while self._delivered_hours < hour:
            h = self._delivered_hours
            budgets = self._budgets_at(h)
            self._expected.append(float(self.market.true_expected(h, budgets).sum()))
            self._in_force.append(budgets)
            self.market.step(h, budgets)
            self._delivered_hours += 1

    def fetch(self, since: datetime, until: datetime, at: datetime) -> list[ReportedRow]:
        if until <= since:
            raise SandboxError("until", "must be after since")
        if at < until:
            raise SandboxError("at", "a pull cannot be earlier than the end of the window")
        first, last = max(self.hour_index(since), 0), self.hour_index(until)
        roll = _mix(self._identity, at.isoformat(), "pull") / 2**64
        if roll < self.error_rate:
            raise MarketHiccup("reporting temporarily unavailable")
        self.deliver_until(last)
        as_of = self.hour_index(at)
        rows: list[ReportedRow] = []
        for h in range(first, min(last, self._delivered_hours)):
            report = self.market.report(h, as_of)
            moment = self.start + h * HOUR
            for i, arm in enumerate(self.arms):
                if self._in_force[h][i] == 0 and report.spend_micros[i] == 0:
                    continue  # a paused entity has no row for the hour
                row = ReportedRow(
                    arm.arm_id,
                    arm.platform,
                    moment,
                    int(report.impressions[i]),
                    int(report.reach[i]),
                    int(report.clicks[i]),
                    float(report.conversions[i]),
                    int(report.spend_micros[i]),
                    at,
                )
                rows.append(row)
                previous = self.reported.get((arm.arm_id, moment))
                if previous is None or previous.version <= at:
                    self.reported[(arm.arm_id, moment)] = row
        return rows

    def evaluation(self) -> list[tuple[datetime, np.ndarray, float]]:
        return [
            (self.start + h * HOUR, self._in_force[h], self._expected[h])
            for h in range(self._delivered_hours)
        ]
