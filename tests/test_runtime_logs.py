"""JSON logs carry the current trace and span ids."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from jangkau.runtime.logs import JsonFormatter


def test_a_log_line_inside_a_span_carries_its_trace_id():
    tracer = TracerProvider().get_tracer("test")
    formatter = JsonFormatter("budget")
    with tracer.start_as_current_span("allocate") as span:
        record = logging.LogRecord("jangkau.test", logging.INFO, __file__, 1, "hello", None, None)
        record.fields = {"campaign_id": "cmp_1"}
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["service"] == "budget"
    assert line["campaign_id"] == "cmp_1"
    assert line["message"] == "hello"


def test_a_log_line_outside_a_span_has_no_trace_id():
    record = logging.LogRecord("jangkau.test", logging.INFO, __file__, 1, "hi", None, None)
    assert "trace_id" not in json.loads(JsonFormatter("metrics").format(record))
