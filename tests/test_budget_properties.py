"""Properties of the service around the policy, over random campaigns and
histories, through the Allocator (real store, real policy, scripted metrics):
eligibility, blackouts, flight, state, remaining budget, pacing and minimums are
never broken; infeasible constraints are refused, never bent; a seed fixes the split.
The policy's own properties (optimality, change limit) are tested with the policy."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from jangkau.budget import domain
from jangkau.budget.allocator import Allocator, campaign_to_wire
from jangkau.budget.domain import (
    Arm,
    AudienceFacts,
    BlackoutWindow,
    Bound,
    Campaign,
    CampaignKind,
    CampaignState,
    CoverageFloor,
    MetricsSnapshot,
    Pacing,
    PacingMode,
    Platform,
    PlatformMinimum,
    PlatformReach,
)
from jangkau.budget.policy import Evidence
from jangkau.budget.store import BudgetStore
from jangkau.runtime.errors import FailedPrecondition, Violations
from jangkau.runtime.ids import new_id

HOUR = timedelta(hours=1)
RUPIAH = 1_000_000
# 24 Nov 00:00 WIT to 28 Nov 00:00 WIB: the quiet period and voting day in every zone.
QUIET = (datetime(2024, 11, 23, 15, tzinfo=UTC), datetime(2024, 11, 27, 17, tzinfo=UTC))
WIB = timedelta(hours=7)


class ScriptedMetrics:
    """Answers with one drawn history, as the metrics gateway would."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.scripted = snapshot

    def snapshot(self, campaign, window, discount) -> tuple[str, MetricsSnapshot]:
        """Without a version, as a gateway that cannot vouch for what it read: the
        allocator decides afresh on every call."""
        if window is None:
            return "", MetricsSnapshot(0, 0, Evidence.empty(len(campaign.arms)))
        return "", self.scripted


@st.composite
def audiences(draw) -> list[AudienceFacts]:
    out = []
    for i in range(3):
        contact = draw(st.booleans())
        reach = tuple(
            PlatformReach(p, draw(st.integers(0, 2_000_000)), targetable=draw(st.booleans()))
            for p in Platform
        )
        out.append(
            AudienceFacts(f"aud_{i}", contact, not contact and draw(st.booleans()), 0, reach)
        )
    return out


@st.composite
def campaigns(draw) -> Campaign:
    start = datetime(2024, 11, 1, tzinfo=UTC) + draw(st.integers(0, 30 * 24)) * HOUR
    start += timedelta(minutes=draw(st.sampled_from([0, 0, 30])))
    end = start + draw(st.integers(6, 40 * 24)) * HOUR
    minimums = tuple(
        PlatformMinimum(p, draw(st.integers(0, 480)) * 1000 * RUPIAH)
        for p in draw(st.sets(st.sampled_from(list(Platform))))
    )
    arms = []
    for i in range(draw(st.integers(1, 8))):
        low = draw(st.sampled_from([0, 0, 5_000, 20_000])) * RUPIAH
        high = draw(st.sampled_from([0, 0, 40_000, 400_000])) * RUPIAH
        arms.append(
            Arm(
                arm_id=f"arm-{i}",
                platform=draw(st.sampled_from(list(Platform))),
                audience_id=f"aud_{draw(st.integers(0, 2))}",
                creative=f"c{i}",
                min_micros_per_period=low if not high or low <= high else 0,
                max_micros_per_period=high,
                value_weight=draw(st.sampled_from([0.0, 1.0, 2.5])),
            )
        )
    floors = tuple(
        CoverageFloor(
            f"floor-{j}",
            tuple(sorted(draw(st.sets(st.sampled_from([a.arm_id for a in arms]), min_size=1)))),
            draw(st.floats(0.01, 0.6)),
        )
        for j in range(draw(st.sampled_from([0, 0, 0, 1, 2])))
    )
    mode = draw(st.sampled_from(list(PacingMode)))
    profile = ()
    if mode is PacingMode.HOURLY_PROFILE:
        profile = tuple(
            draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=24, max_size=24))
        )
        assume(any(profile))
    blackouts = []
    for _ in range(draw(st.integers(0, 2))):
        a = start + draw(st.integers(0, int((end - start) / HOUR) - 1)) * HOUR
        b = min(end, a + draw(st.integers(1, 48)) * HOUR)
        blackouts.append(BlackoutWindow(a, b, "drawn"))
    draft = Campaign(
        campaign_id=new_id("cmp"),
        tenant="alpha",
        name="drawn",
        kind=draw(st.sampled_from(list(CampaignKind))),
        currency="IDR",
        total_budget_micros=draw(st.integers(10**9, 10**16)),
        flight_start=start,
        flight_end=end,
        blackouts=tuple(blackouts),
        skip_default_blackouts=draw(st.booleans()),
        arms=tuple(arms),
        platform_minimums=minimums,
        coverage_floors=floors,
        pacing=Pacing(mode, profile),
        political_authorization=draw(st.booleans()),
        state=draw(st.sampled_from([CampaignState.ACTIVE] * 8 + [CampaignState.PAUSED])),
        revision=1,
    )
    v = Violations()
    domain.validate_campaign(draft, v)
    assume(not v.items)
    return replace(draft, blackouts=domain.with_default_blackouts(draft))


@st.composite
def histories(draw, n_arms: int, total: int) -> MetricsSnapshot:
    hours = draw(st.integers(0, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    spend = rng.gamma(1.0, draw(st.sampled_from([1e8, 1e10, 1e12])), (n_arms, hours))
    spend *= rng.random((n_arms, hours)) < 0.8
    counts = rng.poisson(spend / 5e9)
    evidence = Evidence.from_history(spend, counts, 0.99) if hours else Evidence.empty(n_arms)
    to_date = int(total * draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9, 0.9, 1.0, 1.2])))
    return MetricsSnapshot(to_date, hours, evidence)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> BudgetStore:
    s = BudgetStore(Path(tmp_path_factory.mktemp("budget")) / "budget.duckdb")
    yield s
    s.close()


def forbidden(c: Campaign, arm: Arm, facts: dict[str, AudienceFacts]) -> bool:
    """The platform rules, restated independently of the domain's table."""
    kind, audience = c.kind, facts[arm.audience_id]
    reach = audience.reach_on(arm.platform)
    if reach is not None and not reach.targetable:
        return True
    if arm.platform is Platform.TIKTOK:
        return kind is not CampaignKind.COMMERCIAL
    if arm.platform in (Platform.META, Platform.X):
        return kind is not CampaignKind.COMMERCIAL and not c.political_authorization
    return kind is CampaignKind.POLITICAL and (
        audience.uses_contact_lists or not audience.demographic_only
    )


def spendable(c: Campaign, hour: datetime) -> bool:
    """Whole hour inside the flight and touching no blackout (nor the quiet period
    for a POLITICAL campaign that did not opt out)."""
    if hour < c.flight_start or hour + HOUR > c.flight_end:
        return False
    windows = [(w.start, w.end) for w in c.blackouts]
    if c.kind is CampaignKind.POLITICAL and not c.skip_default_blackouts:
        windows.append(QUIET)
    return not any(a < hour + HOUR and hour < b for a, b in windows)


def even_share(c: Campaign, hour: datetime, remaining: int) -> int:
    """EVEN pacing from first principles: what remains over the spendable hours left."""
    left = 0
    h = hour
    while h + HOUR <= c.flight_end:
        left += spendable(c, h)
        h += HOUR
    return remaining // left if left else 0


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_allocation_breaks_a_service_level_rule(store, data):
    c = data.draw(campaigns())
    facts = {f.audience_id: f for f in data.draw(audiences())}
    snapshot = data.draw(histories(len(c.arms), c.total_budget_micros))
    hours = int((c.flight_end - c.flight_start) / HOUR)
    as_of = c.flight_start + data.draw(st.integers(-3, hours + 3)) * HOUR
    as_of += timedelta(minutes=data.draw(st.integers(0, 59)))
    seed = data.draw(st.integers(1, 2**63))
    store.insert_campaign(
        c.tenant,
        c.campaign_id,
        c.state.value,
        c.flight_start,
        campaign_to_wire(c).SerializeToString(),
        facts.values(),
    )
    allocator = Allocator(store, ScriptedMetrics(snapshot))  # type: ignore[arg-type]
    # A previous decision, so that the change limit is in play (it may be infeasible).
    with contextlib.suppress(FailedPrecondition):
        allocator.rebalance(c.tenant, c.campaign_id, as_of - HOUR, seed)
    try:
        outcome = allocator.allocate(c.tenant, c.campaign_id, as_of, seed)
    except FailedPrecondition as exc:
        assert "constraints cannot all hold" in exc.message
        assert c.coverage_floors, "only coverage floors can make a period infeasible here"
        event("infeasible")
        return
    event(f"zero for the whole campaign: {outcome.reason}" if outcome.reason else "policy ran")
    period = as_of.replace(minute=0)
    # Before the flight there is no history to read: nothing spent.
    spent = snapshot.spend_to_date_micros if period > c.flight_start else 0
    remaining = max(0, c.total_budget_micros - spent)
    minimums = {m.platform: -(-m.min_daily_micros // 24) for m in c.platform_minimums}

    assert outcome.remaining_budget_micros == remaining
    assert 0 <= outcome.allocated_micros <= outcome.period_budget_micros <= remaining
    assert outcome.allocated_micros == sum(a.budget_micros for a in outcome.arms)
    assert [a.arm_id for a in outcome.arms] == [a.arm_id for a in c.arms]
    if not spendable(c, period) or c.state is not CampaignState.ACTIVE:
        assert outcome.period_budget_micros == 0
        assert all(a.budget_micros == 0 for a in outcome.arms)
    if c.pacing.mode is PacingMode.EVEN and c.state is CampaignState.ACTIVE:
        expected = even_share(c, period, remaining) if spendable(c, period) else 0
        assert outcome.period_budget_micros == expected
    if (
        c.pacing.mode is PacingMode.HOURLY_PROFILE
        and not c.pacing.hourly_profile[(period + WIB).hour]
    ):
        assert outcome.period_budget_micros == 0
    for arm, got in zip(c.arms, outcome.arms, strict=True):
        assert got.budget_micros >= 0
        if forbidden(c, arm, facts):
            assert got.budget_micros == 0
            assert got.bound is Bound.INELIGIBLE and got.reason
        if got.budget_micros:
            assert got.budget_micros >= max(
                arm.min_micros_per_period, minimums.get(arm.platform, 0)
            )
            if arm.max_micros_per_period:
                assert got.budget_micros <= arm.max_micros_per_period
    if outcome.period_budget_micros and not outcome.reason:
        index = {a.arm_id: i for i, a in enumerate(c.arms)}
        for floor in c.coverage_floors:
            if all(forbidden(c, c.arms[index[a]], facts) for a in floor.arm_ids):
                continue  # dropped: none of its arms may run
            funded = sum(outcome.arms[index[a]].budget_micros for a in floor.arm_ids)
            assert funded >= int(floor.min_share * outcome.period_budget_micros) - 1

    again = allocator.allocate(c.tenant, c.campaign_id, as_of, seed)
    assert [a.budget_micros for a in again.arms] == [a.budget_micros for a in outcome.arms]
