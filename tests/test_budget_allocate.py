"""Allocate, Rebalance and ListDecisions through real gRPC servers, with history
ingested into the real metrics service and the real policy behind them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jangkau.runtime.times import from_timestamp, to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2
from tests import test_budget_support as support
from tests.conftest import TOKENS
from tests.test_budget_support import (
    FLIGHT_START,
    RUPIAH,
    Stack,
    contact_list_audience,
    create,
    demographic_audience,
    in_flight,
    ingest,
    md,
    report,
    restart_budget,
    wire_campaign,
)

# Fixtures: a fresh audience + metrics + budget stack per test, or one per module.
stack = support.stack
shared_stack = support.shared_stack

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def audience_id(shared_stack: Stack) -> str:
    return demographic_audience(shared_stack)


def allocate(stack: Stack, campaign_id: str, as_of: datetime, seed: int = 0, token=TOKENS["alpha"]):
    return stack.budget_stub().Allocate(
        budget_pb2.AllocateRequest(campaign_id=campaign_id, as_of=to_timestamp(as_of), seed=seed),
        metadata=md(token),
        timeout=10,
    )


def rebalance(
    stack: Stack, campaign_id: str, as_of: datetime, seed: int = 0, token=TOKENS["alpha"]
):
    return stack.budget_stub().Rebalance(
        budget_pb2.RebalanceRequest(campaign_id=campaign_id, as_of=to_timestamp(as_of), seed=seed),
        metadata=md(token),
        timeout=10,
    )


def decisions(stack: Stack, campaign_id: str, page_size: int = 0, token: str = ""):
    return stack.budget_stub().ListDecisions(
        budget_pb2.ListDecisionsRequest(
            campaign_id=campaign_id,
            page=common_pb2.PageRequest(page_size=page_size, page_token=token),
        ),
        metadata=md(),
        timeout=5,
    )


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def budgets(allocation: budget_pb2.Allocation) -> dict[str, int]:
    return {a.arm_id: a.budget_micros for a in allocation.arms}


def test_allocate_splits_this_hours_budget_over_every_arm(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    got = allocate(shared_stack, c.id, in_flight(24) + timedelta(minutes=17))
    assert from_timestamp(got.period.start) == in_flight(24)
    assert from_timestamp(got.period.end) == in_flight(25)
    assert [a.arm_id for a in got.arms] == [a.id for a in c.arms]
    assert got.period_budget_micros == c.total_budget_micros // (29 * 24)
    assert 0 < got.allocated_micros <= got.period_budget_micros
    assert got.allocated_micros == sum(budgets(got).values())
    assert got.remaining_budget_micros == c.total_budget_micros
    assert got.currency == "IDR"
    assert got.seed != 0
    assert all(a.bound != budget_pb2.BOUND_UNSPECIFIED and a.reason for a in got.arms)


def test_the_same_seed_gives_the_same_split(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id, demographic_audience(shared_stack)]))
    first = allocate(shared_stack, c.id, in_flight(30), seed=42)
    second = allocate(shared_stack, c.id, in_flight(30), seed=42)
    assert first == second
    assert first.seed == 42


def test_without_a_seed_the_split_is_fixed_per_campaign_and_period(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    first = allocate(shared_stack, c.id, in_flight(30))
    again = allocate(shared_stack, c.id, in_flight(30) + timedelta(minutes=40))
    later = allocate(shared_stack, c.id, in_flight(31))
    assert first == again
    assert later.seed != first.seed


def test_allocate_records_nothing(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    allocate(shared_stack, c.id, in_flight(3))
    assert list(decisions(shared_stack, c.id).decisions) == []


def test_a_blackout_hour_gives_every_arm_zero_with_the_reason(shared_stack, audience_id):
    window = budget_pb2.BlackoutWindow(
        range=common_pb2.TimeRange(
            start=to_timestamp(in_flight(48)), end=to_timestamp(in_flight(60))
        ),
        reason="debat kandidat",
    )
    c = create(shared_stack, wire_campaign([audience_id], blackouts=[window]))
    got = allocate(shared_stack, c.id, in_flight(50))
    assert got.allocated_micros == 0
    assert got.period_budget_micros == 0
    assert {a.bound for a in got.arms} == {budget_pb2.BOUND_BLACKOUT}
    assert all("debat kandidat" in a.reason for a in got.arms)


@pytest.mark.parametrize(
    ("time_zone", "local_midnight_utc"),
    [
        ("Asia/Jakarta", datetime(2024, 11, 23, 17, tzinfo=UTC)),
        ("Asia/Makassar", datetime(2024, 11, 23, 16, tzinfo=UTC)),
        ("Asia/Jayapura", datetime(2024, 11, 23, 15, tzinfo=UTC)),
    ],
)
def test_the_quiet_period_and_voting_day_give_a_political_campaign_zero_in_its_zone(
    shared_stack, audience_id, time_zone, local_midnight_utc
):
    msg = wire_campaign(
        [audience_id],
        kind=common_pb2.POLITICAL,
        political_authorization=True,
        time_zone=time_zone,
        flight=common_pb2.TimeRange(
            start=to_timestamp(datetime(2024, 11, 1, tzinfo=UTC)),
            end=to_timestamp(datetime(2024, 11, 30, tzinfo=UTC)),
        ),
    )
    c = create(shared_stack, msg)
    # 23:00 WIT on 23 Nov, the last hour campaign ads are allowed in every zone.
    before = allocate(shared_stack, c.id, datetime(2024, 11, 23, 14, tzinfo=UTC))
    first_quiet_hour = allocate(shared_stack, c.id, local_midnight_utc)
    voting_day_noon = allocate(shared_stack, c.id, local_midnight_utc + 3 * 24 * HOUR + 12 * HOUR)
    assert before.allocated_micros > 0
    for quiet in (first_quiet_hour, voting_day_noon):
        assert quiet.allocated_micros == 0
        assert "masa tenang" in quiet.reason


def test_ineligible_arms_get_zero_with_the_platform_reason(shared_stack, audience_id):
    lists = contact_list_audience(shared_stack)
    msg = wire_campaign([audience_id], kind=common_pb2.POLITICAL, political_authorization=False)
    msg.arms.add(id="tiktok-0", platform=common_pb2.TIKTOK, audience_id=audience_id)
    msg.arms.add(id="google-lists", platform=common_pb2.GOOGLE, audience_id=lists)
    c = create(shared_stack, msg)
    got = {a.arm_id: a for a in allocate(shared_stack, c.id, in_flight(5)).arms}
    for arm_id in ("tiktok-0", "google-lists", "meta-0"):
        assert got[arm_id].budget_micros == 0
        assert got[arm_id].bound == budget_pb2.BOUND_INELIGIBLE
    assert "TikTok bans paid political ads" in got["tiktok-0"].reason
    assert "contact list" in got["google-lists"].reason
    assert "political_authorization" in got["meta-0"].reason
    assert got["google-0"].budget_micros > 0


def test_a_paused_campaign_gets_zero(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    shared_stack.budget_stub().UpdateCampaign(
        budget_pb2.UpdateCampaignRequest(
            campaign=budget_pb2.Campaign(id=c.id, state=budget_pb2.PAUSED),
            update_mask=FieldMask(paths=["state"]),
        ),
        metadata=md(),
        timeout=10,
    )
    got = allocate(shared_stack, c.id, in_flight(5))
    assert got.allocated_micros == 0
    assert {a.bound for a in got.arms} == {budget_pb2.BOUND_NO_BUDGET}


def test_before_the_flight_every_arm_gets_zero(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    got = allocate(shared_stack, c.id, FLIGHT_START - 3 * HOUR)
    assert got.allocated_micros == 0
    assert got.reason == "outside the campaign's flight"


def test_spend_reported_to_metrics_comes_off_the_remaining_budget(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    spend = 1_000_000 * RUPIAH
    ingest(shared_stack, [report(c, "meta-0", in_flight(h), spend, 3) for h in range(10)])
    got = allocate(shared_stack, c.id, in_flight(10))
    assert got.spend_to_date_micros == 10 * spend
    assert got.remaining_budget_micros == c.total_budget_micros - 10 * spend
    assert got.period_budget_micros == got.remaining_budget_micros // (30 * 24 - 10)
    assert got.hours_observed == 10


def test_reports_after_the_period_do_not_count(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    ingest(shared_stack, [report(c, "meta-0", in_flight(h), RUPIAH, 1) for h in range(10)])
    assert allocate(shared_stack, c.id, in_flight(4)).spend_to_date_micros == 4 * RUPIAH


def test_history_moves_budget_to_the_arm_that_converts(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id], kind=common_pb2.COMMERCIAL))
    spend = 2_000_000 * RUPIAH
    rows = [report(c, "meta-0", in_flight(h), spend, 60) for h in range(72)]
    rows += [report(c, "google-0", in_flight(h), spend, 0) for h in range(72)]
    ingest(shared_stack, rows)
    got = budgets(allocate(shared_stack, c.id, in_flight(72), seed=7))
    assert got["meta-0"] > got["google-0"]


def test_infeasible_constraints_answer_failed_precondition_naming_the_conflict(
    shared_stack, audience_id
):
    msg = wire_campaign([audience_id], kind=common_pb2.POLITICAL, political_authorization=True)
    msg.arms.add(
        id="x-0", platform=common_pb2.X, audience_id=audience_id, max_micros_per_period=RUPIAH
    )
    msg.coverage_floors.add(name="rural", arm_ids=["x-0"], min_share=0.3)
    c = create(shared_stack, msg)
    err = rpc_error(lambda: allocate(shared_stack, c.id, in_flight(5)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "coverage floor 'rural'" in err.details()
    err = rpc_error(lambda: rebalance(shared_stack, c.id, in_flight(5)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list(decisions(shared_stack, c.id).decisions) == []


def test_rebalance_records_the_decision_once_per_period(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    first = rebalance(shared_stack, c.id, in_flight(7), seed=3)
    again = rebalance(shared_stack, c.id, in_flight(7) + timedelta(minutes=59), seed=99)
    assert first.id.startswith("dec_")
    assert not first.replayed
    assert again.replayed
    assert again.id == first.id
    assert again.allocation == first.allocation
    assert first.allocation == allocate(shared_stack, c.id, in_flight(7), seed=3)
    assert len(decisions(shared_stack, c.id).decisions) == 1


def test_the_previous_decision_is_shown_and_feeds_the_change_limit(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    first = rebalance(shared_stack, c.id, in_flight(7))
    following = allocate(shared_stack, c.id, in_flight(8))
    assert {a.arm_id: a.previous_budget_micros for a in following.arms} == budgets(first.allocation)
    limit = following.policy.max_change_percent / 100
    for arm in following.arms:
        before = arm.previous_budget_micros
        if arm.budget_micros and before:
            assert arm.budget_micros <= before + int(before * limit) or (
                arm.bound == budget_pb2.BOUND_MINIMUM
            )


def test_list_decisions_pages_newest_period_first(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    made = [rebalance(shared_stack, c.id, in_flight(h)).id for h in (3, 1, 2)]
    first = decisions(shared_stack, c.id, page_size=2)
    second = decisions(shared_stack, c.id, page_size=2, token=first.next_page_token)
    listed = [d.id for d in first.decisions] + [d.id for d in second.decisions]
    assert listed == [made[0], made[2], made[1]]
    assert second.next_page_token == ""
    assert not any(d.replayed for d in first.decisions)


def test_a_viewer_may_allocate_but_not_rebalance(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    allocate(shared_stack, c.id, in_flight(2), token=TOKENS["alpha_viewer"])
    err = rpc_error(
        lambda: rebalance(shared_stack, c.id, in_flight(2), token=TOKENS["alpha_viewer"])
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_metrics_down_allocate_answers_unavailable_and_rebalance_records_nothing(stack):
    c = create(stack, wire_campaign([demographic_audience(stack)]))
    stack.metrics.stop(grace=0.1)
    err = rpc_error(lambda: allocate(stack, c.id, in_flight(5)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    err = rpc_error(lambda: rebalance(stack, c.id, in_flight(5)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert list(decisions(stack, c.id).decisions) == []


def test_decisions_survive_a_restart_of_the_budget_service(stack):
    c = create(stack, wire_campaign([demographic_audience(stack)]))
    recorded = rebalance(stack, c.id, in_flight(5))
    restart_budget(stack)
    replay = rebalance(stack, c.id, in_flight(5))
    assert replay.replayed
    assert replay.id == recorded.id
    assert [d.id for d in decisions(stack, c.id).decisions] == [recorded.id]


def update_arms(stack: Stack, campaign_id: str, arms) -> budget_pb2.Campaign:
    return stack.budget_stub().UpdateCampaign(
        budget_pb2.UpdateCampaignRequest(
            campaign=budget_pb2.Campaign(id=campaign_id, arms=arms),
            update_mask=FieldMask(paths=["arms"]),
        ),
        metadata=md(),
        timeout=10,
    )


def test_an_arm_added_by_update_is_registered_with_metrics_and_allocated(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    arms = list(c.arms) + [budget_pb2.Arm(id="x-0", platform=common_pb2.X, audience_id=audience_id)]
    updated = update_arms(shared_stack, c.id, arms)
    ingest(shared_stack, [report(updated, "x-0", in_flight(0), 5 * RUPIAH, 1)])
    got = allocate(shared_stack, c.id, in_flight(1))
    assert [a.arm_id for a in got.arms] == ["meta-0", "google-0", "x-0"]
    assert got.spend_to_date_micros == 5 * RUPIAH


def test_spend_of_an_arm_removed_by_update_still_counts(shared_stack, audience_id):
    c = create(shared_stack, wire_campaign([audience_id]))
    ingest(shared_stack, [report(c, "google-0", in_flight(0), 7 * RUPIAH, 1)])
    update_arms(shared_stack, c.id, [c.arms[0]])
    got = allocate(shared_stack, c.id, in_flight(1))
    assert [a.arm_id for a in got.arms] == ["meta-0"]
    assert got.remaining_budget_micros == c.total_budget_micros - 7 * RUPIAH


# ------------------------------------------------- audiences changed after the campaign


def political_campaign(stack: Stack, audience: str) -> budget_pb2.Campaign:
    return create(
        stack, wire_campaign([audience], kind=common_pb2.POLITICAL, political_authorization=True)
    )


def revision(stack: Stack, campaign_id: str) -> int:
    return (
        stack.budget_stub()
        .GetCampaign(
            budget_pb2.GetCampaignRequest(campaign_id=campaign_id), metadata=md(), timeout=5
        )
        .revision
    )


def move_onto_a_contact_list(stack: Stack, audience_id: str) -> None:
    """Replaces the audience's rule with one list of 300 phone numbers."""
    audiences = stack.audience_stub()
    lists = audiences.GetAudience(
        audience_pb2.GetAudienceRequest(audience_id=contact_list_audience(stack)),
        metadata=md(),
        timeout=5,
    ).rule
    audiences.UpdateAudience(
        audience_pb2.UpdateAudienceRequest(audience_id=audience_id, name="relawan", rule=lists),
        metadata=md(),
        timeout=5,
    )


def test_a_rebalance_reads_the_audience_as_it_is_now(shared_stack):
    # An audience of its own: the test changes it. Google takes political ads only
    # on demographic audiences, so moving the audience onto a contact list must
    # take the Google arm off at the next decision, without any campaign update.
    audience = demographic_audience(shared_stack, name="Jabar muda, later relawan")
    c = political_campaign(shared_stack, audience)
    before = budgets(rebalance(shared_stack, c.id, in_flight(5)).allocation)
    assert before["google-0"] > 0
    # Asked before the change, the next hour's split is in budget's caches.
    assert budgets(allocate(shared_stack, c.id, in_flight(6)))["google-0"] > 0

    move_onto_a_contact_list(shared_stack, audience)
    after = rebalance(shared_stack, c.id, in_flight(6))
    google = next(a for a in after.allocation.arms if a.arm_id == "google-0")
    assert google.budget_micros == 0
    assert google.bound == budget_pb2.BOUND_INELIGIBLE
    assert "contact list" in google.reason
    # The campaign itself is unchanged, and Allocate now sees the same audience.
    assert revision(shared_stack, c.id) == c.revision
    assert budgets(allocate(shared_stack, c.id, in_flight(6))) == budgets(after.allocation)


def test_an_arm_whose_audience_shrank_below_the_platform_minimum_gets_zero(shared_stack):
    # 300 phone numbers: X matches about a tenth of them, under its minimum of 100;
    # Meta matches more than half.
    audience = demographic_audience(shared_stack, name="Jabar muda, later 300 relawan")
    msg = wire_campaign([audience])
    msg.arms.add(id="x-0", platform=common_pb2.X, audience_id=audience)
    c = create(shared_stack, msg)
    assert budgets(rebalance(shared_stack, c.id, in_flight(5)).allocation)["x-0"] > 0
    move_onto_a_contact_list(shared_stack, audience)
    after = {a.arm_id: a for a in rebalance(shared_stack, c.id, in_flight(6)).allocation.arms}
    assert after["x-0"].budget_micros == 0
    assert after["x-0"].bound == budget_pb2.BOUND_INELIGIBLE
    assert "under the platform minimum of 100" in after["x-0"].reason
    assert after["meta-0"].budget_micros > 0


def test_an_arm_whose_audience_was_deleted_gets_zero_at_the_next_rebalance(shared_stack):
    audience = demographic_audience(shared_stack, name="Jabar muda, deleted later")
    c = political_campaign(shared_stack, audience)
    assert sum(budgets(rebalance(shared_stack, c.id, in_flight(5)).allocation).values()) > 0
    shared_stack.audience_stub().DeleteAudience(
        audience_pb2.DeleteAudienceRequest(audience_id=audience), metadata=md(), timeout=5
    )
    after = rebalance(shared_stack, c.id, in_flight(6)).allocation
    assert after.allocated_micros == 0
    for arm in after.arms:
        assert arm.bound == budget_pb2.BOUND_INELIGIBLE
        assert arm.reason == f"not eligible: audience {audience} no longer exists"


def test_a_floor_whose_only_arm_lost_its_audience_is_dropped_and_the_rest_rebalanced(
    shared_stack,
):
    kept = demographic_audience(shared_stack, name="Jabar dewasa")
    deleted = demographic_audience(shared_stack, name="Jabar muda, deleted later")
    msg = wire_campaign([kept, deleted], kind=common_pb2.POLITICAL, political_authorization=True)
    msg.coverage_floors.add(name="muda", arm_ids=["meta-1"], min_share=0.3)
    c = create(shared_stack, msg)
    assert budgets(rebalance(shared_stack, c.id, in_flight(5)).allocation)["meta-1"] > 0
    shared_stack.audience_stub().DeleteAudience(
        audience_pb2.DeleteAudienceRequest(audience_id=deleted), metadata=md(), timeout=5
    )
    after = rebalance(shared_stack, c.id, in_flight(6)).allocation
    arms = {a.arm_id: a for a in after.arms}
    assert arms["meta-1"].budget_micros == 0
    assert arms["meta-1"].bound == budget_pb2.BOUND_INELIGIBLE
    assert "coverage floor 'muda' dropped" in arms["meta-1"].reason
    assert arms["meta-0"].budget_micros > 0


def test_with_the_audience_service_down_a_rebalance_decides_on_the_stored_audiences(stack):
    c = political_campaign(stack, demographic_audience(stack))
    expected = budgets(allocate(stack, c.id, in_flight(5)))
    stack.audience.stop(grace=0.1)
    recorded = rebalance(stack, c.id, in_flight(5))
    assert not recorded.replayed
    assert budgets(recorded.allocation) == expected
    assert expected["google-0"] > 0
