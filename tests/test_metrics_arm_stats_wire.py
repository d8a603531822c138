"""The GetArmStats reply written without CurveStats messages (codec.arm_stats_wire)
against the protobuf API: it parses to, and serialises exactly as, the message
built one field at a time, for campaigns of every size and values at the edges
of their encodings."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jangkau.metrics import codec
from jangkau.metrics.domain import Arm, ArmStatsTable, Campaign, Platform, RegisteredCampaign
from jangkau.v1 import metrics_pb2

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EDGE_INTS = st.sampled_from([0, 1, 127, 128, 16_383, 16_384, 2**63 - 1, -1, -(2**63)])
DOUBLES = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1e-300, float("inf")]))
TEXT = st.one_of(st.text(max_size=3), st.text(min_size=120, max_size=200))


def column(n: int, elements, dtype) -> st.SearchStrategy[np.ndarray]:  # type: ignore[no-untyped-def]
    return hnp.arrays(dtype, n, elements=elements)


def registered_campaign(arms: tuple[Arm, ...]) -> RegisteredCampaign:
    campaign = Campaign(
        "c",
        "IDR",
        1,
        datetime(2024, 9, 25, tzinfo=UTC),
        datetime(2024, 11, 27, tzinfo=UTC),
        arms,
        1,
    )
    n = len(arms)
    return RegisteredCampaign("alpha", campaign, np.arange(n), np.zeros(n, np.int64))


@st.composite
def arm_stats(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=0, max_value=6))
    k = draw(st.integers(min_value=0, max_value=3))
    ints = st.one_of(INT64, EDGE_INTS)
    arms = tuple(
        Arm(draw(TEXT), draw(st.sampled_from(list(Platform))), draw(TEXT)) for _ in range(n)
    )
    registered = registered_campaign(arms)
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
def test_the_arm_stats_reply_is_the_one_built_field_by_field(case):
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


INT_EDGES = [0, 1, -1, 127, 128, 16_384, 2**63 - 1, -(2**63)]
DOUBLE_EDGES = [0.0, -0.0, 1e-300, -1.5, float("inf"), float("nan"), 2.0**70]
# -1: never observed; 10**17 µs is past the year 9999.
HOUR_EDGES = [-1, -1, 0, 1, 999_999, 1_000_000, 1_727_222_400_000_000, 10**17]


def edge_values(
    n: int, k: int
) -> tuple[RegisteredCampaign, ArmStatsTable, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """n arms × k κ whose columns mix values at the edges of their encodings with
    ordinary ones; arm ids in several scripts, some audience ids empty."""
    rng = np.random.default_rng(n)
    ids = ("arm-{}", "ünï-{}", "廣告-{}", "🚀{}", "{}")
    audiences = ("", "aud", "público", "x" * 128)
    arms = tuple(
        Arm(ids[i % len(ids)].format(i), list(Platform)[i % len(Platform)], audiences[i % 4])
        for i in range(n)
    )
    registered = registered_campaign(arms)

    def mixed(edges: list[int] | list[float], shape: tuple[int, ...] = (n,)) -> np.ndarray:
        ordinary = rng.integers(-(10**12), 10**12, shape)
        return np.where(rng.random(shape) < 0.3, ordinary, rng.choice(np.array(edges), shape))

    stats = ArmStatsTable(
        spend_micros=mixed(INT_EDGES),
        discounted_spend_micros=mixed(DOUBLE_EDGES),
        conversions=mixed(DOUBLE_EDGES),
        discounted_conversions=mixed(DOUBLE_EDGES),
        clicks=mixed(INT_EDGES),
        discounted_clicks=mixed(DOUBLE_EDGES),
        impressions=mixed(INT_EDGES),
        discounted_impressions=mixed(DOUBLE_EDGES),
        hours_observed=mixed(INT_EDGES),
        discounted_hours=mixed(DOUBLE_EDGES),
        last_hour_us=mixed(HOUR_EDGES),
        exposure=mixed(DOUBLE_EDGES, (n, k)),
        log_shape=mixed(DOUBLE_EDGES, (n, k)),
    )
    kappas = np.geomspace(1.0, 1e12, k)
    return registered, stats, kappas, (mixed(INT_EDGES), mixed(INT_EDGES))


@pytest.mark.parametrize("arms", [0, 1, 9, 31, 300, 5000])
@pytest.mark.parametrize("k", [0, 31])
def test_campaigns_of_every_size_get_the_reply_built_field_by_field(arms, k):
    registered, stats, kappas, events = edge_values(arms, k)
    raw = codec.arm_stats_wire(registered, stats, kappas, *events)
    expected = one_at_a_time(registered, stats, kappas, events)
    # Compared as bytes: NaN is not equal to itself, but its bits are.
    written = metrics_pb2.GetArmStatsResponse.FromString(raw)
    assert written.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    if not k:
        assert raw == expected.SerializeToString()
