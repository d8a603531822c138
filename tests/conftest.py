"""Shared fixtures: real services on free loopback ports with throw-away data
folders, either as subprocesses (the `jangkau up` code path) or in-process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.config import Settings
from jangkau.runtime.launcher import Cluster, free_port
from jangkau.runtime.server import RunningServer, ServiceDefinition, load_definition

# Tokens of the test tokens file: two tenants, and each role.
TOKENS = {
    "alpha": "alpha-buyer-token",
    "alpha_viewer": "alpha-viewer-token",
    "alpha_service": "alpha-service-token",
    "beta": "beta-buyer-token",
}


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def dev_metadata() -> tuple[tuple[str, str]]:
    return bearer(DEV_TOKEN)


def write_tokens(path: Path) -> Path:
    """A tokens file with the test tokens (two tenants, each role) and the development token."""
    entries = [
        {"token": TOKENS["alpha"], "tenant": "alpha", "role": "buyer"},
        {"token": TOKENS["alpha_viewer"], "tenant": "alpha", "role": "viewer"},
        {"token": TOKENS["alpha_service"], "tenant": "alpha", "role": "service"},
        {"token": TOKENS["beta"], "tenant": "beta", "role": "buyer"},
        {"token": DEV_TOKEN, "tenant": "dev", "role": "buyer"},
    ]
    path.write_text(json.dumps({"tokens": entries}))
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.json")


@pytest.fixture
def start_cluster(tmp_path: Path, tokens_file: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts services as real subprocesses; every one is stopped at teardown."""
    started: list[Cluster] = []

    def start(*services: str, data_dir: Path | None = None, **extra_env: str) -> Cluster:
        environment = {"JANGKAU_TOKENS_FILE": str(tokens_file), "JANGKAU_GRACE_SECONDS": "2"}
        environment.update(extra_env)
        cluster = Cluster(
            data_dir or tmp_path / "data",
            services or ("audience", "metrics", "budget"),
            free_ports=True,
            extra_env=environment,
        )
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()


def settings_for(tmp_path: Path, tokens_file: Path | None = None) -> Settings:
    """Settings for an in-process server on a free port."""
    base = Settings.from_env()
    port = free_port()
    return replace(
        base,
        listen_addr=f"127.0.0.1:{port}",
        data_dir=tmp_path,
        tokens_file=tokens_file,
        grace_seconds=1.0,
        max_workers=8,
    )


@pytest.fixture
def serve_in_process(tmp_path: Path, tokens_file: Path) -> Iterator[Callable[..., RunningServer]]:
    """Runs a service definition in this process on a free port."""
    running: list[RunningServer] = []

    def start(
        definition: ServiceDefinition | str, settings: Settings | None = None, **overrides: object
    ) -> RunningServer:
        if isinstance(definition, str):
            definition = load_definition(definition)
        chosen = settings or settings_for(tmp_path / definition.name, tokens_file)
        if overrides:
            chosen = replace(chosen, **overrides)
        server = RunningServer(definition, chosen)
        server.start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop(grace=0.5)


def channel_to(server: RunningServer) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{server.port}")
