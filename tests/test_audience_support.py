"""Helpers shared by the audience tests (no tests here): a small seeded
population, an audience server on a real port, rule builders, and synthetic
hashed contact lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pytest

from jangkau.audience import population
from jangkau.audience.domain import ConsentBasis, ContactList, IdentifierKind
from jangkau.audience.normalise import HASH_SCHEMA
from jangkau.audience.service import AudienceService
from jangkau.runtime.server import RunningServer, load_definition
from jangkau.v1 import audience_pb2, audience_pb2_grpc
from tests.conftest import TOKENS, bearer, settings_for, write_tokens

# Districts of the small test population (the real one has 7,277).
SMALL_DISTRICTS = 120

pb = audience_pb2


def seeded(data_dir: Path, districts: int = SMALL_DISTRICTS) -> Path:
    population.seed(data_dir, districts=districts)
    return data_dir


@dataclass
class AudienceApi:
    """A running audience server and a stub to it; `md(who)` is a caller's metadata."""

    server: RunningServer
    channel: grpc.Channel
    stub: audience_pb2_grpc.AudienceServiceStub
    data_dir: Path

    @staticmethod
    def md(who: str = "alpha") -> tuple[tuple[str, str]]:
        return bearer(TOKENS[who])

    def create(self, rule: pb.Rule, name: str = "audience", who: str = "alpha") -> pb.Audience:
        return self.stub.CreateAudience(
            pb.CreateAudienceRequest(name=name, rule=rule), metadata=self.md(who), timeout=10
        )

    def upload(
        self,
        phones: Iterable[str] = (),
        emails: Iterable[str] = (),
        who: str = "alpha",
        region_codes: Iterable[str] = (),
        name: str = "supporters",
    ) -> pb.ContactList:
        header = pb.ContactListHeader(
            name=name,
            purpose="volunteer coordination",
            consent_basis=pb.EXPLICIT_CONSENT,
            region_codes=list(region_codes),
        )
        messages = [
            pb.UploadContactListRequest(header=header),
            pb.UploadContactListRequest(chunk=pb.ContactChunk(phones=phones, emails=emails)),
        ]
        return self.stub.UploadContactList(iter(messages), metadata=self.md(who), timeout=30)

    def estimate(self, rule: pb.Rule, kind: int = 0, who: str = "alpha") -> pb.EstimateSizeResponse:
        return self.stub.EstimateSize(
            pb.EstimateSizeRequest(rule=rule, campaign_kind=kind), metadata=self.md(who), timeout=10
        )

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=0.5)


def start_api(root: Path) -> AudienceApi:
    """An audience server over `root/audience` (seeded small unless already there)."""
    data_dir = root / "audience"
    if not (data_dir / "audience.duckdb").exists():
        seeded(data_dir)
    tokens = write_tokens(root / "tokens.json")
    settings = replace(settings_for(data_dir, tokens), max_workers=4)
    server = RunningServer(load_definition("audience"), settings)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return AudienceApi(server, channel, audience_pb2_grpc.AudienceServiceStub(channel), data_dir)


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AudienceApi]:
    """One server for a module's tests; each test makes objects of its own."""
    api = start_api(tmp_path_factory.mktemp("audience-api"))
    yield api
    api.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[AudienceApi]:
    """A server of the test's own, on a fresh small population."""
    started = start_api(tmp_path)
    yield started
    started.close()


@pytest.fixture(scope="module")
def small_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AudienceService]:
    """The service without gRPC, over a small seeded population."""
    service = AudienceService.open(seeded(tmp_path_factory.mktemp("audience-service")))
    yield service
    service.close()


# ---------------------------------------------------------------- rule builders


def region(*codes: str) -> pb.Rule:
    return pb.Rule(region=pb.RegionCondition(codes=codes))


def age(low: int, high: int) -> pb.Rule:
    return pb.Rule(age=pb.AgeRange(min=low, max=high))


def gender(*genders: int) -> pb.Rule:
    return pb.Rule(gender=pb.GenderCondition(genders=genders))


def locality(value: int) -> pb.Rule:
    return pb.Rule(locality=pb.LocalityCondition(locality=value))


def connectivity(*bands: int) -> pb.Rule:
    return pb.Rule(connectivity=pb.ConnectivityCondition(bands=bands))


def in_list(list_id: str) -> pb.Rule:
    return pb.Rule(contact_list_id=list_id)


def excluding(audience_id: str) -> pb.Rule:
    return pb.Rule(exclude_audience_id=audience_id)


def interest(name: str) -> pb.Rule:
    return pb.Rule(interest=pb.InterestCondition(name=name))


def all_of(*rules: pb.Rule) -> pb.Rule:
    return pb.Rule(all=pb.RuleList(rules=rules))


def any_of(*rules: pb.Rule) -> pb.Rule:
    return pb.Rule(any=pb.RuleList(rules=rules))


def negation(rule: pb.Rule) -> pb.Rule:
    node = pb.Rule()
    getattr(node, "not").CopyFrom(rule)
    return node


# ---------------------------------------------------------------- synthetic lists


def random_hashes(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random 32-byte digests, one row each."""
    return rng.integers(0, 256, size=(count, 32), dtype=np.uint8)


def hash_table(digests: np.ndarray, kind: IdentifierKind = IdentifierKind.PHONE) -> pa.Table:
    n = len(digests)
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), n, [None, pa.py_buffer(np.ascontiguousarray(digests).tobytes())]
    )
    return pa.Table.from_arrays(
        [pa.array(np.full(n, int(kind), np.int8)), column, column], schema=HASH_SCHEMA
    )


def store_list(
    service: AudienceService,
    tenant: str,
    digests: np.ndarray,
    region_codes: tuple[str, ...] = (),
    list_id: str | None = None,
) -> ContactList:
    """A contact list written straight through the store (for large synthetic lists)."""
    from jangkau.runtime.ids import new_id

    contact_list = ContactList(
        id=list_id or new_id("lst"),
        tenant=tenant,
        name="synthetic",
        purpose="tests",
        consent_basis=ConsentBasis.EXPLICIT_CONSENT,
        default_country="ID",
        region_codes=region_codes,
        upload_time=datetime.now(UTC),
        phones=len(digests),
        emails=0,
        duplicates=0,
    )
    service.store.insert_contact_list(contact_list, hash_table(digests))
    return contact_list
