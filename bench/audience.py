"""Audience service latency: EstimateSize through gRPC against the same SQL run
in-process; Overlap of 10 audiences; the upload of 1,000,000 contacts.

Setup, in a throw-away data folder: the national population (7,277 districts,
about 170,000 cells) and a 5,000,000-entry contact list written straight through
the store as random SHA-256 digests (uploading five million real identifiers
would only time the hashing, which the upload figure below measures anyway).

1. In-process, on the same DuckDB file: the EstimateSize query of a rule with
   five conditions (region, an age range cutting two bands, gender, locality,
   connectivity) AND membership of the 5,000,000-entry list, run N times
   (`raw`); the service's Overlap of 10 audiences without gRPC; the hashing of
   1,000,000 contacts without gRPC or storage.
2. The audience service as its own process (`jangkau serve audience`, the
   `jangkau up` code path) with its read cache off, so that every call runs the
   query: the same EstimateSize through gRPC N times, Overlap of the same 10
   audiences, and an upload of 1,000,000 contacts streamed in chunks of 100,000.
3. The service again with its read cache on (the default): the same EstimateSize
   repeated, answered from memory until the audiences change.

    .venv/bin/python bench/audience.py [--repeat N]

Last line: `estimate size p50 ms: grpc=<x> raw=<x> ratio=<r>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa

from jangkau.audience import population
from jangkau.audience.domain import ConsentBasis, ContactList, Gender, Locality
from jangkau.audience.edge import rule_to_proto
from jangkau.audience.normalise import HASH_SCHEMA, ContactHasher
from jangkau.audience.rules import (
    Age,
    All,
    ConnectivityIn,
    GenderIs,
    InContactList,
    LocalityIs,
    Not,
    Region,
    Rule,
)
from jangkau.audience.service import AudienceService
from jangkau.runtime.auth import DEV_TENANT, DEV_TOKEN
from jangkau.runtime.launcher import Cluster
from jangkau.v1 import audience_pb2, audience_pb2_grpc

METADATA = (("authorization", f"Bearer {DEV_TOKEN}"),)
LIST_SIZE = 5_000_000
UPLOAD_SIZE = 1_000_000
CHUNK = 100_000
BIG_LIST_ID = "lst_0000000000b16b16"


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(call: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def big_list(service: AudienceService) -> ContactList:
    """A 5,000,000-entry list of random digests, written straight through the store."""
    rng = np.random.default_rng(5)
    digests = rng.integers(0, 256, size=(LIST_SIZE, 32), dtype=np.uint8).tobytes()
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), LIST_SIZE, [None, pa.py_buffer(digests)]
    )
    kinds = pa.array(np.ones(LIST_SIZE, np.int8))
    table = pa.Table.from_arrays([kinds, column, column], schema=HASH_SCHEMA)
    contact_list = ContactList(
        id=BIG_LIST_ID,
        tenant=DEV_TENANT,
        name="bench supporters",
        purpose="benchmark",
        consent_basis=ConsentBasis.EXPLICIT_CONSENT,
        default_country="ID",
        region_codes=(),
        upload_time=datetime.now(UTC),
        phones=LIST_SIZE,
        emails=0,
        duplicates=0,
    )
    service.store.insert_contact_list(contact_list, table)
    return contact_list


def five_conditions_and_list() -> Rule:
    return All(
        (
            Region(("32", "33", "35", "3171")),
            Age(20, 40),
            GenderIs((Gender.FEMALE,)),
            LocalityIs(Locality.URBAN),
            ConnectivityIn((2, 3)),
            InContactList(BIG_LIST_ID),
        )
    )


def ten_rules(list_id: str | None = None) -> list[Rule]:
    """Ten campaign audiences: provinces × age × gender; with `list_id`, every
    other one also needs membership of that list (the pairwise path)."""
    rules: list[Rule] = []
    for i, province in enumerate(("31", "32", "33", "35", "36")):
        rules.append(All((Region((province,)), Age(18, 34))))
        older: Rule = All((Region((province,)), Age(35, 120), GenderIs((1 + i % 2,))))
        if list_id is not None:
            older = All((older, InContactList(list_id), Age(30, 50)))
        rules.append(older)
    rules[8] = All((rules[8], Not(LocalityIs(Locality.RURAL))))
    return rules


def contacts() -> tuple[list[str], list[str]]:
    phones = [f"0812-{i // 10_000:04d}-{i % 10_000:04d}" for i in range(UPLOAD_SIZE * 6 // 10)]
    emails = [f" Pemilih{i}@Contoh.co.id" for i in range(UPLOAD_SIZE * 4 // 10)]
    return phones, emails


def upload_messages(phones: list[str], emails: list[str]) -> Iterator:
    yield audience_pb2.UploadContactListRequest(
        header=audience_pb2.ContactListHeader(
            name="bench upload", purpose="benchmark", consent_basis=audience_pb2.EXPLICIT_CONSENT
        )
    )
    for start in range(0, len(phones), CHUNK):
        yield audience_pb2.UploadContactListRequest(
            chunk=audience_pb2.ContactChunk(phones=phones[start : start + CHUNK])
        )
    for start in range(0, len(emails), CHUNK):
        yield audience_pb2.UploadContactListRequest(
            chunk=audience_pb2.ContactChunk(emails=emails[start : start + CHUNK])
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per figure")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jangkau-bench-audience-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        cells = population.seed(data_dir)
        service = AudienceService.open(data_dir, seed_if_empty=False)
        try:
            big_list(service)
            print(
                f"setup: {cells:,} cells, {LIST_SIZE:,}-entry list "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            rule = five_conditions_and_list()
            plan = service.plan(service.check_rule(DEV_TENANT, rule))
            sql, params, _ = service.store.measure_sql(plan)
            cursor = service.store.db.cursor()
            raw = timed(lambda: cursor.execute(sql, params).fetchall(), args.repeat)
            estimate = service.estimate_size(DEV_TENANT, None, rule, 0, [])
            audience_ids = [
                service.create_audience(DEV_TENANT, f"bench {i}", r).id
                for i, r in enumerate(ten_rules())
            ]
            listed_ids = [
                service.create_audience(DEV_TENANT, f"bench listed {i}", r).id
                for i, r in enumerate(ten_rules(BIG_LIST_ID))
            ]
            overlap_local = timed(lambda: service.overlap(DEV_TENANT, audience_ids), 10, 1)
            listed_local = timed(lambda: service.overlap(DEV_TENANT, listed_ids), 10, 1)
            phones, emails = contacts()
            hashing_started = time.perf_counter()
            hasher = ContactHasher()
            for start in range(0, len(phones), CHUNK):
                hasher.add(phones[start : start + CHUNK], ())
            for start in range(0, len(emails), CHUNK):
                hasher.add((), emails[start : start + CHUNK])
            hashing_s = time.perf_counter() - hashing_started
        finally:
            service.close()
        print(f"estimate: voters={estimate.voters:,} (rule of five conditions and the list)")

        cluster = Cluster(
            data_dir, ("audience",), free_ports=True, extra_env={"JANGKAU_READ_CACHE_MB": "0"}
        )
        cluster.start()
        try:
            with grpc.insecure_channel(cluster.addresses["audience"]) as channel:
                stub = audience_pb2_grpc.AudienceServiceStub(channel)
                request = audience_pb2.EstimateSizeRequest(rule=rule_to_proto(rule))
                over_grpc = timed(
                    lambda: stub.EstimateSize(request, metadata=METADATA, timeout=10), args.repeat
                )
                overlap_request = audience_pb2.OverlapRequest(audience_ids=audience_ids)
                overlap_grpc = timed(
                    lambda: stub.Overlap(overlap_request, metadata=METADATA, timeout=30), 10, 1
                )
                listed_request = audience_pb2.OverlapRequest(audience_ids=listed_ids)
                listed_grpc = timed(
                    lambda: stub.Overlap(listed_request, metadata=METADATA, timeout=30), 10, 1
                )
                upload_started = time.perf_counter()
                uploaded = stub.UploadContactList(
                    upload_messages(phones, emails), metadata=METADATA, timeout=120
                )
                upload_s = time.perf_counter() - upload_started
        finally:
            cluster.stop()
        cached = Cluster(data_dir, ("audience",), free_ports=True)
        cached.start()
        try:
            with grpc.insecure_channel(cached.addresses["audience"]) as channel:
                stub = audience_pb2_grpc.AudienceServiceStub(channel)
                from_memory = timed(
                    lambda: stub.EstimateSize(request, metadata=METADATA, timeout=10), args.repeat
                )
        finally:
            cached.stop()

    print(
        f"overlap of 10 whole-cell audiences p50 ms: grpc={p50(overlap_grpc):.1f} "
        f"in-process={p50(overlap_local):.1f}"
    )
    print(
        f"overlap of 10 audiences, 5 with the list, p50 ms: grpc={p50(listed_grpc):.1f} "
        f"in-process={p50(listed_local):.1f}"
    )
    print(
        f"upload of {UPLOAD_SIZE:,} contacts s: grpc={upload_s:.2f} "
        f"hashing-only={hashing_s:.2f} (accepted {uploaded.accepted:,})"
    )
    print(f"estimate size repeated, from the read cache, p50 ms: grpc={p50(from_memory):.2f}")
    grpc_p50, raw_p50 = p50(over_grpc), p50(raw)
    print(
        f"estimate size p50 ms: grpc={grpc_p50:.2f} raw={raw_p50:.2f} "
        f"ratio={grpc_p50 / raw_p50:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
