"""Time on the wire (protobuf Timestamp) and in the domain (aware UTC datetime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: jangkau times are UTC-aware")
    # Whole seconds and nanoseconds since the epoch, from the exact timedelta: a third
    # of the cost of Timestamp.FromDatetime, which every reply with a time pays.
    since = moment - EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000)


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: jangkau times are UTC-aware")
    delta = moment.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
