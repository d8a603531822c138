"""Starts any jangkau service: health (NOT_SERVING until the store is open and
again on shutdown), reflection, interceptors, telemetry, JSON logs, and
SIGTERM → NOT_SERVING → drain in-flight calls → stop within the grace period."""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jangkau.runtime.auth import TokenBook
from jangkau.runtime.channels import MAX_MESSAGE_BYTES
from jangkau.runtime.config import Settings
from jangkau.runtime.interceptors import ServerInterceptor
from jangkau.runtime.launcher import die_with_parent
from jangkau.runtime.logs import configure_logging
from jangkau.runtime.telemetry import configure_telemetry, shutdown_telemetry

log = logging.getLogger("jangkau.server")

# Where each service's DEFINITION lives.
SERVICE_MODULES: dict[str, str] = {
    "audience": "jangkau.audience.edge",
    "budget": "jangkau.budget.edge",
    "metrics": "jangkau.metrics.edge",
    "sandbox": "jangkau.sandbox.edge",
}


@dataclass
class OpenService:
    """A service whose store is open: how to add its servicer, and how to close it."""

    add_servicer: Callable[[grpc.Server], None]
    close: Callable[[], None] = lambda: None
    # Ends the service's long-lived calls (streams that last until the client goes),
    # so that draining on shutdown waits for the other calls only.
    drain: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class ServiceDefinition:
    # Short name: `jangkau serve <name>`.
    name: str
    # Full proto service name, for health and reflection ("jangkau.v1.BudgetService").
    full_name: str
    # Methods a viewer may call (no side effects).
    read_methods: frozenset[str]
    # Opens the store (may take seconds) and builds the servicer.
    open: Callable[[Settings], OpenService]
    # Extra full service names to list in reflection.
    extra_names: tuple[str, ...] = field(default=())
    # Serving threads beyond JANGKAU_MAX_WORKERS, for long-lived calls the service
    # caps itself (so that they never take the threads of the other calls).
    extra_workers: int = 0


def load_definition(name: str) -> ServiceDefinition:
    if name not in SERVICE_MODULES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICE_MODULES)}")
    module = importlib.import_module(SERVICE_MODULES[name])
    return module.DEFINITION


def _bytes_or(serialise: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def reply_bytes(reply: Any) -> bytes:
        return reply if isinstance(reply, bytes) else serialise(reply)

    return reply_bytes


class SerialisedReplies(grpc.GenericRpcHandler):
    """A servicer's handlers, except that a method may return its reply as bytes
    already in the wire format (a reply written straight to it, or kept serialised
    in a cache): gRPC sends those as they are and serialises messages as usual."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        # Per method found: the handler with the serialiser that passes bytes through.
        self._found: dict[str, grpc.RpcMethodHandler] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        found = self._found.get(method)
        if found is not None:
            return found
        handler = self._inner.service(handler_call_details)
        if handler is None or handler.response_serializer is None:
            return handler
        found = handler._replace(  # type: ignore[attr-defined]
            response_serializer=_bytes_or(handler.response_serializer)
        )
        self._found[method] = found
        return found


class _LateRegistration:
    """The server as seen by a servicer added after start: gRPC serves such a
    servicer through its generic handlers; registering its methods with the core
    (an optimisation only possible before start) is skipped instead of refused.
    Its handlers may answer with replies already serialised (`SerialisedReplies`)."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(SerialisedReplies(h) for h in handlers))

    def add_registered_method_handlers(self, service_name: str, handlers: object) -> None:
        return None


class RunningServer:
    """A started server; `stop()` drains it. Used by `serve` and by in-process tests."""

    def __init__(self, definition: ServiceDefinition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._open: OpenService | None = None
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=settings.max_workers + definition.extra_workers,
                thread_name_prefix=definition.name,
            ),
            interceptors=[
                ServerInterceptor(
                    TokenBook.load(settings.tokens_file),
                    definition.read_methods,
                    self._ready.is_set,
                )
            ],
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for name in ("", definition.full_name):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (
                definition.full_name,
                *definition.extra_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.port = self.server.add_insecure_port(settings.listen_addr)
        if self.port == 0:
            raise SystemExit(f"cannot bind {settings.listen_addr}")

    def start(self) -> None:
        """Listens at once (health answers NOT_SERVING), then opens the store."""
        self.server.start()
        log.info("listening", extra={"fields": {"address": self.settings.listen_addr}})
        self._open = self.definition.open(self.settings)
        self._open.add_servicer(_LateRegistration(self.server))
        self._ready.set()
        for name in ("", self.definition.full_name):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"fields": {"service": self.definition.full_name}})

    def stop(self, grace: float | None = None) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("stopping", extra={"fields": {"grace_seconds": grace}})
        self.health.enter_graceful_shutdown()
        if self._open is not None:
            self._open.drain()
        self.server.stop(grace).wait(grace + 1)
        if self._open is not None:
            self._open.close()
        log.info("stopped")

    def wait(self) -> None:
        self.server.wait_for_termination()


def serve(name: str) -> None:
    """`jangkau serve <name>`: runs until SIGTERM or SIGINT."""
    die_with_parent()
    definition = load_definition(name)
    settings = Settings.from_env(name)
    configure_logging(name, settings.log_level)
    configure_telemetry(name, settings.trace_file)
    running = RunningServer(definition, settings)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal", extra={"fields": {"signal": signal.Signals(signum).name}})
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running.start()
    # Objects alive now (modules, the store, caches) live as long as the process: keep
    # them out of the collector's scans, which otherwise show up as p99 spikes.
    gc.freeze()
    done.wait()
    running.stop()
    shutdown_telemetry()
