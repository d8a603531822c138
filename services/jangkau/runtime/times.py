"""Time on the wire (protobuf Timestamp) and in the domain (aware UTC datetime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

HOUR = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: jangkau times are UTC-aware")
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
