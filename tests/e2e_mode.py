"""End-to-end clusters in the mode JANGKAU_E2E selects, behind one factory
fixture, `e2e_cluster`, so that the same test bodies run in either:

- `subprocess` (the default): each service a `jangkau serve <name>` process on a
  free loopback port (the launcher of `jangkau up`);
- `containers`: the project's image is built from the Dockerfile at the root,
  and each service runs in its own container on one Docker network, started
  with testcontainers and ready only when its gRPC health check says SERVING
  (a listening port is not enough: the store may still be opening). Without a
  Docker engine this mode skips, naming the reason.

Either way the factory returns an object with `addresses` (service name ->
host:port reachable from the tests), `restart(name)` and `stop()`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import docker
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from jangkau.runtime.config import ENV_VARS, SERVICE_ADDR_VARS
from jangkau.runtime.launcher import DEFAULT_SERVICES, Cluster, wait_serving

MODE_VARIABLE = "JANGKAU_E2E"
MODES = ("subprocess", "containers")
ROOT = Path(__file__).resolve().parents[1]
IMAGE_TAG = "jangkau:e2e"
# Inside a container: a writable folder of the image's non-root user that a restart keeps.
CONTAINER_DATA_DIR = "/tmp/jangkau"
CONTAINER_TOKENS_FILE = "/tmp/jangkau-tokens.json"
START_TIMEOUT_SECONDS = 120.0


class E2ECluster(Protocol):
    addresses: dict[str, str]

    def restart(self, name: str, timeout: float = 60.0) -> None: ...

    def stop(self) -> None: ...


def selected_mode() -> str:
    mode = os.environ.get(MODE_VARIABLE, "") or MODES[0]
    if mode not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={mode!r}: one of {', '.join(MODES)}")
    return mode


def docker_engine_or_skip() -> None:
    """Skips the calling test unless a Docker engine answers."""
    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # no socket, no permission, engine down: all mean "no engine"
        pytest.skip(
            f"{MODE_VARIABLE}=containers needs a Docker engine, and none answered "
            f"({type(exc).__name__}: {exc})"
        )


def container_port(service: str) -> int:
    """The port a service listens on inside its container: its documented default."""
    return int(ENV_VARS[SERVICE_ADDR_VARS[service]][0].rsplit(":", 1)[1])


@functools.cache
def project_image() -> str:
    """Builds the image from the repository's Dockerfile once per test session
    (kept afterwards, so the next build reuses its layers)."""
    DockerImage(path=ROOT, tag=IMAGE_TAG, clean_up=False).build()
    return IMAGE_TAG


class GrpcHealthWaitStrategy(WaitStrategy):
    """Ready when the container's gRPC health check answers SERVING; fails at once
    with the container's log when it exits first."""

    def __init__(self, port: int, service: str) -> None:
        super().__init__()
        self.port = port
        self.service = service
        self._startup_timeout = START_TIMEOUT_SECONDS

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                stdout, stderr = container.get_logs()
                raise RuntimeError(
                    f"{self.service} container {container.status}:\n"
                    f"{(stdout + stderr).decode(errors='replace')[-4000:]}"
                )
            host = container.get_container_host_ip()
            address = f"{host}:{container.get_exposed_port(self.port)}"
            try:
                wait_serving(address, min(2.0, max(0.1, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def container_environment(name: str, extra_env: Mapping[str, str]) -> dict[str, str]:
    """The variables of one service's container: it listens on every interface of
    the container at its default port and reaches the others by their names on
    the network; host paths mean nothing inside, so the tokens file is copied in."""
    variables = {
        var: f"{other}:{container_port(other)}" for other, var in SERVICE_ADDR_VARS.items()
    }
    variables["JANGKAU_LISTEN_ADDR"] = f"0.0.0.0:{container_port(name)}"
    variables["JANGKAU_DATA_DIR"] = CONTAINER_DATA_DIR
    for key, value in extra_env.items():
        variables[key] = CONTAINER_TOKENS_FILE if key == "JANGKAU_TOKENS_FILE" else value
    return variables


class ServiceContainers:
    """Each service in its own container of `image`, on one Docker network where
    the others reach it by its name."""

    def __init__(
        self, image: str, services: Iterable[str], extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.image = image
        self.services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.network = Network()
        self._network_created = False
        self.containers: dict[str, DockerContainer] = {}
        self.addresses: dict[str, str] = {}

    def _container(self, name: str) -> DockerContainer:
        port = container_port(name)
        container = (
            DockerContainer(self.image, command=["serve", name])
            .with_exposed_ports(port)
            .with_network(self.network)
            .with_network_aliases(name)
            .with_envs(**container_environment(name, self.extra_env))
            .waiting_for(GrpcHealthWaitStrategy(port, name))
        )
        tokens = self.extra_env.get("JANGKAU_TOKENS_FILE")
        if tokens:
            container.with_copy_into_container(Path(tokens).read_bytes(), CONTAINER_TOKENS_FILE)
        return container

    def _address(self, name: str) -> str:
        container = self.containers[name]
        port = container.get_exposed_port(container_port(name))
        return f"{container.get_container_host_ip()}:{port}"

    def start(self) -> ServiceContainers:
        self.network.create()
        self._network_created = True
        try:
            for name in self.services:
                self.containers[name] = self._container(name).start()
                self.addresses[name] = self._address(name)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stops the container (SIGTERM, then the grace period) and starts it again
        with its filesystem, so its data folder survives; the published port may change."""
        container = self.containers[name]
        container.get_wrapped_container().restart(timeout=10)
        GrpcHealthWaitStrategy(container_port(name), name).with_startup_timeout(
            int(timeout)
        ).wait_until_ready(container)
        self.addresses[name] = self._address(name)

    def stop(self) -> None:
        for container in reversed(list(self.containers.values())):
            container.stop()
        self.containers.clear()
        if self._network_created:
            self._network_created = False
            self.network.remove()


@pytest.fixture
def e2e_cluster(tmp_path: Path, tokens_file: Path) -> Iterator[Callable[..., E2ECluster]]:
    """Starts services in the selected mode (`start(*services, **extra_env)`,
    like conftest's `start_cluster`); every one is stopped at teardown."""
    mode = selected_mode()
    image = ""
    if mode == "containers":
        docker_engine_or_skip()
        image = project_image()
    started: list[E2ECluster] = []

    def start(*services: str, **extra_env: str) -> E2ECluster:
        environment = {"JANGKAU_TOKENS_FILE": str(tokens_file), "JANGKAU_GRACE_SECONDS": "2"}
        environment.update(extra_env)
        chosen = services or DEFAULT_SERVICES
        cluster: E2ECluster
        if mode == "containers":
            cluster = ServiceContainers(image, chosen, environment)
            started.append(cluster)
            return cluster.start()
        launched = Cluster(
            tmp_path / f"data-{len(started)}", chosen, free_ports=True, extra_env=environment
        )
        started.append(launched)
        return launched.start()

    yield start
    for cluster in started:
        cluster.stop()
