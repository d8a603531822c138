"""Trace sampling as `configure_telemetry` sets it up. Each case runs in a fresh
interpreter, because a process configures its telemetry once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

PROBE = """
import json, sys
from opentelemetry import trace
from jangkau.runtime.telemetry import configure_telemetry, extract_context, inject_metadata, tracer
trace_file = sys.argv[1] or None
configure_telemetry("probe", trace_file and __import__("pathlib").Path(trace_file))
out = {}
for name, parent in (("root", None), ("sampled", sys.argv[2]), ("unsampled", sys.argv[3])):
    context = extract_context([("traceparent", parent)]) if parent else None
    with tracer().start_as_current_span(name, context=context) as span:
        out[name] = {
            "recording": span.is_recording(),
            "trace_id": format(span.get_span_context().trace_id, "032x"),
            "sent": dict(inject_metadata()).get("traceparent", ""),
        }
print(json.dumps(out))
"""


def sampled_flag(traceparent: str) -> bool:
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 1)


def probe(trace_file: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(trace_file or ""), SAMPLED_PARENT, UNSAMPLED_PARENT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_without_an_exporter_a_process_starts_no_trace_but_continues_a_sampled_one():
    spans = probe(None)
    assert not spans["root"]["recording"]
    # The root still has ids (log lines name them) and passes an unsampled context on.
    assert spans["root"]["trace_id"] != "0" * 32
    assert not sampled_flag(spans["root"]["sent"])
    assert spans["sampled"]["recording"]
    assert spans["sampled"]["trace_id"] == SAMPLED_PARENT.split("-")[1]
    assert sampled_flag(spans["sampled"]["sent"])
    assert not spans["unsampled"]["recording"]
    assert spans["unsampled"]["trace_id"] == UNSAMPLED_PARENT.split("-")[1]


def test_with_an_exporter_every_span_is_recorded_and_exported(tmp_path):
    path = tmp_path / "spans.jsonl"
    spans = probe(path)
    assert spans["root"]["recording"]
    assert spans["sampled"]["recording"]
    exported = [json.loads(line)["name"] for line in path.read_text().splitlines()]
    # The SDK's default sampler follows a caller's decision not to sample.
    assert exported == ["root", "sampled"]


METER_PROBE = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from jangkau.runtime.telemetry import configure_telemetry, instruments
configure_telemetry("probe")
instruments().rpc_duration.record(1.0, {"rpc.method": "Probe"})
provider = metrics.get_meter_provider()
print(type(provider).__name__ if isinstance(provider, MeterProvider) else "none")
"""


def meter_provider(**env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", METER_PROBE],
        capture_output=True,
        text=True,
        env={**env, **env_extra},
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_metrics_are_aggregated_only_for_an_exporter():
    assert meter_provider() == "none"
    # A collector nobody listens on: the process only has to set the exporter up.
    with_collector = meter_provider(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_METRIC_EXPORT_INTERVAL="600000"
    )
    assert with_collector == "MeterProvider"
