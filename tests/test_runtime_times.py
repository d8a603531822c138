"""Times on the wire: to_timestamp agrees with protobuf's own conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from jangkau.runtime.times import from_timestamp, to_timestamp

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-9, minutes=-30))]
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ZONES,
)
def test_to_timestamp_matches_protobufs_conversion_and_round_trips(naive, zone):
    moment = naive.replace(tzinfo=zone)
    expected = Timestamp()
    expected.FromDatetime(moment.astimezone(UTC))
    assert to_timestamp(moment) == expected
    assert from_timestamp(to_timestamp(moment)) == moment


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        to_timestamp(datetime(2024, 11, 27))
