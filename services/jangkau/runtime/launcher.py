"""Runs jangkau services as separate local processes (`jangkau up`, the demo,
end-to-end tests, benchmarks): the same `jangkau serve <name>` code path a
container runs, with health-checked start and a bounded, orphan-free stop."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jangkau.runtime.config import SERVICE_ADDR_VARS, Settings, env

DEFAULT_SERVICES = ("audience", "metrics", "budget")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Called early by a child `jangkau serve`: SIGTERM it when its launcher dies, so
    no service outlives `jangkau up` (Linux). Done in the child rather than between
    fork and exec, where gRPC's fork handlers in the launcher must not run."""
    expected = os.environ.get("JANGKAU_PARENT_PID", "")
    if not expected.isdigit():
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return
    if os.getppid() != int(expected):  # the launcher died before the prctl took hold
        os.kill(os.getpid(), signal.SIGTERM)


def wait_serving(address: str, timeout: float, service: str = "") -> None:
    """Blocks until the health service at `address` says SERVING."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout:.0f}s (last: {last})")


class Cluster:
    """A set of jangkau service processes sharing one data folder."""

    def __init__(
        self,
        data_dir: Path,
        services: Iterable[str] = DEFAULT_SERVICES,
        *,
        addresses: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        free_ports: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.services = tuple(services)
        self.addresses: dict[str, str] = {}
        for name, var in SERVICE_ADDR_VARS.items():
            if addresses and name in addresses:
                self.addresses[name] = addresses[name]
            elif free_ports:
                self.addresses[name] = f"127.0.0.1:{free_port()}"
            else:
                self.addresses[name] = env(var)
        self.extra_env = dict(extra_env or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = self.data_dir / "logs"

    def settings(self, **overrides: Any) -> Settings:
        """Settings of a process that works with this cluster (a rebalancer, a client):
        the environment's, pointed at these services and this data folder."""
        addresses: dict[str, Any] = {
            f"{name}_addr": self.addresses[name] for name in SERVICE_ADDR_VARS
        }
        return replace(Settings.from_env(), data_dir=self.data_dir, **addresses, **overrides)

    def environment(self) -> dict[str, str]:
        """The variables every child (and any client of this cluster) should see."""
        variables = dict(os.environ)
        variables["JANGKAU_DATA_DIR"] = str(self.data_dir)
        for name, var in SERVICE_ADDR_VARS.items():
            variables[var] = self.addresses[name]
        variables.pop("JANGKAU_LISTEN_ADDR", None)
        variables["JANGKAU_PARENT_PID"] = str(os.getpid())
        variables.update(self.extra_env)
        return variables

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "jangkau.cli.main", "serve", name],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.processes[name] = process
        return process

    def start(self, timeout: float = 60.0) -> Cluster:
        for name in self.services:
            self.spawn(name)
        try:
            for name in self.services:
                self.wait(name, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, name: str, timeout: float = 60.0) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; log: {self.log_dir / (name + '.log')}"
                )
            try:
                wait_serving(self.addresses[name], min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def terminate(self, name: str, timeout: float = 10.0) -> int:
        """SIGTERM one service and wait; SIGKILL after `timeout`."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self, name: str) -> None:
        """SIGKILL one service (crash tests)."""
        process = self.processes[name]
        if process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, name: str, timeout: float = 60.0) -> None:
        self.terminate(name)
        self.spawn(name)
        self.wait(name, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child, then SIGKILL whatever is left after `timeout`."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def dead(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is not None]

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
