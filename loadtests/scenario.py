"""The world a load test runs in: audiences and campaigns created through the
client before the users start, a simulated clock per campaign (the hour the
feeds report next, the hour the next rebalance decides), the recent report
batches a feed may replay, and the `JangkauUser` base that gives each user its
stubs.

Simulated time runs inside the Pilkada 2024 campaign period, so a load test of a
few minutes walks through days of reports and hourly decisions.
"""

from __future__ import annotations

import logging
import random
import secrets
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from locust.env import Environment

from jangkau.client import Jangkau
from jangkau.runtime.auth import DEV_TOKEN
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
from loadtests.delivery import MICROS, ArmUnderLoad, hourly_report
from loadtests.grpc_user import GrpcUser

log = logging.getLogger("loadtests")

# The development token of the same tenant as DEV_TOKEN, with the service role (feeds).
DEV_SERVICE_TOKEN = "jangkau-dev-service-token"
FLIGHT_START = datetime(2024, 9, 25, tzinfo=UTC)
FLIGHT_END = datetime(2024, 11, 27, tzinfo=UTC)
FLIGHT_HOURS = int((FLIGHT_END - FLIGHT_START) / timedelta(hours=1))
# Hours of reports stored before the users start, so the first Allocate has evidence.
HISTORY_HOURS = 48
# Provinces (Kemendagri codes) of the audiences: Jawa Barat, Jawa Tengah, Jawa Timur.
REGIONS = {"32": "Jabar", "33": "Jateng", "35": "Jatim"}
PLATFORMS = (common_pb2.META, common_pb2.GOOGLE, common_pb2.X)
PLATFORM_LABELS = {common_pb2.META: "meta", common_pb2.GOOGLE: "google", common_pb2.X: "x"}
# Report batches kept per campaign for feeds to replay.
REPLAYABLE_BATCHES = 24


@dataclass
class CampaignUnderLoad:
    campaign_id: str
    arms: tuple[ArmUnderLoad, ...]
    # Hours since the flight's start of the next fresh report and the next rebalance,
    # and of the latest report metrics acknowledged.
    next_report_hour: int = HISTORY_HOURS
    next_rebalance_hour: int = HISTORY_HOURS
    reported_hour: int = HISTORY_HOURS - 1
    recent_batches: deque[metrics_pb2.ReportRows] = field(
        default_factory=lambda: deque(maxlen=REPLAYABLE_BATCHES)
    )

    def take_report_hour(self) -> tuple[int, datetime]:
        """The next hour a feed reports: its number (for `reported`) and its start."""
        index = self.next_report_hour
        self.next_report_hour += 1
        return index, hour_at(index)

    def reported(self, index: int) -> None:
        """Metrics acknowledged the reports of hour `index`: buyers now read up to it.
        (Feeds run side by side, so a later hour may be acknowledged first.)"""
        self.reported_hour = max(self.reported_hour, index)

    def take_rebalance_hour(self) -> datetime:
        hour = hour_at(self.next_rebalance_hour)
        self.next_rebalance_hour += 1
        return hour

    def latest_reported_hour(self) -> datetime:
        """The latest hour whose reports metrics acknowledged: what a dashboard shows
        (hours still on their way are not asked for)."""
        return hour_at(self.reported_hour)


def hour_at(index: int) -> datetime:
    """The index-th hour of the flight; past the end, simulated time starts over."""
    return FLIGHT_START + timedelta(hours=index % FLIGHT_HOURS)


@dataclass
class World:
    """What every user of one load test shares (greenlets of one process: no locks)."""

    addresses: dict[str, str]
    buyer_token: str
    feed_token: str
    audience_ids: list[str]
    campaigns: list[CampaignUnderLoad]


_WORLDS: weakref.WeakKeyDictionary[Environment, World] = weakref.WeakKeyDictionary()


def attach(environment: Environment, world: World) -> None:
    _WORLDS[environment] = world


def world_of(environment: Environment) -> World:
    try:
        return _WORLDS[environment]
    except KeyError:
        raise RuntimeError("no load-test world: call loadtests.scenario.prepare first") from None


def audience_rule(region_code: str) -> audience_pb2.Rule:
    """Voters 17–35 of one province: a demographic rule every platform may target."""
    return audience_pb2.Rule(
        all=audience_pb2.RuleList(
            rules=[
                audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=[region_code])),
                audience_pb2.Rule(age=audience_pb2.AgeRange(min=17, max=35)),
            ]
        )
    )


def campaign_message(name: str, arms: tuple[ArmUnderLoad, ...]) -> budget_pb2.Campaign:
    return budget_pb2.Campaign(
        name=name,
        kind=common_pb2.POLITICAL,
        currency="IDR",
        # Rp 5 billion over the flight.
        total_budget_micros=5_000_000_000 * MICROS,
        flight=common_pb2.TimeRange(start=to_timestamp(FLIGHT_START), end=to_timestamp(FLIGHT_END)),
        political_authorization=True,
        arms=[
            budget_pb2.Arm(id=a.arm_id, platform=a.platform, audience_id=a.audience_id)
            for a in arms
        ],
    )


def seed_history(jk: Jangkau, campaign: CampaignUnderLoad, rng: random.Random) -> None:
    """HISTORY_HOURS of reports before the load starts, one batch per day."""
    batches = []
    for day in range(0, HISTORY_HOURS, 24):
        rows = [
            hourly_report(campaign.campaign_id, arm, hour, hour + timedelta(hours=1), rng)
            for offset in range(day, min(day + 24, HISTORY_HOURS))
            for hour in [hour_at(offset)]
            for arm in campaign.arms
        ]
        batches.append(
            metrics_pb2.ReportBatch(
                batch_id=f"history-{day // 24}", rows=metrics_pb2.ReportRows(rows=rows)
            )
        )
    jk.metrics.ingest_reports(batches)


def prepare(
    addresses: dict[str, str],
    *,
    buyer_token: str = DEV_TOKEN,
    feed_token: str = DEV_SERVICE_TOKEN,
    campaigns: int = 2,
    seed: int = 2024,
) -> World:
    """Creates the audiences and campaigns the users work on, with some history."""
    rng = random.Random(seed)
    run = secrets.token_hex(3)
    targets = {
        "audience_addr": addresses["audience"],
        "budget_addr": addresses["budget"],
        "metrics_addr": addresses["metrics"],
    }
    under_load: list[CampaignUnderLoad] = []
    with (
        Jangkau(**targets, token=buyer_token, timeout=30.0) as buyer,
        Jangkau(**targets, token=feed_token, timeout=30.0) as feed,
    ):
        audience_ids = {
            code: buyer.audience.create_audience(
                f"{label} 17-35 load-{run}", audience_rule(code)
            ).id
            for code, label in REGIONS.items()
        }
        for n in range(campaigns):
            arms = tuple(
                ArmUnderLoad(
                    arm_id=f"{PLATFORM_LABELS[platform]}-{label.lower()}",
                    platform=platform,
                    audience_id=audience_ids[code],
                    hourly_spend_micros=rng.randint(200_000, 600_000) * MICROS,
                    theta=rng.uniform(2.0, 12.0),
                    kappa_micros=rng.uniform(150_000, 500_000) * MICROS,
                )
                for code, label in REGIONS.items()
                for platform in PLATFORMS
            )
            created = buyer.budget.create_campaign(
                campaign_message(f"Pilkada load {run} #{n + 1}", arms)
            )
            campaign = CampaignUnderLoad(created.id, arms)
            seed_history(feed, campaign, rng)
            under_load.append(campaign)
    log.info("prepared %d campaigns of %d arms", len(under_load), len(PLATFORMS) * len(REGIONS))
    return World(
        addresses=dict(addresses),
        buyer_token=buyer_token,
        feed_token=feed_token,
        audience_ids=list(audience_ids.values()),
        campaigns=under_load,
    )


class JangkauUser(GrpcUser):
    """A user of the three services: stubs over Locust-timed channels, the shared
    world, and its own random stream."""

    abstract = True
    # Platform feeds present the service token; everyone else the buyer's.
    is_feed: bool = False

    def on_start(self) -> None:
        self.world = world_of(self.environment)
        self.rng = random.Random()
        token = self.world.feed_token if self.is_feed else self.world.buyer_token
        addresses = self.world.addresses
        self.audience = audience_pb2_grpc.AudienceServiceStub(
            self.channel(addresses["audience"], token)
        )
        self.budget = budget_pb2_grpc.BudgetServiceStub(self.channel(addresses["budget"], token))
        self.metrics = metrics_pb2_grpc.MetricsServiceStub(
            self.channel(addresses["metrics"], token)
        )

    def campaign(self) -> CampaignUnderLoad:
        return self.rng.choice(self.world.campaigns)
