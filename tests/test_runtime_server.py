"""The shared runtime: health, reflection, auth, error mapping, draining, deadlines.

Exercised through a small AudienceService servicer defined here, on a real port."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jangkau.runtime.auth import TokenBook, current_caller
from jangkau.runtime.channels import channel
from jangkau.runtime.errors import InvalidArgument, NotFound
from jangkau.runtime.interceptors import ServerInterceptor
from jangkau.runtime.server import OpenService, RunningServer, ServiceDefinition
from jangkau.v1 import audience_pb2, audience_pb2_grpc
from tests.conftest import TOKENS, bearer, settings_for


class ProbeServicer(audience_pb2_grpc.AudienceServiceServicer):
    """Answers with the caller's tenant, or fails the way the request asks."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def GetAudience(self, request, context):
        if request.audience_id == "bad":
            raise InvalidArgument("audience_id", "must not be 'bad'")
        if request.audience_id == "missing":
            raise NotFound("audience missing not found")
        if request.audience_id == "crash":
            raise RuntimeError("boom")
        if request.audience_id == "slow":
            self.release.wait(5)
        answer = audience_pb2.Audience(id=request.audience_id, name=current_caller().tenant)
        if request.audience_id == "serialised":
            return answer.SerializeToString()
        return answer

    def CreateAudience(self, request, context):
        return audience_pb2.Audience(name=request.name)

    def ExportAudience(self, request, context):
        yield audience_pb2.ExportChunk(chunk_index=0)
        raise InvalidArgument("chunk_size", "too big")


def probe_definition(
    servicer: ProbeServicer, gate: threading.Event | None = None
) -> ServiceDefinition:
    def open_service(settings) -> OpenService:
        if gate is not None:
            gate.wait(10)
        return OpenService(
            add_servicer=lambda server: audience_pb2_grpc.add_AudienceServiceServicer_to_server(
                servicer, server
            )
        )

    return ServiceDefinition(
        name="audience",
        full_name="jangkau.v1.AudienceService",
        read_methods=frozenset({"GetAudience", "ExportAudience"}),
        open=open_service,
    )


@pytest.fixture
def probe(tmp_path: Path, tokens_file: Path):
    servicer = ProbeServicer()
    server = RunningServer(probe_definition(servicer), settings_for(tmp_path, tokens_file))
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield servicer, audience_pb2_grpc.AudienceServiceStub(ch), server
    servicer.release.set()
    ch.close()
    server.stop(grace=0.5)


def test_health_is_not_serving_until_the_store_is_open(tmp_path, tokens_file):
    gate = threading.Event()
    server = RunningServer(
        probe_definition(ProbeServicer(), gate), settings_for(tmp_path, tokens_file)
    )
    starter = threading.Thread(target=server.start)
    starter.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 5
            status = None
            while time.monotonic() < deadline:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    break
                except grpc.RpcError:
                    time.sleep(0.05)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as err:
                audience_pb2_grpc.AudienceServiceStub(ch).GetAudience(
                    audience_pb2.GetAudienceRequest(audience_id="a"),
                    metadata=bearer(TOKENS["alpha"]),
                    timeout=2,
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            gate.set()
            starter.join(5)
            reply = health.Check(
                health_pb2.HealthCheckRequest(service="jangkau.v1.AudienceService"), timeout=1
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        gate.set()
        starter.join(5)
        server.stop(grace=0.2)


def test_reflection_lists_the_service(probe):
    _, _, server = probe
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert "jangkau.v1.AudienceService" in names
    assert "grpc.health.v1.Health" in names


def test_missing_token_is_unauthenticated(probe):
    _, stub, _ = probe
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(audience_pb2.GetAudienceRequest(audience_id="a"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_token_is_unauthenticated(probe):
    _, stub, _ = probe
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(
            audience_pb2.GetAudienceRequest(audience_id="a"), metadata=bearer("nope"), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_caller_tenant_reaches_the_handler(probe):
    _, stub, _ = probe
    reply = stub.GetAudience(
        audience_pb2.GetAudienceRequest(audience_id="a"), metadata=bearer(TOKENS["beta"]), timeout=5
    )
    assert reply.name == "beta"


def test_callers_alternating_on_one_method_each_reach_the_handler_as_themselves(probe):
    _, stub, _ = probe
    request = audience_pb2.GetAudienceRequest(audience_id="a")
    for token, tenant in [("alpha", "alpha"), ("beta", "beta"), ("alpha_viewer", "alpha")] * 2:
        reply = stub.GetAudience(request, metadata=bearer(TOKENS[token]), timeout=5)
        assert reply.name == tenant
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stub.GetAudience(request, metadata=bearer(TOKENS["beta"]), timeout=5).name == "beta"


class _CallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _CallContext:
    """The parts of a servicer context the interceptor reads."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(TOKENS["alpha"])

    def code(self) -> None:
        return None


def test_a_method_whose_handler_changes_is_served_by_the_new_handler(tokens_file):
    """A running server finds one handler per method for good, so this drives the
    interceptor directly."""
    interceptor = ServerInterceptor(
        TokenBook.load(tokens_file), frozenset({"GetAudience"}), lambda: True
    )
    details = _CallDetails("/jangkau.v1.AudienceService/GetAudience", bearer(TOKENS["alpha"]))
    for answer in ("first handler", "second handler"):
        handler = grpc.unary_unary_rpc_method_handler(lambda request, context, a=answer: a)
        wrapped = interceptor.intercept_service(lambda _details, h=handler: h, details)
        assert wrapped.unary_unary(b"", _CallContext()) == answer


def test_a_handler_may_answer_with_its_reply_already_serialised(probe):
    _, stub, _ = probe
    for audience_id in ("serialised", "message", "serialised"):
        reply = stub.GetAudience(
            audience_pb2.GetAudienceRequest(audience_id=audience_id),
            metadata=bearer(TOKENS["alpha"]),
            timeout=5,
        )
        assert (reply.id, reply.name) == (audience_id, "alpha")


def test_viewer_may_read_but_not_write(probe):
    _, stub, _ = probe
    meta = bearer(TOKENS["alpha_viewer"])
    assert stub.GetAudience(
        audience_pb2.GetAudienceRequest(audience_id="a"), metadata=meta, timeout=5
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateAudience(audience_pb2.CreateAudienceRequest(name="x"), metadata=meta, timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_invalid_argument_names_the_field(probe):
    _, stub, _ = probe
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(
            audience_pb2.GetAudienceRequest(audience_id="bad"),
            metadata=bearer(TOKENS["alpha"]),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("audience_id:")


def test_domain_not_found_maps_to_not_found(probe):
    _, stub, _ = probe
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(
            audience_pb2.GetAudienceRequest(audience_id="missing"),
            metadata=bearer(TOKENS["alpha"]),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_unexpected_errors_are_internal_not_unknown(probe):
    _, stub, _ = probe
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(
            audience_pb2.GetAudienceRequest(audience_id="crash"),
            metadata=bearer(TOKENS["alpha"]),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "boom" not in err.value.details()


def test_errors_in_server_streams_are_mapped(probe):
    _, stub, _ = probe
    stream = stub.ExportAudience(
        audience_pb2.ExportAudienceRequest(audience_id="a"),
        metadata=bearer(TOKENS["alpha"]),
        timeout=5,
    )
    assert next(stream).chunk_index == 0
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk_size" in err.value.details()


def test_stop_drains_in_flight_calls_and_reports_not_serving(tmp_path, tokens_file):
    servicer = ProbeServicer()
    server = RunningServer(probe_definition(servicer), settings_for(tmp_path, tokens_file))
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = audience_pb2_grpc.AudienceServiceStub(ch)
    with futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            stub.GetAudience,
            audience_pb2.GetAudienceRequest(audience_id="slow"),
            metadata=bearer(TOKENS["alpha"]),
            timeout=10,
        )
        time.sleep(0.3)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5})
        stopper.start()
        time.sleep(0.2)
        assert server.health.Check(health_pb2.HealthCheckRequest(), None).status == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        servicer.release.set()
        assert pending.result(timeout=5).id == "slow"
        stopper.join(10)
    assert not stopper.is_alive()
    ch.close()


def test_outgoing_calls_carry_a_deadline_and_the_token(probe):
    servicer, _, server = probe
    ch = channel(f"127.0.0.1:{server.port}", timeout=0.3, token=TOKENS["alpha"])
    stub = audience_pb2_grpc.AudienceServiceStub(ch)
    assert stub.GetAudience(audience_pb2.GetAudienceRequest(audience_id="a")).name == "alpha"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetAudience(audience_pb2.GetAudienceRequest(audience_id="slow"))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    servicer.release.set()
    ch.close()
