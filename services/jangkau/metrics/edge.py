"""The MetricsService gRPC edge: checks each request's fields, turns messages
into columns and use-case calls, and results back into messages. Domain errors
are raised, never aborted here; the runtime's interceptor maps them."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import grpc
import numpy as np
import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

from jangkau.metrics import codec, domain
from jangkau.metrics.domain import (
    CLOCK_SKEW,
    MAX_BATCH_ID_CHARS,
    MAX_BATCH_ROWS,
    MAX_EVENTS,
    MAX_KAPPAS,
    MAX_WINDOW_CHARS,
    REPORT_SCHEMA,
    CountMetric,
    GroupBy,
    Metric,
)
from jangkau.metrics.service import MetricsService
from jangkau.metrics.store import open_store
from jangkau.metrics.watch import LEASE_SECONDS, MAX_WATCHES
from jangkau.runtime.auth import current_caller
from jangkau.runtime.cache import MIB, ReadCache
from jangkau.runtime.config import Settings, env
from jangkau.runtime.errors import FieldViolation, InvalidArgument, Violations
from jangkau.runtime.server import OpenService, ServiceDefinition
from jangkau.runtime.telemetry import instruments
from jangkau.runtime.times import from_timestamp
from jangkau.runtime.versions import changed_from_wire
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc

# Read here until jangkau.runtime.config lists them: hours after which a
# conversion event is refused as late (default 168, one week), and the store
# backend (default "duckdb", the only one so far).
LATENESS_VAR = "JANGKAU_EVENT_LATENESS_HOURS"
BACKEND_VAR = "JANGKAU_METRICS_STORE"
# Batches decoded ahead of the one committing, and the most rows one commit takes.
READ_AHEAD_BATCHES = 4
GROUP_ROWS = 50_000
# Largest saturation scale accepted, micros per hour (beyond it 1 − e^(−x/κ) underflows).
MAX_KAPPA_MICROS = 1e18
# Longest GetArmStatsRequest.if_version_not accepted (versions are far shorter).
MAX_VERSION_CHARS = 64
# How often a data version watch's stream looks whether its call is still alive.
WATCH_POLL_SECONDS = 0.5


def _change(campaign_id: str, version: str, earliest_us: int) -> metrics_pb2.CampaignDataVersion:
    return metrics_pb2.CampaignDataVersion(
        campaign_id=campaign_id,
        data_version=version,
        changed_from=changed_from_wire(earliest_us),
    )


def _tenant() -> str:
    return current_caller().tenant


def _time(stamp: Timestamp, field: str, problems: Violations) -> datetime | None:
    """A Timestamp as a datetime, or a violation when it is out of range."""
    try:
        return from_timestamp(stamp)
    except (ValueError, OverflowError):
        problems.add(field, "not a valid time (years 1 to 9999)")
        return None


def _window(
    window: common_pb2.TimeRange, has_window: bool, problems: Violations
) -> tuple[datetime, datetime]:
    """A required [start, end) window."""
    if not has_window or not window.HasField("start") or not window.HasField("end"):
        problems.add("window", "required, with start and end")
        return datetime.min, datetime.min
    start = _time(window.start, "window.start", problems)
    end = _time(window.end, "window.end", problems)
    if start is None or end is None:
        return datetime.min, datetime.min
    problems.check(end > start, "window.end", "must be after window.start")
    return start, end


def _campaign_id(value: str, problems: Violations) -> None:
    problems.check(bool(value), "campaign_id", "required")


def _attribution_window(value: str, problems: Violations) -> None:
    problems.check(
        len(value) <= MAX_WINDOW_CHARS,
        "attribution_window",
        f"at most {MAX_WINDOW_CHARS} characters",
    )


def _decode_batch(batch: metrics_pb2.ReportBatch, index: int) -> tuple[str, pa.Table]:
    """The id and rows (REPORT_SCHEMA) of the stream's batch number `index`, or
    InvalidArgument naming the field and the batch."""
    try:
        return batch.batch_id, _batch_rows(batch)
    except InvalidArgument as exc:
        raise InvalidArgument.of(
            [FieldViolation(v.field, f"{v.reason} (batch {index})") for v in exc.violations]
        ) from None


def _batch_rows(batch: metrics_pb2.ReportBatch) -> pa.Table:
    if len(batch.batch_id) > MAX_BATCH_ID_CHARS:
        raise InvalidArgument("batch_id", f"at most {MAX_BATCH_ID_CHARS} characters")
    payload = batch.WhichOneof("payload")
    if payload == "rows":
        table = codec.reports_from_rows(batch.rows.rows)
    elif payload == "arrow_ipc":
        table = codec.table_from_arrow(batch.arrow_ipc, REPORT_SCHEMA, payload)
    else:
        raise InvalidArgument("payload", "required: rows or arrow_ipc")
    if not 1 <= table.num_rows <= MAX_BATCH_ROWS:
        raise InvalidArgument(payload, f"{table.num_rows} rows; a batch holds 1..{MAX_BATCH_ROWS}")
    return table


class ReadAhead:
    """Reads and decodes a request stream on a thread of its own, a few batches
    ahead, so that the next batches arrive while one commits; `take` hands over
    every batch already waiting (up to a row budget) to share one commit. A batch
    that cannot be decoded, or a failure of the reading itself, ends the stream
    with that error: never with a silent end that would drop the batches after it."""

    def __init__(
        self,
        requests: Iterator[metrics_pb2.ReportBatch],
        decode: Callable[[metrics_pb2.ReportBatch, int], tuple[str, pa.Table]],
        depth: int = READ_AHEAD_BATCHES,
    ) -> None:
        self._requests = requests
        self._decode = decode
        self._queue: queue.Queue[tuple[str, pa.Table] | Exception | None] = queue.Queue(depth)
        self._closed = threading.Event()
        self.ended = False
        self._thread = threading.Thread(target=self._read, name="ingest-read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()

    def _put(self, item: tuple[str, pa.Table] | Exception | None) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for index, request in enumerate(self._requests):
                if not self._put(self._decode(request, index)):
                    return
        except grpc.RpcError:
            pass  # the client went away: nothing more to read
        except Exception as exc:  # noqa: BLE001 (raised where the call is answered)
            self._put(exc)
            return
        self._put(None)

    def take(self, max_rows: int) -> tuple[list[tuple[str, pa.Table]], Exception | None]:
        """The next batch (waiting for it) and those queued behind it, up to
        `max_rows` rows in all; and the error that ended the stream, if any.
        Sets `ended` once the stream is over."""
        group: list[tuple[str, pa.Table]] = []
        rows = 0
        item = self._queue.get()
        while True:
            if item is None:
                self.ended = True
                return group, None
            if isinstance(item, Exception):
                self.ended = True
                return group, item
            group.append(item)
            rows += item[1].num_rows
            if rows >= max_rows:
                return group, None
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return group, None


class MetricsServicer(metrics_pb2_grpc.MetricsServiceServicer):
    def __init__(self, service: MetricsService, cache_bytes: int = 0) -> None:
        self.service = service
        # Timeseries, summaries and arm statistics, under the version of their
        # campaign's data. Callers of GetArmStats keep the answer and ask with
        # if_version_not; the cache spares the recomputation when several ask at
        # once after a write (a rebalance of many campaigns, budget replicas).
        self.answers = ReadCache("metrics", cache_bytes)

    def RegisterCampaign(
        self, request: metrics_pb2.RegisterCampaignRequest, context: grpc.ServicerContext
    ) -> metrics_pb2.RegisterCampaignResponse:
        problems = Violations()
        flight = request.flight
        if (
            not request.HasField("flight")
            or not flight.HasField("start")
            or not flight.HasField("end")
        ):
            problems.add("flight", "required, with start and end")
        else:
            _time(flight.start, "flight.start", problems)
            _time(flight.end, "flight.end", problems)
        problems.raise_if_any()
        applied = self.service.register(_tenant(), codec.campaign_from_request(request))
        return metrics_pb2.RegisterCampaignResponse(applied=applied)

    def IngestReports(
        self, request_iterator: Iterator[metrics_pb2.ReportBatch], context: grpc.ServicerContext
    ) -> Iterator[metrics_pb2.IngestReportsAck]:
        tenant = _tenant()
        with ReadAhead(request_iterator, _decode_batch) as reader:
            while True:
                group, failure = reader.take(GROUP_ROWS)
                counts, refusal = self.service.ingest_batches(tenant, [t for _, t in group])
                meters = instruments()
                meters.ingest_rows.add(
                    sum(c.inserted + c.replaced + c.unchanged + c.stale for c in counts),
                    {"jangkau.kind": "report"},
                )
                if refusal is not None and len(counts) < len(group):
                    meters.ingest_rejects.add(
                        group[len(counts)][1].num_rows, {"jangkau.kind": "report"}
                    )
                for (batch_id, _), done in zip(group, counts, strict=False):
                    yield metrics_pb2.IngestReportsAck(
                        batch_id=batch_id,
                        inserted=done.inserted,
                        replaced=done.replaced,
                        unchanged=done.unchanged,
                        stale=done.stale,
                    )
                if refusal is not None:
                    raise refusal
                if failure is not None:
                    raise failure
                if reader.ended:
                    return

    def IngestEvents(
        self, request: metrics_pb2.IngestEventsRequest, context: grpc.ServicerContext
    ) -> metrics_pb2.IngestEventsResponse:
        problems = Violations()
        n = len(request.events)
        problems.check(
            1 <= n <= MAX_EVENTS, "events", f"{n} events; a request holds 1..{MAX_EVENTS}"
        )
        as_of = _time(request.as_of, "as_of", problems) if request.HasField("as_of") else None
        if as_of is not None:
            problems.check(
                as_of <= self.service.clock() + CLOCK_SKEW,
                "as_of",
                "must not be later than the server's clock",
            )
        problems.raise_if_any()
        result = self.service.ingest_events(_tenant(), codec.events_table(request.events), as_of)
        meters = instruments()
        meters.ingest_rows.add(result.inserted, {"jangkau.kind": "event"})
        meters.ingest_rejects.add(sum(result.refused.values()), {"jangkau.kind": "event"})
        return metrics_pb2.IngestEventsResponse(
            inserted=result.inserted, duplicates=result.duplicates, refused=result.refused
        )

    def WatchDataVersions(
        self,
        request_iterator: Iterator[metrics_pb2.WatchDataVersionsRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[metrics_pb2.DataVersionsNotice]:
        watches = self.service.versions.watches
        watch = watches.open(_tenant())

        def read_requests() -> None:
            try:
                for request in request_iterator:
                    if request.applied:
                        watches.applied(watch, request.applied)
                    if request.renewal:
                        watches.renew(watch, request.renewal)
            except grpc.RpcError:
                pass  # the client went away
            finally:
                watches.close(watch)

        threading.Thread(target=read_requests, name="version-watch-read", daemon=True).start()
        lease_ms = round(LEASE_SECONDS * 1000)
        try:
            while context.is_active():
                notice = watches.next_notice(watch, WATCH_POLL_SECONDS)
                if notice is None:
                    if watches.finished(watch):
                        return
                    continue
                yield metrics_pb2.DataVersionsNotice(
                    sequence=notice.sequence,
                    changes=[
                        _change(cid, version, earliest_us)
                        for cid, (version, earliest_us) in notice.changes.items()
                    ],
                    renewal=notice.renewal,
                    lease_ms=lease_ms,
                )
        finally:
            watches.close(watch)

    def GetArmStats(
        self, request: metrics_pb2.GetArmStatsRequest, context: grpc.ServicerContext
    ) -> metrics_pb2.GetArmStatsResponse | bytes:
        problems = Violations()
        _campaign_id(request.campaign_id, problems)
        start, end = _window(request.window, request.HasField("window"), problems)
        discount = request.discount
        problems.check(
            math.isfinite(discount) and 0.0 <= discount <= 1.0,
            "discount",
            f"{discount} is not in (0, 1] (0 means no discount)",
        )
        kappas = np.asarray(request.kappas_micros, dtype=np.float64)
        problems.check(len(kappas) <= MAX_KAPPAS, "kappas_micros", f"at most {MAX_KAPPAS} values")
        for i in np.flatnonzero(
            ~(np.isfinite(kappas) & (kappas > 0) & (kappas <= MAX_KAPPA_MICROS))
        )[:10]:
            problems.add(f"kappas_micros[{i}]", f"{kappas[i]} is not in (0, {MAX_KAPPA_MICROS:g}]")
        metric = request.count_metric or CountMetric.CONVERSIONS
        problems.check(
            metric in CountMetric.__members__.values(),
            "count_metric",
            f"unknown value {metric}",
        )
        _attribution_window(request.attribution_window, problems)
        problems.check(
            len(request.if_version_not) <= MAX_VERSION_CHARS,
            "if_version_not",
            f"at most {MAX_VERSION_CHARS} characters",
        )
        problems.raise_if_any()
        tenant = _tenant()
        # Taken before the data is read: an answer never carries a newer version.
        version = self.service.data_version(tenant, request.campaign_id, end)
        if request.if_version_not == version:
            return metrics_pb2.GetArmStatsResponse(data_version=version, not_modified=True)

        def compute() -> metrics_pb2.GetArmStatsResponse | bytes:
            result = self.service.arm_stats(
                tenant,
                request.campaign_id,
                start,
                end,
                discount=discount or 1.0,
                kappas_micros=kappas,
                metric=CountMetric(metric),
                attribution_window=request.attribution_window,
                include_series=request.include_series,
            )
            # Serialised as written; sent as is (runtime.server.SerialisedReplies).
            reply = (
                codec.arm_stats_wire(
                    result.registered, result.stats, kappas, result.event_count, result.event_value
                )
                + metrics_pb2.GetArmStatsResponse(data_version=version).SerializeToString()
            )
            if result.rows is None:
                return reply
            rows = result.rows
            series = codec.hour_series(
                len(result.registered.arms),
                rows.arm,
                rows.hour_us,
                rows.spend_micros,
                rows.impressions,
                rows.clicks,
                rows.conversions,
            )
            response = metrics_pb2.GetArmStatsResponse.FromString(reply)
            for arm, points in zip(response.arms, series, strict=True):
                arm.series.extend(points)
            return response

        # Whatever version the caller holds, the answer at this version is the same.
        asked = metrics_pb2.GetArmStatsRequest()
        asked.CopyFrom(request)
        asked.ClearField("if_version_not")
        return self.answers.answer("GetArmStats", asked, version, compute)

    def GetTimeseries(
        self, request: metrics_pb2.GetTimeseriesRequest, context: grpc.ServicerContext
    ) -> metrics_pb2.GetTimeseriesResponse:
        problems = Violations()
        _campaign_id(request.campaign_id, problems)
        start, end = _window(request.window, request.HasField("window"), problems)
        group_by = request.group_by or GroupBy.ARM
        problems.check(
            group_by in GroupBy.__members__.values(), "group_by", f"unknown value {group_by}"
        )
        granularity = request.granularity or metrics_pb2.HOURLY
        problems.check(
            granularity in (metrics_pb2.HOURLY, metrics_pb2.DAILY),
            "granularity",
            f"unknown value {granularity}",
        )
        metrics = list(request.metrics)
        problems.check(1 <= len(metrics) <= len(Metric), "metrics", f"1..{len(Metric)} metrics")
        for i, m in enumerate(metrics):
            problems.check(m in Metric.__members__.values(), f"metrics[{i}]", f"unknown metric {m}")
        _attribution_window(request.attribution_window, problems)
        problems.raise_if_any()
        tenant = _tenant()

        def compute() -> metrics_pb2.GetTimeseriesResponse:
            table = self.service.timeseries(
                tenant,
                request.campaign_id,
                start,
                end,
                [Metric(m) for m in metrics],
                group_by=GroupBy(group_by),
                daily=granularity == metrics_pb2.DAILY,
                attribution_window=request.attribution_window,
            )
            return codec.timeseries_response(table, metrics)

        version = self.service.data_version(tenant, request.campaign_id, end)
        return self.answers.answer("GetTimeseries", request, version, compute)

    def GetCampaignSummary(
        self, request: metrics_pb2.GetCampaignSummaryRequest, context: grpc.ServicerContext
    ) -> metrics_pb2.CampaignSummary:
        problems = Violations()
        _campaign_id(request.campaign_id, problems)
        _attribution_window(request.attribution_window, problems)
        as_of = _time(request.as_of, "as_of", problems) if request.HasField("as_of") else None
        problems.raise_if_any()
        tenant = _tenant()

        def compute() -> metrics_pb2.CampaignSummary:
            summary = self.service.summary(
                tenant, request.campaign_id, as_of, request.attribution_window
            )
            return codec.summary_response(summary)

        if as_of is None:
            return compute()  # "now" differs at every call: nothing to reuse
        version = self.service.data_version(tenant, request.campaign_id, as_of)
        return self.answers.answer("GetCampaignSummary", request, version, compute)


def event_lateness() -> timedelta:
    raw = env(LATENESS_VAR).strip()
    if not raw:
        return domain.DEFAULT_EVENT_LATENESS
    try:
        hours = float(raw)
    except ValueError:
        raise SystemExit(f"{LATENESS_VAR}={raw!r} is not a number of hours") from None
    if not hours > 0:
        raise SystemExit(f"{LATENESS_VAR}={raw!r} must be > 0")
    return timedelta(hours=hours)


def open_service(settings: Settings) -> OpenService:
    store = open_store(
        settings.data_dir, env(BACKEND_VAR).strip() or "duckdb", threads=settings.duckdb_threads
    )
    service = MetricsService(store, event_lateness())
    servicer = MetricsServicer(service, settings.read_cache_mb * MIB)

    def add(server: grpc.Server) -> None:
        metrics_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, server)

    return OpenService(add, store.close, drain=service.versions.watches.close_all)


DEFINITION = ServiceDefinition(
    name="metrics",
    full_name="jangkau.v1.MetricsService",
    read_methods=frozenset(
        {"GetArmStats", "GetTimeseries", "GetCampaignSummary", "WatchDataVersions"}
    ),
    open=open_service,
    # Each open watch holds a serving thread for as long as it lasts.
    extra_workers=MAX_WATCHES,
)
