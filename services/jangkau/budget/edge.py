"""The BudgetService gRPC edge: checks requests, runs campaign create/update
(validation, audience facts, registration with metrics, store) and hands
Allocate/Rebalance to the allocator. Errors are raised as domain errors; the
runtime's interceptor maps them to status codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jangkau.budget import domain
from jangkau.budget.allocator import (
    STATE_FROM_WIRE,
    Allocator,
    AudienceGateway,
    MetricsGateway,
    allocation_to_wire,
    campaign_from_wire,
    campaign_to_wire,
    decision_to_wire,
)
from jangkau.budget.domain import AudienceFacts, Campaign, CampaignState
from jangkau.budget.store import BudgetStore
from jangkau.runtime.auth import current_caller
from jangkau.runtime.cache import MIB, ReadCache
from jangkau.runtime.channels import channel
from jangkau.runtime.config import Settings
from jangkau.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from jangkau.runtime.ids import new_id
from jangkau.runtime.paging import next_token, page_bounds
from jangkau.runtime.server import OpenService, ServiceDefinition
from jangkau.runtime.times import from_timestamp, utcnow
from jangkau.v1 import budget_pb2, budget_pb2_grpc

# Top-level Campaign fields UpdateCampaign may replace.
UPDATABLE = frozenset(
    {
        "name",
        "kind",
        "total_budget_micros",
        "flight",
        "time_zone",
        "blackouts",
        "skip_default_blackouts",
        "arms",
        "platform_minimums",
        "coverage_floors",
        "objective",
        "pacing",
        "political_authorization",
        "policy",
        "state",
    }
)
_IMMUTABLE = {"id", "currency", "create_time", "update_time", "revision"}


def _required_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    if len(value) > 64:
        raise InvalidArgument(field, "at most 64 characters")
    return value


def _as_of(request: budget_pb2.AllocateRequest | budget_pb2.RebalanceRequest) -> datetime | None:
    if not request.HasField("as_of"):
        return None
    try:
        return from_timestamp(request.as_of)
    except (ValueError, OverflowError):
        raise InvalidArgument("as_of", "not a valid time") from None


class BudgetServicer(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(
        self,
        store: BudgetStore,
        allocator: Allocator,
        metrics: MetricsGateway,
        audiences: AudienceGateway,
        cache_bytes: int = 0,
    ) -> None:
        self.store = store
        self.allocator = allocator
        self.metrics = metrics
        self.audiences = audiences
        # Campaign and decision reads, under the store's write generation of what they
        # read (a decision leaves the campaigns' answers in place).
        self.answers = ReadCache("budget", cache_bytes)

    # ------------------------------------------------------------------ campaigns

    def _checked(
        self, draft: Campaign, before: Campaign | None = None
    ) -> tuple[Campaign, dict[str, AudienceFacts]]:
        """Validates a campaign whole (against its stored self on update), then its
        audiences; applies the preset blackouts."""
        draft = replace(draft, blackouts=domain.without_presets(draft.blackouts))
        v = Violations()
        domain.validate_campaign(draft, v)
        if before is not None:
            domain.arm_identity_violations(before, draft, v)
        v.raise_if_any()
        facts = self.audiences.facts(draft)
        domain.audience_violations(draft, facts, v)
        v.raise_if_any()
        return replace(draft, blackouts=domain.with_default_blackouts(draft)), facts

    def CreateCampaign(self, request, context):  # type: ignore[no-untyped-def]
        tenant = current_caller().tenant
        if not request.HasField("campaign"):
            raise InvalidArgument("campaign", "required")
        draft, facts = self._checked(campaign_from_wire(request.campaign, tenant))
        now = utcnow()
        campaign = replace(
            draft,
            campaign_id=new_id("cmp"),
            state=CampaignState.ACTIVE,
            create_time=now,
            update_time=now,
            revision=1,
        )
        # Registered first: if metrics is unreachable nothing is stored.
        self.metrics.register(campaign)
        message = campaign_to_wire(campaign)
        self.store.insert_campaign(
            tenant,
            campaign.campaign_id,
            campaign.state.value,
            now,
            message.SerializeToString(),
            facts.values(),
        )
        return message

    def GetCampaign(self, request, context):  # type: ignore[no-untyped-def]
        campaign_id = _required_id(request.campaign_id, "campaign_id")

        def compute() -> budget_pb2.Campaign:
            stored = self.store.get_campaign(current_caller().tenant, campaign_id)
            if stored is None:
                raise NotFound(f"campaign {campaign_id} not found")
            return budget_pb2.Campaign.FromString(stored.body)

        return self.answers.answer("GetCampaign", request, self.store.campaigns_generation, compute)

    def ListCampaigns(self, request, context):  # type: ignore[no-untyped-def]
        offset, size = page_bounds(request.page.page_size, request.page.page_token, "page")
        state = None
        if request.state != budget_pb2.CAMPAIGN_STATE_UNSPECIFIED:
            known = STATE_FROM_WIRE.get(request.state)
            if known is None:
                raise InvalidArgument("state", "unknown state")
            state = known.value

        def compute() -> budget_pb2.ListCampaignsResponse:
            rows = self.store.list_campaigns(current_caller().tenant, state, offset, size)
            return budget_pb2.ListCampaignsResponse(
                campaigns=[budget_pb2.Campaign.FromString(r.body) for r in rows],
                next_page_token=next_token(offset, size, len(rows)),
            )

        return self.answers.answer(
            "ListCampaigns", request, self.store.campaigns_generation, compute
        )

    def UpdateCampaign(self, request, context):  # type: ignore[no-untyped-def]
        tenant = current_caller().tenant
        campaign_id = _required_id(request.campaign.id, "campaign.id")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument("update_mask.paths", "name at least one field to replace")
        for i, path in enumerate(paths):
            if path in _IMMUTABLE:
                raise InvalidArgument(f"update_mask.paths[{i}]", f"{path} cannot change")
            if path not in UPDATABLE:
                raise InvalidArgument(f"update_mask.paths[{i}]", f"no updatable field {path!r}")
        if "state" in paths and request.campaign.state == budget_pb2.CAMPAIGN_STATE_UNSPECIFIED:
            raise InvalidArgument("campaign.state", "required when update_mask names it")
        stored = self.store.get_campaign(tenant, campaign_id)
        if stored is None:
            raise NotFound(f"campaign {campaign_id} not found")
        current = budget_pb2.Campaign.FromString(stored.body)
        if current.state == budget_pb2.ENDED:
            raise FailedPrecondition(f"campaign {campaign_id} has ended: it is read-only")
        if request.campaign.revision and request.campaign.revision != stored.revision:
            raise FailedPrecondition(
                f"campaign {campaign_id} is at revision {stored.revision}, "
                f"not {request.campaign.revision}: read it again"
            )
        merged = budget_pb2.Campaign()
        merged.CopyFrom(current)
        FieldMask(paths=paths).MergeMessage(
            request.campaign, merged, replace_message_field=True, replace_repeated_field=True
        )
        draft, facts = self._checked(
            campaign_from_wire(merged, tenant), campaign_from_wire(current, tenant)
        )
        campaign = replace(draft, update_time=utcnow(), revision=stored.revision + 1)
        self.metrics.register(campaign)
        message = campaign_to_wire(campaign)
        if not self.store.update_campaign(
            tenant,
            campaign_id,
            stored.revision,
            campaign.state.value,
            message.SerializeToString(),
            facts.values(),
        ):
            raise FailedPrecondition(f"campaign {campaign_id} changed meanwhile: read it again")
        return message

    # ----------------------------------------------------------------- allocation

    def Allocate(self, request, context):  # type: ignore[no-untyped-def]
        campaign_id = _required_id(request.campaign_id, "campaign_id")
        outcome = self.allocator.allocate(
            current_caller().tenant, campaign_id, _as_of(request), request.seed
        )
        return allocation_to_wire(outcome)

    def Rebalance(self, request, context):  # type: ignore[no-untyped-def]
        campaign_id = _required_id(request.campaign_id, "campaign_id")
        recorded = self.allocator.rebalance(
            current_caller().tenant, campaign_id, _as_of(request), request.seed
        )
        return decision_to_wire(recorded.decision, recorded.replayed)

    def ListDecisions(self, request, context):  # type: ignore[no-untyped-def]
        tenant = current_caller().tenant
        campaign_id = _required_id(request.campaign_id, "campaign_id")
        offset, size = page_bounds(request.page.page_size, request.page.page_token, "page")
        if self.store.campaign_revision(tenant, campaign_id) is None:
            raise NotFound(f"campaign {campaign_id} not found")

        def compute() -> budget_pb2.ListDecisionsResponse:
            rows = self.store.list_decisions(tenant, campaign_id, offset, size)
            return budget_pb2.ListDecisionsResponse(
                decisions=[decision_to_wire(r, replayed=False) for r in rows],
                next_page_token=next_token(offset, size, len(rows)),
            )

        return self.answers.answer("ListDecisions", request, self.store.generation, compute)


def open_service(settings: Settings) -> OpenService:
    store = BudgetStore(settings.data_dir / "budget.duckdb", threads=settings.duckdb_threads)
    token = settings.token or None
    timeout = settings.call_timeout_seconds
    metrics_channel = channel(settings.metrics_addr, timeout=timeout, token=token)
    audience_channel = channel(settings.audience_addr, timeout=timeout, token=token)
    metrics = MetricsGateway(metrics_channel)
    audiences = AudienceGateway(audience_channel)
    servicer = BudgetServicer(
        store,
        Allocator(store, metrics, audiences=audiences),
        metrics,
        audiences,
        settings.read_cache_mb * MIB,
    )

    def add(server: grpc.Server) -> None:
        budget_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)

    def close() -> None:
        metrics.close()
        metrics_channel.close()
        audience_channel.close()
        store.close()

    return OpenService(add, close)


DEFINITION = ServiceDefinition(
    name="budget",
    full_name="jangkau.v1.BudgetService",
    read_methods=frozenset({"GetCampaign", "ListCampaigns", "Allocate", "ListDecisions"}),
    open=open_service,
)
