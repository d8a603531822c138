"""The metrics domain on its own: the restatement rule, the curve statistics, and
ratios from sums."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jangkau.metrics import codec, domain
from jangkau.metrics.domain import (
    DeliverySums,
    HourRows,
    IngestCounts,
    Metric,
    plan_upsert,
)
from jangkau.runtime.versions import ANY_TIME_US
from jangkau.v1 import metrics_pb2

EMPTY = np.zeros(0, dtype=np.int64)


def keys(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_new_keys_are_inserted() -> None:
    plan = plan_upsert(keys(1, 2, 3), keys(10, 10, 10), EMPTY, EMPTY)
    assert plan.counts == IngestCounts(inserted=3)
    assert plan.insert_rows.tolist() == [0, 1, 2]
    assert plan.replace_rows.tolist() == []


def test_same_version_is_unchanged_and_writes_nothing() -> None:
    plan = plan_upsert(keys(1, 2), keys(10, 10), keys(2, 1), keys(10, 10))
    assert plan.counts == IngestCounts(unchanged=2)
    assert plan.insert_rows.size == plan.replace_rows.size == 0


def test_newer_version_replaces_and_older_is_stale() -> None:
    plan = plan_upsert(keys(1, 2), keys(11, 9), keys(1, 2), keys(10, 10))
    assert plan.counts == IngestCounts(replaced=1, stale=1)
    assert plan.replace_rows.tolist() == [0]


def test_a_key_twice_in_a_batch_applies_in_row_order() -> None:
    # key 5: inserted at v1, replaced by v3, then v2 is stale and v3 again unchanged.
    plan = plan_upsert(keys(5, 5, 5, 5), keys(1, 3, 2, 3), EMPTY, EMPTY)
    assert plan.counts == IngestCounts(inserted=1, replaced=1, unchanged=1, stale=1)
    assert plan.insert_rows.tolist() == [1]  # the newest version, first of its equals


def test_a_key_twice_in_a_batch_is_compared_with_the_stored_version() -> None:
    plan = plan_upsert(keys(7, 7), keys(4, 6), keys(7), keys(5))
    assert plan.counts == IngestCounts(replaced=1, stale=1)
    assert plan.replace_rows.tolist() == [1]


def naive_curves(
    arm: np.ndarray, n: int, spend: np.ndarray, w: np.ndarray, y: np.ndarray, kappas: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    exposure = np.zeros((n, len(kappas)))
    log_shape = np.zeros((n, len(kappas)))
    for a, s, wt, yt in zip(arm, spend, w, y, strict=True):
        if s <= 0:
            continue
        for k, kappa in enumerate(kappas):
            f = -math.expm1(-s / kappa)
            exposure[a, k] += wt * f
            log_shape[a, k] += wt * yt * math.log(f)
    return exposure, log_shape


def test_curve_statistics_match_their_definition() -> None:
    rng = np.random.default_rng(3)
    n_rows, n_arms = 9000, 7
    arm = rng.integers(0, n_arms - 1, n_rows)  # the last arm has no rows
    spend = rng.integers(0, 5_000_000_000, n_rows)
    spend[::13] = 0
    w = rng.uniform(0.1, 1.0, n_rows)
    y = rng.poisson(1.0, n_rows).astype(float)
    kappas = [2e7, 3e8, 1e9, 2e11]
    exposure, log_shape = domain.curve_statistics(arm, n_arms, spend, w, y, kappas)
    want_e, want_l = naive_curves(arm, n_arms, spend, w, y, kappas)
    np.testing.assert_allclose(exposure, want_e, rtol=1e-9)
    np.testing.assert_allclose(log_shape, want_l, rtol=1e-9)
    assert not exposure[-1].any()


def test_hour_weights_discount_by_hours_to_the_window_end() -> None:
    end = datetime(2024, 10, 1, tzinfo=UTC)
    hours = np.array([domain.to_us(end - timedelta(hours=h)) for h in (1, 2, 10)])
    np.testing.assert_allclose(domain.hour_weights(hours, end, 0.9), [0.9, 0.81, 0.9**10])
    np.testing.assert_allclose(domain.hour_weights(hours, end, 1.0), [1, 1, 1])


def test_arm_statistics_sum_exactly_and_track_the_last_hour() -> None:
    end = datetime(2024, 10, 1, tzinfo=UTC)
    big = 2**60  # integer sums stay exact beyond float precision
    rows = HourRows(
        arm=np.array([0, 0, 2]),
        hour_us=np.array([domain.to_us(end) - h * domain.HOUR_US for h in (3, 1, 2)]),
        spend_micros=np.array([big, 1, 5]),
        impressions=np.array([10, 20, 30]),
        clicks=np.array([1, 2, 3]),
        conversions=np.array([0.5, 1.5, 2.0]),
    )
    stats = domain.arm_statistics(rows, 3, end, 1.0, [], domain.CountMetric.CONVERSIONS)
    assert stats.spend_micros.tolist() == [big + 1, 0, 5]
    assert stats.hours_observed.tolist() == [2, 0, 1]
    assert stats.last_hour_us.tolist() == [domain.to_us(end) - domain.HOUR_US, -1, rows.hour_us[2]]
    assert stats.conversions.tolist() == [2.0, 0.0, 2.0]


def sums(
    spend: list[int], impressions: list[int], clicks: list[int], conversions: list[float]
) -> DeliverySums:
    zeros = np.zeros(len(spend), dtype=np.int64)
    return DeliverySums(
        np.array(spend),
        np.array(impressions),
        zeros,
        np.array(clicks),
        np.array(conversions),
        zeros,
    )


def test_ratios_come_from_sums_not_from_averaged_ratios() -> None:
    # Two hours: CTR 0.5 on 2 impressions and 0.01 on 1,000: the campaign CTR is 12/1002.
    hourly = sums([100, 900], [2, 1000], [1, 11], [1.0, 0.0])
    total = hourly.regroup(np.zeros(2, dtype=np.int64), 1)
    assert domain.metric_values(total, Metric.CTR)[0] == pytest.approx(12 / 1002)
    assert domain.metric_values(total, Metric.CPA)[0] == pytest.approx(1000.0)
    assert domain.metric_values(total, Metric.CPM)[0] == pytest.approx(1000 * 1000 / 1002)


def test_ratios_with_a_zero_denominator_are_zero() -> None:
    empty = sums([500], [0], [0], [0.0])
    for metric in (Metric.CPA, Metric.CTR, Metric.CONVERSION_RATE, Metric.CPM, Metric.CPC):
        assert domain.metric_values(empty, metric)[0] == 0.0


def test_expected_spend_paces_evenly_over_the_flight() -> None:
    start = datetime(2024, 9, 25, tzinfo=UTC)
    c = domain.Campaign("c", "IDR", 1000, start, start + timedelta(days=10), (), 1)
    assert domain.expected_spend(c, start - timedelta(days=1)) == 0
    assert domain.expected_spend(c, start + timedelta(days=4)) == 400
    assert domain.expected_spend(c, start + timedelta(days=30)) == 1000


def test_curves_block_rows_parse_as_each_arms_curve_stats() -> None:
    kappas = np.array([2e7, 1.5e9])
    exposure = np.array([[1.0, 0.0], [3.25, -0.5]])
    log_shape = np.array([[-1.0, -2.0], [0.0, -7.5]])
    for i, row in enumerate(codec.curves_block(kappas, exposure, log_shape)):
        arm = metrics_pb2.ArmStats.FromString(row.tobytes())
        assert [(c.kappa_micros, c.exposure, c.log_shape) for c in arm.curves] == list(
            zip(kappas, exposure[i], log_shape[i], strict=True)
        )


def test_the_earliest_time_written_is_found_per_campaign():
    def table(ids: list[str | None], hours: list[int | None]):  # type: ignore[no-untyped-def]
        return pa.table(
            {
                "campaign_id": pa.array(ids, pa.string()),
                "hour": pa.array(hours, domain.REPORT_SCHEMA.field("hour").type),
            }
        )

    first = table(["a", "b", "a", None], [50, 40, 30, 1])
    # Two chunks, a row without a time (it may have touched any instant).
    second = pa.concat_tables([table(["b"], [20]), table(["c", "c"], [None, 60])])
    assert domain.earliest_by_campaign([first, second], "hour") == {
        "a": 30,
        "b": 20,
        "c": ANY_TIME_US,
    }
    assert domain.earliest_by_campaign([table(["a"] * 3, [9, 7, 8])], "hour") == {"a": 7}
    assert domain.earliest_by_campaign([table([], [])], "hour") == {}


@given(
    cells=st.lists(
        st.tuples(
            st.integers(0, (1 << 31) - 1),
            st.integers(domain.ALL_HOURS[0], domain.ALL_HOURS[1] - 1),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_distinct_cells_are_numpys_unique_pairs(cells: list[tuple[int, int, bool]]) -> None:
    """Groups up to 2^31 and hours of years 1 to 9999, on the hour or on the day."""
    group = np.array([g for g, _, _ in cells], dtype=np.int64)
    hours = np.array([h for _, h, _ in cells], dtype=np.int64)
    daily = np.array([d for _, _, d in cells], dtype=bool)
    hour_us, day_us = domain.HOUR_US, domain.DAY_US
    bucket = np.where(daily, hours * hour_us // day_us * day_us, hours * hour_us)
    groups, starts, pair = domain.distinct_cells(group, bucket)
    expected, expected_pair = np.unique(
        np.stack([group, bucket]).reshape(2, -1), axis=1, return_inverse=True
    )
    assert groups.tolist() == expected[0].tolist()
    assert starts.tolist() == expected[1].tolist()
    assert pair.tolist() == expected_pair.ravel().tolist()
