"""`jangkau demo` (`make demo`): a Pilkada 2024 governor race in Jawa Barat, run hour
by hour through the whole flight in simulated time against the real services and
the sandbox market, then compared with a uniform split and with an oracle that
knows the market's hidden curves. Every number printed comes from the run."""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from jangkau.budget.domain import PILKADA_2024_QUIET_PERIOD
from jangkau.cli.output import progress, table
from jangkau.client import Jangkau
from jangkau.rebalancer.job import RebalanceOptions
from jangkau.rebalancer.wiring import build
from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.config import Settings
from jangkau.runtime.launcher import Cluster
from jangkau.runtime.logs import JsonFormatter
from jangkau.runtime.money import money
from jangkau.runtime.times import HOUR, to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, metrics_pb2

WIB = timedelta(hours=7)
FLIGHT_START = datetime(2024, 9, 25, tzinfo=UTC) - WIB  # 25 Sep 2024 00:00 WIB
FLIGHT_END = datetime(2024, 11, 27, tzinfo=UTC) - WIB  # end of 26 Nov 2024 WIB
# The preset blackout's start: 24 Nov 00:00 WIT, the earliest local midnight.
QUIET_START = PILKADA_2024_QUIET_PERIOD.start
TOTAL_BUDGET_MICROS = 5_000_000_000 * 1_000_000  # Rp 5 billion
SEED = 2024

# Jawa Barat regencies/cities by Kemendagri code (only those the seeded population
# holds: its kab/kota split per province is modelled, see the data README).
BANDUNG_RAYA = ["3204", "3217", "3273"]
BODEBEK = ["3201", "3216", "3271", "3275"]
PRIANGAN_TIMUR = ["3205", "3206", "3207"]
PANTURA = ["3209", "3212", "3213", "3215", "3274"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a simulated Pilkada 2024 campaign end to end and show the result"
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="charts folder")
    parser.add_argument("--days", type=float, default=None, help="simulate only N days")
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help=f"seed of the supporter list, the market and the decisions: the same seed "
        f"gives the same campaign and result ({SEED})",
    )
    parser.set_defaults(run=run)


def _rule(*conditions: audience_pb2.Rule) -> audience_pb2.Rule:
    if len(conditions) == 1:
        return conditions[0]
    return audience_pb2.Rule(all=audience_pb2.RuleList(rules=list(conditions)))


def _region(codes: list[str]) -> audience_pb2.Rule:
    return audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=codes))


def _age(low: int, high: int) -> audience_pb2.Rule:
    return audience_pb2.Rule(age=audience_pb2.AgeRange(min=low, max=high))


def supporter_contacts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """A volunteer list as a campaign would hold it: phones in mixed writings, e-mails."""
    rng = np.random.default_rng(seed)
    phones, emails = [], []
    for i in range(n):
        number = f"8{rng.integers(11, 99)}{rng.integers(10_000_000, 99_999_999)}"
        style = i % 3
        phones.append(
            f"0{number}"
            if style == 0
            else f"+62 {number[:3]}-{number[3:]}"
            if style == 1
            else f"62{number}"
        )
        emails.append(f" Relawan{i}@Example.ID ")
    return phones, emails


@dataclass
class DemoSetup:
    campaign: budget_pb2.Campaign
    audience_names: dict[str, str]
    rural_arms: list[str]


def create_campaign(jk: Jangkau, seed: int) -> DemoSetup:
    audiences = {
        "Bandung Raya 17–29": _rule(_region(BANDUNG_RAYA), _age(17, 29)),
        "Bodebek 17–29": _rule(_region(BODEBEK), _age(17, 29)),
        "Bodebek 30–54": _rule(_region(BODEBEK), _age(30, 54)),
        "Priangan Timur 30–54": _rule(_region(PRIANGAN_TIMUR), _age(30, 54)),
        "Pantura pedesaan 17–54": _rule(
            _region(PANTURA),
            _age(17, 54),
            audience_pb2.Rule(locality=audience_pb2.LocalityCondition(locality=audience_pb2.RURAL)),
        ),
        "Jabar perempuan 25–44": _rule(
            _region(["32"]),
            _age(25, 44),
            audience_pb2.Rule(gender=audience_pb2.GenderCondition(genders=[audience_pb2.FEMALE])),
        ),
    }
    ids: dict[str, str] = {}
    for name, rule in audiences.items():
        ids[name] = jk.audience.create_audience(name, rule).id
    phones, emails = supporter_contacts(5_000, seed)
    contact_list = jk.audience.upload_contact_list(
        audience_pb2.ContactListHeader(
            name="Relawan terdaftar",
            purpose="Kabar kampanye untuk relawan yang mendaftar",
            consent_basis=audience_pb2.EXPLICIT_CONSENT,
            region_codes=["32"],
        ),
        [audience_pb2.ContactChunk(phones=phones, emails=emails)],
    )
    ids["Relawan (daftar kontak)"] = jk.audience.create_audience(
        "Relawan (daftar kontak)", audience_pb2.Rule(contact_list_id=contact_list.id)
    ).id
    names = {aud: name for name, aud in ids.items()}

    arms = []
    slug = {
        "Bandung Raya 17–29": "bdg-muda",
        "Bodebek 17–29": "bdbk-muda",
        "Bodebek 30–54": "bdbk-dewasa",
        "Priangan Timur 30–54": "priangan",
        "Pantura pedesaan 17–54": "pantura",
        "Jabar perempuan 25–44": "perempuan",
    }
    for name, short in slug.items():
        for platform, label in (
            (common_pb2.META, "meta"),
            (common_pb2.GOOGLE, "google"),
            (common_pb2.X, "x"),
        ):
            arms.append(
                budget_pb2.Arm(id=f"{label}-{short}", platform=platform, audience_id=ids[name])
            )
    arms.append(
        budget_pb2.Arm(
            id="tiktok-bdg-muda", platform=common_pb2.TIKTOK, audience_id=ids["Bandung Raya 17–29"]
        )
    )
    relawan = ids["Relawan (daftar kontak)"]
    arms.append(budget_pb2.Arm(id="meta-relawan", platform=common_pb2.META, audience_id=relawan))
    arms.append(
        budget_pb2.Arm(id="google-relawan", platform=common_pb2.GOOGLE, audience_id=relawan)
    )
    rural = [a.id for a in arms if a.id.endswith("-pantura")]
    campaign = budget_pb2.Campaign(
        name="Pilgub Jawa Barat 2024",
        kind=common_pb2.POLITICAL,
        currency="IDR",
        total_budget_micros=TOTAL_BUDGET_MICROS,
        flight=common_pb2.TimeRange(start=to_timestamp(FLIGHT_START), end=to_timestamp(FLIGHT_END)),
        time_zone="Asia/Jakarta",
        political_authorization=True,
        arms=arms,
        platform_minimums=[
            budget_pb2.PlatformMinimum(platform=p, min_daily_micros=50_000 * 1_000_000)
            for p in (common_pb2.META, common_pb2.GOOGLE, common_pb2.X)
        ],
        coverage_floors=[
            budget_pb2.CoverageFloor(name="Pantura pedesaan", arm_ids=rural, min_share=0.1)
        ],
        objective=budget_pb2.OBJECTIVE_CONVERSIONS,
        pacing=budget_pb2.Pacing(mode=budget_pb2.EVEN),
    )
    return DemoSetup(jk.budget.create_campaign(campaign), names, rural)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    data_dir = settings.data_dir / "demo"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    started = time.monotonic()
    cluster = Cluster(data_dir, ("audience", "metrics", "budget", "sandbox"), free_ports=True)
    print(f"starting audience, metrics, budget and the sandbox market (data in {data_dir}) ...")
    # The rebalancer's own log goes to a file beside the services' logs.
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(data_dir / "logs" / "rebalancer.log")
    handler.setFormatter(JsonFormatter("rebalancer"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    cluster.start()
    try:
        for name in cluster.services:
            print(f"  {name:<9} {cluster.addresses[name]}  SERVING")
        return _simulate(args, cluster, started)
    finally:
        cluster.stop()


def _simulate(args: argparse.Namespace, cluster: Cluster, started: float) -> int:
    local = cluster.settings(call_timeout_seconds=30.0)
    jk = Jangkau.from_settings(local, token=DEV_TOKEN, timeout=60.0)
    setup = create_campaign(jk, args.seed)
    campaign = setup.campaign
    print(f"campaign {campaign.id}: {campaign.name}, {len(campaign.arms)} arms, Rp 5 billion")

    clock_now = [FLIGHT_START]
    rebalancer = build(
        local, jk, clock=lambda: clock_now[0], seed=args.seed, rejection_rate=0.02, error_rate=0.01
    )
    hours = int((FLIGHT_END - FLIGHT_START) / HOUR)
    if args.days:
        hours = min(hours, int(args.days * 24))
    failures = 0
    replays = 0
    for h in progress(list(range(hours + 1)), "simulating hours", enabled=True):
        at = FLIGHT_START + h * HOUR + timedelta(minutes=5)
        clock_now[0] = at
        summary = rebalancer.run(
            RebalanceOptions(at=at, campaign_id=campaign.id, tenant="dev", seed=args.seed)
        )
        failures += sum(1 for c in summary.campaigns if c.outcome.value == "failed")
        replays += sum(1 for c in summary.campaigns if c.outcome.value == "replayed")
    edits = rebalancer.store.edits_total("dev", campaign.id)
    rebalancer.store.close()
    simulated_until = FLIGHT_START + hours * HOUR
    _report(args, jk, cluster, setup, simulated_until, edits, failures, started)
    jk.close()
    return 0


def _report(
    args,
    jk: Jangkau,
    cluster: Cluster,
    setup: DemoSetup,
    until: datetime,
    edits: int,
    failures: int,
    started: float,
) -> None:
    from jangkau.cli.demo_scoring import score_run

    campaign = setup.campaign
    scores = score_run(cluster.addresses["sandbox"], jk, campaign)
    print()
    rows = [
        (name, f"{value:,.0f}", f"{100 * value / scores.oracle:.1f}%")
        for name, value in (
            ("jangkau", scores.jangkau),
            ("uniform split", scores.uniform),
            ("oracle (knows the curves)", scores.oracle),
        )
    ]
    print("expected conversions over the flight (hidden market curves, same budgets per hour)")
    print(table(["policy", "conversions", "% of oracle"], rows, [1, 2]))
    print(
        f"jangkau vs uniform: {100 * (scores.jangkau / scores.uniform - 1):+.1f}%   "
        f"conversions reported by the platforms: {scores.reported:,.0f}"
    )
    summary = jk.metrics.summary(campaign.id, as_of=until)
    print()
    print(
        f"spend {money(summary.spend_micros)} of {money(summary.total_budget_micros)}"
        f"  ({100 * summary.spend_micros / summary.total_budget_micros:.1f}%)"
        f"  CPA {money(summary.cpa_micros)}"
    )
    by_platform = [
        (
            common_pb2.Platform.Name(p.platform).lower(),
            money(p.spend_micros),
            f"{p.conversions:,.0f}",
            money(p.cpa_micros) if p.conversions else "-",
            f"{100 * p.spend_share:.1f}%",
        )
        for p in summary.platforms
    ]
    print(table(["platform", "spend", "conversions", "CPA", "share"], by_platform, [1, 2, 3, 4]))
    series = jk.metrics.timeseries(
        campaign.id,
        FLIGHT_START,
        until,
        [metrics_pb2.METRIC_SPEND, metrics_pb2.METRIC_CONVERSIONS],
        metrics_pb2.BY_AUDIENCE,
        metrics_pb2.DAILY,
    )
    total = max(summary.spend_micros, 1)
    by_audience = []
    for s in series.series:
        spend = sum(p.values[0] for p in s.points)
        conv = sum(p.values[1] for p in s.points)
        by_audience.append(
            (
                setup.audience_names.get(s.key, s.key),
                money(spend),
                f"{conv:,.0f}",
                f"{100 * spend / total:.1f}%",
            )
        )
    print()
    print(table(["audience", "spend", "conversions", "share"], by_audience, [1, 2, 3]))
    quiet = 0.0
    if until > QUIET_START:
        window = jk.metrics.timeseries(
            campaign.id,
            QUIET_START,
            until,
            [metrics_pb2.METRIC_SPEND],
            metrics_pb2.BY_CAMPAIGN,
            metrics_pb2.HOURLY,
        )
        quiet = sum(p.values[0] for s in window.series for p in s.points)
        print(f"\nspend in the quiet period (from 24 Nov 00:00 WIT): {money(quiet)}")
    ineligible = [a.id for a in campaign.arms if a.id in ("tiktok-bdg-muda", "google-relawan")]
    print(
        f"budget edits pushed to platforms: {edits:,}   rebalances that failed static: {failures}"
    )
    print(f"ineligible arms held at zero: {', '.join(ineligible)}")
    from jangkau.cli.demo_charts import write_charts

    png, html = write_charts(args.out, scores, campaign)
    print(f"\ncharts: {png}  {html}")
    print(f"done in {time.monotonic() - started:.0f} s")
