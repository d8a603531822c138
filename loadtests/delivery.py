"""What a platform feed reports for a campaign's arms, hour by hour: synthetic
but shaped like real delivery (spend follows the day in WIB, impressions from a
platform's CPM, clicks from its CTR, conversions from a saturating response), and
the two ways reports come back: replays (the same figures again) and
restatements (the same hour later, with late conversions added)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2

ATTRIBUTION_WINDOW = "7d_click"
MICROS = 1_000_000
# Western Indonesia Time, where the voters are.
WIB = timedelta(hours=7)


@dataclass(frozen=True)
class PlatformMarket:
    # Cost of 1,000 impressions, micros of IDR.
    cpm_micros: int
    # Clicks per impression.
    ctr: float
    # Reach as a share of impressions within one hour.
    reach_share: float


MARKETS: dict[int, PlatformMarket] = {
    common_pb2.META: PlatformMarket(cpm_micros=15_000 * MICROS, ctr=0.012, reach_share=0.82),
    common_pb2.GOOGLE: PlatformMarket(cpm_micros=22_000 * MICROS, ctr=0.018, reach_share=0.75),
    common_pb2.X: PlatformMarket(cpm_micros=9_000 * MICROS, ctr=0.007, reach_share=0.88),
    common_pb2.TIKTOK: PlatformMarket(cpm_micros=11_000 * MICROS, ctr=0.010, reach_share=0.85),
}


@dataclass(frozen=True)
class ArmUnderLoad:
    """One arm of a load-test campaign with its hidden response curve
    conversions/hour = theta * (1 - exp(-spend / kappa))."""

    arm_id: str
    platform: int
    audience_id: str
    # Typical spend per hour, micros.
    hourly_spend_micros: int
    theta: float
    kappa_micros: float


def daily_shape(hour: datetime) -> float:
    """Activity at this UTC hour relative to the day's mean: 0.3 at 08:00 WIB,
    1.6 at 20:00 WIB (people scroll in the evening)."""
    local = (hour + WIB).hour
    return 0.95 + 0.65 * math.cos(2 * math.pi * (local - 20) / 24)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal above."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def hourly_report(
    campaign_id: str, arm: ArmUnderLoad, hour: datetime, version: datetime, rng: random.Random
) -> metrics_pb2.HourlyReport:
    """The first report of one arm for one hour, pulled at `version`."""
    market = MARKETS[arm.platform]
    spend = int(arm.hourly_spend_micros * daily_shape(hour) * rng.uniform(0.8, 1.2))
    impressions = spend * 1000 // market.cpm_micros
    clicks = min(impressions, _poisson(rng, impressions * market.ctr))
    conversions = float(_poisson(rng, arm.theta * (1.0 - math.exp(-spend / arm.kappa_micros))))
    return metrics_pb2.HourlyReport(
        campaign_id=campaign_id,
        arm_id=arm.arm_id,
        platform=arm.platform,
        hour=to_timestamp(hour),
        attribution_window=ATTRIBUTION_WINDOW,
        impressions=impressions,
        reach=int(impressions * market.reach_share),
        clicks=clicks,
        conversions=conversions,
        conversion_value_micros=int(conversions * 25_000 * MICROS),
        spend_micros=spend,
        currency="IDR",
        version=to_timestamp(version),
    )


def restated(
    report: metrics_pb2.HourlyReport, version: datetime, rng: random.Random
) -> metrics_pb2.HourlyReport:
    """The same hour reported again later: late conversions attributed, a little
    spend corrected; it replaces the earlier figures because its version is newer."""
    again = metrics_pb2.HourlyReport()
    again.CopyFrom(report)
    late = float(_poisson(rng, 0.15 * report.conversions + 0.2))
    again.conversions = report.conversions + late
    again.conversion_value_micros = int(again.conversions * 25_000 * MICROS)
    again.spend_micros = max(0, report.spend_micros + rng.randint(-2, 2) * MICROS)
    again.version.CopyFrom(to_timestamp(version))
    return again
