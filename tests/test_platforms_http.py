"""The replaying transport answers only recorded requests, compares them without
their secrets, and recordings round-trip through fixture files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from jangkau.platforms.http import (
    HttpRequest,
    HttpResponse,
    RecordedExchange,
    RecordingTransport,
    ReplayTransport,
    UnrecordedRequest,
    load_recording,
)

BUDGET_POST = HttpRequest(
    "POST",
    "https://graph.facebook.com/v24.0/120210000000000101",
    form=(("daily_budget", "150000"), ("access_token", "real-token")),
)
OK = HttpResponse(200, b'{"success": true}', {"content-type": "application/json"})


def _recorded(request: HttpRequest, response: HttpResponse = OK) -> RecordedExchange:
    return RecordedExchange(request.canonical(), response)


def test_replay_answers_a_recorded_request() -> None:
    transport = ReplayTransport([_recorded(BUDGET_POST)])
    assert transport.send(BUDGET_POST) == OK


def test_replay_refuses_a_request_that_was_not_recorded() -> None:
    transport = ReplayTransport([_recorded(BUDGET_POST)])
    other = HttpRequest("POST", BUDGET_POST.url, form=(("daily_budget", "150001"),))
    with pytest.raises(UnrecordedRequest):
        transport.send(other)


def test_replay_answers_each_recording_once() -> None:
    transport = ReplayTransport([_recorded(BUDGET_POST)])
    transport.send(BUDGET_POST)
    with pytest.raises(UnrecordedRequest):
        transport.send(BUDGET_POST)


def test_secret_values_do_not_matter_but_their_presence_does() -> None:
    transport = ReplayTransport([_recorded(BUDGET_POST)])
    rotated = HttpRequest(
        "POST", BUDGET_POST.url, form=(("daily_budget", "150000"), ("access_token", "rotated"))
    )
    assert transport.send(rotated) == OK
    without_token = HttpRequest("POST", BUDGET_POST.url, form=(("daily_budget", "150000"),))
    with pytest.raises(UnrecordedRequest):
        ReplayTransport([_recorded(BUDGET_POST)]).send(without_token)


def test_canonical_form_hides_credentials() -> None:
    request = HttpRequest(
        "get",
        "https://googleads.googleapis.com/v26/customers/1234567890/googleAds:searchStream",
        headers=(("Authorization", "Bearer ya29.secret"), ("login-customer-id", "9876543210")),
    )
    assert request.canonical() == {
        "method": "GET",
        "url": "https://googleads.googleapis.com/v26/customers/1234567890/googleAds:searchStream",
        "query": {},
        "headers": {"authorization": "<secret>", "login-customer-id": "9876543210"},
    }


def test_query_parameters_are_percent_encoded_in_the_url() -> None:
    request = HttpRequest(
        "GET",
        "https://ads-api.x.com/12/stats/accounts/18ce54d4x5t",
        query=(("metric_groups", "ENGAGEMENT,BILLING"), ("start_time", "2024-10-01T15:00:00Z")),
    )
    assert request.full_url() == (
        "https://ads-api.x.com/12/stats/accounts/18ce54d4x5t"
        "?metric_groups=ENGAGEMENT%2CBILLING&start_time=2024-10-01T15%3A00%3A00Z"
    )


def test_a_url_with_a_query_string_is_refused() -> None:
    with pytest.raises(ValueError):
        HttpRequest("GET", "https://example.invalid/path?x=1")


def test_json_answers_keep_fractions_exact() -> None:
    response = HttpResponse(200, b'{"conversionsValue": 17500.25, "clicks": "41"}')
    assert response.json() == {"conversionsValue": Decimal("17500.25"), "clicks": "41"}


def test_recordings_round_trip_through_a_fixture_file(tmp_path: Path) -> None:
    recorder = RecordingTransport(ReplayTransport([_recorded(BUDGET_POST)]))
    recorder.send(BUDGET_POST)
    path = tmp_path / "meta.json"
    recorder.dump(path, "budget_change")
    assert "real-token" not in path.read_text()
    replay = ReplayTransport(load_recording(path)["budget_change"])
    assert replay.send(BUDGET_POST).json() == {"success": True}
