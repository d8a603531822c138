"""The AudienceService through a real gRPC server: for every RPC, bad input is
INVALID_ARGUMENT naming the field, another tenant's object is NOT_FOUND, no
token is UNAUTHENTICATED and a viewer cannot write; then what each RPC does."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest

from jangkau.budget import domain as budget
from jangkau.v1 import audience_pb2 as pb
from jangkau.v1 import common_pb2
from tests import test_audience_support as support
from tests.test_audience_support import (
    AudienceApi,
    age,
    all_of,
    excluding,
    gender,
    in_list,
    locality,
    negation,
    region,
    start_api,
)

# Fixtures: one server for the module, or a server of the test's own.
shared_api = support.shared_api
api = support.api


@dataclass
class Objects:
    """Alpha's objects that other tenants must not see."""

    audience: pb.Audience
    list_audience: pb.Audience
    contact_list: pb.ContactList


@pytest.fixture(scope="module")
def alpha(shared_api: AudienceApi) -> Objects:
    contact_list = shared_api.upload(
        phones=[f"0813 1111 {i:04d}" for i in range(300)], emails=["relawan@contoh.id"]
    )
    return Objects(
        audience=shared_api.create(all_of(region("32"), age(18, 34)), name="Jabar muda"),
        list_audience=shared_api.create(in_list(contact_list.id), name="relawan"),
        contact_list=contact_list,
    )


def status_of(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if hasattr(result, "__next__"):
            list(result)  # type: ignore[call-overload]
    return caught.value


def upload_messages(header: pb.ContactListHeader | None = None, phones=("0812 3456 7890",)):
    header = header or pb.ContactListHeader(
        name="n", purpose="p", consent_basis=pb.EXPLICIT_CONSENT
    )
    return iter(
        [
            pb.UploadContactListRequest(header=header),
            pb.UploadContactListRequest(chunk=pb.ContactChunk(phones=list(phones))),
        ]
    )


# Each RPC with a request the caller may make (given alpha's objects).
def valid_calls(o: Objects) -> dict[str, Callable[[AudienceApi, tuple], object]]:
    return {
        "CreateAudience": lambda a, md: a.stub.CreateAudience(
            pb.CreateAudienceRequest(name="x", rule=region("32")), metadata=md, timeout=10
        ),
        "GetAudience": lambda a, md: a.stub.GetAudience(
            pb.GetAudienceRequest(audience_id=o.audience.id), metadata=md, timeout=10
        ),
        "UpdateAudience": lambda a, md: a.stub.UpdateAudience(
            pb.UpdateAudienceRequest(audience_id=o.audience.id, name="y", rule=region("32")),
            metadata=md,
            timeout=10,
        ),
        "ListAudiences": lambda a, md: a.stub.ListAudiences(
            pb.ListAudiencesRequest(), metadata=md, timeout=10
        ),
        "DeleteAudience": lambda a, md: a.stub.DeleteAudience(
            pb.DeleteAudienceRequest(audience_id=o.audience.id), metadata=md, timeout=10
        ),
        "EstimateSize": lambda a, md: a.stub.EstimateSize(
            pb.EstimateSizeRequest(audience_id=o.audience.id), metadata=md, timeout=10
        ),
        "Overlap": lambda a, md: a.stub.Overlap(
            pb.OverlapRequest(audience_ids=[o.audience.id, o.list_audience.id]),
            metadata=md,
            timeout=10,
        ),
        "UploadContactList": lambda a, md: a.stub.UploadContactList(
            upload_messages(), metadata=md, timeout=10
        ),
        "GetContactList": lambda a, md: a.stub.GetContactList(
            pb.GetContactListRequest(list_id=o.contact_list.id), metadata=md, timeout=10
        ),
        "ListContactLists": lambda a, md: a.stub.ListContactLists(
            pb.ListContactListsRequest(), metadata=md, timeout=10
        ),
        "DeleteContactList": lambda a, md: a.stub.DeleteContactList(
            pb.DeleteContactListRequest(list_id=o.contact_list.id), metadata=md, timeout=10
        ),
        "ExportAudience": lambda a, md: a.stub.ExportAudience(
            pb.ExportAudienceRequest(audience_id=o.list_audience.id, platform=common_pb2.META),
            metadata=md,
            timeout=10,
        ),
    }


RPCS = [
    "CreateAudience",
    "GetAudience",
    "UpdateAudience",
    "ListAudiences",
    "DeleteAudience",
    "EstimateSize",
    "Overlap",
    "UploadContactList",
    "GetContactList",
    "ListContactLists",
    "DeleteContactList",
    "ExportAudience",
]
WRITES = {
    "CreateAudience",
    "UpdateAudience",
    "DeleteAudience",
    "UploadContactList",
    "DeleteContactList",
    "ExportAudience",
}
ON_AN_OBJECT = [
    "GetAudience",
    "UpdateAudience",
    "DeleteAudience",
    "EstimateSize",
    "Overlap",
    "GetContactList",
    "DeleteContactList",
    "ExportAudience",
]


@pytest.mark.parametrize("rpc", RPCS)
def test_every_rpc_without_a_token_is_unauthenticated(shared_api, alpha, rpc):
    error = status_of(lambda: valid_calls(alpha)[rpc](shared_api, ()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("rpc", RPCS)
def test_every_rpc_with_an_unknown_token_is_unauthenticated(shared_api, alpha, rpc):
    bad = (("authorization", "Bearer not-a-token"),)
    error = status_of(lambda: valid_calls(alpha)[rpc](shared_api, bad))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("rpc", ON_AN_OBJECT)
def test_another_tenants_object_is_not_found(shared_api, alpha, rpc):
    if rpc == "Overlap":
        theirs = shared_api.create(region("32"), who="beta")
        call = lambda: shared_api.stub.Overlap(  # noqa: E731
            pb.OverlapRequest(audience_ids=[theirs.id, alpha.audience.id]),
            metadata=shared_api.md("beta"),
            timeout=10,
        )
    else:
        call = lambda: valid_calls(alpha)[rpc](shared_api, shared_api.md("beta"))  # noqa: E731
    error = status_of(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # And it is still there for its owner.
    shared_api.stub.GetAudience(
        pb.GetAudienceRequest(audience_id=alpha.audience.id), metadata=shared_api.md(), timeout=10
    )


def test_listings_show_only_the_callers_tenant(shared_api, alpha):
    audiences = shared_api.stub.ListAudiences(
        pb.ListAudiencesRequest(), metadata=shared_api.md("beta"), timeout=10
    ).audiences
    lists = shared_api.stub.ListContactLists(
        pb.ListContactListsRequest(), metadata=shared_api.md("beta"), timeout=10
    ).lists
    assert alpha.audience.id not in {a.id for a in audiences}
    assert alpha.contact_list.id not in {c.id for c in lists}


@pytest.mark.parametrize("rpc", sorted(WRITES))
def test_a_viewer_may_not_write_or_export(shared_api, alpha, rpc):
    error = status_of(lambda: valid_calls(alpha)[rpc](shared_api, shared_api.md("alpha_viewer")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("rpc", sorted(set(RPCS) - WRITES))
def test_a_viewer_may_read(shared_api, alpha, rpc):
    valid_calls(alpha)[rpc](shared_api, shared_api.md("alpha_viewer"))


INVALID: dict[str, tuple[Callable[[AudienceApi, Objects], object], str]] = {
    "CreateAudience": (
        lambda a, o: a.stub.CreateAudience(
            pb.CreateAudienceRequest(name="", rule=region("32")), metadata=a.md(), timeout=10
        ),
        "name",
    ),
    "GetAudience": (
        lambda a, o: a.stub.GetAudience(pb.GetAudienceRequest(), metadata=a.md(), timeout=10),
        "audience_id",
    ),
    "UpdateAudience": (
        lambda a, o: a.stub.UpdateAudience(
            pb.UpdateAudienceRequest(audience_id=o.audience.id, name="z", rule=age(50, 20)),
            metadata=a.md(),
            timeout=10,
        ),
        "rule.age.max",
    ),
    "ListAudiences": (
        lambda a, o: a.stub.ListAudiences(
            pb.ListAudiencesRequest(page=common_pb2.PageRequest(page_size=5000)),
            metadata=a.md(),
            timeout=10,
        ),
        "page.page_size",
    ),
    "DeleteAudience": (
        lambda a, o: a.stub.DeleteAudience(pb.DeleteAudienceRequest(), metadata=a.md(), timeout=10),
        "audience_id",
    ),
    "EstimateSize": (
        lambda a, o: a.stub.EstimateSize(
            pb.EstimateSizeRequest(rule=region("32"), platforms=[9]), metadata=a.md(), timeout=10
        ),
        "platforms[0]",
    ),
    "Overlap": (
        lambda a, o: a.stub.Overlap(
            pb.OverlapRequest(audience_ids=[o.audience.id]), metadata=a.md(), timeout=10
        ),
        "audience_ids",
    ),
    "UploadContactList": (
        lambda a, o: a.stub.UploadContactList(
            upload_messages(pb.ContactListHeader(name="n", purpose="p")), metadata=a.md()
        ),
        "header.consent_basis",
    ),
    "GetContactList": (
        lambda a, o: a.stub.GetContactList(pb.GetContactListRequest(), metadata=a.md(), timeout=10),
        "list_id",
    ),
    "ListContactLists": (
        lambda a, o: a.stub.ListContactLists(
            pb.ListContactListsRequest(page=common_pb2.PageRequest(page_token="garbage")),
            metadata=a.md(),
            timeout=10,
        ),
        "page.page_token",
    ),
    "DeleteContactList": (
        lambda a, o: a.stub.DeleteContactList(
            pb.DeleteContactListRequest(), metadata=a.md(), timeout=10
        ),
        "list_id",
    ),
    "ExportAudience": (
        lambda a, o: a.stub.ExportAudience(
            pb.ExportAudienceRequest(audience_id=o.list_audience.id, platform=common_pb2.TIKTOK),
            metadata=a.md(),
            timeout=10,
        ),
        "platform",
    ),
}


@pytest.mark.parametrize("rpc", RPCS)
def test_every_rpc_refuses_bad_input_naming_the_field(shared_api, alpha, rpc):
    call, field = INVALID[rpc]
    error = status_of(lambda: call(shared_api, alpha))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:"), error.details()


# ---------------------------------------------------------------- audiences


def test_an_audience_keeps_its_rule_and_flags(shared_api):
    rule = all_of(
        region("32", "3201"), age(18, 34), gender(pb.FEMALE), negation(locality(pb.RURAL))
    )
    created = shared_api.create(rule, name="Perempuan muda Jabar")
    found = shared_api.stub.GetAudience(
        pb.GetAudienceRequest(audience_id=created.id), metadata=shared_api.md(), timeout=10
    )
    assert found.rule == rule
    assert found.name == "Perempuan muda Jabar"
    assert found.id.startswith("aud_")
    assert not found.uses_contact_lists
    assert not found.demographic_only  # locality is not age, gender or location


def test_an_update_replaces_the_rule_and_keeps_the_creation_time(shared_api):
    created = shared_api.create(region("32"))
    updated = shared_api.stub.UpdateAudience(
        pb.UpdateAudienceRequest(audience_id=created.id, name="renamed", rule=region("33")),
        metadata=shared_api.md(),
        timeout=10,
    )
    assert updated.rule == region("33") and updated.name == "renamed"
    assert updated.create_time == created.create_time
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()


def update(api: AudienceApi, audience: pb.Audience, rule: pb.Rule) -> pb.Audience:
    return api.stub.UpdateAudience(
        pb.UpdateAudienceRequest(audience_id=audience.id, name=audience.name, rule=rule),
        metadata=api.md(),
        timeout=10,
    )


def test_an_update_that_would_take_an_excluding_audience_over_four_lists_is_refused(shared_api):
    lists = [shared_api.upload(phones=[f"0812 6666 {i:04d}"]) for i in range(5)]
    excluded = shared_api.create(region("32"), name="excluded")
    rule = all_of(*(in_list(c.id) for c in lists[:3]), excluding(excluded.id))
    excluding_it = shared_api.create(rule, name="excluding it")
    error = status_of(
        lambda: update(shared_api, excluded, all_of(in_list(lists[3].id), in_list(lists[4].id)))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert excluding_it.id in error.details() and "at most 4" in error.details()
    # Both audiences are as they were, and the excluding one still estimates.
    found = shared_api.stub.GetAudience(
        pb.GetAudienceRequest(audience_id=excluded.id), metadata=shared_api.md(), timeout=10
    )
    assert found.rule == region("32")
    shared_api.stub.EstimateSize(
        pb.EstimateSizeRequest(audience_id=excluding_it.id), metadata=shared_api.md(), timeout=10
    )


def test_the_audiences_excluding_an_updated_one_take_the_flags_of_its_new_rule(shared_api):
    members = shared_api.upload(phones=[f"0812 6767 {i:04d}" for i in range(200)])
    excluded = shared_api.create(region("32"), name="excluded")
    direct = shared_api.create(all_of(region("32"), excluding(excluded.id)), name="direct")
    through = shared_api.create(all_of(region("32"), excluding(direct.id)), name="through")
    assert (direct.uses_contact_lists, direct.demographic_only) == (False, True)

    def flags() -> dict[str, tuple[bool, bool]]:
        found = {
            a.id: (a.uses_contact_lists, a.demographic_only)
            for a in shared_api.stub.ListAudiences(
                pb.ListAudiencesRequest(page=common_pb2.PageRequest(page_size=1000)),
                metadata=shared_api.md(),
                timeout=10,
            ).audiences
        }
        for audience_id in (direct.id, through.id):
            one = shared_api.stub.GetAudience(
                pb.GetAudienceRequest(audience_id=audience_id), metadata=shared_api.md(), timeout=10
            )
            assert found[audience_id] == (one.uses_contact_lists, one.demographic_only)
        return {a: found[a] for a in (direct.id, through.id)}

    update(shared_api, excluded, all_of(region("32"), in_list(members.id)))
    assert flags() == {direct.id: (True, False), through.id: (True, False)}
    update(shared_api, excluded, region("32"))
    assert flags() == {direct.id: (False, True), through.id: (False, True)}


def exclusion_chain(api: AudienceApi, length: int) -> list[pb.Audience]:
    """Audiences each excluding the one before: the last nests `length` exclusions."""
    chain = [api.create(region("32"), name="c0")]
    for i in range(1, length + 1):
        chain.append(api.create(all_of(region("32"), excluding(chain[-1].id)), name=f"c{i}"))
    return chain


def test_an_update_that_would_nest_an_excluding_audience_too_deep_is_refused(shared_api):
    chain = exclusion_chain(shared_api, 8)  # the most exclusions one audience may nest
    elsewhere = shared_api.create(region("31"), name="elsewhere")
    error = status_of(
        lambda: update(shared_api, chain[0], all_of(region("32"), excluding(elsewhere.id)))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert chain[-1].id in error.details() and "nested deeper than 8" in error.details()
    shared_api.stub.EstimateSize(
        pb.EstimateSizeRequest(audience_id=chain[-1].id), metadata=shared_api.md(), timeout=10
    )


def test_an_audience_nesting_the_most_exclusions_can_be_updated_as_it_was_created(shared_api):
    chain = exclusion_chain(shared_api, 8)
    again = update(shared_api, chain[-1], chain[-1].rule)
    assert again.rule == chain[-1].rule


def test_audiences_are_listed_newest_first_in_pages(api):
    ids = [api.create(region("32"), name=f"a{i}").id for i in range(5)]
    seen = []
    token = ""
    while True:
        page = api.stub.ListAudiences(
            pb.ListAudiencesRequest(page=common_pb2.PageRequest(page_size=2, page_token=token)),
            metadata=api.md(),
            timeout=10,
        )
        seen += [a.id for a in page.audiences]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


def test_an_audience_excluded_by_another_cannot_be_deleted(shared_api):
    base = shared_api.create(region("32"))
    shared_api.create(all_of(region("32"), excluding(base.id)))
    error = status_of(
        lambda: shared_api.stub.DeleteAudience(
            pb.DeleteAudienceRequest(audience_id=base.id), metadata=shared_api.md(), timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_deleted_audience_is_gone(shared_api):
    created = shared_api.create(region("32"))
    shared_api.stub.DeleteAudience(
        pb.DeleteAudienceRequest(audience_id=created.id), metadata=shared_api.md(), timeout=10
    )
    error = status_of(
        lambda: shared_api.stub.GetAudience(
            pb.GetAudienceRequest(audience_id=created.id), metadata=shared_api.md(), timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_deleting_an_audience_can_delete_its_unused_lists_and_their_hashes(api):
    contact_list = api.upload(phones=["0812 3456 7890", "0812 3456 7891"])
    created = api.create(in_list(contact_list.id))
    reply = api.stub.DeleteAudience(
        pb.DeleteAudienceRequest(audience_id=created.id, delete_unused_contact_lists=True),
        metadata=api.md(),
        timeout=10,
    )
    assert list(reply.deleted_list_ids) == [contact_list.id]
    assert reply.removed_hashes == 2
    assert not list((api.data_dir / "audience-lists").iterdir())


# ---------------------------------------------------------------- estimates


def test_a_saved_audience_estimates_like_its_rule(shared_api, alpha):
    saved = shared_api.stub.EstimateSize(
        pb.EstimateSizeRequest(audience_id=alpha.audience.id), metadata=shared_api.md(), timeout=10
    )
    unsaved = shared_api.estimate(alpha.audience.rule)
    assert saved == unsaved
    assert saved.voters > 0
    assert [p.platform for p in saved.platforms] == [
        common_pb2.META,
        common_pb2.GOOGLE,
        common_pb2.X,
        common_pb2.TIKTOK,
    ]
    for p in saved.platforms:
        assert 0 < p.reachable <= saved.voters
        assert p.targetable and p.allowed and p.minimum == 100


def test_political_contact_list_audiences_are_not_allowed_on_google(shared_api, alpha):
    reply = shared_api.stub.EstimateSize(
        pb.EstimateSizeRequest(
            audience_id=alpha.list_audience.id, campaign_kind=common_pb2.POLITICAL
        ),
        metadata=shared_api.md(),
        timeout=10,
    )
    verdicts = {p.platform: (p.allowed, p.reason) for p in reply.platforms}
    assert verdicts[common_pb2.GOOGLE][0] is False
    assert "uses a contact list" in verdicts[common_pb2.GOOGLE][1]
    assert verdicts[common_pb2.TIKTOK][0] is False
    assert verdicts[common_pb2.META][0] is True
    commercial = shared_api.stub.EstimateSize(
        pb.EstimateSizeRequest(
            audience_id=alpha.list_audience.id, campaign_kind=common_pb2.COMMERCIAL
        ),
        metadata=shared_api.md(),
        timeout=10,
    )
    assert all(p.allowed for p in commercial.platforms)


def test_google_election_ads_take_only_age_gender_and_location(shared_api):
    political = common_pb2.POLITICAL
    demographic = shared_api.estimate(all_of(region("32"), age(18, 34)), kind=political)
    with_locality = shared_api.estimate(all_of(region("32"), locality(pb.URBAN)), kind=political)
    google = common_pb2.GOOGLE
    assert next(p for p in demographic.platforms if p.platform == google).allowed
    assert not next(p for p in with_locality.platforms if p.platform == google).allowed


def test_civic_campaigns_are_not_allowed_on_tiktok(shared_api):
    reply = shared_api.estimate(all_of(region("32"), age(18, 34)), kind=common_pb2.CIVIC)
    verdicts = {p.platform: (p.allowed, p.reason) for p in reply.platforms}
    assert verdicts[common_pb2.TIKTOK] == (
        False,
        "TikTok bans paid ads about elections, including turnout drives",
    )
    assert verdicts[common_pb2.GOOGLE] == (True, "")


@pytest.mark.parametrize("kind", ["POLITICAL", "CIVIC", "COMMERCIAL"])
def test_what_an_audience_may_serve_is_what_budget_lets_an_arm_run(shared_api, alpha, kind):
    """EstimateSize's verdict and budget's eligibility of an authorised campaign's arm."""
    for audience in (alpha.audience, alpha.list_audience):
        reply = shared_api.stub.EstimateSize(
            pb.EstimateSizeRequest(
                audience_id=audience.id, campaign_kind=common_pb2.CampaignKind.Value(kind)
            ),
            metadata=shared_api.md(),
            timeout=10,
        )
        facts = budget.AudienceFacts(
            audience.id, audience.uses_contact_lists, audience.demographic_only
        )
        for p in reply.platforms:
            platform = budget.Platform[common_pb2.Platform.Name(p.platform)]
            arm = budget.Arm("arm", platform, audience.id)
            why = budget.ineligibility(budget.CampaignKind[kind], arm, facts, True)
            assert p.allowed == (why is None), (platform, why, p.reason)
            assert why is None or p.reason.startswith(why.split(";")[0])


def by_regency(api, rule: pb.Rule) -> pb.EstimateSizeResponse:
    return api.stub.EstimateSize(
        pb.EstimateSizeRequest(rule=rule, by_regency=True), metadata=api.md(), timeout=10
    )


def test_an_estimate_breaks_down_by_kabupaten_and_kota(shared_api):
    rule = all_of(region("32"), age(18, 34))
    whole = by_regency(shared_api, rule)
    parts = list(whole.regencies)
    assert len(parts) > 1 and all(r.code.startswith("32") and r.name for r in parts)
    assert "Kabupaten Bogor" in {r.name for r in parts}  # Jawa Barat's largest
    assert [r.voters for r in parts] == sorted((r.voters for r in parts), reverse=True)
    # Each part is the audience narrowed to its kabupaten/kota, rounded on its own.
    assert abs(sum(r.voters for r in parts) - whole.voters) <= len(parts)
    for i, platform in enumerate(whole.platforms):
        reach = sum(r.platforms[i].reachable for r in parts)
        assert abs(reach - platform.reachable) <= len(parts)
    for part in parts[:2]:
        alone = shared_api.estimate(all_of(region(part.code), age(18, 34)))
        assert part.voters == alone.voters
        assert list(part.platforms) == list(alone.platforms)
    assert not shared_api.estimate(rule).regencies  # only when asked


def test_a_contact_lists_members_are_spread_over_its_regions_kabupaten_and_kota(shared_api):
    members = shared_api.upload(
        phones=[f"0813 7777 {i:04d}" for i in range(600)], region_codes=["32"], name="jabar"
    )
    whole = by_regency(shared_api, in_list(members.id))
    assert whole.voters == 600
    assert all(r.code.startswith("32") for r in whole.regencies)
    assert abs(sum(r.voters for r in whole.regencies) - 600) <= len(whole.regencies)
    top = whole.regencies[0]
    alone = shared_api.estimate(all_of(in_list(members.id), region(top.code)))
    assert top.voters == alone.voters


def test_an_audience_under_100_is_not_targetable(shared_api):
    small = shared_api.upload(phones=[f"0812 9999 {i:04d}" for i in range(50)])
    reply = shared_api.estimate(in_list(small.id))
    assert reply.voters == 50
    for p in reply.platforms:
        assert not p.targetable
        assert "minimum of 100" in p.reason


def test_overlap_is_symmetric_with_each_audiences_voters_on_the_diagonal(shared_api):
    a = shared_api.create(all_of(region("32"), age(18, 34)))
    b = shared_api.create(all_of(region("32"), gender(pb.FEMALE)))
    c = shared_api.create(all_of(region("32"), excluding(a.id)))
    ids = [a.id, b.id, c.id]
    reply = shared_api.stub.Overlap(
        pb.OverlapRequest(audience_ids=ids), metadata=shared_api.md(), timeout=10
    )
    n = 3
    shared = list(reply.shared_voters)
    assert list(reply.audience_ids) == ids
    for i, audience_id in enumerate(ids):
        estimate = shared_api.stub.EstimateSize(
            pb.EstimateSizeRequest(audience_id=audience_id), metadata=shared_api.md(), timeout=10
        )
        assert reply.voters[i] == shared[i * n + i] == estimate.voters
        for j in range(n):
            assert shared[i * n + j] == shared[j * n + i]
    assert shared[0 * n + 2] == 0  # c excludes a
    assert 0 < shared[0 * n + 1] < min(reply.voters[0], reply.voters[1])


def test_overlap_takes_at_most_20_audiences(shared_api):
    ids = [shared_api.create(region("32"), name=f"o{i}").id for i in range(21)]
    error = status_of(
        lambda: shared_api.stub.Overlap(
            pb.OverlapRequest(audience_ids=ids), metadata=shared_api.md(), timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("audience_ids:")


# ---------------------------------------------------------------- contact lists


def test_an_upload_counts_accepted_duplicate_and_rejected_identifiers(shared_api):
    uploaded = shared_api.upload(
        phones=["0812 3456 7890", "+62 812-3456-7890", "6281234567890", "0812", "nomor"],
        emails=["  Budi@Mail.ID ", "budi@mail.id", "budi.mail.id"],
        region_codes=["32"],
    )
    assert uploaded.id.startswith("lst_")
    assert (uploaded.accepted, uploaded.accepted_phones, uploaded.accepted_emails) == (2, 1, 1)
    assert uploaded.duplicates == 3
    assert dict(uploaded.rejected) == {
        "phone: too short": 1,
        "phone: not a number": 1,
        "email: no @": 1,
    }
    assert list(uploaded.region_codes) == ["32"]
    assert uploaded.default_country == "ID"


def test_an_upload_counts_numbers_without_a_valid_country_code_as_rejected(shared_api):
    header = pb.ContactListHeader(
        name="n", purpose="p", consent_basis=pb.EXPLICIT_CONSENT, default_country="SG"
    )
    phones = ["6512 3456", "+65 6512 3456", "+0812-3456-7890", "+65 1234 567"]
    uploaded = shared_api.stub.UploadContactList(
        upload_messages(header, phones), metadata=shared_api.md(), timeout=10
    )
    assert (uploaded.accepted, uploaded.duplicates) == (1, 1)
    assert dict(uploaded.rejected) == {
        "phone: no country code after + or 00": 1,
        "phone: too short": 1,
    }


def test_an_upload_must_start_with_its_header(shared_api):
    messages = iter([pb.UploadContactListRequest(chunk=pb.ContactChunk(phones=["0812"]))])
    error = status_of(
        lambda: shared_api.stub.UploadContactList(messages, metadata=shared_api.md(), timeout=10)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("header:")


def test_an_upload_refuses_a_second_header(shared_api):
    header = pb.ContactListHeader(name="n", purpose="p", consent_basis=pb.CONTRACT)
    messages = iter([pb.UploadContactListRequest(header=header)] * 2)
    error = status_of(
        lambda: shared_api.stub.UploadContactList(messages, metadata=shared_api.md(), timeout=10)
    )
    assert error.details().startswith("messages[1]:")


def test_an_upload_refuses_an_unknown_region_or_country(shared_api):
    header = pb.ContactListHeader(
        name="n",
        purpose="p",
        consent_basis=pb.CONTRACT,
        default_country="XX",
        region_codes=["32", "3299"],
    )
    error = status_of(
        lambda: shared_api.stub.UploadContactList(
            upload_messages(header), metadata=shared_api.md(), timeout=10
        )
    )
    assert "header.default_country" in error.details()
    assert "header.region_codes[1]" in error.details()


def test_a_list_used_by_an_audience_cannot_be_deleted(shared_api, alpha):
    error = status_of(
        lambda: shared_api.stub.DeleteContactList(
            pb.DeleteContactListRequest(list_id=alpha.contact_list.id),
            metadata=shared_api.md(),
            timeout=10,
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert alpha.list_audience.id in error.details()


# ---------------------------------------------------------------- exports


def export(api: AudienceApi, audience_id: str, platform: int, chunk_size: int = 0):
    return list(
        api.stub.ExportAudience(
            pb.ExportAudienceRequest(
                audience_id=audience_id, platform=platform, chunk_size=chunk_size
            ),
            metadata=api.md(),
            timeout=30,
        )
    )


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def others(count: int) -> list[str]:
    """Phones enough to lift a list over the platforms' minimum audience."""
    return [f"0813 2222 {i:04d}" for i in range(count)]


def test_meta_export_carries_digits_phones_and_lower_case_emails(api):
    contact_list = api.upload(phones=["0812 3456 7890", *others(200)], emails=["  Budi@Mail.ID "])
    audience = api.create(in_list(contact_list.id))
    (chunk,) = export(api, audience.id, common_pb2.META)
    assert list(chunk.schema) == ["EMAIL", "PHONE"]
    records = {tuple(r.values) for r in chunk.records}
    assert len(records) == 202
    assert {("", sha("6281234567890")), (sha("budi@mail.id"), "")} <= records
    assert chunk.last and chunk.chunk_index == 0


def test_google_export_carries_e164_phones(api):
    contact_list = api.upload(phones=["+62 812-3456-7890", *others(300)])
    audience = api.create(in_list(contact_list.id))
    (chunk,) = export(api, audience.id, common_pb2.GOOGLE)
    assert list(chunk.schema) == ["hashedEmail", "hashedPhoneNumber"]
    records = {tuple(r.values) for r in chunk.records}
    assert ("", sha("+6281234567890")) in records
    assert ("", sha("6281234567890")) not in records


def test_an_export_comes_in_chunks_of_the_requested_size(api):
    contact_list = api.upload(phones=others(250))
    audience = api.create(in_list(contact_list.id))
    chunks = export(api, audience.id, common_pb2.META, chunk_size=100)
    assert [len(c.records) for c in chunks] == [100, 100, 50]
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    assert [c.last for c in chunks] == [False, False, True]
    exact = export(api, audience.id, common_pb2.META, chunk_size=50)
    assert [len(c.records) for c in exact] == [50] * 5 and exact[-1].last


def test_an_export_leaves_out_members_of_an_excluded_list(api):
    supporters = api.upload(
        phones=["0812 0000 0001", "0812 0000 0002", *others(200)], name="supporters"
    )
    opted_out = api.upload(phones=["0812 0000 0002"], name="opted out")
    audience = api.create(all_of(in_list(supporters.id), negation(in_list(opted_out.id))))
    (chunk,) = export(api, audience.id, common_pb2.META)
    records = {tuple(r.values) for r in chunk.records}
    assert len(records) == 201
    assert ("", sha("6281200000001")) in records
    assert ("", sha("6281200000002")) not in records


def test_an_export_the_platform_would_match_to_under_100_people_is_refused(api):
    # 200 phones: Meta matches about 60% of them (120), X about 10% (20).
    contact_list = api.upload(phones=others(200))
    audience = api.create(in_list(contact_list.id))
    assert len(export(api, audience.id, common_pb2.META)[0].records) == 200
    error = status_of(lambda: export(api, audience.id, common_pb2.X))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "about 20 people on X" in error.details()
    assert "minimum audience of 100" in error.details()


def test_an_export_of_a_list_under_100_people_is_refused(api):
    contact_list = api.upload(phones=others(5))
    error = status_of(lambda: export(api, api.create(in_list(contact_list.id)).id, common_pb2.META))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "about 3 people on META" in error.details()


def test_an_export_of_a_list_narrowed_to_under_100_people_is_refused(api):
    # 1,000 people spread nationwide: about 14 of them in DI Yogyakarta, 8 matched on Meta.
    nationwide = api.upload(phones=others(1000))
    narrowed = api.create(all_of(in_list(nationwide.id), region("34")))
    (meta,) = api.stub.EstimateSize(
        pb.EstimateSizeRequest(audience_id=narrowed.id, platforms=[common_pb2.META]),
        metadata=api.md(),
        timeout=10,
    ).platforms
    error = status_of(lambda: export(api, narrowed.id, common_pb2.META))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"about {meta.reachable} people on META" in error.details()


def test_an_audience_without_a_list_has_nothing_to_export(shared_api, alpha):
    error = status_of(lambda: export(shared_api, alpha.audience.id, common_pb2.META))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


# ---------------------------------------------------------------- restarts


def test_audiences_and_lists_survive_a_restart(tmp_path):
    first = start_api(tmp_path)
    try:
        contact_list = first.upload(phones=[f"0812 4444 {i:04d}" for i in range(200)])
        audience = first.create(all_of(region("32"), in_list(contact_list.id)))
        before = first.stub.EstimateSize(
            pb.EstimateSizeRequest(audience_id=audience.id), metadata=first.md(), timeout=10
        )
    finally:
        first.close()
    again = start_api(tmp_path)
    try:
        after = again.stub.EstimateSize(
            pb.EstimateSizeRequest(audience_id=audience.id), metadata=again.md(), timeout=10
        )
        found = again.stub.GetContactList(
            pb.GetContactListRequest(list_id=contact_list.id), metadata=again.md(), timeout=10
        )
    finally:
        again.close()
    assert after == before
    assert found.accepted == 200
