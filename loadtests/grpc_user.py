"""Locust's gRPC user base: every call is timed by a client interceptor that
fires Locust's `request` event (method name, response time, response length,
exception), every call carries a deadline, and bidirectional streams get a
lockstep wrapper (send one message, read its reply).

Importing this module patches the process for gevent: Locust monkey-patches the
standard library on import, and gRPC's gevent integration is switched on here,
before any channel exists.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User
from locust.env import Environment

from jangkau.runtime.channels import channel as jangkau_channel

# gRPC must drive its I/O through gevent's hub, or one blocked call stalls every user.
grpc_gevent.init_gevent()

REQUEST_TYPE = "grpc"
# Every call's deadline unless the call sets its own, seconds.
DEFAULT_TIMEOUT_SECONDS = 5.0


def method_name(details: grpc.ClientCallDetails) -> str:
    """ "/jangkau.v1.BudgetService/Allocate" -> "Allocate"."""
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    return method.rsplit("/", 1)[-1]


def message_size(message: Any) -> int:
    size = getattr(message, "ByteSize", None)
    if size is not None:
        return int(size())
    return len(message) if isinstance(message, bytes | bytearray) else 0


class _TimedResponses:
    """The response iterator of a server-streaming or bidirectional call: reports the
    whole stream as one request when it ends (or fails)."""

    def __init__(self, call: Any, report: Callable[[int, BaseException | None], None]) -> None:
        self._call = call
        self._report = report
        self._length = 0
        self._done = False

    def __iter__(self) -> _TimedResponses:
        return self

    def __next__(self) -> Any:
        try:
            reply = next(self._call)
        except StopIteration:
            self._finish(None)
            raise
        except grpc.RpcError as exc:
            self._finish(exc)
            raise
        self._length += message_size(reply)
        return reply

    def _finish(self, exception: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self._report(self._length, exception)

    def cancel(self) -> bool:
        cancelled = bool(self._call.cancel())
        self._finish(grpc.RpcError("cancelled by the client"))
        return cancelled

    def __getattr__(self, name: str) -> Any:
        # code(), details(), trailing_metadata()... of the underlying call.
        return getattr(self._call, name)


class LocustInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Fires `environment.events.request` once per call, named after the RPC method."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment

    def _fire(
        self,
        name: str,
        started: float,
        length: int,
        exception: BaseException | None,
    ) -> None:
        self._environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            response=None,
            context={},
            exception=exception,
        )

    def _unary(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        started = time.perf_counter()
        outcome = continuation(details, request)
        # The continuation of a blocking call returns when the call is over.
        exception = outcome.exception()
        length = 0 if exception is not None else message_size(outcome.result())
        self._fire(method_name(details), started, length, exception)
        return outcome

    def _streaming(
        self, continuation: Callable, details: grpc.ClientCallDetails, request: Any
    ) -> _TimedResponses:
        started = time.perf_counter()
        name = method_name(details)
        call = continuation(details, request)
        return _TimedResponses(call, lambda length, exc: self._fire(name, started, length, exc))

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._unary(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._unary(continuation, client_call_details, request_iterator)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._streaming(continuation, client_call_details, request)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._streaming(continuation, client_call_details, request_iterator)


class StreamBroken(Exception):
    """A bidirectional stream ended without one reply per message sent."""


_END = object()


def exchange(
    method: grpc.StreamStreamMultiCallable,
    messages: Sequence[Any],
    timeout: float,
) -> list[Any]:
    """Sends each message of a bidirectional stream only after the reply to the
    previous one arrived (a platform feed waits for each batch's ack before the
    next), then half-closes; returns the replies, one per message."""
    outbox: queue.Queue[Any] = queue.Queue()

    def outgoing() -> Iterator[Any]:
        while (message := outbox.get()) is not _END:
            yield message

    replies = method(outgoing(), timeout=timeout)
    received: list[Any] = []
    try:
        for message in messages:
            outbox.put(message)
            try:
                received.append(next(replies))
            except StopIteration:
                raise StreamBroken(
                    f"stream ended after {len(received)} replies to {len(messages)} messages"
                ) from None
        outbox.put(_END)
        extra = sum(1 for _ in replies)
        if extra:
            raise StreamBroken(f"{extra} replies more than the {len(messages)} messages sent")
    finally:
        # Unblocks the request iterator if a reply never came.
        outbox.put(_END)
    return received


class GrpcUser(User):
    """A Locust user whose channels report every call to Locust. Subclasses open
    channels in `on_start` with `self.channel(address)` and make every call with
    `timeout=self.timeout`."""

    abstract = True
    # Deadline of every call, seconds.
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._channels: list[grpc.Channel] = []

    def channel(self, address: str, token: str | None = None) -> grpc.Channel:
        """A channel to `address`: Locust timing outermost, then jangkau's client
        behaviour (deadline, bearer token, trace context, retry on UNAVAILABLE)."""
        inner = jangkau_channel(address, timeout=self.timeout, token=token)
        opened = grpc.intercept_channel(inner, LocustInterceptor(self.environment))
        self._channels.append(inner)
        return opened

    def on_stop(self) -> None:
        for opened in self._channels:
            opened.close()
        self._channels.clear()
