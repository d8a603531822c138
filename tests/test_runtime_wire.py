"""Column-wise protobuf writing (runtime.wire) against the protobuf API: the
GetArmStats reply written column by column parses to, and serialises exactly as,
the message built one field at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jangkau.metrics import codec
from jangkau.metrics.domain import Arm, ArmStatsTable, Campaign, Platform, RegisteredCampaign
from jangkau.runtime.wire import WireRows, varints
from jangkau.v1 import metrics_pb2

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EDGE_INTS = st.sampled_from([0, 1, 127, 128, 16_383, 16_384, 2**63 - 1, -1, -(2**63)])
DOUBLES = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1e-300, float("inf")]))
TEXT = st.one_of(st.text(max_size=3), st.text(min_size=120, max_size=200))


def column(n: int, elements, dtype) -> st.SearchStrategy[np.ndarray]:  # type: ignore[no-untyped-def]
    return hnp.arrays(dtype, n, elements=elements)


@st.composite
def arm_stats(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=0, max_value=6))
    k = draw(st.integers(min_value=0, max_value=3))
    ints = st.one_of(INT64, EDGE_INTS)
    arms = tuple(
        Arm(draw(TEXT), draw(st.sampled_from(list(Platform))), draw(TEXT)) for _ in range(n)
    )
    campaign = Campaign(
        "c",
        "IDR",
        1,
        datetime(2024, 9, 25, tzinfo=UTC),
        datetime(2024, 11, 27, tzinfo=UTC),
        arms,
        1,
    )
    registered = RegisteredCampaign(campaign, np.arange(n), np.zeros(n, np.int64))
    hours = st.one_of(st.just(-1), st.integers(min_value=-(10**15), max_value=10**17))
    stats = ArmStatsTable(
        **{
            name: draw(
                column(n, ints if kind == "i" else DOUBLES, np.int64 if kind == "i" else np.float64)
            )
            for name, kind in (
                ("spend_micros", "i"),
                ("discounted_spend_micros", "d"),
                ("conversions", "d"),
                ("discounted_conversions", "d"),
                ("clicks", "i"),
                ("discounted_clicks", "d"),
                ("impressions", "i"),
                ("discounted_impressions", "d"),
                ("hours_observed", "i"),
                ("discounted_hours", "d"),
            )
        },
        last_hour_us=draw(column(n, hours, np.int64)),
        exposure=draw(hnp.arrays(np.float64, (n, k), elements=DOUBLES)),
        log_shape=draw(hnp.arrays(np.float64, (n, k), elements=DOUBLES)),
    )
    kappas = draw(hnp.arrays(np.float64, k, elements=st.floats(1.0, 1e12)))
    events = draw(column(n, ints, np.int64)), draw(column(n, ints, np.int64))
    return registered, stats, kappas, events


def one_at_a_time(registered, stats, kappas, events) -> metrics_pb2.GetArmStatsResponse:  # type: ignore[no-untyped-def]
    response = metrics_pb2.GetArmStatsResponse()
    for i, arm in enumerate(registered.arms):
        message = response.arms.add(
            arm_id=arm.arm_id,
            platform=int(arm.platform),
            audience_id=arm.audience_id,
            spend_micros=int(stats.spend_micros[i]),
            discounted_spend_micros=stats.discounted_spend_micros[i],
            conversions=stats.conversions[i],
            discounted_conversions=stats.discounted_conversions[i],
            clicks=int(stats.clicks[i]),
            discounted_clicks=stats.discounted_clicks[i],
            impressions=int(stats.impressions[i]),
            discounted_impressions=stats.discounted_impressions[i],
            hours_observed=int(stats.hours_observed[i]),
            discounted_hours=stats.discounted_hours[i],
            event_conversions=int(events[0][i]),
            event_value_micros=int(events[1][i]),
        )
        if stats.last_hour_us[i] >= 0:
            message.last_hour.FromMicroseconds(int(stats.last_hour_us[i]))
        for j, kappa in enumerate(kappas):
            message.curves.add(
                kappa_micros=kappa, exposure=stats.exposure[i, j], log_shape=stats.log_shape[i, j]
            )
    return response


@settings(max_examples=150, deadline=None)
@given(arm_stats())
def test_the_arm_stats_reply_written_by_columns_is_the_one_built_field_by_field(case):
    registered, stats, kappas, events = case
    raw = codec.arm_stats_wire(registered, stats, kappas, *events)
    written = metrics_pb2.GetArmStatsResponse.FromString(raw)
    expected = one_at_a_time(registered, stats, kappas, events)
    assert written == expected
    assert written.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    if not len(kappas):
        # The bytes themselves are protobuf's (fields at their default left out); with
        # curves they differ only in that curve entries write their zeros.
        assert raw == expected.SerializeToString()


@given(st.lists(st.one_of(INT64, EDGE_INTS), max_size=20))
def test_varints_are_protobufs_int64_encoding(values):
    block, used = varints(np.array(values, dtype=np.int64))
    for value, row, mask in zip(values, block, used, strict=True):
        expected = metrics_pb2.HourPoint(spend_micros=value).SerializeToString()
        # Field 2, wire type 0: one tag byte, then the varint (protobuf leaves a zero
        # out; its varint is the single byte 0).
        assert row[mask].tobytes() == (expected[1:] if value else b"\x00")


def test_a_row_with_every_field_at_its_default_is_an_empty_message():
    rows = WireRows(2).int64(1, np.array([0, 5])).string(2, pa.array(["", "x"]))
    assert rows.repeated(1) == b"\x0a\x00" + b"\x0a\x05\x08\x05\x12\x01x"
