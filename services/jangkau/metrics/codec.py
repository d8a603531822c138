"""Translation between jangkau.v1 metrics messages and the domain's columns:
report batches (messages or an Arrow IPC stream) to Arrow tables, and query
results to response messages without a Python loop per curve statistic."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jangkau.metrics import domain
from jangkau.metrics.domain import (
    EVENT_SCHEMA,
    REPORT_SCHEMA,
    Arm,
    ArmStatsTable,
    Campaign,
    Platform,
    RegisteredCampaign,
    SeriesTable,
    Summary,
)
from jangkau.runtime.errors import InvalidArgument
from jangkau.runtime.times import from_timestamp, to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2


def _micros(stamps: Sequence) -> np.ndarray:  # type: ignore[type-arg]
    """Timestamps (seconds, nanos) as epoch microseconds (sub-microsecond digits dropped)."""
    seconds = np.fromiter((t.seconds for t in stamps), dtype=np.int64, count=len(stamps))
    nanos = np.fromiter((t.nanos for t in stamps), dtype=np.int64, count=len(stamps))
    # Out-of-range seconds become the epoch or the year 9999, which validation refuses.
    np.clip(seconds, 0, _LAST_SECOND, out=seconds)
    return seconds * 1_000_000 + nanos // 1000


_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def reports_from_rows(rows: Sequence[metrics_pb2.HourlyReport]) -> pa.Table:
    """The `rows` payload as REPORT_SCHEMA columns."""
    n = len(rows)

    def ints(name: str) -> np.ndarray:
        return np.fromiter((getattr(r, name) for r in rows), dtype=np.int64, count=n)

    return pa.table(
        [
            pa.array([r.campaign_id for r in rows], pa.string()),
            pa.array([r.arm_id for r in rows], pa.string()),
            pa.array(np.fromiter((r.platform for r in rows), dtype=np.int32, count=n)),
            pa.array(_micros([r.hour for r in rows]), pa.int64()).cast(
                REPORT_SCHEMA.field("hour").type
            ),
            pa.array([r.attribution_window for r in rows], pa.string()),
            pa.array(ints("impressions")),
            pa.array(ints("reach")),
            pa.array(ints("clicks")),
            pa.array(np.fromiter((r.conversions for r in rows), dtype=np.float64, count=n)),
            pa.array(ints("conversion_value_micros")),
            pa.array(ints("spend_micros")),
            pa.array([r.currency for r in rows], pa.string()),
            pa.array(_micros([r.version for r in rows]), pa.int64()).cast(
                REPORT_SCHEMA.field("version").type
            ),
        ],
        schema=REPORT_SCHEMA,
    )


def table_from_arrow(payload: bytes, schema: pa.Schema, field: str) -> pa.Table:
    """An Arrow IPC stream as `schema`: every column present once, types cast
    safely (narrower integers, large or dictionary strings, other timestamp units;
    a timestamp without a zone is read as UTC). Whatever the bytes, a payload that
    is not such a stream is InvalidArgument naming `field`."""
    try:
        table = pa.ipc.open_stream(payload).read_all()
        # The reader checks the stream's framing, not its buffers: offsets out of
        # bounds or invalid UTF-8 would otherwise reach the checks and the store.
        table.validate(full=True)
        names = table.column_names
    except _UNREADABLE as exc:
        raise InvalidArgument(field, f"not a valid Arrow IPC stream: {exc}") from None
    repeated = sorted(name for name, times in Counter(names).items() if times > 1)
    if repeated:
        raise InvalidArgument(field, f"columns {', '.join(repeated)} appear more than once")
    unknown = [name for name in names if name not in schema.names]
    if unknown:
        raise InvalidArgument(field, f"unknown columns {', '.join(unknown)}")
    missing = [name for name in schema.names if name not in names]
    if missing:
        raise InvalidArgument(field, f"missing columns {', '.join(missing)}")
    columns = []
    for target in schema:
        column = table.column(target.name)
        if column.type != target.type:
            source = column.type
            try:
                if pa.types.is_dictionary(source):
                    column = column.cast(source.value_type)
                if pa.types.is_timestamp(column.type) and column.type.tz is None:
                    column = pc.assume_timezone(column, "UTC")
                column = column.cast(target.type)
            except _UNREADABLE as exc:
                raise InvalidArgument(
                    f"{field}.{target.name}", f"type {source} is not {target.type}: {exc}"
                ) from None
        columns.append(column)
    return pa.table(columns, schema=schema)


# What Arrow raises on bytes or types it cannot read (a name that is not UTF-8 is a
# UnicodeDecodeError, a ValueError).
_UNREADABLE = (pa.ArrowException, OSError, ValueError, TypeError)


def reports_to_arrow(table: pa.Table) -> bytes:
    """A REPORT_SCHEMA table as the `arrow_ipc` payload (clients and benchmarks)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def events_table(events: Sequence[metrics_pb2.ConversionEvent]) -> pa.Table:
    n = len(events)
    return pa.table(
        [
            pa.array([e.event_id for e in events], pa.string()),
            pa.array([e.campaign_id for e in events], pa.string()),
            pa.array([e.arm_id for e in events], pa.string()),
            pa.array(_micros([e.time for e in events]), pa.int64()).cast(
                EVENT_SCHEMA.field("time").type
            ),
            pa.array(np.fromiter((e.value_micros for e in events), dtype=np.int64, count=n)),
            pa.array([e.source for e in events], pa.string()),
        ],
        schema=EVENT_SCHEMA,
    )


def campaign_from_request(request: metrics_pb2.RegisterCampaignRequest) -> Campaign:
    arms = tuple(
        Arm(
            arm_id=a.arm_id,
            platform=Platform(a.platform) if a.platform in _PLATFORMS else a.platform,  # type: ignore[arg-type]
            audience_id=a.audience_id,
        )
        for a in request.arms
    )
    return Campaign(
        campaign_id=request.campaign_id,
        currency=request.currency,
        total_budget_micros=request.total_budget_micros,
        flight_start=from_timestamp(request.flight.start),
        flight_end=from_timestamp(request.flight.end),
        arms=tuple(sorted(arms, key=lambda a: a.arm_id)),
        revision=request.revision,
    )


def register_request(campaign: Campaign) -> metrics_pb2.RegisterCampaignRequest:
    """The RegisterCampaign request for a campaign (clients, tests, benchmarks)."""
    return metrics_pb2.RegisterCampaignRequest(
        campaign_id=campaign.campaign_id,
        currency=campaign.currency,
        total_budget_micros=campaign.total_budget_micros,
        flight=common_pb2.TimeRange(
            start=to_timestamp(campaign.flight_start), end=to_timestamp(campaign.flight_end)
        ),
        arms=[
            metrics_pb2.ArmRef(arm_id=a.arm_id, platform=int(a.platform), audience_id=a.audience_id)
            for a in campaign.arms
        ],
        revision=campaign.revision,
    )


_PLATFORMS = frozenset(int(p) for p in Platform)

# Wire layout of one `ArmStats.curves` entry: field 17, length 27, then the three
# doubles of CurveStats (fields 1-3, wire type 1). Fixed size, so a whole arm's
# curves are one slice of a numpy buffer.
_CURVE_ENTRY = np.dtype(
    [
        ("head", "u1", 3),
        ("kappa_tag", "u1"),
        ("kappa", "<f8"),
        ("exposure_tag", "u1"),
        ("exposure", "<f8"),
        ("log_shape_tag", "u1"),
        ("log_shape", "<f8"),
    ]
)
_CURVE_HEAD = np.array([0x8A, 0x01, 27], dtype=np.uint8)


def curves_block(kappas: np.ndarray, exposure: np.ndarray, log_shape: np.ndarray) -> np.ndarray:
    """Each arm's `curves` field, serialised: arms × (κ × 30) bytes, one row per arm."""
    arms, k = exposure.shape
    buffer = np.empty((arms, k), dtype=_CURVE_ENTRY)
    buffer["head"] = _CURVE_HEAD
    buffer["kappa_tag"] = 0x09
    buffer["kappa"] = kappas[None, :]
    buffer["exposure_tag"] = 0x11
    buffer["exposure"] = exposure
    buffer["log_shape_tag"] = 0x19
    buffer["log_shape"] = log_shape
    return buffer.view(np.uint8).reshape(arms, k * _CURVE_ENTRY.itemsize)


# The ArmStats fields that ArmStatsTable holds under the same name, one value an arm.
_ARM_STATS_COLUMNS = (
    "spend_micros",
    "discounted_spend_micros",
    "conversions",
    "discounted_conversions",
    "clicks",
    "discounted_clicks",
    "impressions",
    "discounted_impressions",
    "hours_observed",
    "discounted_hours",
)


def arm_stats_wire(
    registered: RegisteredCampaign,
    stats: ArmStatsTable,
    kappas: np.ndarray,
    event_count: np.ndarray,
    event_value: np.ndarray,
) -> bytes:
    """GetArmStatsResponse.arms, serialised: each arm's scalar fields (1-16) by
    protobuf, then its curves (field 17) as curves_block wrote them, framed as one
    `arms` entry. No CurveStats message is built: at 9 arms × 31 κ this takes
    about 60 µs, where writing every field column-wise with numpy took 0.5 ms."""
    columns = {name: getattr(stats, name).tolist() for name in _ARM_STATS_COLUMNS}
    columns["platform"] = registered.platforms.tolist()
    columns["event_conversions"] = event_count.tolist()
    columns["event_value_micros"] = event_value.tolist()
    names = list(columns)
    last_hour = stats.last_hour_us.tolist()
    curves = curves_block(kappas, stats.exposure, stats.log_shape)
    rows = zip(registered.arms, zip(*columns.values(), strict=True), last_hour, curves, strict=True)
    entries = []
    for arm, values, last, curve in rows:
        message = metrics_pb2.ArmStats(
            arm_id=arm.arm_id, audience_id=arm.audience_id, **dict(zip(names, values, strict=True))
        )
        if last >= 0:
            message.last_hour.FromMicroseconds(last)
        body = message.SerializeToString() + curve.tobytes()
        entries.append(b"\x0a" + _varint(len(body)) + body)
    return b"".join(entries)


def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hour_series(
    n_arms: int,
    arm: np.ndarray,
    hour_us: np.ndarray,
    spend: np.ndarray,
    impressions: np.ndarray,
    clicks: np.ndarray,
    conversions: np.ndarray,
) -> list[list[metrics_pb2.HourPoint]]:
    """Each arm's hourly points in hour order."""
    order = np.lexsort((hour_us, arm))
    out: list[list[metrics_pb2.HourPoint]] = [[] for _ in range(n_arms)]
    for a, h, s, im, c, cv in zip(
        arm[order].tolist(),
        hour_us[order].tolist(),
        spend[order].tolist(),
        impressions[order].tolist(),
        clicks[order].tolist(),
        conversions[order].tolist(),
        strict=True,
    ):
        point = metrics_pb2.HourPoint(spend_micros=s, impressions=im, clicks=c, conversions=cv)
        point.hour.FromMicroseconds(h)
        out[a].append(point)
    return out


def timeseries_response(
    table: SeriesTable, metrics: Sequence[int]
) -> metrics_pb2.GetTimeseriesResponse:
    response = metrics_pb2.GetTimeseriesResponse(metrics=list(metrics))
    for key, starts, values in zip(table.keys, table.starts, table.values, strict=True):
        series = response.series.add(key=key)
        for start, row in zip(starts.tolist(), values.tolist(), strict=True):
            point = series.points.add(values=row)
            point.start.FromMicroseconds(start)
    return response


def summary_response(summary: Summary) -> metrics_pb2.CampaignSummary:
    t = summary.totals
    campaign = summary.campaign
    response = metrics_pb2.CampaignSummary(
        campaign_id=campaign.campaign_id,
        currency=campaign.currency,
        total_budget_micros=campaign.total_budget_micros,
        spend_micros=summary.spend_micros,
        remaining_micros=summary.remaining_micros,
        expected_spend_micros=summary.expected_spend_micros,
        pacing_ratio=_finite(summary.pacing_ratio),
        impressions=int(t.impressions[0]),
        clicks=int(t.clicks[0]),
        conversions=float(t.conversions[0]),
        cpa_micros=float(domain.metric_values(t, domain.Metric.CPA)[0]),
        ctr=float(domain.metric_values(t, domain.Metric.CTR)[0]),
        conversion_rate=float(domain.metric_values(t, domain.Metric.CONVERSION_RATE)[0]),
        event_conversions=summary.event_conversions,
        as_of=to_timestamp(summary.as_of),
    )
    for p in summary.platforms:
        s = p.sums
        response.platforms.add(
            platform=int(p.platform),
            spend_micros=int(s.spend_micros[0]),
            impressions=int(s.impressions[0]),
            reach=int(s.reach[0]),
            clicks=int(s.clicks[0]),
            conversions=float(s.conversions[0]),
            cpa_micros=float(domain.metric_values(s, domain.Metric.CPA)[0]),
            ctr=float(domain.metric_values(s, domain.Metric.CTR)[0]),
            conversion_rate=float(domain.metric_values(s, domain.Metric.CONVERSION_RATE)[0]),
            spend_share=p.spend_share,
        )
    return response


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
