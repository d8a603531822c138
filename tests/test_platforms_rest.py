"""Shared pieces of the HTTP adapters: error classes by status, local time
zones, and cutting windows and id lists to the platforms' limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jangkau.platforms.base import (
    ArmTarget,
    InvalidTarget,
    PermanentPlatformError,
    RateLimited,
    TransientPlatformError,
)
from jangkau.platforms.http import HttpRequest, HttpResponse, TransportError
from jangkau.platforms.rest import (
    chunks,
    failure_for_status,
    local_dates,
    local_hour_to_utc,
    send_checked,
    spans,
    zone_of,
)
from jangkau.v1 import common_pb2

JAKARTA = ZoneInfo("Asia/Jakarta")
REQUEST = HttpRequest("GET", "https://ads-api.x.com/12/accounts")


def test_status_decides_the_error_class() -> None:
    assert isinstance(failure_for_status(common_pb2.X, 429, "slow"), RateLimited)
    assert isinstance(failure_for_status(common_pb2.X, 503, "down"), TransientPlatformError)
    assert isinstance(failure_for_status(common_pb2.X, 408, "late"), TransientPlatformError)
    error = failure_for_status(common_pb2.X, 400, "bad")
    assert isinstance(error, PermanentPlatformError)


class _Unreachable:
    def send(self, request: HttpRequest) -> HttpResponse:
        raise TransportError("connection refused")


def test_no_answer_at_all_is_a_transient_error() -> None:
    with pytest.raises(TransientPlatformError) as caught:
        send_checked(_Unreachable(), REQUEST, common_pb2.X, lambda response: None)
    assert caught.value.code == "transport"


def test_local_hours_convert_to_utc() -> None:
    assert local_hour_to_utc(date(2024, 10, 2), 0, JAKARTA) == datetime(2024, 10, 1, 17, tzinfo=UTC)


def test_a_window_across_local_midnight_spans_two_local_days() -> None:
    since = datetime(2024, 10, 1, 15, tzinfo=UTC)
    until = datetime(2024, 10, 1, 19, tzinfo=UTC)
    assert local_dates(since, until, JAKARTA) == (date(2024, 10, 1), date(2024, 10, 2))
    assert local_dates(since, until, UTC) == (date(2024, 10, 1), date(2024, 10, 1))


def test_unknown_time_zone_is_an_invalid_target() -> None:
    arm = ArmTarget("arm_meta", common_pb2.META, "act_1", "1", time_zone="Asia/Bandung")
    with pytest.raises(InvalidTarget):
        zone_of(arm, common_pb2.META)


def test_long_windows_are_cut_to_the_longest_span() -> None:
    since = datetime(2024, 10, 1, tzinfo=UTC)
    cut = list(spans(since, since + timedelta(days=10), timedelta(days=7)))
    assert cut == [
        (since, since + timedelta(days=7)),
        (since + timedelta(days=7), since + timedelta(days=10)),
    ]


def test_id_lists_are_cut_into_groups() -> None:
    ids = [f"li{n}" for n in range(45)]
    assert [len(group) for group in chunks(ids, 20)] == [20, 20, 5]
