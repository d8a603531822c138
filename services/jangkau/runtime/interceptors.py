"""The server interceptor every service runs behind: trace context, authentication
and tenant, role check, mapping domain errors to gRPC status codes, and one JSON
log line per call. Health and reflection calls pass through untouched."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from opentelemetry import trace

from jangkau.runtime.auth import Caller, TokenBook, acting_as
from jangkau.runtime.errors import DomainError, PermissionDenied
from jangkau.runtime.telemetry import extract_context, instruments, tracer

log = logging.getLogger("jangkau.rpc")

_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
SLOW_CALL_MS = 250.0


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class ServerInterceptor(grpc.ServerInterceptor):
    """Wraps every jangkau RPC handler; see the module docstring."""

    def __init__(
        self,
        tokens: TokenBook,
        read_methods: frozenset[str],
        ready: Callable[[], bool],
    ) -> None:
        self._tokens = tokens
        self._read_methods = read_methods
        self._ready = ready
        # Per method: the handler gRPC found and that handler wrapped. gRPC finds the same
        # handler object on every call of a method, so each is wrapped once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method: str = handler_call_details.method
        if method.startswith(_UNTRACED_PREFIXES):
            return continuation(handler_call_details)
        if not self._ready():
            return _refusing_handler(grpc.StatusCode.UNAVAILABLE, "starting: store not open yet")
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = (handler, _Method(self, method).wrap(handler))
            self._wrapped[method] = wrapped
        return wrapped[1]

    def authorise(self, method_name: str, metadata: Sequence[tuple[str, Any]]) -> Caller:
        authorization = _authorization(metadata)
        caller = self._tokens.authenticate(
            authorization if isinstance(authorization, str) else None
        )
        if not caller.can_write and method_name not in self._read_methods:
            raise PermissionDenied(f"role {caller.role.value} may not call {method_name}")
        return caller


def _authorization(metadata: Sequence[tuple[str, Any]]) -> Any:
    """The first authorization value, if any (a plain loop: next() over a generator
    costs several times as much, on every call)."""
    for key, value in metadata:
        if key == "authorization":
            return value
    return None


def _refusing_handler(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(refuse)


class _Method:
    """One RPC method's wrapping: what every call of it shares is worked out here,
    once; the call's own metadata comes from its context."""

    def __init__(self, interceptor: ServerInterceptor, method: str) -> None:
        self.interceptor = interceptor
        self.method = method
        self.service, self.name = _split(method)
        self.span_name = method.lstrip("/")
        # Shared by every call: OpenTelemetry copies attributes, never changes them.
        self.span_attributes = {
            "rpc.system": "grpc",
            "rpc.service": self.service,
            "rpc.method": self.name,
        }
        self.ok_attributes = {"rpc.method": self.name, "rpc.grpc.status_code": "OK"}

    def wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            return handler._replace(unary_unary=self.unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self.unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self.streaming(handler.unary_stream))
        return handler._replace(stream_stream=self.streaming(handler.stream_stream))

    def _span(self, metadata: Sequence[tuple[str, Any]]):  # type: ignore[no-untyped-def]
        span = tracer().start_span(
            self.span_name,
            context=extract_context(metadata),
            kind=trace.SpanKind.SERVER,
            attributes=self.span_attributes,
        )
        # What start_as_current_span does, without the generator it adds around this one.
        return trace.use_span(span, end_on_exit=True)

    def _fail(self, context: grpc.ServicerContext, exc: BaseException) -> None:
        """Turns an exception into the call's status (context.abort raises)."""
        if isinstance(exc, DomainError):
            context.abort(exc.code, exc.message)
        code = context.code() if hasattr(context, "code") else None
        if code not in (None, grpc.StatusCode.OK):
            raise exc  # the handler already set a status via context.abort
        log.exception("unhandled error in %s", self.method)
        context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the trace id")

    def _record(
        self,
        started: float,
        context: grpc.ServicerContext,
        caller: Caller | None,
        span: trace.Span,
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        code = context.code() if hasattr(context, "code") else None
        status = (code or grpc.StatusCode.OK).name
        ok = status == "OK"
        instruments().rpc_duration.record(
            elapsed_ms,
            self.ok_attributes if ok else {"rpc.method": self.name, "rpc.grpc.status_code": status},
        )
        if caller is not None:
            span.set_attribute("jangkau.tenant", caller.tenant)
        if not ok:
            span.set_status(trace.Status(trace.StatusCode.ERROR, status))
        # Failed and slow calls at INFO; the rest at DEBUG, so a busy service does not
        # spend its time writing a line per successful call.
        level = logging.INFO if not ok or elapsed_ms > SLOW_CALL_MS else logging.DEBUG
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "rpc",
            extra={
                "fields": {
                    "method": self.method,
                    "status": status,
                    "duration_ms": round(elapsed_ms, 3),
                    "tenant": caller.tenant if caller else None,
                }
            },
        )

    def unary(self, behavior: Callable) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            caller = None
            metadata = context.invocation_metadata() or ()
            with self._span(metadata) as span:
                try:
                    caller = self.interceptor.authorise(self.name, metadata)
                    with acting_as(caller):
                        return behavior(request, context)
                except Exception as exc:
                    self._fail(context, exc)
                finally:
                    self._record(started, context, caller, span)

        return handle

    def streaming(self, behavior: Callable) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            caller = None
            metadata = context.invocation_metadata() or ()
            with self._span(metadata) as span:
                try:
                    caller = self.interceptor.authorise(self.name, metadata)
                    with acting_as(caller):
                        yield from behavior(request, context)
                except Exception as exc:
                    self._fail(context, exc)
                finally:
                    self._record(started, context, caller, span)

        return handle
