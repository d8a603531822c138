"""Audience rules: validation that points at the node, and what a rule counts
(ages inside a band, contact lists, interests), over a small seeded population."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from jangkau.audience import rules
from jangkau.audience.domain import AGE_BANDS, MATCH_RATES, IdentifierKind, Platform
from jangkau.audience.rules import (
    Age,
    All,
    AnyOf,
    InContactList,
    Interest,
    Not,
    Region,
)
from jangkau.runtime.errors import InvalidArgument
from jangkau.v1 import audience_pb2 as pb
from tests import test_audience_support as support
from tests.test_audience_support import (
    age,
    all_of,
    any_of,
    excluding,
    gender,
    in_list,
    interest,
    negation,
    random_hashes,
    region,
    store_list,
)

# Fixtures: one server, and one service without gRPC, for the module.
shared_api = support.shared_api
small_service = support.small_service

# ---------------------------------------------------------------- validation over gRPC


def invalid_argument(call) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value.details()


def test_a_sensitive_interest_is_refused_by_name_at_its_node(shared_api):
    rule = all_of(region("32"), interest("religion"))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert details.startswith("rule.all[1].interest.name:")
    assert "sensitive" in details and "religion" in details


def test_an_unknown_region_code_is_refused_at_its_position(shared_api):
    rule = any_of(region("32", "3299"), age(18, 24))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert details.startswith("rule.any[0].region.codes[1]:")
    assert "unknown region code 3299" in details


def test_an_empty_age_range_is_refused_at_its_max(shared_api):
    rule = all_of(region("32"), gender(2), age(40, 30))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert details.startswith("rule.all[2].age.max:")
    assert "empty range" in details


def test_an_age_under_the_voting_age_is_refused(shared_api):
    details = invalid_argument(lambda: shared_api.create(negation(age(16, 30))))
    assert details.startswith("rule.not.age.min:")


def test_an_empty_node_is_refused_at_its_path(shared_api):
    rule = all_of(region("32"), all_of(age(18, 24), pb.Rule()))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert details.startswith("rule.all[1].all[1]:")


def test_every_bad_node_is_reported_at_once(shared_api):
    rule = all_of(region("9999"), age(50, 20), interest("Partai politik"))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert "rule.all[0].region.codes[0]" in details
    assert "rule.all[1].age.max" in details
    assert "rule.all[2].interest.name" in details


def test_an_exclusion_cycle_is_refused_at_the_excluding_node(shared_api):
    first = shared_api.create(region("32"), name="first")
    second = shared_api.create(all_of(region("32"), excluding(first.id)), name="second")
    update = pb.UpdateAudienceRequest(
        audience_id=first.id, name="first", rule=all_of(age(18, 24), excluding(second.id))
    )
    details = invalid_argument(
        lambda: shared_api.stub.UpdateAudience(update, metadata=shared_api.md(), timeout=10)
    )
    assert details.startswith("rule.all[1].exclude_audience_id:")
    assert f"{first.id} → {second.id} → {first.id}" in details


def test_an_audience_cannot_exclude_itself(shared_api):
    created = shared_api.create(region("32"))
    update = pb.UpdateAudienceRequest(
        audience_id=created.id, name="self", rule=negation(excluding(created.id))
    )
    details = invalid_argument(
        lambda: shared_api.stub.UpdateAudience(update, metadata=shared_api.md(), timeout=10)
    )
    assert details.startswith("rule.not.exclude_audience_id:")
    assert "cycle" in details


def test_a_list_of_another_tenant_is_unknown_in_a_rule(shared_api):
    theirs = shared_api.upload(phones=["0812 3456 7890"], who="beta")
    rule = all_of(region("32"), in_list(theirs.id))
    details = invalid_argument(lambda: shared_api.create(rule))
    assert details.startswith("rule.all[1].contact_list_id:")


# ---------------------------------------------------------------- sensitive names


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("religion", "religion"),
        ("Agama", "religion"),
        ("islamic finance", "religion"),
        ("suku batak", "ethnicity"),
        ("kesehatan ibu", "health"),
        ("political affiliation", "political affiliation"),
        ("partai", "political affiliation"),
        ("LGBT", "sexual orientation"),
    ],
)
def test_sensitive_names_are_recognised_in_english_and_indonesian(name, category):
    assert rules.sensitive_category(name) == category


def test_ordinary_interests_are_not_sensitive():
    for name in rules.INTEREST_SHARES:
        assert rules.sensitive_category(name) is None


# ---------------------------------------------------------------- what a rule counts


def voters(service, rule) -> int:
    return service.estimate_size("t-count", None, rule, 0, []).voters


def cells(service) -> dict[str, np.ndarray]:
    return service.store.cell_arrays()


def test_a_whole_band_counts_exactly_its_cells(small_service):
    c = cells(small_service)
    expected = int(c["voters"][c["age_band"] == 1].sum())
    assert voters(small_service, Age(18, 24)) == expected


def test_an_age_range_that_cuts_bands_counts_them_in_proportion(small_service):
    c = cells(small_service)
    v = c["voters"].astype(float)
    band = c["age_band"]
    expected = 5 / 10 * v[band == 2].sum() + 6 / 10 * v[band == 3].sum()
    assert voters(small_service, Age(30, 40)) == round(expected)


def test_the_oldest_band_is_spread_over_65_to_84(small_service):
    c = cells(small_service)
    old = c["voters"][c["age_band"] == AGE_BANDS[-1].index].astype(float).sum()
    assert voters(small_service, Age(75, 120)) == round(old * 10 / 20)
    assert voters(small_service, Age(90, 120)) == 0


def test_an_interest_holds_for_its_share_of_every_cell(small_service):
    total = small_service.regions.total_voters
    assert voters(small_service, Interest("sports")) == round(0.30 * total)
    both = All((Interest("sports"), Interest("music")))
    assert voters(small_service, both) == round(0.30 * 0.35 * total)


def test_a_nationwide_list_counts_its_members_spread_like_the_voters(small_service):
    members = store_list(small_service, "t-count", random_hashes(np.random.default_rng(1), 5000))
    total = small_service.regions.total_voters
    province = small_service.regions.voters_in_all([("32",)])
    listed = InContactList(members.id)
    assert _voters(small_service, listed) == 5000
    assert _voters(small_service, Not(listed)) == total - 5000
    assert _voters(small_service, All((listed, Region(("32",))))) == round(5000 * province / total)


def test_a_regional_list_lives_in_its_regions(small_service):
    members = store_list(
        small_service, "t-count", random_hashes(np.random.default_rng(2), 4000), ("32",)
    )
    listed = InContactList(members.id)
    assert _voters(small_service, All((listed, Region(("32",))))) == 4000
    assert _voters(small_service, All((listed, Region(("33",))))) == 0


def test_people_in_two_lists_are_counted_by_hash_intersection(small_service):
    rng = np.random.default_rng(3)
    shared = random_hashes(rng, 700)
    first = store_list(small_service, "t-count", np.concatenate([shared, random_hashes(rng, 1300)]))
    second = store_list(small_service, "t-count", np.concatenate([shared, random_hashes(rng, 500)]))
    a, b = InContactList(first.id), InContactList(second.id)
    assert _voters(small_service, All((a, b))) == 700
    assert _voters(small_service, AnyOf((a, b))) == 2000 + 1200 - 700
    assert _voters(small_service, All((a, Not(b)))) == 1300


def smallest_districts(service, n: int) -> list[tuple[str, int]]:
    """(code, voters) of the n districts with the fewest voters."""
    order = np.argsort(service.regions.voters)[:n]
    return [(f"{service.regions.districts[i]:06d}", int(service.regions.voters[i])) for i in order]


def test_lists_in_different_districts_are_counted_in_full_together(small_service):
    rng = np.random.default_rng(5)
    (first, first_voters), (second, second_voters), _ = smallest_districts(small_service, 3)
    # Each list fills 90% of its district: together they over-fill no cell.
    sizes = [int(0.9 * first_voters), int(0.9 * second_voters)]
    here = store_list(small_service, "t-count", random_hashes(rng, sizes[0]), (first,))
    there = store_list(small_service, "t-count", random_hashes(rng, sizes[1]), (second,))
    either = AnyOf((InContactList(here.id), InContactList(there.id)))
    assert _voters(small_service, either) == sizes[0] + sizes[1]


def test_lists_over_filling_a_district_are_scaled_down_only_there(small_service):
    rng = np.random.default_rng(6)
    _, (first, first_voters), (second, second_voters) = smallest_districts(small_service, 3)
    alone = store_list(
        small_service, "t-count", random_hashes(rng, int(0.9 * first_voters)), (first,)
    )
    # 90% and 50% of the second district: more people than it has voters.
    crowded = [
        store_list(
            small_service, "t-count", random_hashes(rng, int(share * second_voters)), (second,)
        )
        for share in (0.9, 0.5)
    ]
    crowd = AnyOf(tuple(InContactList(c.id) for c in crowded))
    assert _voters(small_service, crowd) == second_voters
    everyone = AnyOf((InContactList(alone.id), *crowd.rules))
    assert _voters(small_service, everyone) == int(0.9 * first_voters) + second_voters


def test_people_only_in_a_list_are_reached_at_the_platforms_match_rate(small_service):
    members = store_list(small_service, "t-count", random_hashes(np.random.default_rng(4), 10_000))
    estimate = small_service.estimate_size(
        "t-count", None, InContactList(members.id), 0, [Platform.META, Platform.X]
    )
    meta, x = estimate.platforms
    assert meta.reachable == round(10_000 * MATCH_RATES[Platform.META][IdentifierKind.PHONE])
    assert x.reachable == round(10_000 * MATCH_RATES[Platform.X][IdentifierKind.PHONE])


def _voters(service, rule) -> int:
    return service.estimate_size("t-count", None, rule, 0, []).voters


def test_no_caller_text_reaches_the_sql(small_service):
    checked = small_service.check_rule(
        "t-count", All((Region(("3201", "32")), Age(30, 40), Interest("music")))
    )
    sql, params, _ = small_service.store.measure_sql(small_service.plan(checked))
    assert "3201" not in sql and "music" not in sql
    assert 3201 in params


def test_an_invalid_rule_raises_every_violation_with_its_path(small_service):
    with pytest.raises(InvalidArgument) as caught:
        small_service.check_rule("t-count", All((Age(10, 20), Region(("12345",)))))
    fields = [v.field for v in caught.value.violations]
    assert fields == ["rule.all[0].age.min", "rule.all[1].region.codes[0]"]
