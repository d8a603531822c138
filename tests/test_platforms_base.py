"""The adapter interface's dataclasses and errors hold their contract."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jangkau.platforms.base import (
    ArmBudget,
    ArmTarget,
    BudgetResult,
    CampaignTarget,
    InvalidTarget,
    PermanentPlatformError,
    PlatformAdapter,
    PlatformReport,
    RateLimited,
    TransientPlatformError,
    require_window,
)
from jangkau.v1 import common_pb2

HOUR = datetime(2024, 10, 1, 15, tzinfo=UTC)
CAMPAIGN = CampaignTarget(
    "cmp_5f1c2a9e0b7d4c31",
    "IDR",
    (
        ArmTarget("arm_meta", common_pb2.META, "act_1", "120210000000000101"),
        ArmTarget("arm_x", common_pb2.X, "18ce54d4x5t", "9cqi0"),
    ),
)


def _report(**changes: object) -> PlatformReport:
    fields: dict[str, object] = {
        "campaign_id": "cmp_5f1c2a9e0b7d4c31",
        "arm_id": "arm_meta",
        "platform": common_pb2.META,
        "hour": HOUR,
        "attribution_window": "7d_click_1d_view",
        "impressions": 10,
        "reach": 0,
        "clicks": 1,
        "conversions": 0.5,
        "conversion_value_micros": 0,
        "spend_micros": 1_000_000,
        "currency": "IDR",
        "version": HOUR + timedelta(hours=4),
    }
    fields.update(changes)
    return PlatformReport(**fields)  # type: ignore[arg-type]


def test_report_hour_must_be_utc_on_the_hour() -> None:
    with pytest.raises(ValueError):
        _report(hour=HOUR + timedelta(minutes=30))
    with pytest.raises(ValueError):
        _report(hour=HOUR.replace(tzinfo=None))
    with pytest.raises(ValueError):
        _report(hour=HOUR.astimezone(timezone(timedelta(hours=7))))


def test_report_counts_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        _report(spend_micros=-1)
    with pytest.raises(ValueError):
        _report(conversions=-0.5)


def test_negative_daily_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        ArmBudget("arm_meta", -1)


def test_campaign_finds_arms_by_id_and_platform() -> None:
    assert CAMPAIGN.arm("arm_x").entity_id == "9cqi0"
    assert [a.arm_id for a in CAMPAIGN.arms_on(frozenset({common_pb2.META}))] == ["arm_meta"]


def test_unknown_arm_is_an_invalid_target() -> None:
    with pytest.raises(InvalidTarget) as caught:
        CAMPAIGN.arm("arm_tiktok")
    assert not caught.value.retryable


def test_report_window_must_be_whole_utc_hours_in_order() -> None:
    require_window(HOUR, HOUR + timedelta(hours=1))
    with pytest.raises(ValueError):
        require_window(HOUR, HOUR)
    with pytest.raises(ValueError):
        require_window(HOUR + timedelta(seconds=1), HOUR + timedelta(hours=1))


def test_errors_say_whether_a_retry_can_help() -> None:
    assert RateLimited(common_pb2.X, "slow down").retryable
    assert TransientPlatformError(common_pb2.GOOGLE, "unavailable").retryable
    assert not PermanentPlatformError(common_pb2.META, "bad token").retryable
    assert isinstance(RateLimited(common_pb2.X, "slow down"), TransientPlatformError)


def test_error_summary_leads_with_the_platform_code() -> None:
    error = PermanentPlatformError(common_pb2.META, "budget too low", code="100/1885272")
    assert error.summary == "100/1885272: budget too low"
    assert str(error) == "META: budget too low"
    market = PermanentPlatformError(common_pb2.PLATFORM_UNSPECIFIED, "sandbox: UNAVAILABLE")
    assert str(market) == "sandbox: UNAVAILABLE"


class _MarketAdapter:
    """A stand-in for the sandbox market: one adapter serving several platforms."""

    platforms = frozenset({common_pb2.META, common_pb2.GOOGLE, common_pb2.X})

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]:
        return [BudgetResult(b.arm_id, True, b.daily_budget_micros) for b in budgets]

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]:
        return []


def test_an_adapter_may_serve_several_platforms() -> None:
    adapter = _MarketAdapter()
    assert isinstance(adapter, PlatformAdapter)
    assert len(CAMPAIGN.arms_on(adapter.platforms)) == 2
