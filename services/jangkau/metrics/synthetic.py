"""Synthetic campaigns and hourly reports for the metrics benchmarks and tests:
plausible delivery (spend around a per-arm level, conversions from a saturating
curve) generated column-wise, in the order platforms deliver it (hour by hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from jangkau.metrics.domain import HOUR_US, REPORT_SCHEMA, Arm, Campaign, Platform, to_us

FLIGHT_START = datetime(2024, 9, 25, tzinfo=UTC)
ATTRIBUTION_WINDOW = "7d_click_1d_view"


def campaign(
    campaign_id: str = "cmp_bench",
    arms: int = 500,
    hours: int = 1440,
    start: datetime = FLIGHT_START,
    currency: str = "IDR",
) -> Campaign:
    """A campaign with `arms` arms spread over Meta, Google and X."""
    platforms = (Platform.META, Platform.GOOGLE, Platform.X)
    return Campaign(
        campaign_id=campaign_id,
        currency=currency,
        total_budget_micros=2_000 * 10**15,  # Rp 2,000 billion
        flight_start=start,
        flight_end=start + timedelta(hours=hours),
        arms=tuple(
            Arm(f"arm_{i:05d}", platforms[i % len(platforms)], f"aud_{i % 40:03d}")
            for i in range(arms)
        ),
        revision=1,
    )


def hourly_reports(
    c: Campaign,
    first_hour: int,
    hours: int,
    seed: int = 0,
    version_lag: timedelta = timedelta(hours=1),
) -> pa.Table:
    """Reports of every arm for hours [first_hour, first_hour + hours) of the
    flight, hour-major (REPORT_SCHEMA). Each report's version is its hour plus
    `version_lag`."""
    rng = np.random.default_rng(seed)
    n_arms = len(c.arms)
    n = n_arms * hours
    arm = np.tile(np.arange(n_arms), hours)
    hour_number = np.repeat(np.arange(first_hour, first_hour + hours), n_arms)
    hour_us = to_us(c.flight_start) + hour_number * HOUR_US
    level = np.random.default_rng(12345).lognormal(np.log(2e9), 0.8, n_arms)
    spend = (level[arm] * rng.lognormal(0.0, 0.3, n)).astype(np.int64)
    spend[rng.random(n) < 0.02] = 0  # paused hours
    impressions = (spend / 30_000.0 * rng.uniform(0.8, 1.2, n)).astype(np.int64)
    clicks = rng.binomial(impressions, 0.012)
    reach = (impressions * rng.uniform(0.5, 0.9, n)).astype(np.int64)
    kappa = level[arm] * 1.5
    conversions = rng.poisson(3.0 * (1 - np.exp(-spend / kappa))).astype(np.float64)
    value = (conversions * 50_000_000).astype(np.int64)
    return pa.table(
        [
            pa.array([c.campaign_id] * n, pa.string()),
            pa.array(np.array([a.arm_id for a in c.arms], dtype=object)[arm], pa.string()),
            pa.array(np.array([int(a.platform) for a in c.arms], dtype=np.int32)[arm]),
            pa.array(hour_us, pa.int64()).cast(REPORT_SCHEMA.field("hour").type),
            pa.array([ATTRIBUTION_WINDOW] * n, pa.string()),
            pa.array(impressions),
            pa.array(reach),
            pa.array(clicks),
            pa.array(conversions),
            pa.array(value),
            pa.array(spend),
            pa.array([c.currency] * n, pa.string()),
            pa.array(hour_us + version_lag // timedelta(microseconds=1), pa.int64()).cast(
                REPORT_SCHEMA.field("version").type
            ),
        ],
        schema=REPORT_SCHEMA,
    )
