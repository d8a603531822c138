"""The Meta adapter builds the recorded Marketing API requests and reads the
recorded answers (tests/fixtures/platforms/meta.json); nothing reaches the network."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
)
from jangkau.platforms.http import ReplayTransport, load_recording
from jangkau.platforms.meta import MetaAdapter
from jangkau.v1 import common_pb2

CASES = load_recording(Path(__file__).parent / "fixtures" / "platforms" / "meta.json")
SINCE = datetime(2024, 10, 1, 15, tzinfo=UTC)  # 22:00 in Jakarta
UNTIL = datetime(2024, 10, 1, 19, tzinfo=UTC)  # 02:00 the next day in Jakarta
PULLED_AT = datetime(2024, 10, 1, 19, 5, tzinfo=UTC)
TOKEN = "EAAB-test-token"


def _meta_arm(arm_id: str, ad_set_id: str) -> ArmTarget:
    return ArmTarget(arm_id, common_pb2.META, "act_1234567890123456", ad_set_id, "", "Asia/Jakarta")


CAMPAIGN = CampaignTarget(
    "cmp_5f1c2a9e0b7d4c31",
    "IDR",
    (
        _meta_arm("arm_meta_bandung", "120210000000000101"),
        _meta_arm("arm_meta_bogor", "120210000000000102"),
        _meta_arm("arm_meta_cimahi", "120210000000000103"),
        ArmTarget(
            "arm_google_bandung",
            common_pb2.GOOGLE,
            "1234567890",
            "customers/1234567890/campaigns/20000000001",
            "customers/1234567890/campaignBudgets/30000000001",
            "Asia/Jakarta",
        ),
    ),
)


def _adapter(case: str) -> tuple[MetaAdapter, ReplayTransport]:
    transport = ReplayTransport(CASES[case])
    return MetaAdapter(transport, lambda: TOKEN, clock=lambda: PULLED_AT), transport


def test_meta_adapter_implements_the_platform_interface() -> None:
    adapter, _ = _adapter("budget_change")
    assert isinstance(adapter, PlatformAdapter)
    assert adapter.platforms == frozenset({common_pb2.META})


def test_budget_change_sends_the_recorded_requests() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_meta_bandung", 2_500_000_750_000), ArmBudget("arm_meta_bogor", 0)],
    )
    assert transport.unused == []


def test_budget_change_is_whole_rupiah_rounded_down_and_zero_pauses() -> None:
    adapter, _ = _adapter("budget_change")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_meta_bandung", 2_500_000_750_000), ArmBudget("arm_meta_bogor", 0)],
    )
    assert results == [
        BudgetResult("arm_meta_bandung", True, 2_500_000_000_000),
        BudgetResult("arm_meta_bogor", True, 0),
    ]


def test_access_token_is_sent_but_kept_out_of_recordings() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(CAMPAIGN, [ArmBudget("arm_meta_bandung", 2_500_000_750_000)])
    sent = transport.sent[0]
    assert ("access_token", TOKEN) in sent.form
    assert sent.canonical()["form"]["access_token"] == "<secret>"


def test_budget_too_low_is_refused_and_not_retryable() -> None:
    adapter, _ = _adapter("budget_rejected")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [
            ArmBudget("arm_meta_bandung", 15_000_000_000),
            ArmBudget("arm_meta_bogor", 3_000_000_000_000),
            ArmBudget("arm_meta_cimahi", 1_000_000_000_000),
        ],
    )
    too_low = results[0]
    assert (too_low.accepted, too_low.retryable) == (False, False)
    assert too_low.applied_daily_budget_micros == 15_000_000_000
    assert too_low.platform_message.startswith("100/1885272: Your ad set budget must be more than")


def test_rate_limit_refuses_the_arm_as_retryable_and_stops_sending() -> None:
    adapter, transport = _adapter("budget_rejected")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [
            ArmBudget("arm_meta_bandung", 15_000_000_000),
            ArmBudget("arm_meta_bogor", 3_000_000_000_000),
            ArmBudget("arm_meta_cimahi", 1_000_000_000_000),
        ],
    )
    throttled, not_sent = results[1], results[2]
    assert (throttled.accepted, throttled.retryable) == (False, True)
    assert throttled.platform_message.startswith("17/2446079:")
    assert (not_sent.accepted, not_sent.retryable) == (False, True)
    assert not_sent.platform_message.startswith("not sent: 17/2446079")
    assert [request.url.rsplit("/", 1)[1] for request in transport.sent] == [
        "120210000000000101",
        "120210000000000102",
    ]


def test_report_pull_sends_the_recorded_requests_and_follows_pages() -> None:
    adapter, transport = _adapter("report_pull")
    adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert transport.unused == []


def test_report_rows_become_utc_hours_inside_the_window() -> None:
    adapter, _ = _adapter("report_pull")
    reports = adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert [(r.arm_id, r.hour.hour) for r in reports] == [
        ("arm_meta_bandung", 15),
        ("arm_meta_bandung", 16),
        ("arm_meta_bandung", 17),
        ("arm_meta_bogor", 16),
        ("arm_meta_bogor", 18),
    ]


def test_report_values_are_exact_micros_and_on_meta_conversions() -> None:
    adapter, _ = _adapter("report_pull")
    first = adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)[0]
    assert first == PlatformReport(
        campaign_id="cmp_5f1c2a9e0b7d4c31",
        arm_id="arm_meta_bandung",
        platform=common_pb2.META,
        hour=datetime(2024, 10, 1, 15, tzinfo=UTC),
        attribution_window="7d_click_1d_view",
        impressions=6954,
        reach=0,
        clicks=102,
        conversions=4.0,
        conversion_value_micros=25_000_500_000,
        spend_micros=83_410_000_000,
        currency="IDR",
        version=PULLED_AT,
    )


def test_rate_limited_report_pull_raises_rate_limited() -> None:
    adapter, _ = _adapter("report_rate_limited")
    with pytest.raises(RateLimited) as caught:
        adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert caught.value.code == "80004/2446079"
    assert caught.value.retryable


def test_expired_token_raises_a_permanent_error() -> None:
    adapter, _ = _adapter("report_token_expired")
    with pytest.raises(PermanentPlatformError) as caught:
        adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert caught.value.code == "190/463"
    assert not caught.value.retryable


def test_budget_for_an_arm_on_another_platform_is_an_invalid_target() -> None:
    adapter, transport = _adapter("budget_change")
    with pytest.raises(InvalidTarget):
        adapter.apply_budgets(CAMPAIGN, [ArmBudget("arm_google_bandung", 1_000_000_000)])
    assert transport.sent == []


def test_currency_outside_metas_table_is_an_invalid_target() -> None:
    adapter, transport = _adapter("budget_change")
    campaign = CampaignTarget("cmp_x", "XTS", CAMPAIGN.arms)
    with pytest.raises(InvalidTarget):
        adapter.apply_budgets(campaign, [ArmBudget("arm_meta_bandung", 1_000_000_000)])
    assert transport.sent == []
