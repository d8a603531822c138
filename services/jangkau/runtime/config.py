"""Configuration from environment variables, with documented defaults.

Every variable any jangkau process reads is listed in `ENV_VARS`; the deploy
manifests are checked against this table by test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# name -> (default, meaning). An empty default means "unset".
ENV_VARS: dict[str, tuple[str, str]] = {
    "JANGKAU_AUDIENCE_ADDR": ("127.0.0.1:50051", "host:port of the audience service"),
    "JANGKAU_BUDGET_ADDR": ("127.0.0.1:50052", "host:port of the budget service"),
    "JANGKAU_METRICS_ADDR": ("127.0.0.1:50053", "host:port of the metrics service"),
    "JANGKAU_SANDBOX_ADDR": ("127.0.0.1:50054", "host:port of the sandbox market"),
    "JANGKAU_LISTEN_ADDR": (
        "",
        "address the served service binds; default: its own JANGKAU_<NAME>_ADDR",
    ),
    "JANGKAU_DATA_DIR": ("./.jangkau", "folder of the services' DuckDB files"),
    "JANGKAU_TOKENS_FILE": ("", "JSON file of bearer tokens; unset: the development tokens"),
    "JANGKAU_TOKEN": ("", "token this process presents on outgoing calls (CLI, rebalancer)"),
    "JANGKAU_PLATFORMS_FILE": (
        "",
        "rebalancer: live platform adapters and arm placements (JSON); unset: the sandbox",
    ),
    "JANGKAU_EVENT_LATENESS_HOURS": (
        "168",
        "metrics: conversion events older than this before now are refused as late",
    ),
    "JANGKAU_METRICS_STORE": ("duckdb", "metrics: storage backend (the seam for DuckLake)"),
    "JANGKAU_GRACE_SECONDS": ("5", "SIGTERM: seconds to drain in-flight calls before stopping"),
    "JANGKAU_MAX_WORKERS": (
        "8",
        "threads serving RPCs per process; each open stream holds one while it lasts",
    ),
    "JANGKAU_DUCKDB_THREADS": (
        "1",
        "threads DuckDB gives one query in a service; calls already run side by side",
    ),
    "JANGKAU_READ_CACHE_MB": (
        "64",
        "memory per service for answers of read RPCs kept until their data changes; 0: off",
    ),
    "JANGKAU_CALL_TIMEOUT_SECONDS": ("5", "deadline of every outgoing call between services"),
    "JANGKAU_LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING or ERROR"),
    "JANGKAU_TRACE_FILE": (
        "",
        "also write finished spans to this file, one JSON per line; {service} in it is replaced",
    ),
    "JANGKAU_PARENT_PID": ("", "set by `jangkau up`: the service stops when that process dies"),
    "OTEL_SERVICE_NAME": ("", "service name on traces; default jangkau-<service>"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("", "OTLP/gRPC collector; unset: no exporter"),
    "OTEL_RESOURCE_ATTRIBUTES": ("", "extra resource attributes, k=v,k=v"),
}

# The services `jangkau serve` knows, with the variable holding each one's address.
SERVICE_ADDR_VARS: dict[str, str] = {
    "audience": "JANGKAU_AUDIENCE_ADDR",
    "budget": "JANGKAU_BUDGET_ADDR",
    "metrics": "JANGKAU_METRICS_ADDR",
    "sandbox": "JANGKAU_SANDBOX_ADDR",
}


def env(name: str) -> str:
    """The variable's value, or its documented default."""
    if name not in ENV_VARS:
        raise KeyError(f"undocumented environment variable {name}")
    value = os.environ.get(name, "")
    return value if value != "" else ENV_VARS[name][0]


@dataclass(frozen=True)
class Settings:
    """A process's settings, read once at start."""

    audience_addr: str
    budget_addr: str
    metrics_addr: str
    sandbox_addr: str
    listen_addr: str
    data_dir: Path
    tokens_file: Path | None
    token: str
    grace_seconds: float
    max_workers: int
    call_timeout_seconds: float
    log_level: str
    trace_file: Path | None
    platforms_file: Path | None = None
    read_cache_mb: int = int(ENV_VARS["JANGKAU_READ_CACHE_MB"][0])
    duckdb_threads: int = int(ENV_VARS["JANGKAU_DUCKDB_THREADS"][0])

    @classmethod
    def from_env(cls, service: str | None = None) -> Settings:
        def number(name: str, kind: type) -> float | int:
            raw = env(name)
            try:
                value = kind(raw)
            except ValueError:
                raise SystemExit(f"{name}={raw!r} is not a {kind.__name__}") from None
            if value <= 0:
                raise SystemExit(f"{name}={raw!r} must be > 0")
            return value

        cache_mb = env("JANGKAU_READ_CACHE_MB")
        if not cache_mb.isdigit():
            raise SystemExit(f"JANGKAU_READ_CACHE_MB={cache_mb!r} is not a whole number >= 0")
        listen = env("JANGKAU_LISTEN_ADDR")
        if not listen and service is not None:
            listen = env(SERVICE_ADDR_VARS[service])
        tokens = env("JANGKAU_TOKENS_FILE")
        trace = env("JANGKAU_TRACE_FILE")
        platforms = env("JANGKAU_PLATFORMS_FILE")
        return cls(
            audience_addr=env("JANGKAU_AUDIENCE_ADDR"),
            budget_addr=env("JANGKAU_BUDGET_ADDR"),
            metrics_addr=env("JANGKAU_METRICS_ADDR"),
            sandbox_addr=env("JANGKAU_SANDBOX_ADDR"),
            listen_addr=listen,
            data_dir=Path(env("JANGKAU_DATA_DIR")),
            tokens_file=Path(tokens) if tokens else None,
            token=env("JANGKAU_TOKEN"),
            grace_seconds=float(number("JANGKAU_GRACE_SECONDS", float)),
            max_workers=int(number("JANGKAU_MAX_WORKERS", int)),
            call_timeout_seconds=float(number("JANGKAU_CALL_TIMEOUT_SECONDS", float)),
            log_level=env("JANGKAU_LOG_LEVEL").upper(),
            trace_file=Path(trace) if trace else None,
            platforms_file=Path(platforms) if platforms else None,
            read_cache_mb=int(cache_mb),
            duckdb_threads=int(number("JANGKAU_DUCKDB_THREADS", int)),
        )
