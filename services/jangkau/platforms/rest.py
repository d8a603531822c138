"""What the HTTP platform adapters (Meta, Google Ads, X) share: sending a request
and turning a failed answer into a `PlatformError`, account time zones, and
cutting a report window into the pieces a platform accepts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jangkau.platforms.base import (
    ArmTarget,
    InvalidTarget,
    PermanentPlatformError,
    PlatformError,
    RateLimited,
    TransientPlatformError,
)
from jangkau.platforms.http import HttpRequest, HttpResponse, HttpTransport, TransportError

# Reads a platform's error answer; None when the answer is not an error.
ErrorReader = Callable[[HttpResponse], PlatformError | None]


def failure_for_status(
    platform: int,
    status: int,
    message: str,
    code: str = "",
    retry_after_seconds: float | None = None,
) -> PlatformError:
    """The error an HTTP status means when the platform said nothing more specific:
    429 rate limited; 408, 423 and 5xx transient; any other status permanent."""
    if status == 429:
        return RateLimited(
            platform, message, status=status, code=code, retry_after_seconds=retry_after_seconds
        )
    if status in (408, 423) or status >= 500:
        return TransientPlatformError(platform, message, status=status, code=code)
    return PermanentPlatformError(platform, message, status=status, code=code)


def send_checked(
    transport: HttpTransport, request: HttpRequest, platform: int, read_error: ErrorReader
) -> HttpResponse:
    """Send `request`; return the answer when it is a success, else raise the
    `PlatformError` `read_error` finds in it. No answer at all is transient."""
    try:
        response = transport.send(request)
    except TransportError as err:
        raise TransientPlatformError(platform, f"no answer: {err}", code="transport") from err
    failure = read_error(response)
    if failure is not None:
        raise failure
    if not 200 <= response.status < 300:
        raise failure_for_status(platform, response.status, f"HTTP {response.status}")
    return response


def json_answer(response: HttpResponse, platform: int) -> Any:
    """The answer's JSON (fractions as Decimal); PermanentPlatformError when it is not JSON."""
    try:
        return response.json()
    except ValueError as err:
        raise PermanentPlatformError(
            platform, f"answer is not JSON: {response.body[:200]!r}", status=response.status
        ) from err


def retry_after(response: HttpResponse) -> float | None:
    """Seconds from a Retry-After header given in seconds; None when absent or a date."""
    value = response.header("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def zone_of(target: ArmTarget, platform: int) -> tzinfo:
    """The arm's account time zone; InvalidTarget when the name is unknown."""
    if target.time_zone in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(target.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidTarget(
            platform, f"arm {target.arm_id}: unknown time zone {target.time_zone!r}"
        ) from err


def local_dates(since: datetime, until: datetime, zone: tzinfo) -> tuple[date, date]:
    """First and last local calendar day that hours in [since, until) fall on."""
    last_instant = until - timedelta(microseconds=1)
    return since.astimezone(zone).date(), last_instant.astimezone(zone).date()


def local_hour_to_utc(day: date, hour: int, zone: tzinfo) -> datetime:
    """The UTC start of local `hour` (0..23) on `day` in `zone`."""
    if not 0 <= hour <= 23:
        raise ValueError(f"hour must be 0..23, got {hour}")
    local = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
    return local.astimezone(UTC)


def spans(
    since: datetime, until: datetime, longest: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """[since, until) cut into consecutive spans of at most `longest`."""
    start = since
    while start < until:
        end = min(start + longest, until)
        yield start, end
        start = end


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in consecutive groups of at most `size`."""
    for index in range(0, len(items), size):
        yield items[index : index + size]
