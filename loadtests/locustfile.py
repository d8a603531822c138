"""The users of a jangkau load test: buyers reading campaigns, reports and
allocations; platform feeds streaming hourly report batches (fresh hours,
replays, restatements); and rebalances at successive simulated hours.

`python -m loadtests.run` runs them (see there). With Locust's own command, from
the repository root, against running services (JANGKAU_*_ADDR, JANGKAU_TOKEN):

    PYTHONPATH=. locust -f loadtests/locustfile.py --headless -u 20 -r 20 -t 60s
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from locust import between, constant, events, task
from locust.env import Environment

from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.config import Settings
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, metrics_pb2
from loadtests.delivery import hourly_report, restated
from loadtests.grpc_user import exchange
from loadtests.scenario import (
    DEV_SERVICE_TOKEN,
    PLATFORMS,
    JangkauUser,
    attach,
    prepare,
    world_of,
)

TIMESERIES_METRICS = [
    metrics_pb2.METRIC_SPEND,
    metrics_pb2.METRIC_CONVERSIONS,
    metrics_pb2.METRIC_CPA,
]


class Buyer(JangkauUser):
    """A campaign team member reading the dashboard and asking for splits. Every
    user that is not a feed or the rebalancer is a buyer."""

    wait_time = constant(0)

    @task(4)
    def get_campaign(self) -> None:
        self.budget.GetCampaign(
            budget_pb2.GetCampaignRequest(campaign_id=self.campaign().campaign_id),
            timeout=self.timeout,
        )

    @task(2)
    def list_campaigns(self) -> None:
        self.budget.ListCampaigns(
            budget_pb2.ListCampaignsRequest(page=common_pb2.PageRequest(page_size=20)),
            timeout=self.timeout,
        )

    @task(3)
    def campaign_summary(self) -> None:
        campaign = self.campaign()
        self.metrics.GetCampaignSummary(
            metrics_pb2.GetCampaignSummaryRequest(
                campaign_id=campaign.campaign_id,
                as_of=to_timestamp(campaign.latest_reported_hour() + timedelta(hours=1)),
            ),
            timeout=self.timeout,
        )

    @task(3)
    def last_day_timeseries(self) -> None:
        campaign = self.campaign()
        end = campaign.latest_reported_hour() + timedelta(hours=1)
        self.metrics.GetTimeseries(
            metrics_pb2.GetTimeseriesRequest(
                campaign_id=campaign.campaign_id,
                window=common_pb2.TimeRange(
                    start=to_timestamp(end - timedelta(hours=24)), end=to_timestamp(end)
                ),
                group_by=self.rng.choice([metrics_pb2.BY_ARM, metrics_pb2.BY_PLATFORM]),
                granularity=metrics_pb2.HOURLY,
                metrics=TIMESERIES_METRICS,
            ),
            timeout=self.timeout,
        )

    @task(2)
    def allocate(self) -> None:
        campaign = self.campaign()
        self.budget.Allocate(
            budget_pb2.AllocateRequest(
                campaign_id=campaign.campaign_id,
                as_of=to_timestamp(campaign.latest_reported_hour() + timedelta(hours=1)),
            ),
            timeout=self.timeout,
        )

    @task(2)
    def list_decisions(self) -> None:
        self.budget.ListDecisions(
            budget_pb2.ListDecisionsRequest(
                campaign_id=self.campaign().campaign_id,
                page=common_pb2.PageRequest(page_size=10),
            ),
            timeout=self.timeout,
        )

    @task(2)
    def estimate_size(self) -> None:
        self.audience.EstimateSize(
            audience_pb2.EstimateSizeRequest(
                audience_id=self.rng.choice(self.world.audience_ids),
                campaign_kind=common_pb2.POLITICAL,
                platforms=list(PLATFORMS),
            ),
            timeout=self.timeout,
        )


class PlatformFeed(JangkauUser):
    """A platform's report pull: one stream per simulated hour of a campaign, each
    batch acknowledged before the next; now and then the previous pull again (a
    replay) and an hour of up to a day before with late conversions (a
    restatement)."""

    fixed_count = 2
    wait_time = between(0.05, 0.2)
    is_feed = True

    @task
    def stream_hourly_reports(self) -> None:
        campaign = self.campaign()
        index, hour = campaign.take_report_hour()
        pulled = hour + timedelta(hours=1, minutes=self.rng.randint(0, 20))
        fresh = metrics_pb2.ReportRows(
            rows=[
                hourly_report(campaign.campaign_id, arm, hour, pulled, self.rng)
                for arm in campaign.arms
            ]
        )
        batches = [metrics_pb2.ReportBatch(batch_id=f"{hour:%Y%m%dT%H}", rows=fresh)]
        if campaign.recent_batches and self.rng.random() < 0.3:
            batches.append(
                metrics_pb2.ReportBatch(
                    batch_id="replay", rows=self.rng.choice(campaign.recent_batches)
                )
            )
        if len(campaign.recent_batches) >= 2 and self.rng.random() < 0.3:
            earlier = campaign.recent_batches[0]
            batches.append(
                metrics_pb2.ReportBatch(
                    batch_id="restatement",
                    rows=metrics_pb2.ReportRows(
                        rows=[restated(r, pulled, self.rng) for r in earlier.rows]
                    ),
                )
            )
        acks = exchange(self.metrics.IngestReports, batches, timeout=self.timeout)
        campaign.recent_batches.append(fresh)
        for batch, ack in zip(batches, acks, strict=True):
            if ack.batch_id != batch.batch_id:
                raise AssertionError(f"ack for {ack.batch_id!r} answered batch {batch.batch_id!r}")
        campaign.reported(index)


class Rebalance(JangkauUser):
    """Decides the next simulated hour of a campaign, as the hourly job does."""

    fixed_count = 1
    wait_time = between(0.2, 0.5)

    @task
    def rebalance_next_hour(self) -> None:
        campaign = self.campaign()
        self.budget.Rebalance(
            budget_pb2.RebalanceRequest(
                campaign_id=campaign.campaign_id,
                as_of=to_timestamp(campaign.take_rebalance_hour()),
            ),
            timeout=self.timeout,
        )


USER_CLASSES: list[type[JangkauUser]] = [Buyer, PlatformFeed, Rebalance]


@events.test_start.add_listener
def prepare_world(environment: Environment, **_kwargs: Any) -> None:
    """Under Locust's own command: set up against the services in JANGKAU_*_ADDR
    (`python -m loadtests.run` prepares the world itself)."""
    try:
        world_of(environment)
    except RuntimeError:
        settings = Settings.from_env()
        token = settings.token or DEV_TOKEN
        attach(
            environment,
            prepare(
                {
                    "audience": settings.audience_addr,
                    "budget": settings.budget_addr,
                    "metrics": settings.metrics_addr,
                },
                buyer_token=token,
                feed_token=DEV_SERVICE_TOKEN if token == DEV_TOKEN else token,
            ),
        )
