"""The allocator's reading of GetArmStats answers: the fast path over raw curve
entries and the message-by-message path agree; spend of arms no longer in the
campaign still counts; an answer that does not cover the campaign is refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from jangkau.budget.allocator import ARM_STATS_VIEW, _snapshot_from
from jangkau.budget.domain import Objective
from jangkau.budget.policy import KAPPA_GRID_MICROS
from jangkau.runtime.errors import FailedPrecondition
from jangkau.v1 import metrics_pb2
from tests.test_budget_support import arm, campaign


def answer(arm_ids: list[str], *, zero_first: bool = False, kappas=KAPPA_GRID_MICROS):
    rng = np.random.default_rng(3)
    response = metrics_pb2.GetArmStatsResponse()
    for i, arm_id in enumerate(arm_ids):
        stats = response.arms.add(
            arm_id=arm_id,
            spend_micros=1000 * (i + 1),
            discounted_conversions=2.5 * i,
            discounted_clicks=10.0 * i,
            discounted_hours=7.0 + i,
            hours_observed=8 + i,
        )
        for j, k in enumerate(kappas):
            exposure, log_shape = rng.random() + j, -rng.random()
            if zero_first and i == 0:
                exposure = log_shape = 0.0
            stats.curves.add(kappa_micros=k, exposure=exposure, log_shape=log_shape)
    return response


def read(response, c, objective=Objective.CONVERSIONS):
    view = ARM_STATS_VIEW.FromString(response.SerializeToString())
    return _snapshot_from(replace(c, objective=objective), view)


CAMPAIGN = campaign(arms=(arm("b"), arm("a", creative="x")))


def test_arm_statistics_land_in_campaign_arm_order():
    snapshot = read(answer(["a", "b"]), CAMPAIGN)
    direct = answer(["a", "b"])
    np.testing.assert_allclose(
        snapshot.evidence.exposure[0], [c.exposure for c in direct.arms[1].curves]
    )
    np.testing.assert_allclose(snapshot.evidence.count, [2.5, 0.0])
    np.testing.assert_allclose(snapshot.evidence.hours, [8.0, 7.0])
    assert snapshot.spend_to_date_micros == 3000
    assert snapshot.hours_observed == 9


def test_entries_with_omitted_zero_fields_read_the_same_as_full_ones():
    # Standard serialisers omit zero fields: those entries take the message path.
    full = read(answer(["a", "b"]), CAMPAIGN)
    sparse = read(answer(["a", "b"], zero_first=True), CAMPAIGN)
    np.testing.assert_allclose(sparse.evidence.exposure[0], full.evidence.exposure[0])
    np.testing.assert_allclose(sparse.evidence.exposure[1], 0.0)


def test_the_count_follows_the_objective():
    snapshot = read(answer(["a", "b"]), CAMPAIGN, Objective.CLICKS)
    np.testing.assert_allclose(snapshot.evidence.count, [10.0, 0.0])


def test_spend_of_an_arm_dropped_from_the_campaign_still_counts():
    snapshot = read(answer(["a", "b", "old"]), CAMPAIGN)
    assert snapshot.spend_to_date_micros == 6000
    assert snapshot.evidence.exposure.shape == (2, len(KAPPA_GRID_MICROS))


def test_an_answer_missing_a_campaign_arm_is_refused():
    with pytest.raises(FailedPrecondition, match="has not registered arms b"):
        read(answer(["a"]), CAMPAIGN)


def test_curve_statistics_for_other_kappas_are_refused():
    with pytest.raises(FailedPrecondition, match="κ"):
        read(answer(["a", "b"], kappas=[k * 2 for k in KAPPA_GRID_MICROS]), CAMPAIGN)


def test_curve_entries_that_are_not_curve_statistics_are_refused():
    view = ARM_STATS_VIEW.FromString(answer(["a", "b"]).SerializeToString())
    view.arms[0].curves[3] = b"\x12\x03abc" + bytes(6)  # a string field, 9 bytes long
    with pytest.raises(FailedPrecondition, match="malformed"):
        _snapshot_from(CAMPAIGN, view)
