"""The budget domain on its own: blackout presets, eligibility, pacing, priors,
and the service-level rules `decide` wraps around the policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from jangkau.budget import domain
from jangkau.budget.domain import (
    AllocationBroken,
    BlackoutWindow,
    Bound,
    CampaignKind,
    CampaignState,
    MetricsSnapshot,
    Objective,
    Pacing,
    PacingMode,
    Platform,
    PlatformMinimum,
    PreviousDecision,
)
from jangkau.budget.policy import (
    KAPPA_GRID_MICROS,
    ArmDecision,
    Evidence,
    Infeasible,
    PolicyResult,
    PolicySettings,
)
from tests.test_budget_support import (
    FLIGHT_END,
    FLIGHT_START,
    RUPIAH,
    arm,
    campaign,
    even_policy,
    facts,
    in_flight,
)

HOUR = timedelta(hours=1)
SETTINGS = PolicySettings()


def snapshot(spend: int = 0, n_arms: int = 2) -> MetricsSnapshot:
    return MetricsSnapshot(spend, 0, Evidence.empty(n_arms))


def decide(c, period_start, *, spend=0, previous=None, policy=even_policy, audience=None):
    plan = domain.plan_campaign(c, {"aud_a": audience or facts()})
    return domain.decide(
        plan, snapshot(spend, len(c.arms)), previous, period_start, 7, SETTINGS, policy
    )


# ------------------------------------------------------------------ blackouts


def test_quiet_period_preset_runs_from_24_november_wit_to_the_end_of_voting_day_wib():
    q = domain.PILKADA_2024_QUIET_PERIOD
    assert q.start == datetime(2024, 11, 23, 15, tzinfo=UTC)
    assert q.end == datetime(2024, 11, 27, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("time_zone", "offset_hours"),
    [("Asia/Jakarta", 7), ("Asia/Makassar", 8), ("Asia/Jayapura", 9)],
)
@pytest.mark.parametrize(
    "local_moment",
    [datetime(2024, 11, 24, 0, 30), datetime(2024, 11, 27, 12), datetime(2024, 11, 27, 23, 30)],
    ids=["first quiet hour", "voting day noon", "last hour of voting day"],
)
def test_political_campaign_spends_nothing_from_24_to_27_november_in_its_own_zone(
    time_zone, offset_hours, local_moment
):
    c = campaign(
        kind=CampaignKind.POLITICAL,
        political_authorization=True,
        time_zone=time_zone,
        flight_start=datetime(2024, 11, 20, tzinfo=UTC),
        flight_end=datetime(2024, 11, 30, tzinfo=UTC),
    )
    c = replace(c, blackouts=domain.with_default_blackouts(c))
    moment = local_moment.replace(tzinfo=UTC) - timedelta(hours=offset_hours)
    got = decide(c, moment.replace(minute=0))
    assert got.allocated_micros == 0
    assert "masa tenang" in got.reason


def test_political_campaign_spends_again_the_day_after_voting_day():
    c = campaign(
        kind=CampaignKind.POLITICAL,
        political_authorization=True,
        flight_start=datetime(2024, 11, 20, tzinfo=UTC),
        flight_end=datetime(2024, 11, 30, tzinfo=UTC),
    )
    c = replace(c, blackouts=domain.with_default_blackouts(c))
    assert decide(c, datetime(2024, 11, 27, 17, tzinfo=UTC)).allocated_micros > 0


def test_a_campaign_stored_with_the_earlier_preset_is_planned_with_the_current_one():
    earlier = BlackoutWindow(
        datetime(2024, 11, 23, 17, tzinfo=UTC),
        datetime(2024, 11, 26, 17, tzinfo=UTC),
        "Pilkada 2024 masa tenang (quiet period), 24-26 Nov 2024 WIB",
    )
    c = campaign(
        kind=CampaignKind.POLITICAL,
        political_authorization=True,
        flight_start=datetime(2024, 11, 20, tzinfo=UTC),
        flight_end=datetime(2024, 11, 30, tzinfo=UTC),
        blackouts=(earlier,),
    )
    plan = domain.plan_campaign(c, {"aud_a": facts()})
    assert plan.blackouts == (domain.PILKADA_2024_QUIET_PERIOD,)
    assert decide(c, datetime(2024, 11, 27, 3, tzinfo=UTC)).allocated_micros == 0


def test_political_campaign_crossing_the_quiet_period_gets_it_clipped_to_the_flight():
    c = campaign(
        kind=CampaignKind.POLITICAL,
        flight_start=datetime(2024, 11, 1, tzinfo=UTC),
        flight_end=datetime(2024, 11, 25, tzinfo=UTC),
    )
    (window,) = domain.with_default_blackouts(c)
    assert window.start == datetime(2024, 11, 23, 15, tzinfo=UTC)
    assert window.end == datetime(2024, 11, 25, tzinfo=UTC)
    assert "masa tenang" in window.reason


def test_commercial_campaign_gets_no_quiet_period():
    c = campaign(flight_end=datetime(2024, 11, 30, tzinfo=UTC))
    assert domain.with_default_blackouts(c) == ()


def test_skip_default_blackouts_leaves_the_quiet_period_out():
    c = campaign(
        kind=CampaignKind.POLITICAL,
        flight_end=datetime(2024, 11, 30, tzinfo=UTC),
        skip_default_blackouts=True,
    )
    assert domain.with_default_blackouts(c) == ()


def test_political_campaign_ending_before_the_quiet_period_gets_no_preset():
    assert domain.with_default_blackouts(campaign(kind=CampaignKind.POLITICAL)) == ()


def test_preset_is_derived_again_when_the_flight_changes():
    c = campaign(kind=CampaignKind.POLITICAL, flight_end=datetime(2024, 11, 25, tzinfo=UTC))
    c = replace(c, blackouts=domain.with_default_blackouts(c))
    c = replace(c, flight_end=datetime(2024, 11, 30, tzinfo=UTC))
    (window,) = domain.with_default_blackouts(c)
    assert window == domain.PILKADA_2024_QUIET_PERIOD


# ------------------------------------------------------------------ eligibility


@pytest.mark.parametrize(
    ("platform", "kind", "authorized", "audience", "eligible"),
    [
        (Platform.TIKTOK, CampaignKind.POLITICAL, True, facts(), False),
        (Platform.TIKTOK, CampaignKind.CIVIC, True, facts(), False),
        (Platform.TIKTOK, CampaignKind.COMMERCIAL, False, facts(), True),
        (Platform.GOOGLE, CampaignKind.POLITICAL, False, facts(), True),
        (Platform.GOOGLE, CampaignKind.POLITICAL, True, facts(contact_lists=True), False),
        (Platform.GOOGLE, CampaignKind.POLITICAL, True, facts(demographic_only=False), False),
        (Platform.GOOGLE, CampaignKind.CIVIC, False, facts(contact_lists=True), True),
        (Platform.META, CampaignKind.POLITICAL, False, facts(), False),
        (Platform.META, CampaignKind.POLITICAL, True, facts(contact_lists=True), True),
        (Platform.META, CampaignKind.CIVIC, False, facts(), False),
        (Platform.X, CampaignKind.POLITICAL, False, facts(), False),
        (Platform.X, CampaignKind.POLITICAL, True, facts(), True),
        (Platform.X, CampaignKind.COMMERCIAL, False, facts(contact_lists=True), True),
    ],
)
def test_eligibility_table(platform, kind, authorized, audience, eligible):
    why = domain.ineligibility(kind, arm("a", platform), audience, authorized)
    assert (why is None) == eligible, why


def test_every_platform_and_kind_has_an_eligibility_rule():
    assert {(p, k) for p in Platform for k in CampaignKind} == set(domain.ELIGIBILITY)


def test_tiktok_political_reason_says_tiktok_bans_political_ads():
    why = domain.ineligibility(CampaignKind.POLITICAL, arm("t", Platform.TIKTOK), facts(), True)
    assert why == "TikTok bans paid political ads"


def test_audience_below_the_platform_minimum_is_ineligible():
    small = replace(
        facts(),
        reach=(domain.PlatformReach(Platform.META, 40, targetable=False, reason="under 100"),),
    )
    assert domain.ineligibility(CampaignKind.COMMERCIAL, arm("m"), small, False) == "under 100"


# ------------------------------------------------------------------ pacing


def plan_for(pacing: Pacing | None = None, blackouts=(), tz="Asia/Jakarta") -> domain.PacingPlan:
    return domain.pacing_plan(FLIGHT_START, FLIGHT_END, tuple(blackouts), pacing or Pacing(), tz)


def test_even_pacing_gives_remaining_budget_over_hours_left():
    plan = plan_for()
    hours_left = 30 * 24 - 24
    assert domain.period_budget(plan, in_flight(24), 696 * RUPIAH) == 696 * RUPIAH // hours_left


def test_blackout_hours_get_no_budget_and_the_rest_absorbs_it():
    window = BlackoutWindow(in_flight(48), in_flight(72), "masa tenang")
    plan = plan_for(blackouts=[window])
    assert domain.period_budget(plan, in_flight(50), 10**12) == 0
    hours_left = 30 * 24 - 24
    assert domain.period_budget(plan, in_flight(0), 10**12) == 10**12 // hours_left


def test_an_hour_partly_in_a_blackout_gets_no_budget():
    window = BlackoutWindow(in_flight(5) + timedelta(minutes=30), in_flight(6), "")
    assert domain.period_budget(plan_for(blackouts=[window]), in_flight(5), 10**12) == 0


def test_front_loaded_spends_more_early_and_back_loaded_more_late():
    remaining = 10**12
    front = domain.period_budget(plan_for(Pacing(PacingMode.FRONT_LOADED)), in_flight(0), remaining)
    even = domain.period_budget(plan_for(), in_flight(0), remaining)
    back = domain.period_budget(plan_for(Pacing(PacingMode.BACK_LOADED)), in_flight(0), remaining)
    assert front > even > back
    assert front == pytest.approx(3 * back, rel=0.01)


def test_hourly_profile_reads_hours_in_the_campaign_time_zone():
    profile = tuple(1.0 if h == 8 else 0.0 for h in range(24))
    plan = plan_for(Pacing(PacingMode.HOURLY_PROFILE, profile))
    eight_wib = datetime(2024, 10, 2, 1, tzinfo=UTC)
    assert domain.period_budget(plan, eight_wib, 29 * RUPIAH) == RUPIAH
    assert domain.period_budget(plan, eight_wib + HOUR, 29 * RUPIAH) == 0


@pytest.mark.parametrize("mode", list(PacingMode))
def test_spending_to_plan_spends_the_whole_budget_and_never_more(mode):
    profile = tuple(float(h % 5) for h in range(24)) if mode is PacingMode.HOURLY_PROFILE else ()
    plan = plan_for(Pacing(mode, profile), [BlackoutWindow(in_flight(100), in_flight(130), "")])
    total = remaining = 720_000_000 * RUPIAH
    for h in range(30 * 24):
        budget = domain.period_budget(plan, in_flight(h), remaining)
        assert 0 <= budget <= remaining
        remaining -= budget
    assert remaining <= 30 * 24  # rounding down leaves at most a micro per hour
    assert total - remaining > 0


def test_platform_daily_minimum_becomes_a_per_hour_minimum_rounded_up():
    assert domain.per_period_minimum(24_000_001) == 1_000_001
    assert domain.per_period_minimum(0) == 0


def test_effective_minimum_is_the_larger_of_arm_and_platform_minimums():
    c = campaign(
        arms=(arm("m", min_micros_per_period=5 * RUPIAH), arm("g", Platform.GOOGLE)),
        platform_minimums=(
            PlatformMinimum(Platform.META, 48 * RUPIAH),
            PlatformMinimum(Platform.GOOGLE, 240 * RUPIAH),
        ),
    )
    assert domain.plan_campaign(c, {"aud_a": facts()}).min_micros == (5 * RUPIAH, 10 * RUPIAH)


# ------------------------------------------------------------------ priors


def test_prior_initial_slope_is_one_over_the_benchmark_cost_per_conversion():
    theta, kappa = domain.cold_start_prior(Platform.META, 20_000, Objective.CONVERSIONS, "IDR")
    b = domain.COST_BENCHMARKS[Platform.META]
    cpa_micros = b.cpm_idr / 1000 / (b.ctr * b.conversion_rate) * RUPIAH
    assert theta / kappa == pytest.approx(1 / cpa_micros)


def test_prior_saturation_grows_with_reach():
    small = domain.cold_start_prior(Platform.GOOGLE, 10_000, Objective.CLICKS, "IDR")[0]
    large = domain.cold_start_prior(Platform.GOOGLE, 100_000, Objective.CLICKS, "IDR")[0]
    assert large == pytest.approx(10 * small)


def test_prior_saturation_scale_stays_on_the_kappa_grid():
    _, kappa = domain.cold_start_prior(Platform.META, 10**8, Objective.IMPRESSIONS, "IDR")
    assert kappa == KAPPA_GRID_MICROS[-1]
    theta, kappa = domain.cold_start_prior(Platform.META, 0, Objective.CONVERSIONS, "USD")
    assert kappa == KAPPA_GRID_MICROS[0]
    assert theta > 0


# ------------------------------------------------------------------ decide


def test_period_inside_a_blackout_gives_every_arm_zero_with_the_reason():
    window = BlackoutWindow(in_flight(10), in_flight(20), "debat kandidat")
    outcome = decide(campaign(blackouts=(window,)), in_flight(12))
    assert [a.budget_micros for a in outcome.arms] == [0, 0]
    assert {a.bound for a in outcome.arms} == {Bound.BLACKOUT}
    assert "debat kandidat" in outcome.arms[0].reason


def test_ineligible_arm_keeps_its_own_reason_during_a_blackout():
    c = campaign(
        kind=CampaignKind.POLITICAL,
        political_authorization=True,
        arms=(arm("tt", Platform.TIKTOK), arm("m")),
        blackouts=(BlackoutWindow(in_flight(10), in_flight(20), ""),),
    )
    outcome = decide(c, in_flight(12))
    assert outcome.arms[0].bound is Bound.INELIGIBLE
    assert outcome.arms[1].bound is Bound.BLACKOUT


def test_ineligible_arm_gets_zero_and_the_rest_is_split():
    c = campaign(
        kind=CampaignKind.POLITICAL, arms=(arm("tt", Platform.TIKTOK), arm("g", Platform.GOOGLE))
    )
    outcome = decide(c, in_flight(1))
    assert outcome.arms[0].budget_micros == 0
    assert outcome.arms[0].bound is Bound.INELIGIBLE
    assert outcome.arms[1].budget_micros == outcome.period_budget_micros


def test_paused_campaign_gets_zero_everywhere():
    outcome = decide(campaign(state=CampaignState.PAUSED), in_flight(1))
    assert outcome.allocated_micros == 0
    assert outcome.reason == "campaign paused"
    assert {a.bound for a in outcome.arms} == {Bound.NO_BUDGET}


@pytest.mark.parametrize("moment", [FLIGHT_START - HOUR, FLIGHT_END, FLIGHT_END + 5 * HOUR])
def test_periods_outside_the_flight_get_zero(moment):
    outcome = decide(campaign(), moment)
    assert outcome.allocated_micros == 0
    assert {a.bound for a in outcome.arms} == {Bound.BLACKOUT}


def test_spent_campaign_gets_zero_with_no_budget():
    c = campaign()
    outcome = decide(c, in_flight(5), spend=c.total_budget_micros + 1)
    assert outcome.remaining_budget_micros == 0
    assert {a.bound for a in outcome.arms} == {Bound.NO_BUDGET}


def test_remaining_budget_is_total_minus_spend_to_date():
    c = campaign()
    outcome = decide(c, in_flight(24), spend=24_000_000 * RUPIAH)
    assert outcome.remaining_budget_micros == c.total_budget_micros - 24_000_000 * RUPIAH
    assert outcome.period_budget_micros == outcome.remaining_budget_micros // (29 * 24)


def test_previous_budgets_feed_the_change_limit_except_after_a_service_zero():
    seen = {}

    def spy(arms, *args, **kwargs):
        seen.update({a.arm_id: a.previous_micros for a in arms})
        return even_policy(arms, *args, **kwargs)

    previous = PreviousDecision(
        {"meta-a": 5 * RUPIAH, "google-a": 0},
        {"meta-a": Bound.OPTIMAL, "google-a": Bound.BLACKOUT},
    )
    outcome = decide(campaign(), in_flight(3), previous=previous, policy=spy)
    assert seen == {"meta-a": 5 * RUPIAH, "google-a": None}
    assert outcome.arms[0].previous_budget_micros == 5 * RUPIAH


def test_infeasible_constraints_reach_the_caller():
    def refuse(*args, **kwargs):
        raise Infeasible("floor 'rural' needs 60% but its arms can take 10%")

    with pytest.raises(Infeasible, match="rural"):
        decide(campaign(), in_flight(3), policy=refuse)


def test_a_policy_split_above_the_period_budget_is_refused():
    def greedy(arms, evidence, budget, *args, **kwargs):
        return PolicyResult([ArmDecision(budget, 0, 0, 0, 0, 0, "optimal", "") for _ in arms])

    with pytest.raises(AllocationBroken):
        decide(campaign(), in_flight(3), policy=greedy)


def test_a_policy_funding_an_ineligible_arm_is_refused():
    def careless(arms, evidence, budget, *args, **kwargs):
        return PolicyResult([ArmDecision(1, 0, 0, 0, 0, 0, "optimal", "") for _ in arms])

    c = campaign(
        kind=CampaignKind.POLITICAL, arms=(arm("tt", Platform.TIKTOK), arm("g", Platform.GOOGLE))
    )
    with pytest.raises(AllocationBroken):
        decide(c, in_flight(3), policy=careless)


def test_derived_seed_is_fixed_per_campaign_and_period():
    a = domain.derive_seed("cmp_1", in_flight(1))
    assert a == domain.derive_seed("cmp_1", in_flight(1))
    assert a != domain.derive_seed("cmp_1", in_flight(2))
    assert a != domain.derive_seed("cmp_2", in_flight(1))
    assert 0 < a < 2**64


def test_overrides_replace_only_the_settings_they_name():
    defaults = PolicySettings(24.0, 0.99, 0.01, 50.0)
    merged = domain.effective_settings(defaults, domain.PolicyOverrides(max_change_percent=20))
    assert merged == PolicySettings(24.0, 0.99, 0.01, 20.0)


def test_evidence_window_is_the_flight_up_to_the_period():
    c = campaign()
    assert domain.evidence_window(c, FLIGHT_START) is None
    assert domain.evidence_window(c, in_flight(5)) == (FLIGHT_START, in_flight(5))
    assert domain.evidence_window(c, FLIGHT_END + HOUR) == (FLIGHT_START, FLIGHT_END)


def test_only_whole_hours_inside_the_flight_are_periods():
    first, n = domain.whole_hours(
        datetime(2024, 10, 1, 0, 30, tzinfo=UTC), datetime(2024, 10, 1, 3, 15, tzinfo=UTC)
    )
    assert first == datetime(2024, 10, 1, 1, tzinfo=UTC)
    assert n == 2


def test_pacing_weights_are_zero_exactly_on_blackout_hours():
    window = BlackoutWindow(in_flight(3), in_flight(5), "")
    plan = plan_for(blackouts=[window])
    assert np.flatnonzero(plan.weights == 0).tolist() == [3, 4]
