"""The Google Ads adapter builds the recorded REST requests and reads the recorded
answers (tests/fixtures/platforms/google_ads.json); nothing reaches the network."""

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
    PlatformAdapter,
    PlatformReport,
    RateLimited,
)
from jangkau.platforms.google_ads import GoogleAdsAdapter
from jangkau.platforms.http import ReplayTransport, load_recording
from jangkau.v1 import common_pb2

CASES = load_recording(Path(__file__).parent / "fixtures" / "platforms" / "google_ads.json")
SINCE = datetime(2024, 10, 1, 15, tzinfo=UTC)
UNTIL = datetime(2024, 10, 1, 19, tzinfo=UTC)
PULLED_AT = datetime(2024, 10, 1, 19, 5, tzinfo=UTC)
CUSTOMER = "1234567890"


def _google_arm(arm_id: str, number: int) -> ArmTarget:
    return ArmTarget(
        arm_id,
        common_pb2.GOOGLE,
        "123-456-7890",
        f"customers/{CUSTOMER}/campaigns/2000000000{number}",
        f"customers/{CUSTOMER}/campaignBudgets/3000000000{number}",
        "Asia/Jakarta",
    )


CAMPAIGN = CampaignTarget(
    "cmp_5f1c2a9e0b7d4c31",
    "IDR",
    (
        _google_arm("arm_google_bandung", 1),
        _google_arm("arm_google_bekasi", 2),
        _google_arm("arm_google_karawang", 3),
    ),
)


def _adapter(case: str) -> tuple[GoogleAdsAdapter, ReplayTransport]:
    transport = ReplayTransport(CASES[case])
    adapter = GoogleAdsAdapter(
        transport,
        lambda: "ya29.test-token",
        "dev-token-test",
        login_customer_id="987-654-3210",
        clock=lambda: PULLED_AT,
    )
    return adapter, transport


def test_google_adapter_implements_the_platform_interface() -> None:
    adapter, _ = _adapter("budget_change")
    assert isinstance(adapter, PlatformAdapter)
    assert adapter.platforms == frozenset({common_pb2.GOOGLE})


def test_budget_change_sends_the_recorded_mutates() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_google_bandung", 1_750_000_400_000), ArmBudget("arm_google_bekasi", 0)],
    )
    assert transport.unused == []


def test_budget_change_rounds_down_to_the_billable_unit_and_zero_pauses() -> None:
    adapter, _ = _adapter("budget_change")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_google_bandung", 1_750_000_400_000), ArmBudget("arm_google_bekasi", 0)],
    )
    assert results == [
        BudgetResult("arm_google_bandung", True, 1_750_000_000_000),
        BudgetResult("arm_google_bekasi", True, 0),
    ]


def test_credentials_are_sent_as_headers_and_kept_out_of_recordings() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_google_bandung", 1_750_000_400_000), ArmBudget("arm_google_bekasi", 0)],
    )
    headers = dict(transport.sent[0].headers)
    assert headers["authorization"] == "Bearer ya29.test-token"
    assert headers["developer-token"] == "dev-token-test"
    assert transport.sent[0].canonical()["headers"]["developer-token"] == "<secret>"


def test_partial_failure_refuses_only_the_failed_operation() -> None:
    adapter, transport = _adapter("budget_partial_failure")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [
            ArmBudget("arm_google_bandung", 1_750_000_400_000),
            ArmBudget("arm_google_karawang", 20_000_000_000),
        ],
    )
    assert results[0] == BudgetResult("arm_google_bandung", True, 1_750_000_000_000)
    refused = results[1]
    assert (refused.accepted, refused.retryable) == (False, False)
    assert refused.platform_message.startswith("campaignBudgetError.BUDGET_BELOW_PER_DAY_MINIMUM")
    assert transport.unused == []


def test_refused_budget_leaves_its_campaign_status_alone() -> None:
    adapter, transport = _adapter("budget_partial_failure")
    adapter.apply_budgets(
        CAMPAIGN,
        [
            ArmBudget("arm_google_bandung", 1_750_000_400_000),
            ArmBudget("arm_google_karawang", 20_000_000_000),
        ],
    )
    status_ops = transport.sent[1].json_body["operations"]
    assert [op["update"]["resourceName"] for op in status_ops] == [
        "customers/1234567890/campaigns/20000000001"
    ]


def test_failed_call_refuses_every_arm_it_carried() -> None:
    adapter, _ = _adapter("budget_unauthenticated")
    results = adapter.apply_budgets(CAMPAIGN, [ArmBudget("arm_google_bandung", 1_750_000_400_000)])
    assert results == [
        BudgetResult(
            "arm_google_bandung",
            False,
            1_750_000_000_000,
            "authenticationError.OAUTH_TOKEN_EXPIRED: The OAuth token in the header is expired.",
            False,
        )
    ]


def test_report_pull_sends_the_recorded_search_stream() -> None:
    adapter, transport = _adapter("report_pull")
    adapter.fetch_reports(_two_arms(), SINCE, UNTIL)
    assert transport.unused == []


def test_report_rows_become_utc_hours_inside_the_window() -> None:
    adapter, _ = _adapter("report_pull")
    reports = adapter.fetch_reports(_two_arms(), SINCE, UNTIL)
    assert [(r.arm_id, r.hour.hour) for r in reports] == [
        ("arm_google_bandung", 15),
        ("arm_google_bandung", 16),
        ("arm_google_bandung", 17),
        ("arm_google_bekasi", 18),
    ]


def test_report_values_keep_fractional_conversions_and_exact_micros() -> None:
    adapter, _ = _adapter("report_pull")
    second = adapter.fetch_reports(_two_arms(), SINCE, UNTIL)[1]
    assert second == PlatformReport(
        campaign_id="cmp_5f1c2a9e0b7d4c31",
        arm_id="arm_google_bandung",
        platform=common_pb2.GOOGLE,
        hour=datetime(2024, 10, 1, 16, tzinfo=UTC),
        attribution_window="conversion_action_default",
        impressions=2985,
        reach=0,
        clicks=37,
        conversions=1.5,
        conversion_value_micros=17_500_250_000,
        spend_micros=51_020_000_000,
        currency="IDR",
        version=PULLED_AT,
    )


def test_fields_left_out_of_a_row_are_zero() -> None:
    adapter, _ = _adapter("report_pull")
    midnight = adapter.fetch_reports(_two_arms(), SINCE, UNTIL)[2]
    # Local hour 0 and zero clicks are absent from the proto3 JSON row.
    assert (midnight.hour, midnight.clicks) == (datetime(2024, 10, 1, 17, tzinfo=UTC), 0)


def test_exhausted_quota_raises_rate_limited_with_the_retry_delay() -> None:
    adapter, _ = _adapter("report_quota_exhausted")
    with pytest.raises(RateLimited) as caught:
        adapter.fetch_reports(_two_arms(), SINCE, UNTIL)
    assert caught.value.code == "quotaError.RESOURCE_EXHAUSTED"
    assert caught.value.retry_after_seconds == 30.0


def test_malformed_resource_name_is_an_invalid_target() -> None:
    adapter, transport = _adapter("budget_change")
    broken = ArmTarget(
        "arm_google_bandung",
        common_pb2.GOOGLE,
        CUSTOMER,
        f"customers/{CUSTOMER}/campaigns/1' OR '1'='1",
        f"customers/{CUSTOMER}/campaignBudgets/30000000001",
    )
    with pytest.raises(InvalidTarget):
        adapter.fetch_reports(CampaignTarget("cmp_x", "IDR", (broken,)), SINCE, UNTIL)
    assert transport.sent == []


def _two_arms() -> CampaignTarget:
    return CampaignTarget(CAMPAIGN.campaign_id, "IDR", CAMPAIGN.arms[:2])
