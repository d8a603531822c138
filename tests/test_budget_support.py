"""Helpers shared by the budget tests (no tests here): campaigns in domain and wire
form, and a small stand-in policy with the real policy's contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from jangkau.budget.domain import (
    Arm,
    AudienceFacts,
    Campaign,
    CampaignKind,
    Platform,
    PlatformReach,
)
from jangkau.budget.policy import ArmDecision, ArmSpec, Evidence, PolicyResult, PolicySettings
from jangkau.runtime.launcher import free_port
from jangkau.runtime.server import RunningServer, load_definition
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
from tests.conftest import TOKENS, bearer, settings_for, write_tokens

FLIGHT_START = datetime(2024, 10, 1, tzinfo=UTC)
FLIGHT_END = datetime(2024, 10, 31, tzinfo=UTC)
RUPIAH = 1_000_000


def arm(arm_id: str, platform: Platform = Platform.META, audience: str = "aud_a", **kw) -> Arm:
    return Arm(arm_id=arm_id, platform=platform, audience_id=audience, **kw)


def campaign(**kw) -> Campaign:
    fields = dict(
        campaign_id="cmp_0000000000000001",
        tenant="alpha",
        name="Pilgub Jabar",
        kind=CampaignKind.COMMERCIAL,
        currency="IDR",
        total_budget_micros=720_000_000 * RUPIAH,
        flight_start=FLIGHT_START,
        flight_end=FLIGHT_END,
        arms=(arm("meta-a"), arm("google-a", Platform.GOOGLE)),
    )
    fields.update(kw)
    return Campaign(**fields)  # type: ignore[arg-type]


def facts(
    audience_id: str = "aud_a",
    *,
    contact_lists: bool = False,
    demographic_only: bool = True,
    reachable: int = 200_000,
) -> AudienceFacts:
    return AudienceFacts(
        audience_id,
        contact_lists,
        demographic_only,
        reachable,
        tuple(PlatformReach(p, reachable) for p in Platform),
    )


def even_policy(
    arms: list[ArmSpec],
    evidence: Evidence,
    period_budget_micros: int,
    settings: PolicySettings,
    seed: int,
    coverage_floors: tuple = (),
    currency: str = "IDR",
) -> PolicyResult:
    """Splits the budget evenly over eligible arms within their bounds (a stand-in
    with the policy's contract, for tests of the service around it)."""
    eligible = [a for a in arms if a.eligible]
    share = period_budget_micros // max(len(eligible), 1)
    decisions = []
    for a in arms:
        if not a.eligible:
            decisions.append(ArmDecision(0, 0, 0, 0, 0, 0, "ineligible", a.reason))
            continue
        x = share if a.max_micros is None else min(share, a.max_micros)
        bound = "optimal"
        if x < a.min_micros:
            x, bound = 0, "off"
        decisions.append(ArmDecision(x, 1.0, 0.5, 1.5, 0.1, 0.2, bound, ""))
    return PolicyResult(decisions, sum(d.budget_micros for d in decisions))


def wire_campaign(audience_ids: list[str], **kw) -> budget_pb2.Campaign:
    """A valid COMMERCIAL campaign with one META and one GOOGLE arm per audience."""
    msg = budget_pb2.Campaign(
        name="Turnout Jabar",
        kind=common_pb2.COMMERCIAL,
        currency="IDR",
        total_budget_micros=720_000_000 * RUPIAH,
        flight=common_pb2.TimeRange(start=to_timestamp(FLIGHT_START), end=to_timestamp(FLIGHT_END)),
        arms=[
            budget_pb2.Arm(id=f"{p.lower()}-{i}", platform=getattr(common_pb2, p), audience_id=a)
            for i, a in enumerate(audience_ids)
            for p in ("META", "GOOGLE")
        ],
    )
    for name, value in kw.items():
        field = getattr(msg, name)
        if hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        elif hasattr(field, "extend"):
            del field[:]
            field.extend(value)
        else:
            setattr(msg, name, value)
    return msg


def in_flight(hours: int = 24) -> datetime:
    """A moment `hours` into the test flight."""
    return FLIGHT_START + timedelta(hours=hours)


# --------------------------------------------------------------------- servers


@dataclass
class Stack:
    """Audience, metrics and budget as real gRPC servers on free loopback ports."""

    audience: RunningServer
    metrics: RunningServer
    budget: RunningServer
    channels: list[grpc.Channel] = field(default_factory=list)

    def _channel(self, server: RunningServer) -> grpc.Channel:
        ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.channels.append(ch)
        return ch

    def budget_stub(self) -> budget_pb2_grpc.BudgetServiceStub:
        return budget_pb2_grpc.BudgetServiceStub(self._channel(self.budget))

    def audience_stub(self) -> audience_pb2_grpc.AudienceServiceStub:
        return audience_pb2_grpc.AudienceServiceStub(self._channel(self.audience))

    def metrics_stub(self) -> metrics_pb2_grpc.MetricsServiceStub:
        return metrics_pb2_grpc.MetricsServiceStub(self._channel(self.metrics))


def start_stack(base: Path, tokens_file: Path) -> Stack:
    started = []

    def start(name: str, **overrides: object) -> RunningServer:
        settings = replace(settings_for(base / name, tokens_file), **overrides)
        server = RunningServer(load_definition(name), settings)
        server.start()
        started.append(server)
        return server

    try:
        audience = start("audience")
        metrics = start("metrics")
        budget = start(
            "budget",
            audience_addr=f"127.0.0.1:{audience.port}",
            metrics_addr=f"127.0.0.1:{metrics.port}",
            call_timeout_seconds=2.0,
        )
    except BaseException:
        for server in started:
            server.stop(grace=0.1)
        raise
    return Stack(audience, metrics, budget)


def stop_stack(stack: Stack) -> None:
    for ch in stack.channels:
        ch.close()
    for server in (stack.budget, stack.metrics, stack.audience):
        server.stop(grace=0.2)


@pytest.fixture
def stack(tmp_path: Path, tokens_file: Path) -> Iterator[Stack]:
    """A fresh stack for one test."""
    running = start_stack(tmp_path, tokens_file)
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory) -> Iterator[Stack]:
    """One stack for a module of tests that only read or add their own objects."""
    base = tmp_path_factory.mktemp("stack")
    running = start_stack(base, write_tokens(base / "tokens.json"))
    yield running
    stop_stack(running)


def restart_budget(stack: Stack) -> None:
    """Stops the budget server and starts a new one on the same data folder."""
    settings = stack.budget.settings
    stack.budget.stop(grace=0.5)
    stack.budget = RunningServer(
        stack.budget.definition, replace(settings, listen_addr=f"127.0.0.1:{free_port()}")
    )
    stack.budget.start()


def md(token: str = TOKENS["alpha"]) -> tuple[tuple[str, str]]:
    return bearer(token)


def demographic_audience(
    stack: Stack, token: str = TOKENS["alpha"], name: str = "Jabar muda"
) -> str:
    rule = audience_pb2.Rule(
        all=audience_pb2.RuleList(
            rules=[
                audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
                audience_pb2.Rule(age=audience_pb2.AgeRange(min=17, max=30)),
            ]
        )
    )
    created = stack.audience_stub().CreateAudience(
        audience_pb2.CreateAudienceRequest(name=name, rule=rule), metadata=md(token), timeout=10
    )
    return created.id


def contact_list_audience(stack: Stack, token: str = TOKENS["alpha"]) -> str:
    header = audience_pb2.ContactListHeader(
        name="relawan",
        purpose="volunteer coordination",
        consent_basis=audience_pb2.EXPLICIT_CONSENT,
    )
    phones = [f"0812{n:08d}" for n in range(300)]
    uploaded = stack.audience_stub().UploadContactList(
        iter(
            [
                audience_pb2.UploadContactListRequest(header=header),
                audience_pb2.UploadContactListRequest(
                    chunk=audience_pb2.ContactChunk(phones=phones)
                ),
            ]
        ),
        metadata=md(token),
        timeout=10,
    )
    created = stack.audience_stub().CreateAudience(
        audience_pb2.CreateAudienceRequest(
            name="relawan", rule=audience_pb2.Rule(contact_list_id=uploaded.id)
        ),
        metadata=md(token),
        timeout=10,
    )
    return created.id


def create(stack: Stack, msg: budget_pb2.Campaign, token: str = TOKENS["alpha"]):
    return stack.budget_stub().CreateCampaign(
        budget_pb2.CreateCampaignRequest(campaign=msg), metadata=md(token), timeout=10
    )


def report(
    campaign: budget_pb2.Campaign, arm_id: str, hour: datetime, spend: int, conversions: float
) -> metrics_pb2.HourlyReport:
    arm_msg = next(a for a in campaign.arms if a.id == arm_id)
    return metrics_pb2.HourlyReport(
        campaign_id=campaign.id,
        arm_id=arm_id,
        platform=arm_msg.platform,
        hour=to_timestamp(hour),
        attribution_window="7d_click",
        impressions=max(int(spend // 20_000_000), int(conversions)),
        reach=0,
        clicks=int(conversions),
        conversions=conversions,
        spend_micros=spend,
        currency=campaign.currency,
        version=to_timestamp(hour + timedelta(hours=1)),
    )


def ingest(
    stack: Stack, rows: list[metrics_pb2.HourlyReport], token: str = TOKENS["alpha"]
) -> None:
    batches = [
        metrics_pb2.ReportBatch(
            batch_id=f"b{i}", rows=metrics_pb2.ReportRows(rows=rows[i : i + 5000])
        )
        for i in range(0, len(rows), 5000)
    ]
    acks = list(stack.metrics_stub().IngestReports(iter(batches), metadata=md(token), timeout=60))
    assert len(acks) == len(batches)
