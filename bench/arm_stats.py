"""GetArmStats benchmark: one campaign with 500 arms × 1,440 hours of history
(720,000 hourly reports), asked for with the allocator's request (the whole
flight so far, discount 0.99, the saturation scales of policy.KAPPA_GRID_MICROS),
(a) through gRPC from a real `jangkau serve metrics` subprocess and (b) the same
store queries and the same vectorised statistics run in-process on the same
DuckDB file (MetricsService.arm_stats: everything but gRPC and the messages).

Timed the way the hourly rebalancer uses it: before each call one more hour of
reports (every arm) is ingested and the window grows by that hour, so each
answer includes data the previous one did not see. Also printed: the first call
after a start (nothing cached), the same call repeated on unchanged data (the
service answers it from its read cache; in-process it is computed again), and
the request without curve statistics.

    .venv/bin/python bench/arm_stats.py [--arms A] [--hours H] [--calls N]

Last line: `arm stats p50 ms: grpc=<x> raw=<x> ratio=<r>` (the hourly pattern).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import grpc

from jangkau.budget.policy import KAPPA_GRID_MICROS
from jangkau.metrics import codec, domain, synthetic
from jangkau.metrics.service import MetricsService
from jangkau.metrics.store import DATABASE_FILE, DuckDBMetricsStore
from jangkau.runtime.auth import DEV_TENANT, DEV_TOKEN
from jangkau.runtime.channels import CHANNEL_OPTIONS
from jangkau.runtime.launcher import Cluster
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc

METADATA = (("authorization", f"Bearer {DEV_TOKEN}"),)
DISCOUNT = 0.99


def p50_ms(call: Callable[[], object], calls: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def load(folder: Path, campaign: domain.Campaign, hours: int) -> None:
    """Writes the history through the service's own ingest path, in-process."""
    store = DuckDBMetricsStore(folder / DATABASE_FILE)
    service = MetricsService(store)
    service.register(DEV_TENANT, campaign)
    rows = synthetic.hourly_reports(campaign, 0, hours, seed=2)
    for start in range(0, rows.num_rows, 10_000):
        service.ingest_reports(DEV_TENANT, rows.slice(start, 10_000))
    store.close()


def hourly(
    call: Callable[[int], object], ingest: Callable[[int], object], first_hour: int, calls: int
) -> float:
    """p50 of `call(stop_hour)` right after `ingest(hour)` of each next hour."""
    times = []
    for i in range(calls):
        ingest(first_hour + i)
        started = time.perf_counter()
        call(first_hour + i + 1)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=500)
    parser.add_argument("--hours", type=int, default=1440)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    extra = 2 * args.calls + 8  # hours the timed runs append
    campaign = synthetic.campaign(arms=args.arms, hours=args.hours + extra)
    start = campaign.flight_start

    def end_of(hour: int):  # type: ignore[no-untyped-def]
        return start + timedelta(hours=hour)

    def shape(name: str) -> dict:  # type: ignore[type-arg]
        kappas = KAPPA_GRID_MICROS if name == "allocator" else ()
        return {"discount": DISCOUNT, "kappas_micros": kappas}

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jangkau-bench-armstats-") as tmp:
        folder = Path(tmp)
        load(folder, campaign, args.hours)
        print(f"{args.arms} arms × {args.hours} hours = {args.arms * args.hours:,} reports")
        cluster = Cluster(
            folder,
            ["metrics"],
            free_ports=True,
            extra_env={"JANGKAU_TOKENS_FILE": "", "JANGKAU_LOG_LEVEL": "WARNING"},
        )
        with cluster, grpc.insecure_channel(cluster.addresses["metrics"], CHANNEL_OPTIONS) as ch:
            stub = metrics_pb2_grpc.MetricsServiceStub(ch)

            def over_grpc(stop_hour: int, name: str = "allocator") -> None:
                request = metrics_pb2.GetArmStatsRequest(
                    campaign_id=campaign.campaign_id,
                    window=common_pb2.TimeRange(
                        start=to_timestamp(start), end=to_timestamp(end_of(stop_hour))
                    ),
                    **shape(name),
                )
                reply = stub.GetArmStats(request, metadata=METADATA, timeout=60)
                assert len(reply.arms) == args.arms

            def ingest_grpc(hour: int) -> None:
                table = synthetic.hourly_reports(campaign, hour, 1, seed=hour)
                batch = metrics_pb2.ReportBatch(arrow_ipc=codec.reports_to_arrow(table))
                list(stub.IngestReports(iter([batch]), metadata=METADATA, timeout=60))

            results["grpc cold"] = timed(lambda: over_grpc(args.hours))
            results["grpc repeated"] = p50_ms(lambda: over_grpc(args.hours), args.calls)
            results["grpc totals"] = p50_ms(lambda: over_grpc(args.hours, "totals"), args.calls)
            results["grpc hourly"] = hourly(over_grpc, ingest_grpc, args.hours, args.calls)

        store = DuckDBMetricsStore(folder / DATABASE_FILE)
        service = MetricsService(store)

        def in_process(stop_hour: int, name: str = "allocator") -> None:
            service.arm_stats(
                DEV_TENANT, campaign.campaign_id, start, end_of(stop_hour), **shape(name)
            )

        def ingest_in_process(hour: int) -> None:
            service.ingest_reports(
                DEV_TENANT, synthetic.hourly_reports(campaign, hour, 1, seed=hour)
            )

        now = args.hours + args.calls
        results["raw cold"] = timed(lambda: in_process(now))
        results["raw repeated"] = p50_ms(lambda: in_process(now), args.calls)
        results["raw totals"] = p50_ms(lambda: in_process(now, "totals"), args.calls)
        results["raw hourly"] = hourly(in_process, ingest_in_process, now, args.calls)
        store.close()

    k = len(KAPPA_GRID_MICROS)
    for label, key in (
        (f"first call after start ({k} κ, nothing cached)", "cold"),
        (f"same call repeated, data unchanged ({k} κ; gRPC: read cache)", "repeated"),
        ("totals only, no curve statistics, repeated (gRPC: read cache)", "totals"),
        (f"hourly: a new hour ingested before each call ({k} κ)", "hourly"),
    ):
        g, r = results[f"grpc {key}"], results[f"raw {key}"]
        print(f"{label}: grpc {g:.1f} ms, in-process {r:.1f} ms, ratio {g / r:.2f}")
    g, r = results["grpc hourly"], results["raw hourly"]
    print(f"arm stats p50 ms: grpc={g:.1f} raw={r:.1f} ratio={g / r:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
