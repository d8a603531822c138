"""The sandbox adapter: the PlatformAdapter of the simulated market, speaking gRPC
to `jangkau serve sandbox` like any adapter speaks to its platform's API. One
adapter stands for every platform the market simulates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from jangkau.platforms.base import (
    ArmBudget,
    BudgetResult,
    CampaignTarget,
    Clock,
    PermanentPlatformError,
    PlatformReport,
    TransientPlatformError,
    require_window,
)
from jangkau.runtime.channels import channel
from jangkau.runtime.times import from_timestamp, to_timestamp
from jangkau.v1 import common_pb2, sandbox_pb2, sandbox_pb2_grpc

SIMULATED_PLATFORMS = frozenset(
    {common_pb2.META, common_pb2.GOOGLE, common_pb2.X, common_pb2.TIKTOK}
)


def _prefix(code: grpc.StatusCode) -> str:
    """How the message of a failed call to the market begins."""
    return f"sandbox: {code.name}:"


# How the message of a call the market did not answer begins.
UNREACHABLE = _prefix(grpc.StatusCode.UNAVAILABLE)


def _platform_error(exc: grpc.RpcError) -> Exception:
    code = exc.code()
    message = f"{_prefix(code)} {exc.details()}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return TransientPlatformError(common_pb2.PLATFORM_UNSPECIFIED, message)
    return PermanentPlatformError(common_pb2.PLATFORM_UNSPECIFIED, message)


class SandboxAdapter:
    """Applies budgets to, and pulls reports from, the sandbox market."""

    platforms = SIMULATED_PLATFORMS

    def __init__(
        self,
        address: str,
        clock: Clock,
        *,
        timeout: float = 10.0,
        seed: int = 0,
        scenario: str = "pilkada",
        rejection_rate: float = 0.0,
        error_rate: float = 0.0,
        token: str | None = None,
    ) -> None:
        self._stub = sandbox_pb2_grpc.SandboxMarketStub(
            channel(address, timeout=timeout, token=token)
        )
        self._clock = clock
        self._seed = seed
        self._scenario = scenario
        self._rejection_rate = rejection_rate
        self._error_rate = error_rate
        self._opened: set[str] = set()

    def is_open(self, campaign_id: str) -> bool:
        return campaign_id in self._opened

    def open_campaign(
        self,
        campaign: CampaignTarget,
        start: datetime,
        end: datetime,
        total_budget_micros: int,
        reachable: dict[str, int] | None = None,
    ) -> None:
        """Creates the campaign's market once (idempotent on the market's side)."""
        if campaign.campaign_id in self._opened:
            return
        reachable = reachable or {}
        request = sandbox_pb2.OpenCampaignRequest(
            campaign_id=campaign.campaign_id,
            currency=campaign.currency,
            seed=self._seed,
            scenario=self._scenario,
            start=to_timestamp(start),
            end=to_timestamp(end),
            total_budget_micros=total_budget_micros,
            rejection_rate=self._rejection_rate,
            error_rate=self._error_rate,
            arms=[
                sandbox_pb2.SandboxArm(
                    arm_id=t.arm_id,
                    platform=t.platform,  # type: ignore[arg-type]
                    # In the sandbox an arm's account is its audience.
                    audience_id=t.account_id,
                    reachable=reachable.get(t.arm_id, 0),
                )
                for t in campaign.arms
            ],
        )
        try:
            self._stub.OpenCampaign(request)
        except grpc.RpcError as exc:
            raise _platform_error(exc) from None
        self._opened.add(campaign.campaign_id)

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]:
        request = sandbox_pb2.SetBudgetsRequest(
            campaign_id=campaign.campaign_id,
            at=to_timestamp(self._clock()),
            budgets=[
                sandbox_pb2.ArmDailyBudget(
                    arm_id=b.arm_id, daily_budget_micros=b.daily_budget_micros
                )
                for b in budgets
            ],
        )
        try:
            reply = self._stub.SetBudgets(request)
        except grpc.RpcError as exc:
            error = _platform_error(exc)
            retryable = isinstance(error, TransientPlatformError)
            return [
                BudgetResult.refused(b.arm_id, b.daily_budget_micros, str(error), retryable)
                for b in budgets
            ]
        by_arm = {o.arm_id: o for o in reply.outcomes}
        results = []
        for b in budgets:
            o = by_arm.get(b.arm_id)
            if o is None:
                results.append(
                    BudgetResult.refused(b.arm_id, b.daily_budget_micros, "no answer", True)
                )
            else:
                results.append(
                    BudgetResult(
                        b.arm_id, o.accepted, o.applied_daily_budget_micros, o.message, o.retryable
                    )
                )
        return results

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]:
        require_window(since, until)
        request = sandbox_pb2.FetchReportsRequest(
            campaign_id=campaign.campaign_id,
            since=to_timestamp(since),
            until=to_timestamp(until),
            at=to_timestamp(max(self._clock(), until)),
        )
        try:
            reply = self._stub.FetchReports(request)
        except grpc.RpcError as exc:
            raise _platform_error(exc) from None
        return [
            PlatformReport(
                campaign_id=r.campaign_id,
                arm_id=r.arm_id,
                platform=r.platform,
                hour=from_timestamp(r.hour),
                attribution_window=r.attribution_window,
                impressions=r.impressions,
                reach=r.reach,
                clicks=r.clicks,
                conversions=r.conversions,
                conversion_value_micros=r.conversion_value_micros,
                spend_micros=r.spend_micros,
                currency=r.currency,
                version=from_timestamp(r.version),
            )
            for r in reply.reports
        ]
