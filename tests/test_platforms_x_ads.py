"""The X adapter builds the recorded Ads API requests and reads the recorded
answers (tests/fixtures/platforms/x_ads.json); nothing reaches the network. The
OAuth 1.0a signer reproduces X's published worked example."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jangkau.platforms.base import (
    ArmBudget,
    ArmTarget,
    BudgetResult,
    CampaignTarget,
    PlatformAdapter,
    PlatformReport,
    RateLimited,
    TransientPlatformError,
)
from jangkau.platforms.http import HttpRequest, ReplayTransport, load_recording
from jangkau.platforms.x_ads import OAuth1Signer, XAdsAdapter
from jangkau.v1 import common_pb2

CASES = load_recording(Path(__file__).parent / "fixtures" / "platforms" / "x_ads.json")
SINCE = datetime(2024, 10, 1, 15, tzinfo=UTC)
UNTIL = datetime(2024, 10, 1, 19, tzinfo=UTC)
# x-rate-limit-reset in the recorded 429 is 1727809260 = 2024-10-01T19:01:00Z.
PULLED_AT = datetime(2024, 10, 1, 19, 0, tzinfo=UTC)

CAMPAIGN = CampaignTarget(
    "cmp_5f1c2a9e0b7d4c31",
    "IDR",
    (
        ArmTarget("arm_x_bandung", common_pb2.X, "18ce54d4x5t", "9cqi0"),
        ArmTarget("arm_x_depok", common_pb2.X, "18ce54d4x5t", "9cqi1"),
    ),
)


def _signer() -> OAuth1Signer:
    return OAuth1Signer(
        "consumer-key",
        "consumer-secret",
        "token",
        "token-secret",
        clock=lambda: PULLED_AT,
        nonce=lambda: "fixednonce",
    )


def _adapter(case: str) -> tuple[XAdsAdapter, ReplayTransport]:
    transport = ReplayTransport(CASES[case])
    return XAdsAdapter(transport, _signer(), clock=lambda: PULLED_AT), transport


def test_x_adapter_implements_the_platform_interface() -> None:
    adapter, _ = _adapter("budget_change")
    assert isinstance(adapter, PlatformAdapter)
    assert adapter.platforms == frozenset({common_pb2.X})


def test_budget_change_sends_the_recorded_requests() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(
        CAMPAIGN, [ArmBudget("arm_x_bandung", 1_000_000_123_456), ArmBudget("arm_x_depok", 0)]
    )
    assert transport.unused == []


def test_budget_change_keeps_two_decimals_of_rupiah_and_zero_pauses() -> None:
    adapter, _ = _adapter("budget_change")
    results = adapter.apply_budgets(
        CAMPAIGN, [ArmBudget("arm_x_bandung", 1_000_000_123_456), ArmBudget("arm_x_depok", 0)]
    )
    assert results == [
        BudgetResult("arm_x_bandung", True, 1_000_000_120_000),
        BudgetResult("arm_x_depok", True, 0),
    ]


def test_every_request_is_signed_with_oauth1() -> None:
    adapter, transport = _adapter("budget_change")
    adapter.apply_budgets(CAMPAIGN, [ArmBudget("arm_x_bandung", 1_000_000_123_456)])
    header = dict(transport.sent[0].headers)["authorization"]
    assert header.startswith('OAuth oauth_consumer_key="consumer-key", oauth_nonce="fixednonce"')
    assert 'oauth_signature_method="HMAC-SHA1"' in header


def test_invalid_parameter_is_refused_and_not_retryable() -> None:
    adapter, _ = _adapter("budget_rejected")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_x_bandung", 1_000_000_000), ArmBudget("arm_x_depok", 800_000_000_000)],
    )
    refused = results[0]
    assert (refused.accepted, refused.retryable) == (False, False)
    assert refused.platform_message.startswith("INVALID_PARAMETER: Expected daily budget")


def test_too_many_requests_is_refused_as_retryable() -> None:
    adapter, _ = _adapter("budget_rejected")
    results = adapter.apply_budgets(
        CAMPAIGN,
        [ArmBudget("arm_x_bandung", 1_000_000_000), ArmBudget("arm_x_depok", 800_000_000_000)],
    )
    throttled = results[1]
    assert (throttled.accepted, throttled.retryable) == (False, True)
    assert throttled.platform_message == "TOO_MANY_REQUESTS: Rate limit exceeded"


def test_rate_limit_reset_header_gives_the_wait() -> None:
    adapter, _ = _adapter("budget_rejected")
    response = CASES["budget_rejected"][1].response
    error = adapter.read_error(response)
    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == 60.0


def test_report_pull_sends_delivery_and_conversion_requests() -> None:
    adapter, transport = _adapter("report_pull")
    adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert transport.unused == []


def test_hours_where_a_line_item_did_not_serve_are_left_out() -> None:
    adapter, _ = _adapter("report_pull")
    reports = adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert [(r.arm_id, r.hour.hour) for r in reports] == [
        ("arm_x_bandung", 15),
        ("arm_x_bandung", 16),
        ("arm_x_bandung", 17),
        ("arm_x_bandung", 18),
        ("arm_x_depok", 16),
        ("arm_x_depok", 17),
        ("arm_x_depok", 18),
    ]


def test_report_merges_delivery_with_sign_up_conversions() -> None:
    adapter, _ = _adapter("report_pull")
    second = adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)[1]
    assert second == PlatformReport(
        campaign_id="cmp_5f1c2a9e0b7d4c31",
        arm_id="arm_x_bandung",
        platform=common_pb2.X,
        hour=datetime(2024, 10, 1, 16, tzinfo=UTC),
        attribution_window="30d_engagement_1d_view",
        impressions=2875,
        reach=0,
        clicks=52,
        conversions=3.0,
        conversion_value_micros=15_000_000_000,
        spend_micros=55_800_000_000,
        currency="IDR",
        version=PULLED_AT,
    )


def test_service_unavailable_raises_a_transient_error() -> None:
    adapter, _ = _adapter("report_unavailable")
    with pytest.raises(TransientPlatformError) as caught:
        adapter.fetch_reports(CAMPAIGN, SINCE, UNTIL)
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    assert not isinstance(caught.value, RateLimited)


def test_oauth1_signature_matches_xs_worked_example() -> None:
    # docs.x.com, "Creating a signature": same parameters, keys and expected value.
    signer = OAuth1Signer(
        "xvz1evFS4wEEPTGEFPHBog",
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        clock=lambda: datetime.fromtimestamp(1318622958, UTC),
        nonce=lambda: "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
    )
    request = HttpRequest(
        "POST",
        "https://api.x.com/1.1/statuses/update.json",
        query=(("include_entities", "true"),),
        form=(("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),),
    )
    assert signer.oauth_params(request)["oauth_signature"] == "Ls93hJiZbQ3akF3HF3x1Bz8/zU4="
