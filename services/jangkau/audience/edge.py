"""The audience service's gRPC edge: proto messages to domain values and back,
one line of work per RPC in service.AudienceService. Errors are raised as
jangkau.runtime.errors; the server interceptor maps them to status codes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from jangkau.audience import rules
from jangkau.audience.domain import Audience, ContactList, PlatformEstimate, SizeEstimate
from jangkau.audience.rules import Rule
from jangkau.audience.service import (
    AudienceService,
    ContactChunk,
    ContactListHeader,
    ExportPart,
)
from jangkau.runtime.auth import current_caller
from jangkau.runtime.cache import MIB, ReadCache
from jangkau.runtime.config import Settings
from jangkau.runtime.errors import InvalidArgument
from jangkau.runtime.paging import next_token, page_bounds
from jangkau.runtime.server import OpenService, ServiceDefinition
from jangkau.runtime.telemetry import tracer
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import audience_pb2, audience_pb2_grpc, common_pb2

M = TypeVar("M", bound=Message)

# Viewers may call these. ExportAudience is not one: hashed identifiers are
# still personal data (UU PDP), so only buyers and services export.
READ_METHODS = frozenset(
    {
        "GetAudience",
        "ListAudiences",
        "EstimateSize",
        "Overlap",
        "GetContactList",
        "ListContactLists",
    }
)

_NODE_FIELDS = (
    "all, any, not, region, age, gender, locality, connectivity, contact_list_id, "
    "exclude_audience_id, interest"
)


class AudienceServicer(audience_pb2_grpc.AudienceServiceServicer):
    def __init__(self, service: AudienceService, cache_bytes: int = 0) -> None:
        self.service = service
        # Audience reads and sizes, under the write generation of the store (the
        # population cells only change by a write too).
        self.answers = ReadCache("audience", cache_bytes)

    def _answer(self, method: str, request: Message, compute: Callable[[], M]) -> M:
        return self.answers.answer(method, request, self.service.store.generation, compute)

    def CreateAudience(self, request, context):  # type: ignore[no-untyped-def]
        rule = _rule_field(request, "rule")
        audience = self.service.create_audience(current_caller().tenant, request.name, rule)
        return audience_to_proto(audience)

    def GetAudience(self, request, context):  # type: ignore[no-untyped-def]
        def compute() -> audience_pb2.Audience:
            return audience_to_proto(
                self.service.get_audience(current_caller().tenant, request.audience_id)
            )

        return self._answer("GetAudience", request, compute)

    def UpdateAudience(self, request, context):  # type: ignore[no-untyped-def]
        rule = _rule_field(request, "rule")
        audience = self.service.update_audience(
            current_caller().tenant, request.audience_id, request.name, rule
        )
        return audience_to_proto(audience)

    def ListAudiences(self, request, context):  # type: ignore[no-untyped-def]
        offset, size = page_bounds(request.page.page_size, request.page.page_token)

        def compute() -> audience_pb2.ListAudiencesResponse:
            found = self.service.list_audiences(current_caller().tenant, offset, size)
            return audience_pb2.ListAudiencesResponse(
                audiences=[audience_to_proto(a) for a in found],
                next_page_token=next_token(offset, size, len(found)),
            )

        return self._answer("ListAudiences", request, compute)

    def DeleteAudience(self, request, context):  # type: ignore[no-untyped-def]
        deleted, removed = self.service.delete_audience(
            current_caller().tenant, request.audience_id, request.delete_unused_contact_lists
        )
        return audience_pb2.DeleteAudienceResponse(deleted_list_ids=deleted, removed_hashes=removed)

    def EstimateSize(self, request, context):  # type: ignore[no-untyped-def]
        target = request.WhichOneof("target")
        rule = rule_from_proto(request.rule, "rule") if target == "rule" else None
        with tracer().start_as_current_span("estimate_size") as span:
            span.set_attribute("jangkau.audience_id", request.audience_id)

            def compute() -> audience_pb2.EstimateSizeResponse:
                return estimate_to_proto(
                    self.service.estimate_size(
                        current_caller().tenant,
                        request.audience_id if target == "audience_id" else None,
                        rule,
                        request.campaign_kind,
                        list(request.platforms),
                        request.by_regency,
                    )
                )

            estimate = self._answer("EstimateSize", request, compute)
            span.set_attribute("jangkau.voters", estimate.voters)
        return estimate

    def Overlap(self, request, context):  # type: ignore[no-untyped-def]
        with tracer().start_as_current_span("overlap") as span:
            span.set_attribute("jangkau.audiences", len(request.audience_ids))

            def compute() -> audience_pb2.OverlapResponse:
                matrix = self.service.overlap(current_caller().tenant, list(request.audience_ids))
                return audience_pb2.OverlapResponse(
                    audience_ids=matrix.audience_ids,
                    voters=matrix.voters,
                    shared_voters=matrix.shared_voters,
                )

            return self._answer("Overlap", request, compute)

    def UploadContactList(self, request_iterator, context):  # type: ignore[no-untyped-def]
        messages = iter(request_iterator)
        first = next(messages, None)
        header = None
        if first is not None and first.WhichOneof("part") == "header":
            h = first.header
            header = ContactListHeader(
                name=h.name,
                purpose=h.purpose,
                consent_basis=h.consent_basis,
                default_country=h.default_country,
                region_codes=tuple(h.region_codes),
            )

        def chunks() -> Iterator[ContactChunk]:
            for i, message in enumerate(messages, start=1):
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        f"messages[{i}]", "only the first message carries the header"
                    )
                yield ContactChunk(message.chunk.phones, message.chunk.emails)

        with tracer().start_as_current_span("upload_contact_list") as span:
            uploaded = self.service.upload_contact_list(current_caller().tenant, header, chunks())
            span.set_attribute("jangkau.list_id", uploaded.id)
            span.set_attribute("jangkau.accepted", uploaded.accepted)
        return contact_list_to_proto(uploaded)

    def GetContactList(self, request, context):  # type: ignore[no-untyped-def]
        found = self.service.get_contact_list(current_caller().tenant, request.list_id)
        return contact_list_to_proto(found)

    def ListContactLists(self, request, context):  # type: ignore[no-untyped-def]
        offset, size = page_bounds(request.page.page_size, request.page.page_token)
        found = self.service.list_contact_lists(current_caller().tenant, offset, size)
        return audience_pb2.ListContactListsResponse(
            lists=[contact_list_to_proto(c) for c in found],
            next_page_token=next_token(offset, size, len(found)),
        )

    def DeleteContactList(self, request, context):  # type: ignore[no-untyped-def]
        removed = self.service.delete_contact_list(current_caller().tenant, request.list_id)
        return audience_pb2.DeleteContactListResponse(removed=removed)

    def ExportAudience(self, request, context):  # type: ignore[no-untyped-def]
        parts = self.service.export_audience(
            current_caller().tenant, request.audience_id, request.platform, request.chunk_size
        )
        for part in parts:
            yield export_chunk_to_proto(part)


# ---------------------------------------------------------------- translation


def _rule_field(request, field: str) -> Rule | None:  # type: ignore[no-untyped-def]
    return rule_from_proto(getattr(request, field), field) if request.HasField(field) else None


def rule_from_proto(message: audience_pb2.Rule, path: str) -> Rule:
    """The domain rule of a proto rule; an unset node is refused at its path."""
    node = message.WhichOneof("node")
    match node:
        case "all":
            return rules.All(
                tuple(
                    rule_from_proto(child, f"{path}.all[{i}]")
                    for i, child in enumerate(message.all.rules)
                )
            )
        case "any":
            return rules.AnyOf(
                tuple(
                    rule_from_proto(child, f"{path}.any[{i}]")
                    for i, child in enumerate(message.any.rules)
                )
            )
        case "not":
            return rules.Not(rule_from_proto(getattr(message, "not"), f"{path}.not"))
        case "region":
            return rules.Region(tuple(message.region.codes))
        case "age":
            return rules.Age(message.age.min, message.age.max)
        case "gender":
            return rules.GenderIs(tuple(message.gender.genders))
        case "locality":
            return rules.LocalityIs(message.locality.locality)
        case "connectivity":
            return rules.ConnectivityIn(tuple(message.connectivity.bands))
        case "contact_list_id":
            return rules.InContactList(message.contact_list_id)
        case "exclude_audience_id":
            return rules.ExcludeAudience(message.exclude_audience_id)
        case "interest":
            return rules.Interest(message.interest.name)
    raise InvalidArgument(path, f"empty rule node: set one of {_NODE_FIELDS}")


def rule_to_proto(rule: Rule) -> audience_pb2.Rule:
    pb = audience_pb2
    match rule:
        case rules.All(children):
            return pb.Rule(all=pb.RuleList(rules=[rule_to_proto(c) for c in children]))
        case rules.AnyOf(children):
            return pb.Rule(any=pb.RuleList(rules=[rule_to_proto(c) for c in children]))
        case rules.Not(child):
            negation = pb.Rule()
            getattr(negation, "not").CopyFrom(rule_to_proto(child))
            return negation
        case rules.Region(codes):
            return pb.Rule(region=pb.RegionCondition(codes=codes))
        case rules.Age(low, high):
            return pb.Rule(age=pb.AgeRange(min=low, max=high))
        case rules.GenderIs(genders):
            return pb.Rule(
                gender=pb.GenderCondition(genders=[pb.Gender.ValueType(g) for g in genders])
            )
        case rules.LocalityIs(locality):
            return pb.Rule(locality=pb.LocalityCondition(locality=pb.Locality.ValueType(locality)))
        case rules.ConnectivityIn(bands):
            return pb.Rule(
                connectivity=pb.ConnectivityCondition(
                    bands=[pb.ConnectivityBand.ValueType(b) for b in bands]
                )
            )
        case rules.InContactList(list_id):
            return pb.Rule(contact_list_id=list_id)
        case rules.ExcludeAudience(audience_id):
            return pb.Rule(exclude_audience_id=audience_id)
        case rules.Interest(name):
            return pb.Rule(interest=pb.InterestCondition(name=name))
    raise TypeError(f"not a rule node: {rule!r}")


def audience_to_proto(audience: Audience) -> audience_pb2.Audience:
    return audience_pb2.Audience(
        id=audience.id,
        name=audience.name,
        rule=rule_to_proto(audience.rule),
        uses_contact_lists=audience.uses_contact_lists,
        demographic_only=audience.demographic_only,
        create_time=to_timestamp(audience.create_time),
        update_time=to_timestamp(audience.update_time),
    )


def estimate_to_proto(estimate: SizeEstimate) -> audience_pb2.EstimateSizeResponse:
    return audience_pb2.EstimateSizeResponse(
        voters=estimate.voters,
        platforms=_platform_estimates(estimate.platforms),
        regencies=[
            audience_pb2.RegencyEstimate(
                code=r.code,
                name=r.name,
                voters=r.voters,
                platforms=_platform_estimates(r.platforms),
            )
            for r in estimate.regencies
        ],
    )


def _platform_estimates(
    estimates: Iterable[PlatformEstimate],
) -> list[audience_pb2.PlatformEstimate]:
    return [
        audience_pb2.PlatformEstimate(
            platform=common_pb2.Platform.ValueType(p.platform),
            reachable=p.reachable,
            targetable=p.targetable,
            allowed=p.allowed,
            reason=p.reason,
            minimum=p.minimum,
        )
        for p in estimates
    ]


def contact_list_to_proto(contact_list: ContactList) -> audience_pb2.ContactList:
    return audience_pb2.ContactList(
        id=contact_list.id,
        name=contact_list.name,
        purpose=contact_list.purpose,
        consent_basis=audience_pb2.ConsentBasis.ValueType(contact_list.consent_basis),
        upload_time=to_timestamp(contact_list.upload_time),
        accepted=contact_list.accepted,
        rejected=dict(contact_list.rejected),
        duplicates=contact_list.duplicates,
        region_codes=contact_list.region_codes,
        accepted_phones=contact_list.phones,
        accepted_emails=contact_list.emails,
        default_country=contact_list.default_country,
    )


def export_chunk_to_proto(part: ExportPart) -> audience_pb2.ExportChunk:
    return audience_pb2.ExportChunk(
        platform=common_pb2.Platform.ValueType(part.platform),
        schema=part.schema,
        records=[audience_pb2.ExportRecord(values=values) for values in part.records],
        chunk_index=part.index,
        last=part.last,
    )


# ---------------------------------------------------------------- the service


def open_service(settings: Settings) -> OpenService:
    """Opens the store (building the population cells on first start)."""
    service = AudienceService.open(settings.data_dir, threads=settings.duckdb_threads)
    servicer = AudienceServicer(service, settings.read_cache_mb * MIB)

    def add(server: grpc.Server) -> None:
        audience_pb2_grpc.add_AudienceServiceServicer_to_server(servicer, server)

    return OpenService(add_servicer=add, close=service.close)


DEFINITION = ServiceDefinition(
    name="audience",
    full_name="jangkau.v1.AudienceService",
    read_methods=READ_METHODS,
    open=open_service,
)
