"""Client objects for the three services (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.channels import channel
from jangkau.runtime.config import Settings
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import (
    audience_pb2,
    audience_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
)


def _page(size: int = 0, token: str = "") -> common_pb2.PageRequest:
    return common_pb2.PageRequest(page_size=size, page_token=token)


def _paged(
    fetch: Callable[[common_pb2.PageRequest], Any], items: str, page_size: int
) -> Iterator[Any]:
    """Every item of a List RPC, fetching page after page."""
    token = ""
    while True:
        reply = fetch(_page(page_size, token))
        yield from getattr(reply, items)
        token = reply.next_page_token
        if not token:
            return


def _range(start: datetime, end: datetime) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=to_timestamp(start), end=to_timestamp(end))


class AudienceClient:
    def __init__(self, ch: grpc.Channel) -> None:
        self.stub = audience_pb2_grpc.AudienceServiceStub(ch)

    def create_audience(self, name: str, rule: audience_pb2.Rule) -> audience_pb2.Audience:
        return self.stub.CreateAudience(audience_pb2.CreateAudienceRequest(name=name, rule=rule))

    def get_audience(self, audience_id: str) -> audience_pb2.Audience:
        return self.stub.GetAudience(audience_pb2.GetAudienceRequest(audience_id=audience_id))

    def list_audiences(self, page_size: int = 0) -> Iterator[audience_pb2.Audience]:
        return _paged(
            lambda page: self.stub.ListAudiences(audience_pb2.ListAudiencesRequest(page=page)),
            "audiences",
            page_size,
        )

    def update_audience(
        self, audience_id: str, name: str, rule: audience_pb2.Rule
    ) -> audience_pb2.Audience:
        return self.stub.UpdateAudience(
            audience_pb2.UpdateAudienceRequest(audience_id=audience_id, name=name, rule=rule)
        )

    def delete_audience(
        self, audience_id: str, delete_unused_contact_lists: bool = False
    ) -> audience_pb2.DeleteAudienceResponse:
        return self.stub.DeleteAudience(
            audience_pb2.DeleteAudienceRequest(
                audience_id=audience_id, delete_unused_contact_lists=delete_unused_contact_lists
            )
        )

    def get_contact_list(self, list_id: str) -> audience_pb2.ContactList:
        return self.stub.GetContactList(audience_pb2.GetContactListRequest(list_id=list_id))

    def list_contact_lists(self, page_size: int = 0) -> Iterator[audience_pb2.ContactList]:
        return _paged(
            lambda page: self.stub.ListContactLists(
                audience_pb2.ListContactListsRequest(page=page)
            ),
            "lists",
            page_size,
        )

    def estimate_size(
        self,
        audience_id: str | None = None,
        *,
        rule: audience_pb2.Rule | None = None,
        campaign_kind: int = common_pb2.CAMPAIGN_KIND_UNSPECIFIED,
        platforms: Iterable[int] = (),
        by_regency: bool = False,
    ) -> audience_pb2.EstimateSizeResponse:
        request = audience_pb2.EstimateSizeRequest(
            campaign_kind=campaign_kind, platforms=list(platforms), by_regency=by_regency
        )
        if audience_id is not None:
            request.audience_id = audience_id
        elif rule is not None:
            request.rule.CopyFrom(rule)
        return self.stub.EstimateSize(request)

    def overlap(self, audience_ids: Iterable[str]) -> audience_pb2.OverlapResponse:
        return self.stub.Overlap(audience_pb2.OverlapRequest(audience_ids=list(audience_ids)))

    def upload_contact_list(
        self,
        header: audience_pb2.ContactListHeader,
        chunks: Iterable[audience_pb2.ContactChunk],
        timeout: float = 120.0,
    ) -> audience_pb2.ContactList:
        def parts() -> Iterator[audience_pb2.UploadContactListRequest]:
            yield audience_pb2.UploadContactListRequest(header=header)
            for chunk in chunks:
                yield audience_pb2.UploadContactListRequest(chunk=chunk)

        return self.stub.UploadContactList(parts(), timeout=timeout)

    def delete_contact_list(self, list_id: str) -> audience_pb2.DeleteContactListResponse:
        return self.stub.DeleteContactList(audience_pb2.DeleteContactListRequest(list_id=list_id))

    def export_audience(
        self, audience_id: str, platform: int, chunk_size: int = 0, timeout: float = 120.0
    ) -> Iterator[audience_pb2.ExportChunk]:
        return self.stub.ExportAudience(
            audience_pb2.ExportAudienceRequest(
                audience_id=audience_id, platform=platform, chunk_size=chunk_size
            ),
            timeout=timeout,
        )


class BudgetClient:
    def __init__(self, ch: grpc.Channel) -> None:
        self.stub = budget_pb2_grpc.BudgetServiceStub(ch)

    def create_campaign(self, campaign: budget_pb2.Campaign) -> budget_pb2.Campaign:
        return self.stub.CreateCampaign(budget_pb2.CreateCampaignRequest(campaign=campaign))

    def get_campaign(self, campaign_id: str) -> budget_pb2.Campaign:
        return self.stub.GetCampaign(budget_pb2.GetCampaignRequest(campaign_id=campaign_id))

    def list_campaigns(
        self, state: int = budget_pb2.CAMPAIGN_STATE_UNSPECIFIED, page_size: int = 0
    ) -> Iterator[budget_pb2.Campaign]:
        return _paged(
            lambda page: self.stub.ListCampaigns(
                budget_pb2.ListCampaignsRequest(page=page, state=state)
            ),
            "campaigns",
            page_size,
        )

    def update_campaign(
        self, campaign: budget_pb2.Campaign, paths: Iterable[str]
    ) -> budget_pb2.Campaign:
        return self.stub.UpdateCampaign(
            budget_pb2.UpdateCampaignRequest(campaign=campaign, update_mask=FieldMask(paths=paths))
        )

    def allocate(
        self, campaign_id: str, as_of: datetime | None = None, seed: int = 0
    ) -> budget_pb2.Allocation:
        request = budget_pb2.AllocateRequest(campaign_id=campaign_id, seed=seed)
        if as_of is not None:
            request.as_of.CopyFrom(to_timestamp(as_of))
        return self.stub.Allocate(request)

    def rebalance(
        self, campaign_id: str, as_of: datetime | None = None, seed: int = 0
    ) -> budget_pb2.Decision:
        request = budget_pb2.RebalanceRequest(campaign_id=campaign_id, seed=seed)
        if as_of is not None:
            request.as_of.CopyFrom(to_timestamp(as_of))
        return self.stub.Rebalance(request)

    def list_decisions(self, campaign_id: str, page_size: int = 0) -> Iterator[budget_pb2.Decision]:
        return _paged(
            lambda page: self.stub.ListDecisions(
                budget_pb2.ListDecisionsRequest(campaign_id=campaign_id, page=page)
            ),
            "decisions",
            page_size,
        )


class MetricsClient:
    def __init__(self, ch: grpc.Channel) -> None:
        self.stub = metrics_pb2_grpc.MetricsServiceStub(ch)

    def ingest_reports(
        self, batches: Iterable[metrics_pb2.ReportBatch], timeout: float = 60.0
    ) -> list[metrics_pb2.IngestReportsAck]:
        """Streams the batches; returns one ack per committed batch. An invalid batch
        raises (the batches acknowledged before it stay committed)."""
        return list(self.stub.IngestReports(iter(batches), timeout=timeout))

    def ingest_events(
        self, events: Iterable[metrics_pb2.ConversionEvent], as_of: datetime | None = None
    ) -> metrics_pb2.IngestEventsResponse:
        request = metrics_pb2.IngestEventsRequest(events=list(events))
        if as_of is not None:
            request.as_of.CopyFrom(to_timestamp(as_of))
        return self.stub.IngestEvents(request)

    def arm_stats(
        self,
        campaign_id: str,
        start: datetime,
        end: datetime,
        *,
        discount: float = 0.0,
        include_series: bool = False,
        kappas_micros: Iterable[float] = (),
    ) -> metrics_pb2.GetArmStatsResponse:
        return self.stub.GetArmStats(
            metrics_pb2.GetArmStatsRequest(
                campaign_id=campaign_id,
                window=_range(start, end),
                discount=discount,
                include_series=include_series,
                kappas_micros=list(kappas_micros),
            )
        )

    def timeseries(
        self,
        campaign_id: str,
        start: datetime,
        end: datetime,
        metrics: Iterable[int],
        group_by: int = metrics_pb2.BY_ARM,
        granularity: int = metrics_pb2.HOURLY,
    ) -> metrics_pb2.GetTimeseriesResponse:
        return self.stub.GetTimeseries(
            metrics_pb2.GetTimeseriesRequest(
                campaign_id=campaign_id,
                window=_range(start, end),
                group_by=group_by,
                granularity=granularity,
                metrics=list(metrics),
            )
        )

    def summary(
        self, campaign_id: str, as_of: datetime | None = None
    ) -> metrics_pb2.CampaignSummary:
        request = metrics_pb2.GetCampaignSummaryRequest(campaign_id=campaign_id)
        if as_of is not None:
            request.as_of.CopyFrom(to_timestamp(as_of))
        return self.stub.GetCampaignSummary(request)


class Jangkau:
    """Clients of all three services, sharing one token and one deadline."""

    def __init__(
        self,
        *,
        audience_addr: str,
        budget_addr: str,
        metrics_addr: str,
        token: str = DEV_TOKEN,
        timeout: float = 10.0,
    ) -> None:
        self.token = token
        self._channels = [
            channel(addr, timeout=timeout, token=token)
            for addr in (audience_addr, budget_addr, metrics_addr)
        ]
        self.audience = AudienceClient(self._channels[0])
        self.budget = BudgetClient(self._channels[1])
        self.metrics = MetricsClient(self._channels[2])

    @classmethod
    def from_env(cls, token: str | None = None, timeout: float = 10.0) -> Jangkau:
        return cls.from_settings(Settings.from_env(), token, timeout)

    @classmethod
    def from_settings(
        cls, settings: Settings, token: str | None = None, timeout: float = 10.0
    ) -> Jangkau:
        """Clients of the services `settings` names, with `token` or the settings' own."""
        return cls(
            audience_addr=settings.audience_addr,
            budget_addr=settings.budget_addr,
            metrics_addr=settings.metrics_addr,
            token=token or settings.token or DEV_TOKEN,
            timeout=timeout,
        )

    def close(self) -> None:
        for ch in self._channels:
            ch.close()

    def __enter__(self) -> Jangkau:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
