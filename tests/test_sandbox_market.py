"""The sandbox market as a platform: budgets over time, reports and restatements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jangkau.runtime.times import HOUR
from jangkau.sandbox.domain import MarketArm, MarketHiccup, SandboxCampaign, SandboxError

START = datetime(2024, 10, 1, tzinfo=UTC)


def market(
    reach=(0, 0, 0), campaign_id="cmp_test", seed=7, audience_id="aud", **options
) -> SandboxCampaign:
    arms = tuple(MarketArm(f"a{i}", 1, audience_id, r) for i, r in enumerate(reach))
    return SandboxCampaign(
        campaign_id,
        "IDR",
        arms,
        seed,
        "pilkada",
        START,
        START + timedelta(days=10),
        10**14,
        **options,
    )


def delivered(m: SandboxCampaign) -> list[tuple[str, int, float]]:
    """A day of reports at fixed budgets, with refused edits and failed pulls as they
    happen: what a rebalancer would see."""
    seen: list[tuple[str, int, float]] = []
    for h in range(24):
        at = START + h * HOUR
        outcomes = m.set_budgets(at, {"a0": 24_000_000 + h, "a1": 48_000_000, "a2": 0})
        seen += [("edit", int(ok), 0) for _, ok, _, _ in outcomes]
        try:
            rows = m.fetch(START, at + HOUR, at + HOUR)
        except MarketHiccup:
            seen.append(("hiccup", h, 0))
            continue
        seen += [(r.arm_id, r.spend_micros, r.conversions) for r in rows]
    return seen


def test_the_same_seed_and_arms_give_the_same_market_whatever_the_campaign_id():
    options = dict(reach=(50_000, 2_000_000, 0), rejection_rate=0.2, error_rate=0.2)
    first = market(campaign_id="cmp_one", audience_id="aud_1", **options)
    again = market(campaign_id="cmp_two", audience_id="aud_2", **options)
    assert (first.market.kappa == again.market.kappa).all()
    assert delivered(first) == delivered(again)
    other_seed = market(campaign_id="cmp_one", audience_id="aud_1", seed=8, **options)
    assert not (first.market.kappa == other_seed.market.kappa).all()
    assert delivered(market(campaign_id="cmp_one", audience_id="aud_1", **options)) != delivered(
        other_seed
    )


def test_an_edit_applies_from_its_hour_and_leaves_delivered_hours_alone():
    m = market()
    m.set_budgets(START, {"a0": 24_000, "a1": 0, "a2": 0})
    m.fetch(START, START + 3 * HOUR, START + 3 * HOUR)
    m.set_budgets(START + 3 * HOUR, {"a0": 48_000})
    m.deliver_until(6)
    in_force = [budgets[0] for _, budgets, _ in m.evaluation()]
    assert in_force == [1_000, 1_000, 1_000, 2_000, 2_000, 2_000]


def test_a_paused_arm_has_no_report_rows():
    m = market()
    m.set_budgets(START, {"a0": 24 * 10**9, "a1": 0, "a2": 0})
    rows = m.fetch(START, START + 2 * HOUR, START + 2 * HOUR)
    assert {r.arm_id for r in rows} == {"a0"}


def test_a_later_pull_restates_conversions_with_a_newer_version():
    m = market()
    m.set_budgets(START, {"a0": 24 * 10**12, "a1": 24 * 10**12, "a2": 24 * 10**12})
    first = m.fetch(START, START + HOUR, START + HOUR)
    later = m.fetch(START, START + HOUR, START + 100 * HOUR)
    assert sum(r.conversions for r in later) >= sum(r.conversions for r in first)
    assert all(r.version == START + 100 * HOUR for r in later)
    assert {r.version for r in m.reported.values()} == {START + 100 * HOUR}


def test_a_bigger_audience_saturates_later():
    m = market(reach=(10_000, 10_000_000, 0))
    assert m.market.kappa[1, 0] > 100 * m.market.kappa[0, 0]


def test_refused_edits_and_outages_happen_at_the_rates_asked():
    m = market(rejection_rate=0.5, error_rate=0.5)
    outcomes = []
    for h in range(40):
        outcomes += m.set_budgets(START + h * HOUR, {"a0": 24_000 + h})
    refused = sum(1 for _, ok, _, _ in outcomes if not ok)
    assert 5 < refused < 35
    failures = 0
    for h in range(1, 40):
        try:
            m.fetch(START, START + h * HOUR, START + h * HOUR)
        except MarketHiccup:
            failures += 1
    assert 5 < failures < 35


def test_an_unknown_arm_is_refused_naming_the_field():
    with pytest.raises(SandboxError, match="budgets.arm_id"):
        market().set_budgets(START, {"nope": 1})
