"""gRPC edge of the sandbox market. Campaign markets live in memory: the sandbox
is a stand-in platform for local runs, demos and tests, and rebuilds a campaign's
market deterministically when the rebalancer opens it again."""

from __future__ import annotations

import threading

from jangkau.runtime.auth import current_caller
from jangkau.runtime.config import Settings
from jangkau.runtime.errors import InvalidArgument, NotFound, Unavailable, Violations
from jangkau.runtime.server import OpenService, ServiceDefinition
from jangkau.runtime.times import from_timestamp, to_timestamp
from jangkau.sandbox.domain import (
    ATTRIBUTION_WINDOW,
    MarketArm,
    MarketHiccup,
    ReportedRow,
    SandboxCampaign,
    SandboxError,
)
from jangkau.v1 import common_pb2, metrics_pb2, sandbox_pb2, sandbox_pb2_grpc


def _row(campaign: SandboxCampaign, row: ReportedRow) -> metrics_pb2.HourlyReport:
    return metrics_pb2.HourlyReport(
        campaign_id=campaign.campaign_id,
        arm_id=row.arm_id,
        platform=row.platform,
        hour=to_timestamp(row.hour),
        attribution_window=ATTRIBUTION_WINDOW,
        impressions=row.impressions,
        reach=row.reach,
        clicks=row.clicks,
        conversions=row.conversions,
        spend_micros=row.spend_micros,
        currency=campaign.currency,
        version=to_timestamp(row.version),
    )


class SandboxServicer(sandbox_pb2_grpc.SandboxMarketServicer):
    def __init__(self) -> None:
        self._campaigns: dict[tuple[str, str], SandboxCampaign] = {}
        self._lock = threading.Lock()

    def _campaign(self, campaign_id: str) -> SandboxCampaign:
        key = (current_caller().tenant, campaign_id)
        campaign = self._campaigns.get(key)
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} is not open in the sandbox market")
        return campaign

    def OpenCampaign(self, request, context):
        v = Violations()
        v.check(bool(request.campaign_id), "campaign_id", "required")
        v.check(len(request.arms) > 0, "arms", "at least one arm")
        v.check(request.HasField("start"), "start", "required")
        v.check(request.HasField("end"), "end", "required")
        v.check(request.total_budget_micros > 0, "total_budget_micros", "must be > 0")
        v.check(0 <= request.rejection_rate <= 0.5, "rejection_rate", "must be 0..0.5")
        v.check(0 <= request.error_rate <= 0.5, "error_rate", "must be 0..0.5")
        seen: set[str] = set()
        for i, arm in enumerate(request.arms):
            v.check(bool(arm.arm_id), f"arms[{i}].arm_id", "required")
            v.check(arm.arm_id not in seen, f"arms[{i}].arm_id", "duplicated")
            v.check(
                arm.platform in common_pb2.Platform.values()
                and arm.platform != common_pb2.PLATFORM_UNSPECIFIED,
                f"arms[{i}].platform",
                "required",
            )
            seen.add(arm.arm_id)
        v.raise_if_any()
        start, end = from_timestamp(request.start), from_timestamp(request.end)
        if end <= start:
            raise InvalidArgument("end", "must be after start")
        arms = tuple(
            MarketArm(a.arm_id, a.platform, a.audience_id, a.reachable) for a in request.arms
        )
        key = (current_caller().tenant, request.campaign_id)
        with self._lock:
            existing = self._campaigns.get(key)
            if existing is not None:
                if not existing.same_arms(arms):
                    raise InvalidArgument("arms", "differ from the open campaign's arms")
                return sandbox_pb2.OpenCampaignResponse(created=False)
            try:
                campaign = SandboxCampaign(
                    request.campaign_id,
                    request.currency or "IDR",
                    arms,
                    request.seed,
                    request.scenario,
                    start,
                    end,
                    request.total_budget_micros,
                    request.rejection_rate,
                    request.error_rate,
                )
            except SandboxError as exc:
                raise InvalidArgument(exc.field, exc.reason) from None
            self._campaigns[key] = campaign
        return sandbox_pb2.OpenCampaignResponse(created=True)

    def SetBudgets(self, request, context):
        if not request.HasField("at"):
            raise InvalidArgument("at", "required")
        budgets: dict[str, int] = {}
        for i, b in enumerate(request.budgets):
            if b.arm_id in budgets:
                raise InvalidArgument(f"budgets[{i}].arm_id", "one budget per arm")
            budgets[b.arm_id] = b.daily_budget_micros
        with self._lock:
            campaign = self._campaign(request.campaign_id)
            try:
                outcomes = campaign.set_budgets(from_timestamp(request.at), budgets)
            except SandboxError as exc:
                raise InvalidArgument(exc.field, exc.reason) from None
        return sandbox_pb2.SetBudgetsResponse(
            outcomes=[
                sandbox_pb2.BudgetOutcome(
                    arm_id=arm,
                    accepted=ok,
                    applied_daily_budget_micros=micros,
                    message=message,
                    retryable=not ok,
                )
                for arm, ok, micros, message in outcomes
            ]
        )

    def FetchReports(self, request, context):
        for name in ("since", "until", "at"):
            if not request.HasField(name):
                raise InvalidArgument(name, "required")
        with self._lock:
            campaign = self._campaign(request.campaign_id)
            try:
                rows = campaign.fetch(
                    from_timestamp(request.since),
                    from_timestamp(request.until),
                    from_timestamp(request.at),
                )
            except SandboxError as exc:
                raise InvalidArgument(exc.field, exc.reason) from None
            except MarketHiccup as exc:
                raise Unavailable(str(exc)) from None
            return sandbox_pb2.FetchReportsResponse(reports=[_row(campaign, r) for r in rows])

    def ListReported(self, request, context):
        with self._lock:
            campaign = self._campaign(request.campaign_id)
            rows = sorted(campaign.reported.values(), key=lambda r: (r.hour, r.arm_id))
            return sandbox_pb2.FetchReportsResponse(reports=[_row(campaign, r) for r in rows])

    def Evaluate(self, request, context):
        with self._lock:
            campaign = self._campaign(request.campaign_id)
            return sandbox_pb2.EvaluateResponse(
                arm_ids=[a.arm_id for a in campaign.arms],
                reachable=[a.reachable for a in campaign.arms],
                seed=campaign.seed,
                scenario=campaign.scenario_name or "pilkada",
                hours=[
                    sandbox_pb2.HourEvaluation(
                        hour=to_timestamp(moment),
                        budget_micros=[int(b) for b in budgets],
                        expected_conversions=expected,
                    )
                    for moment, budgets, expected in campaign.evaluation()
                ],
            )


def open_service(settings: Settings) -> OpenService:
    servicer = SandboxServicer()
    return OpenService(
        add_servicer=lambda server: sandbox_pb2_grpc.add_SandboxMarketServicer_to_server(
            servicer, server
        )
    )


DEFINITION = ServiceDefinition(
    name="sandbox",
    full_name="jangkau.v1.SandboxMarket",
    read_methods=frozenset({"ListReported", "Evaluate"}),
    open=open_service,
)
