"""Outgoing gRPC channels: every call carries a deadline, the caller's token and
the trace context; UNAVAILABLE is retried with backoff by gRPC's own retry policy
(all jangkau RPCs that other processes call are idempotent: replays are
deduplicated server-side)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace

from jangkau.runtime.auth import caller_if_any
from jangkau.runtime.telemetry import inject_metadata, tracer

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    # gRPC's most; with the backoffs 0.1+0.2+0.4+0.8 s, the retries
                    # outlast one reconnect backoff (below).
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _RETRY_CONFIG),
    ("grpc.keepalive_time_ms", 30_000),
    # A peer that was down is tried again at least every second (gRPC's default
    # backoff grows to two minutes), so calls succeed soon after it is back,
    # rather than failing fast until a long backoff ends.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


class _ClientDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, timeout: float | None, metadata: list) -> None:
        self.method = base.method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the deadline, the bearer token and the trace context to each call."""

    def __init__(self, default_timeout: float, token: str | None) -> None:
        self._timeout = default_timeout
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [m for m in (details.metadata or []) if m[0] != "authorization"]
        caller = caller_if_any()
        token = caller.token if caller is not None else self._token
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        metadata.extend(inject_metadata())
        timeout = details.timeout if details.timeout is not None else self._timeout
        return _ClientDetails(details, timeout, metadata)

    def _call(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        name = details.method.decode() if isinstance(details.method, bytes) else details.method
        with tracer().start_as_current_span(name.lstrip("/"), kind=trace.SpanKind.CLIENT):
            return continuation(self._details(details), request)

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request_iterator)


def channel(address: str, *, timeout: float = 5.0, token: str | None = None) -> grpc.Channel:
    """A channel whose calls carry a deadline (`timeout` seconds unless the call
    sets one), a bearer token (the current RPC's caller, else `token`) and the
    trace context."""
    raw = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.intercept_channel(raw, ClientInterceptor(timeout, token))
