"""The foundation's end-to-end test bodies, run in the mode JANGKAU_E2E selects
(`subprocess`, the default, or `containers`: see tests/e2e_mode.py).

The bodies are imported from tests/test_e2e_foundation.py unchanged; in this
module their `start_cluster` fixture is the mode's factory. The SIGTERM test of
`jangkau up` stays out: it is about the local launcher, not about a service.

    JANGKAU_E2E=containers pytest tests/test_e2e_modes.py
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.e2e_mode import (
    E2ECluster,
    GrpcHealthWaitStrategy,
    container_environment,
    docker_engine_or_skip,
    e2e_cluster,
    selected_mode,
)
from tests.test_e2e_foundation import (
    test_a_campaign_and_its_reports_survive_restarts,
    test_an_audience_survives_a_restart_of_the_audience_service,
    test_another_tenant_cannot_see_a_campaign,
    test_each_service_is_serving_and_lists_its_api_by_reflection,
)

# Collected here as well, with this module's `start_cluster`.
__all__ = [
    "e2e_cluster",
    "test_a_campaign_and_its_reports_survive_restarts",
    "test_an_audience_survives_a_restart_of_the_audience_service",
    "test_another_tenant_cannot_see_a_campaign",
    "test_each_service_is_serving_and_lists_its_api_by_reflection",
]


@pytest.fixture
def start_cluster(e2e_cluster: Callable[..., E2ECluster]) -> Callable[..., E2ECluster]:
    """Overrides conftest's subprocess-only factory for the bodies above."""
    return e2e_cluster


def test_the_default_mode_is_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JANGKAU_E2E", raising=False)
    assert selected_mode() == "subprocess"


def test_an_unknown_mode_is_refused_naming_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JANGKAU_E2E", "kubernetes")
    with pytest.raises(ValueError, match="subprocess, containers"):
        selected_mode()


def test_containers_mode_skips_with_a_reason_when_no_docker_engine_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(pytest.skip.Exception, match="JANGKAU_E2E=containers needs a Docker engine"):
        docker_engine_or_skip()


class FakeContainer:
    """What the wait strategy sees of a container, published at a real local port."""

    def __init__(self, port: int, status: str = "running", log: bytes = b"") -> None:
        self.port = port
        self.status = status
        self.log = log

    def reload(self) -> None:
        return None

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        return self.port

    def get_logs(self) -> tuple[bytes, bytes]:
        return self.log, b""


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A real gRPC server whose health says NOT_SERVING until the test sets it."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(0)


def test_the_health_wait_returns_once_the_service_says_serving(health_server) -> None:
    port, servicer = health_server
    serving = threading.Event()

    def become_ready() -> None:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        serving.set()

    flip = threading.Timer(0.3, become_ready)
    flip.start()
    try:
        GrpcHealthWaitStrategy(50052, "budget").with_startup_timeout(20).wait_until_ready(
            FakeContainer(port)
        )
    finally:
        flip.cancel()
    assert serving.is_set()


def test_the_health_wait_does_not_take_an_open_port_for_a_ready_service(health_server) -> None:
    port, _ = health_server
    with pytest.raises(TimeoutError, match="NOT_SERVING"):
        GrpcHealthWaitStrategy(50052, "budget").with_startup_timeout(1).wait_until_ready(
            FakeContainer(port)
        )


def test_the_health_wait_fails_with_the_log_when_the_container_exits() -> None:
    exited = FakeContainer(1, status="exited", log=b"metrics.duckdb: permission denied")
    with pytest.raises(RuntimeError, match="permission denied"):
        GrpcHealthWaitStrategy(50053, "metrics").wait_until_ready(exited)


def test_a_service_container_listens_on_all_interfaces_and_reaches_the_others_by_name() -> None:
    variables = container_environment(
        "budget", {"JANGKAU_TOKENS_FILE": "/home/ci/tokens.json", "JANGKAU_GRACE_SECONDS": "2"}
    )
    assert variables["JANGKAU_LISTEN_ADDR"] == "0.0.0.0:50052"
    assert variables["JANGKAU_METRICS_ADDR"] == "metrics:50053"
    assert variables["JANGKAU_AUDIENCE_ADDR"] == "audience:50051"
    assert variables["JANGKAU_TOKENS_FILE"] != "/home/ci/tokens.json"
    assert variables["JANGKAU_GRACE_SECONDS"] == "2"
