"""One rebalancer run: for each active campaign, pull reports from its platforms
and ingest them, Rebalance, push the new budgets through the adapters, and record
what each platform accepted. Fail static: whatever fails for one campaign leaves
its last applied budgets in place, is logged with the campaign, and the loop goes
on to the next one; only in an hour the campaign may not spend in (paused, ended,
outside its flight, in a blackout) are zeros pushed without a decision. A failed
report pull is logged and caught up by a later run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc

from jangkau.budget.allocator import campaign_from_wire
from jangkau.budget.domain import campaign_off, with_default_blackouts
from jangkau.client import Jangkau
from jangkau.platforms.base import (
    ArmBudget,
    BudgetResult,
    CampaignTarget,
    PlatformAdapter,
    PlatformError,
    PlatformReport,
)
from jangkau.rebalancer.domain import (
    ArmBounds,
    CampaignRun,
    HourBudgets,
    Outcome,
    RunSummary,
    daily_from_hourly,
    edits_needed,
    hourly_from_daily,
    pauses_for_refused_cuts,
)
from jangkau.rebalancer.store import RebalancerStore
from jangkau.runtime.ids import period_seed
from jangkau.runtime.times import floor_hour, from_timestamp, to_timestamp
from jangkau.v1 import budget_pb2, metrics_pb2

log = logging.getLogger("jangkau.rebalancer")

BATCH_ROWS = 10_000


@dataclass(frozen=True)
class RebalanceOptions:
    # Simulated or real "now"; the period is the hour containing it.
    at: datetime
    campaign_id: str | None = None
    dry_run: bool = False
    # Stop starting campaigns after this many seconds (the rest are reported).
    max_run_seconds: float = 3000.0
    # Hours re-pulled before the last pull, to pick up restated reports, on runs
    # whose hour is a multiple of `restatement_every_hours` (other runs pull only
    # the new hours).
    restatement_hours: int = 72
    restatement_every_hours: int = 6
    # Budget changes smaller than this share of the budget in force are not pushed.
    min_edit_percent: float = 10.0
    tenant: str = ""
    # Seed of the run's decisions, for simulations that must come out the same each
    # time: each campaign's Thompson sample is then seeded from it, the campaign's name
    # and the hour, not from the campaign's id. 0: the budget service derives the seed.
    seed: int = 0


def decision_seed(campaign: budget_pb2.Campaign, options: RebalanceOptions) -> int:
    """The seed a run asks the campaign's decision to use (see RebalanceOptions.seed)."""
    if not options.seed:
        return 0
    return period_seed(f"{options.seed}|{campaign.name}", floor_hour(options.at))


def zero_reason(campaign: budget_pb2.Campaign, tenant: str, period_start: datetime) -> str | None:
    """Why the campaign may not spend in the hour at all, whatever a decision says,
    by the budget service's own rule and blackouts (the calendar presets derived
    afresh, as it plans them), or None."""
    c = campaign_from_wire(campaign, tenant)
    off = campaign_off(c, with_default_blackouts(c), period_start)
    return None if off is None else off[1]


def arm_bounds(campaign: budget_pb2.Campaign) -> dict[str, ArmBounds]:
    """Each arm's daily bounds: its own per-hour minimum and maximum held for a day,
    and its platform's minimum daily budget."""
    platform_min = {m.platform: m.min_daily_micros for m in campaign.platform_minimums}
    return {
        arm.id: ArmBounds(
            max(daily_from_hourly(arm.min_micros_per_period), platform_min.get(arm.platform, 0)),
            daily_from_hourly(arm.max_micros_per_period) if arm.max_micros_per_period else None,
        )
        for arm in campaign.arms
    }


def to_wire(report: PlatformReport) -> metrics_pb2.HourlyReport:
    return metrics_pb2.HourlyReport(
        campaign_id=report.campaign_id,
        arm_id=report.arm_id,
        platform=report.platform,
        hour=to_timestamp(report.hour),
        attribution_window=report.attribution_window,
        impressions=report.impressions,
        reach=report.reach,
        clicks=report.clicks,
        conversions=report.conversions,
        conversion_value_micros=report.conversion_value_micros,
        spend_micros=report.spend_micros,
        currency=report.currency,
        version=to_timestamp(report.version),
    )


def batches(reports: Sequence[PlatformReport], label: str) -> Iterable[metrics_pb2.ReportBatch]:
    for i in range(0, len(reports), BATCH_ROWS):
        rows = [to_wire(r) for r in reports[i : i + BATCH_ROWS]]
        yield metrics_pb2.ReportBatch(
            batch_id=f"{label}#{i // BATCH_ROWS}", rows=metrics_pb2.ReportRows(rows=rows)
        )


class Rebalancer:
    """Runs the loop over campaigns with the given client, adapters and store."""

    def __init__(
        self,
        client: Jangkau,
        adapters: Sequence[PlatformAdapter],
        store: RebalancerStore,
        targets: Callable[[budget_pb2.Campaign], CampaignTarget],
    ) -> None:
        self.client = client
        self.adapters = list(adapters)
        self.store = store
        self.targets = targets

    def run(
        self, options: RebalanceOptions, progress: Callable[[list], Iterable] = iter
    ) -> RunSummary:
        started = time.monotonic()
        started_at = datetime.now(options.at.tzinfo)
        summary = RunSummary()
        campaigns = self._campaigns(options, summary)
        for campaign in progress(campaigns):
            if time.monotonic() - started > options.max_run_seconds:
                summary.not_reached.append(campaign.id)
                continue
            outcome = self.run_campaign(campaign, options)
            summary.campaigns.append(outcome)
            if not options.dry_run:
                self.store.log_run(
                    started_at,
                    options.at,
                    options.tenant,
                    campaign.id,
                    outcome.outcome.value,
                    outcome.message,
                    outcome.edits,
                    outcome.reports_ingested,
                )
        return summary

    def _campaigns(self, options: RebalanceOptions, summary: RunSummary) -> list:
        """The active campaigns in their flight, and before them every other campaign
        that still has a budget in force on some arm (paused, ended, or past its
        flight): its rebalance decides zeros, and pushing them stops its spend."""
        if options.campaign_id:
            return self._get_campaigns([options.campaign_id], summary)
        try:
            active = [
                c
                for c in self.client.budget.list_campaigns(state=budget_pb2.ACTIVE)
                if from_timestamp(c.flight.start) <= options.at < from_timestamp(c.flight.end)
            ]
        except grpc.RpcError as exc:
            self._not_listed("*", "listing campaigns", exc, summary)
            return []
        listed = {c.id for c in active}
        stopping = [c for c in self.store.campaigns_in_force(options.tenant) if c not in listed]
        return self._get_campaigns(stopping, summary) + active

    def _get_campaigns(self, campaign_ids: list[str], summary: RunSummary) -> list:
        campaigns = []
        for campaign_id in campaign_ids:
            try:
                campaigns.append(self.client.budget.get_campaign(campaign_id))
            except grpc.RpcError as exc:
                self._not_listed(campaign_id, "reading the campaign", exc, summary)
        return campaigns

    @staticmethod
    def _not_listed(campaign_id: str, doing: str, exc: grpc.RpcError, summary: RunSummary) -> None:
        run = CampaignRun(campaign_id, Outcome.FAILED)
        run.message = f"{doing}: {exc.code().name}: {exc.details()}"
        log.error("rebalance failed", extra={"fields": {"error": run.message}})
        summary.campaigns.append(run)

    def run_campaign(self, campaign: budget_pb2.Campaign, options: RebalanceOptions) -> CampaignRun:
        run = CampaignRun(campaign.id)
        fields = {"campaign_id": campaign.id, "at": options.at.isoformat()}
        try:
            target = self.targets(campaign)
            self._pull_reports(campaign, target, options, run)
            try:
                hour = self._decide(campaign, options)
            except grpc.RpcError as exc:
                # An hour the campaign may not spend in needs no decision: zeros are
                # pushed even while metrics or budget cannot answer.
                off = zero_reason(campaign, options.tenant, floor_hour(options.at))
                if off is None:
                    raise
                run.note(f"{off}: zeros without a decision ({exc.code().name}: {exc.details()})")
                zeros = {arm.id: 0 for arm in campaign.arms}
                hour = HourBudgets("", floor_hour(options.at), zeros, 0)
            run.arms = {arm: hourly_from_daily(daily) for arm, daily in hour.daily.items()}
            run.allocated_micros = sum(run.arms.values())
            if options.dry_run:
                run.outcome = Outcome.DRY_RUN
            else:
                self._apply(campaign, target, hour, options, run)
        except grpc.RpcError as exc:
            run.outcome = Outcome.FAILED
            run.note(f"{exc.code().name}: {exc.details()}")
        except (PlatformError, ValueError) as exc:
            run.outcome = Outcome.FAILED
            run.note(str(exc))
        if run.outcome is Outcome.FAILED:
            log.error(
                "campaign failed; last budgets kept",
                extra={"fields": {**fields, "error": run.message}},
            )
        else:
            log.info(
                "campaign rebalanced",
                extra={"fields": {**fields, "outcome": run.outcome.value, "edits": run.edits}},
            )
        return run

    def _decide(self, campaign: budget_pb2.Campaign, options: RebalanceOptions) -> HourBudgets:
        """The hour's budgets as the budget service decides and records them (on a
        dry run, as it would decide them, recording nothing)."""
        seed = decision_seed(campaign, options)
        if options.dry_run:
            decision_id = ""
            allocation = self.client.budget.allocate(campaign.id, as_of=options.at, seed=seed)
        else:
            decision = self.client.budget.rebalance(campaign.id, as_of=options.at, seed=seed)
            decision_id, allocation = decision.id, decision.allocation
        return HourBudgets(
            decision_id,
            from_timestamp(allocation.period.start),
            {a.arm_id: daily_from_hourly(a.budget_micros) for a in allocation.arms},
            allocation.remaining_budget_micros,
        )

    def _pull_reports(
        self,
        campaign: budget_pb2.Campaign,
        target: CampaignTarget,
        options: RebalanceOptions,
        run: CampaignRun,
    ) -> None:
        """Pulls each adapter's reports since its last pull (minus the restatement
        window) up to the current hour, and ingests them. The pull mark moves only
        after metrics acknowledged every batch, so a failed pull is caught up later;
        it is logged and noted with the run, and the rebalance goes on without it."""
        until = min(floor_hour(options.at), from_timestamp(campaign.flight.end))
        flight_start = floor_hour(from_timestamp(campaign.flight.start))
        for adapter in self.adapters:
            if not target.arms_on(adapter.platforms):
                continue
            key = ",".join(str(p) for p in sorted(adapter.platforms))
            last = self.store.pulled_until(options.tenant, campaign.id, key)
            since = flight_start if last is None else max(flight_start, last)
            if last is not None and until.hour % options.restatement_every_hours == 0:
                since = max(flight_start, last - timedelta(hours=options.restatement_hours))
            if until <= since:
                continue
            try:
                reports = adapter.fetch_reports(target, since, until)
                if options.dry_run:
                    continue
                if reports:
                    label = f"{campaign.id}@{until:%Y%m%dT%H}"
                    self.client.metrics.ingest_reports(batches(reports, label))
            except grpc.RpcError as exc:
                self._not_pulled(campaign.id, key, f"{exc.code().name}: {exc.details()}", run)
                continue
            except PlatformError as exc:
                self._not_pulled(campaign.id, key, str(exc), run)
                continue
            self.store.record_pull(options.tenant, campaign.id, key, until)
            run.reports_ingested += len(reports)

    @staticmethod
    def _not_pulled(campaign_id: str, platforms: str, error: str, run: CampaignRun) -> None:
        log.warning(
            "reports not pulled",
            extra={"fields": {"campaign_id": campaign_id, "platforms": platforms, "error": error}},
        )
        run.note(f"reports of platforms {platforms} not pulled: {error}")

    def _push(
        self, target: CampaignTarget, daily_budgets: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Pushes daily budgets through each arm's adapter: the amounts accepted and
        the platform's message for each edit refused, by arm. An adapter that raises
        refuses its own arms' edits; what the others accepted stands."""
        accepted: dict[str, int] = {}
        refused: dict[str, str] = {}
        for adapter in self.adapters:
            arms = {t.arm_id for t in target.arms_on(adapter.platforms)}
            budgets = [ArmBudget(a, micros) for a, micros in daily_budgets.items() if a in arms]
            if not budgets:
                continue
            try:
                results = adapter.apply_budgets(target, budgets)
            except PlatformError as exc:
                log.warning(
                    "budgets not pushed",
                    extra={"fields": {"campaign_id": target.campaign_id, "error": str(exc)}},
                )
                results = [
                    BudgetResult.refused(b.arm_id, b.daily_budget_micros, str(exc), exc.retryable)
                    for b in budgets
                ]
            for result in results:
                if result.accepted:
                    accepted[result.arm_id] = daily_budgets[result.arm_id]
                else:
                    refused[result.arm_id] = result.platform_message
        return accepted, refused

    def _apply(
        self,
        campaign: budget_pb2.Campaign,
        target: CampaignTarget,
        hour: HourBudgets,
        options: RebalanceOptions,
        run: CampaignRun,
    ) -> None:
        """Pushes the hour's budgets and records what the platforms accepted."""
        period_start = hour.period_start
        applied, latest = self.store.applied_hours(options.tenant, campaign.id, period_start)
        if applied:
            run.outcome = Outcome.REPLAYED
            return
        # A run for an hour before one already applied (`--at` catching up a missed
        # hour) must not put that hour's budgets over the later ones in force.
        if latest is not None and latest > period_start:
            run.outcome = Outcome.SKIPPED
            run.note(f"not pushed: the later hour {latest.isoformat()} is already applied")
            return
        wanted = hour.daily
        last = self.store.last_applied(options.tenant, campaign.id)
        changes = edits_needed(wanted, last, options.min_edit_percent, arm_bounds(campaign))
        accepted, refused = self._push(target, changes)
        in_force = {arm: accepted.get(arm, last.get(arm, 0)) for arm in wanted}
        pauses = pauses_for_refused_cuts(wanted, in_force, refused, hour.left_micros)
        if pauses:
            paused, still_refused = self._push(target, dict.fromkeys(pauses, 0))
            accepted.update(paused)
            for arm in paused:
                refused[arm] += "; paused instead, or the campaign would overspend"
            for arm, message in still_refused.items():
                refused[arm] += f"; pausing it was refused too: {message}"
        self.store.record_applied(
            options.tenant,
            campaign.id,
            hour.decision_id,
            period_start,
            accepted,
            len(refused),
            options.at,
        )
        run.edits = len(accepted)
        run.refused = len(refused)
        if refused:
            run.note(
                "refused: "
                + "; ".join(f"{arm}: {message}" for arm, message in list(refused.items())[:5])
            )
