"""Allocate latency through gRPC at 100 and 2,000 arms, against a plain gRPC echo.

Starts audience, metrics and budget as separate processes (the `jangkau up` code
path) on free loopback ports with a throw-away data folder, creates two campaigns
(100 and 2,000 arms), streams 72 hours of hourly reports for every arm into
metrics, then times sequential Allocate calls (fresh metrics read, posterior,
Thompson sample, constrained split, explanation) for one period. The metrics read
of an unchanged campaign is a version check (GetArmStats `if_version_not`): the
breakdown shows the full read and that check. The baseline is
a plain gRPC server in its own process, no interceptors, answering a small request
with a canned message of the same size as the 2,000-arm Allocation.

Last line: `allocate p99 ms: arms100=<x> arms2000=<x> echo=<x>`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np

from jangkau.budget import policy
from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.launcher import Cluster, free_port, wait_serving
from jangkau.runtime.times import HOUR, to_timestamp
from jangkau.v1 import (
    audience_pb2,
    audience_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
)

METADATA = (("authorization", f"Bearer {DEV_TOKEN}"),)
FLIGHT_START = datetime(2024, 10, 1, tzinfo=UTC)
FLIGHT_END = datetime(2024, 11, 20, tzinfo=UTC)
HISTORY_HOURS = 72
AS_OF = FLIGHT_START + timedelta(hours=HISTORY_HOURS, minutes=5)
PLATFORMS = (common_pb2.META, common_pb2.GOOGLE, common_pb2.X, common_pb2.TIKTOK)
ECHO_METHOD = "/bench.Echo/Echo"


def p99(samples: list[float]) -> float:
    return float(np.percentile(np.asarray(samples), 99))


# --------------------------------------------------------------------- baseline


def _serve_echo(port: int, payload: bytes, ready) -> None:  # type: ignore[no-untyped-def]
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def time_echo(payload: bytes, request: bytes, calls: int) -> list[float]:
    """Latencies of a plain unary call answering `payload`, decoded like an Allocation."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    process = ctx.Process(target=_serve_echo, args=(port, payload, ready), daemon=True)
    process.start()
    try:
        ready.wait(30)
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as ch:
            call = ch.unary_unary(
                ECHO_METHOD,
                request_serializer=None,
                response_deserializer=budget_pb2.Allocation.FromString,
            )
            for _ in range(20):
                call(request, timeout=10)
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                call(request, timeout=10)
                samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        process.terminate()
        process.join(5)


# --------------------------------------------------------------------- scenario


def create_audiences(ch: grpc.Channel, count: int) -> list[str]:
    stub = audience_pb2_grpc.AudienceServiceStub(ch)
    bands = [(17 + 3 * (i % 15), 19 + 3 * (i % 15)) for i in range(count)]
    provinces = ["31", "32", "33", "34", "35", "36", "51", "73"]
    ids = []
    for i, (low, high) in enumerate(bands):
        rule = audience_pb2.Rule(
            all=audience_pb2.RuleList(
                rules=[
                    audience_pb2.Rule(
                        region=audience_pb2.RegionCondition(codes=[provinces[i % len(provinces)]])
                    ),
                    audience_pb2.Rule(age=audience_pb2.AgeRange(min=low, max=high)),
                ]
            )
        )
        created = stub.CreateAudience(
            audience_pb2.CreateAudienceRequest(name=f"bench-{i}", rule=rule),
            metadata=METADATA,
            timeout=30,
        )
        ids.append(created.id)
    return ids


def create_campaign(ch: grpc.Channel, audiences: list[str], n_arms: int) -> budget_pb2.Campaign:
    arms = []
    creatives = -(-n_arms // (len(PLATFORMS) * len(audiences)))
    for creative in range(creatives):
        for a, audience in enumerate(audiences):
            for platform in PLATFORMS:
                if len(arms) < n_arms:
                    arms.append(
                        budget_pb2.Arm(
                            id=f"arm-{len(arms)}",
                            platform=platform,
                            audience_id=audience,
                            creative=f"creative-{creative}",
                            value_weight=1.0 + (a % 3) * 0.5,
                        )
                    )
    campaign = budget_pb2.Campaign(
        name=f"bench {n_arms} arms",
        kind=common_pb2.COMMERCIAL,
        currency="IDR",
        total_budget_micros=n_arms * 100_000_000 * 1_000_000,
        flight=common_pb2.TimeRange(start=to_timestamp(FLIGHT_START), end=to_timestamp(FLIGHT_END)),
        arms=arms,
    )
    return budget_pb2_grpc.BudgetServiceStub(ch).CreateCampaign(
        budget_pb2.CreateCampaignRequest(campaign=campaign), metadata=METADATA, timeout=120
    )


def ingest_history(ch: grpc.Channel, campaign: budget_pb2.Campaign, seed: int) -> int:
    """HISTORY_HOURS hours of reports per arm from saturating curves with noise."""
    rng = np.random.default_rng(seed)
    n = len(campaign.arms)
    theta = rng.gamma(2.0, 5.0, n)
    kappa = rng.lognormal(np.log(5e10), 1.0, n)
    rows = []
    for h in range(HISTORY_HOURS):
        hour = FLIGHT_START + timedelta(hours=h)
        spend = rng.gamma(2.0, 2.5e10, n).astype(np.int64)
        conversions = rng.poisson(theta * -np.expm1(-spend / kappa))
        for i, arm in enumerate(campaign.arms):
            impressions = int(spend[i] // 15_000_000) + 1
            rows.append(
                metrics_pb2.HourlyReport(
                    campaign_id=campaign.id,
                    arm_id=arm.id,
                    platform=arm.platform,
                    hour=to_timestamp(hour),
                    attribution_window="7d_click",
                    impressions=impressions,
                    reach=impressions // 2,
                    clicks=int(conversions[i]) * 5,
                    conversions=float(conversions[i]),
                    spend_micros=int(spend[i]),
                    currency="IDR",
                    version=to_timestamp(hour + timedelta(hours=3)),
                )
            )
    batches = [
        metrics_pb2.ReportBatch(
            batch_id=f"b{i}", rows=metrics_pb2.ReportRows(rows=rows[i : i + 10_000])
        )
        for i in range(0, len(rows), 10_000)
    ]
    stub = metrics_pb2_grpc.MetricsServiceStub(ch)
    acks = list(stub.IngestReports(iter(batches), metadata=METADATA, timeout=600))
    return sum(a.inserted for a in acks)


def time_allocate(ch: grpc.Channel, campaign_id: str, calls: int) -> tuple[list[float], bytes]:
    stub = budget_pb2_grpc.BudgetServiceStub(ch)
    # The hour before is decided first, as hourly rebalancing has: a campaign's first
    # split is solved on the expected curves, every later one on a Thompson sample.
    stub.Rebalance(
        budget_pb2.RebalanceRequest(campaign_id=campaign_id, as_of=to_timestamp(AS_OF - HOUR)),
        metadata=METADATA,
        timeout=60,
    )
    request = budget_pb2.AllocateRequest(campaign_id=campaign_id, as_of=to_timestamp(AS_OF))
    last = None
    for _ in range(10):
        last = stub.Allocate(request, metadata=METADATA, timeout=30)
    samples = []
    for i in range(calls):
        request.seed = i + 1
        started = time.perf_counter()
        last = stub.Allocate(request, metadata=METADATA, timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    assert last is not None and last.allocated_micros > 0
    return samples, last.SerializeToString()


def time_arm_stats(
    ch: grpc.Channel, campaign: budget_pb2.Campaign, calls: int, unchanged: bool = False
) -> list[float]:
    """The metrics read inside each Allocate, alone (answer left undecoded): in full,
    or, with `unchanged`, as Allocate makes it when it holds the current version."""
    call = ch.unary_unary(
        "/jangkau.v1.MetricsService/GetArmStats",
        request_serializer=metrics_pb2.GetArmStatsRequest.SerializeToString,
        response_deserializer=None,
    )
    request = metrics_pb2.GetArmStatsRequest(
        campaign_id=campaign.id,
        window=common_pb2.TimeRange(
            start=to_timestamp(FLIGHT_START),
            end=to_timestamp(AS_OF.replace(minute=0)),
        ),
        discount=policy.default_settings().discount,
        kappas_micros=policy.KAPPA_GRID_MICROS,
        count_metric=metrics_pb2.COUNT_CONVERSIONS,
    )
    for _ in range(5):
        call(request, metadata=METADATA, timeout=30)
    if unchanged:
        answer = metrics_pb2.GetArmStatsResponse.FromString(
            call(request, metadata=METADATA, timeout=30)
        )
        request.if_version_not = answer.data_version
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call(request, metadata=METADATA, timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_policy(n_arms: int, calls: int) -> list[float]:
    """The policy alone, in this process, on a history of the same shape."""
    rng = np.random.default_rng(n_arms)
    spend = rng.gamma(2.0, 2.5e10, (n_arms, HISTORY_HOURS))
    evidence = policy.Evidence.from_history(spend, rng.poisson(2.0, spend.shape), 0.99)
    arms = [policy.ArmSpec(arm_id=f"arm-{i}") for i in range(n_arms)]
    settings = policy.default_settings()
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        policy.allocate(arms, evidence, n_arms * 85_000 * 1_000_000, settings, i + 1)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per size")
    args = parser.parse_args()
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with tempfile.TemporaryDirectory(prefix="jangkau-bench-") as tmp:
        cluster = Cluster(
            Path(tmp),
            ("audience", "metrics", "budget"),
            free_ports=True,
            extra_env={"JANGKAU_LOG_LEVEL": "WARNING", "JANGKAU_TOKENS_FILE": ""},
        )
        with cluster:
            for name in ("audience", "metrics", "budget"):
                wait_serving(cluster.addresses[name], 60)
            ch = {
                n: grpc.insecure_channel(cluster.addresses[n], options=options)
                for n in ("audience", "metrics", "budget")
            }
            started = time.perf_counter()
            audiences = create_audiences(ch["audience"], 25)
            campaigns = {n: create_campaign(ch["budget"], audiences, n) for n in (100, 2000)}
            rows = sum(ingest_history(ch["metrics"], c, n) for n, c in campaigns.items())
            print(
                f"set-up: {len(audiences)} audiences, campaigns of 100 and 2000 arms, "
                f"{rows} hourly reports ({HISTORY_HOURS} h per arm) in "
                f"{time.perf_counter() - started:.1f} s"
            )
            results = {}
            payloads = {}
            for n, campaign in campaigns.items():
                results[n], payloads[n] = time_allocate(ch["budget"], campaign.id, args.calls)
            request = budget_pb2.AllocateRequest(
                campaign_id=campaigns[2000].id, as_of=to_timestamp(AS_OF), seed=1
            ).SerializeToString()
            echo = {n: time_echo(payloads[n], request, args.calls) for n in (100, 2000)}
            stats = {
                n: time_arm_stats(ch["metrics"], campaigns[n], args.calls) for n in (100, 2000)
            }
            unchanged = {
                n: time_arm_stats(ch["metrics"], campaigns[n], args.calls, unchanged=True)
                for n in (100, 2000)
            }
            alone = {n: time_policy(n, args.calls) for n in (100, 2000)}
            for c in ch.values():
                c.close()
    print(f"{'call':<24}{'bytes':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for n in (100, 2000):
        size = str(len(payloads[n]))
        rows = (
            (f"Allocate {n} arms", size, results[n]),
            ("  metrics GetArmStats", "-", stats[n]),
            ("  ... not modified", "-", unchanged[n]),
            ("  policy in-process", "-", alone[n]),
            (f"echo {n}-arm size", size, echo[n]),
        )
        for label, nbytes, samples in rows:
            print(
                f"{label:<24}{nbytes:>10}{statistics.median(samples):>10.2f}"
                f"{p99(samples):>10.2f}{max(samples):>10.2f}"
            )
    print(
        f"ratio p99 Allocate/echo: arms100={p99(results[100]) / p99(echo[100]):.1f}x "
        f"arms2000={p99(results[2000]) / p99(echo[2000]):.1f}x; targets 10 ms and 50 ms"
    )
    print(
        f"allocate p99 ms: arms100={p99(results[100]):.2f} arms2000={p99(results[2000]):.2f} "
        f"echo={p99(echo[2000]):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
