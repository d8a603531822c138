"""Ingest benchmark: the same generated hourly reports written (a) through the
metrics service over gRPC, as Arrow IPC batches of 10,000 rows on one
IngestReports stream, each acknowledged after its commit, and (b) straight into
DuckDB from the same Arrow batches, one transaction per batch, into the
service's table layout with the report key as a DuckDB PRIMARY KEY (the same key
constraint, enforced by DuckDB's own index; the key is computed before timing).

The service runs as a real `jangkau serve metrics` subprocess on a free port with
a temporary data folder. Also printed, for context: a plain append into the same
table without any key constraint (a ceiling that does not deduplicate).

    .venv/bin/python bench/ingest.py [--rows N] [--batch B] [--arms A]

Last line: `ingest rows/s: grpc=<n> raw=<n> ratio=<r>`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import grpc
import numpy as np
import pyarrow as pa

from jangkau.metrics import codec, synthetic
from jangkau.metrics.store import HOURLY_REPORTS_COLUMNS, report_keys
from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.channels import CHANNEL_OPTIONS
from jangkau.runtime.launcher import Cluster
from jangkau.v1 import metrics_pb2, metrics_pb2_grpc

METADATA = (("authorization", f"Bearer {DEV_TOKEN}"),)


def through_grpc(batches: list[pa.Table], campaign: synthetic.Campaign, folder: Path) -> float:
    """Rows per second through a metrics subprocess."""
    cluster = Cluster(
        folder,
        ["metrics"],
        free_ports=True,
        extra_env={"JANGKAU_TOKENS_FILE": "", "JANGKAU_LOG_LEVEL": "WARNING"},
    )
    with cluster, grpc.insecure_channel(cluster.addresses["metrics"], CHANNEL_OPTIONS) as ch:
        stub = metrics_pb2_grpc.MetricsServiceStub(ch)
        stub.RegisterCampaign(codec.register_request(campaign), metadata=METADATA, timeout=30)

        def requests():  # the client encodes each Arrow batch as it streams it
            for i, table in enumerate(batches):
                yield metrics_pb2.ReportBatch(
                    batch_id=str(i), arrow_ipc=codec.reports_to_arrow(table)
                )

        started = time.perf_counter()
        acks = list(stub.IngestReports(requests(), metadata=METADATA, timeout=600))
        elapsed = time.perf_counter() - started
    rows = sum(t.num_rows for t in batches)
    inserted = sum(a.inserted for a in acks)
    if len(acks) != len(batches) or inserted != rows:
        raise SystemExit(f"gRPC ingest acknowledged {len(acks)} batches, {inserted} of {rows} rows")
    return rows / elapsed


def stored_layout(batches: list[pa.Table], campaign: synthetic.Campaign) -> list[pa.Table]:
    """The batches in the service's table layout, keys computed (outside the timing)."""
    refs = {a.arm_id: i + 1 for i, a in enumerate(campaign.arms)}
    out = []
    for t in batches:
        arm_ref = np.array([refs[a] for a in t.column("arm_id").to_pylist()], dtype=np.int64)
        hour_us = t.column("hour").cast(pa.int64()).to_numpy()
        window_ref = np.ones(t.num_rows, dtype=np.int64)
        out.append(
            pa.table(
                {
                    "report_key": report_keys(arm_ref, hour_us, window_ref),
                    "arm_ref": pa.array(arm_ref, pa.int32()),
                    "window_ref": pa.array(window_ref, pa.int16()),
                    **{
                        name: t.column(name)
                        for name in (
                            "hour",
                            "impressions",
                            "reach",
                            "clicks",
                            "conversions",
                            "conversion_value_micros",
                            "spend_micros",
                            "version",
                        )
                    },
                }
            )
        )
    return out


def straight_into_duckdb(batches: list[pa.Table], path: Path, key: bool) -> float:
    """Rows per second of per-batch Arrow inserts, each batch one committed transaction."""
    con = duckdb.connect(str(path))
    constraint = ", PRIMARY KEY (report_key)" if key else ""
    con.execute(f"CREATE TABLE hourly_reports ({HOURLY_REPORTS_COLUMNS}{constraint})")
    started = time.perf_counter()
    for table in batches:
        con.register("batch", table)
        con.execute("INSERT INTO hourly_reports SELECT * FROM batch")
        con.unregister("batch")
    elapsed = time.perf_counter() - started
    stored = con.execute("SELECT count(*) FROM hourly_reports").fetchall()[0][0]
    con.close()
    rows = sum(t.num_rows for t in batches)
    if stored != rows:
        raise SystemExit(f"raw insert stored {stored} of {rows} rows")
    return rows / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--arms", type=int, default=500)
    args = parser.parse_args()
    hours = max(1, args.rows // args.arms)
    campaign = synthetic.campaign(arms=args.arms, hours=hours)
    rows = synthetic.hourly_reports(campaign, 0, hours, seed=1)
    batches = [rows.slice(i, args.batch) for i in range(0, rows.num_rows, args.batch)]
    print(f"{rows.num_rows:,} rows: {args.arms} arms × {hours} hours, {len(batches)} batches")
    with tempfile.TemporaryDirectory(prefix="jangkau-bench-ingest-") as tmp:
        folder = Path(tmp)
        grpc_rate = through_grpc(batches, campaign, folder / "service")
        print(f"grpc (metrics subprocess, Arrow IPC, ack after commit): {grpc_rate:,.0f} rows/s")
        layout = stored_layout(batches, campaign)
        raw_rate = straight_into_duckdb(layout, folder / "raw_key.duckdb", key=True)
        print(f"raw DuckDB insert from Arrow, PRIMARY KEY (report_key): {raw_rate:,.0f} rows/s")
        append_rate = straight_into_duckdb(layout, folder / "raw_append.duckdb", key=False)
        print(
            f"raw DuckDB append from Arrow, no key constraint (no dedup): {append_rate:,.0f} rows/s"
            f" (grpc/append = {grpc_rate / append_rate:.2f})"
        )
    print(
        f"ingest rows/s: grpc={grpc_rate:.0f} raw={raw_rate:.0f} ratio={grpc_rate / raw_rate:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
