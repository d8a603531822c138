"""OpenTelemetry set-up from the standard OTEL_* variables, trace propagation
over gRPC metadata, and every metric instrument jangkau records (created here,
in one place).

No exporter is installed unless OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP/gRPC)
or JANGKAU_TRACE_FILE names a file (finished spans as JSON lines, for tests and
local debugging). A process without an exporter starts no trace of its own: it
records spans only of traces a caller sampled (and passes their context on), so
an unobserved call costs no span bookkeeping; and without OTLP no metric is
aggregated (the instruments are the API's, which drop measurements).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

_configured = False
_lock = threading.Lock()
# Looking the tracer up costs about as much as starting a span: keep it. Until the
# process configures telemetry this is the API's proxy, which follows the provider
# once one is set.
_tracer: trace.Tracer = trace.get_tracer("jangkau")


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_span_id": format(parent.span_id, "016x") if parent else None,
                        "kind": span.kind.name,
                        "attributes": dict(span.attributes or {}),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                    },
                    default=str,
                )
            )
        with self._lock, self._path.open("a") as out:
            out.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def configure_telemetry(service: str, trace_file: Path | None = None) -> None:
    """Installs the tracer and meter providers once per process."""
    global _configured, _tracer
    with _lock:
        if _configured:
            return
        _configured = True
        name = os.environ.get("OTEL_SERVICE_NAME") or f"jangkau-{service}"
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create({"service.name": name, "service.namespace": "jangkau"})
        otlp = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        # With an exporter the sampler is the SDK's (OTEL_TRACES_SAMPLER, default: all).
        # Without one, new traces are not sampled; traces a caller sampled still are.
        exporting = otlp or trace_file is not None
        provider = (
            TracerProvider(resource=resource)
            if exporting
            else TracerProvider(resource=resource, sampler=ParentBased(root=ALWAYS_OFF))
        )
        meter_readers = []
        if otlp:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            meter_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        if trace_file is not None:
            # "{service}" in the path gives each process of a cluster its own file.
            path = Path(str(trace_file).replace("{service}", service))
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
        trace.set_tracer_provider(provider)
        _tracer = provider.get_tracer("jangkau")
        # Without a reader, measurements would be aggregated for no one (about 4 µs a
        # measurement, twice a call): the API's default provider drops them instead.
        if meter_readers:
            metrics.set_meter_provider(
                MeterProvider(resource=resource, metric_readers=meter_readers)
            )


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()


def tracer() -> trace.Tracer:
    return _tracer


def inject_metadata() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata (W3C traceparent)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def extract_context(metadata: Sequence[tuple[str, str | bytes]]):  # -> otel Context
    carrier = {k: v for k, v in metadata if isinstance(v, str)}
    return propagate.extract(carrier)


class Instruments:
    """Every metric instrument jangkau records. Get them with `instruments()`."""

    def __init__(self) -> None:
        meter = metrics.get_meter("jangkau")
        self.rpc_duration = meter.create_histogram(
            "rpc.server.duration", unit="ms", description="Duration of served RPCs"
        )
        self.ingest_rows = meter.create_counter(
            "jangkau.ingest.rows",
            unit="{row}",
            description="Report rows and events committed (attribute jangkau.kind)",
        )
        self.ingest_rejects = meter.create_counter(
            "jangkau.ingest.rejects",
            unit="{row}",
            description="Report rows and events refused (attribute jangkau.kind)",
        )
        self.allocations = meter.create_counter(
            "jangkau.allocations", unit="{allocation}", description="Allocations answered"
        )
        self.spend_allocated = meter.create_counter(
            "jangkau.spend.allocated",
            unit="micros",
            description="Budget allocated to arms by recorded decisions",
        )
        self.read_cache = meter.create_counter(
            "jangkau.read_cache.lookups",
            unit="{lookup}",
            description="Read answers served from memory or computed (attribute jangkau.result)",
        )


_instruments: Instruments | None = None


def instruments() -> Instruments:
    global _instruments
    if _instruments is None:
        _instruments = Instruments()
    return _instruments
