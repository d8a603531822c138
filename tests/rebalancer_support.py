"""Shared set-up of the rebalancer tests: a small Pilkada campaign across the quiet
period on the real services and the sandbox market."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jangkau.client import Jangkau
from jangkau.rebalancer.job import RebalanceOptions, Rebalancer
from jangkau.rebalancer.wiring import build
from jangkau.runtime.channels import channel
from jangkau.runtime.config import Settings
from jangkau.runtime.launcher import Cluster
from jangkau.runtime.times import HOUR, to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, sandbox_pb2_grpc
from tests.conftest import TOKENS

WIB = timedelta(hours=7)
# Two days before the quiet period to its end: 22 Nov 00:00 WIB → 27 Nov 00:00 WIB.
FLIGHT_START = datetime(2024, 11, 22, tzinfo=UTC) - WIB
FLIGHT_END = datetime(2024, 11, 27, tzinfo=UTC) - WIB
QUIET_START = datetime(2024, 11, 24, tzinfo=UTC) - WIB
BUDGET_MICROS = 120_000_000 * 1_000_000  # Rp 120 million over five days
# The services a rebalancer runs against, with the sandbox market for platforms.
SERVICES = ("audience", "metrics", "budget", "sandbox")


def client(cluster: Cluster, token: str = TOKENS["alpha"]) -> Jangkau:
    return Jangkau.from_settings(cluster.settings(), token=token, timeout=30)


def sandbox_stub(
    cluster: Cluster, token: str = TOKENS["alpha"]
) -> sandbox_pb2_grpc.SandboxMarketStub:
    return sandbox_pb2_grpc.SandboxMarketStub(
        channel(cluster.addresses["sandbox"], timeout=30, token=token)
    )


def settings_for(cluster: Cluster) -> Settings:
    return cluster.settings(call_timeout_seconds=10.0)


def create_campaign(
    jk: Jangkau, name: str = "Pilbup", flight_end: datetime = FLIGHT_END, **overrides
) -> budget_pb2.Campaign:
    young = jk.audience.create_audience(
        f"{name} muda",
        audience_pb2.Rule(
            all=audience_pb2.RuleList(
                rules=[
                    audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
                    audience_pb2.Rule(age=audience_pb2.AgeRange(min=17, max=29)),
                ]
            )
        ),
    )
    older = jk.audience.create_audience(
        f"{name} dewasa",
        audience_pb2.Rule(
            all=audience_pb2.RuleList(
                rules=[
                    audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
                    audience_pb2.Rule(age=audience_pb2.AgeRange(min=30, max=60)),
                ]
            )
        ),
    )
    arms = [
        budget_pb2.Arm(id="meta-muda", platform=common_pb2.META, audience_id=young.id),
        budget_pb2.Arm(id="google-muda", platform=common_pb2.GOOGLE, audience_id=young.id),
        budget_pb2.Arm(id="x-dewasa", platform=common_pb2.X, audience_id=older.id),
        budget_pb2.Arm(id="meta-dewasa", platform=common_pb2.META, audience_id=older.id),
        budget_pb2.Arm(id="tiktok-muda", platform=common_pb2.TIKTOK, audience_id=young.id),
    ]
    campaign = budget_pb2.Campaign(
        name=name,
        kind=common_pb2.POLITICAL,
        currency="IDR",
        total_budget_micros=BUDGET_MICROS,
        flight=common_pb2.TimeRange(start=to_timestamp(FLIGHT_START), end=to_timestamp(flight_end)),
        political_authorization=True,
        arms=arms,
    )
    for key, value in overrides.items():
        setattr(campaign, key, value)
    return jk.budget.create_campaign(campaign)


def rebalancer(cluster: Cluster, jk: Jangkau, at: list[datetime], **rates) -> Rebalancer:
    return build(settings_for(cluster), jk, clock=lambda: at[0], seed=7, **rates)


def run_hours(
    rb: Rebalancer, at: list[datetime], hours: int, start: datetime = FLIGHT_START, **opts
):
    summaries = []
    for h in range(hours):
        at[0] = start + h * HOUR + timedelta(minutes=5)
        summaries.append(rb.run(RebalanceOptions(at=at[0], tenant="alpha", **opts)))
    return summaries


@dataclass
class Loop:
    """One campaign under an in-process rebalancer whose clock reads `at[0]`."""

    jk: Jangkau
    campaign: budget_pb2.Campaign
    rb: Rebalancer
    at: list[datetime]


@contextmanager
def campaign_loop(
    cluster: Cluster, flight_end: datetime = FLIGHT_END, **rates: float
) -> Iterator[Loop]:
    """A client, a new campaign and a rebalancer (sandbox `rates` as for `build`),
    the clock at the flight's start; the rebalancer's store is closed on the way out."""
    at = [FLIGHT_START]
    with client(cluster) as jk:
        campaign = create_campaign(jk, flight_end=flight_end)
        rb = rebalancer(cluster, jk, at, **rates)
        try:
            yield Loop(jk, campaign, rb, at)
        finally:
            rb.store.close()
