"""Every validation rule of the metrics service answers INVALID_ARGUMENT naming
the field (NOT_FOUND for a campaign the caller does not have) and writes
nothing: a refused batch leaves only the batches acknowledged before it."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pyarrow as pa
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from jangkau.metrics import codec, synthetic
from jangkau.metrics.domain import REPORT_SCHEMA, Campaign
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import common_pb2, metrics_pb2, metrics_pb2_grpc
from tests.test_metrics_support import (
    ALPHA,
    H0,
    MetricsApi,
    batch,
    hours_stored,
    ingest,
    new_campaign,
    shared_metrics,  # noqa: F401 (fixture)
    window,
)
from tests.test_metrics_support import event as make_event
from tests.test_metrics_support import report as make_report

H1 = H0 + timedelta(hours=1)


@pytest.fixture
def stub(shared_metrics: MetricsApi) -> metrics_pb2_grpc.MetricsServiceStub:  # noqa: F811
    return shared_metrics.stub


@pytest.fixture
def campaign(stub: metrics_pb2_grpc.MetricsServiceStub) -> Campaign:
    return new_campaign(stub)


def report(campaign: Campaign, **fields: object) -> metrics_pb2.HourlyReport:
    fields.setdefault("hour", to_timestamp(H1))
    fields.setdefault("impressions", 10)
    fields.setdefault("reach", 8)
    fields.setdefault("clicks", 2)
    fields.setdefault("version", to_timestamp(H1 + timedelta(hours=2)))
    return make_report(campaign, **fields)


def good(campaign: Campaign) -> metrics_pb2.ReportBatch:
    return batch(report(campaign, hour=to_timestamp(H0)), batch_id="good")


def assert_refused(
    stub: metrics_pb2_grpc.MetricsServiceStub,
    campaign: Campaign,
    bad: metrics_pb2.ReportBatch,
    field: str,
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
) -> str:
    after = batch(report(campaign, hour=to_timestamp(H0 - timedelta(hours=1))), batch_id="after")
    acks, error = ingest(stub, good(campaign), bad, after)
    assert [a.batch_id for a in acks] == ["good"]
    assert error is not None and error.code() == code, error
    assert error.details().startswith(field), error.details()
    # The good batch, nothing of the bad one nor of the batch sent after it.
    assert hours_stored(stub, campaign) == 1
    return error.details()


FUTURE = datetime.now(UTC) + timedelta(hours=2)

ROW_RULES = {
    "negative impressions": (dict(impressions=-1, reach=0, clicks=0), "rows[1].impressions"),
    "negative reach": (dict(reach=-1), "rows[1].reach"),
    "negative clicks": (dict(clicks=-1), "rows[1].clicks"),
    "negative conversions": (dict(conversions=-0.5), "rows[1].conversions"),
    "conversions not a number": (dict(conversions=math.nan), "rows[1].conversions"),
    "negative conversion value": (
        dict(conversion_value_micros=-1),
        "rows[1].conversion_value_micros",
    ),
    "negative spend": (dict(spend_micros=-1), "rows[1].spend_micros"),
    # Beyond any campaign, and sums of such rows would overflow 64 bits.
    "spend above 10^15 micros": (
        dict(spend_micros=5 * 10**18),
        "rows[1].spend_micros: spend_micros 5000000000000000000 > 1e+15",
    ),
    "conversion value above 10^15 micros": (
        dict(conversion_value_micros=10**15 + 1),
        "rows[1].conversion_value_micros",
    ),
    "impressions above 10^12": (
        dict(impressions=10**12 + 1, reach=0, clicks=0),
        "rows[1].impressions",
    ),
    "conversions above 10^12": (dict(conversions=1e13), "rows[1].conversions"),
    "clicks above impressions": (
        dict(clicks=12, impressions=10),
        "rows[1].clicks: clicks 12 > impressions 10",
    ),
    "reach above impressions": (
        dict(reach=12, impressions=10),
        "rows[1].reach: reach 12 > impressions 10",
    ),
    "missing campaign id": (dict(campaign_id=""), "rows[1].campaign_id"),
    "missing arm id": (dict(arm_id=""), "rows[1].arm_id"),
    "unknown arm": (dict(arm_id="arm_nope"), "rows[1].arm_id: unknown arm"),
    "platform of another arm": (
        dict(platform=common_pb2.GOOGLE),
        "rows[1].platform: GOOGLE does not match",
    ),
    "platform unspecified": (dict(platform=common_pb2.PLATFORM_UNSPECIFIED), "rows[1].platform"),
    "hour not on the hour": (dict(hour=to_timestamp(H1 + timedelta(minutes=30))), "rows[1].hour"),
    "hour unset": (dict(hour=None), "rows[1].hour"),
    "hour in the future": (
        dict(
            hour=to_timestamp(FUTURE.replace(minute=0, second=0, microsecond=0)),
            version=to_timestamp(H1),
        ),
        "rows[1].hour",
    ),
    "version unset": (dict(version=None), "rows[1].version"),
    "version in the future": (dict(version=to_timestamp(FUTURE)), "rows[1].version"),
    "version out of range": (dict(version=Timestamp(seconds=10**15)), "rows[1].version"),
    "currency of another campaign": (dict(currency="USD"), "rows[1].currency"),
    "empty attribution window": (dict(attribution_window=""), "rows[1].attribution_window"),
    "attribution window too long": (
        dict(attribution_window="w" * 41),
        "rows[1].attribution_window",
    ),
}


@pytest.mark.parametrize("rule", ROW_RULES)
def test_a_bad_row_refuses_its_whole_batch_naming_the_field(stub, campaign, rule: str) -> None:
    fields, field = ROW_RULES[rule]
    valid_row = report(campaign, hour=to_timestamp(H1 + timedelta(hours=1)))
    assert_refused(stub, campaign, batch(valid_row, report(campaign, **fields)), field)


def test_an_unknown_campaign_is_not_found_and_writes_nothing(stub, campaign) -> None:
    valid_row = report(campaign, hour=to_timestamp(H1 + timedelta(hours=1)))
    details = assert_refused(
        stub,
        campaign,
        batch(valid_row, report(campaign, campaign_id="cmp_missing")),
        "rows[1].campaign_id",
        grpc.StatusCode.NOT_FOUND,
    )
    assert "cmp_missing" in details


def test_the_refusal_lists_the_first_bad_rows_in_order(stub, campaign) -> None:
    rows = [
        report(campaign, hour=to_timestamp(H1 + timedelta(hours=i)), clicks=99) for i in range(15)
    ]
    details = assert_refused(stub, campaign, batch(*rows), "rows[0].clicks")
    listed = [part.split(":")[0] for part in details.split("; ")]
    assert listed[:9] == [f"rows[{i}].clicks" for i in range(9)]
    assert listed[9] == "rows" and details.endswith("15 bad rows in all")


BATCH_RULES = {
    "empty batch": (lambda c: batch(), "rows"),
    "too many rows": (lambda c: batch(*[report(c)] * 10_001), "rows"),
    "no payload": (lambda c: metrics_pb2.ReportBatch(batch_id="x"), "payload"),
    "batch id too long": (lambda c: batch(report(c), batch_id="b" * 101), "batch_id"),
    "not an Arrow stream": (lambda c: metrics_pb2.ReportBatch(arrow_ipc=b"not arrow"), "arrow_ipc"),
}


@pytest.mark.parametrize("rule", BATCH_RULES)
def test_a_malformed_batch_is_refused_naming_the_field(stub, campaign, rule: str) -> None:
    bad, field = BATCH_RULES[rule]
    assert_refused(stub, campaign, bad(campaign), field)


def arrow_batch(table: pa.Table) -> metrics_pb2.ReportBatch:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return metrics_pb2.ReportBatch(arrow_ipc=sink.getvalue().to_pybytes())


def arrow_rows(campaign: Campaign) -> pa.Table:
    hours = [H1 + timedelta(hours=i) for i in range(3)]
    return codec.reports_from_rows([report(campaign, hour=to_timestamp(h)) for h in hours])


def test_an_arrow_batch_without_a_column_is_refused(stub, campaign) -> None:
    table = arrow_rows(campaign).drop_columns(["spend_micros"])
    assert_refused(stub, campaign, arrow_batch(table), "arrow_ipc")


def test_an_arrow_batch_repeating_a_column_is_refused_naming_the_batch(stub, campaign) -> None:
    table = arrow_rows(campaign)
    table = table.append_column("campaign_id", table.column("campaign_id"))
    details = assert_refused(stub, campaign, arrow_batch(table), "arrow_ipc")
    assert details == "arrow_ipc: columns campaign_id appear more than once (batch 1)"


def _arrow_bytes_replaced(old: bytes, new: bytes) -> Callable[[Campaign], bytes]:
    """A valid payload of one arm's reports with some bytes of it replaced."""

    def damaged(campaign: Campaign) -> bytes:
        payload = arrow_batch(arrow_rows(campaign)).arrow_ipc
        assert payload.count(old) == 1
        return payload.replace(old, new)

    return damaged


# Payloads whose framing reads but whose contents are damaged; the reader alone
# does not check buffers, so each would reach the rules and the store unchecked.
ARROW_DAMAGE = {
    "cut short": lambda c: arrow_batch(arrow_rows(c)).arrow_ipc[:-100],
    # arm_id: three times "arm_00000".
    "string offsets past the data": _arrow_bytes_replaced(
        struct.pack("<4i", 0, 9, 18, 27), struct.pack("<4i", 0, 9, 18, 1 << 30)
    ),
    "a string that is not UTF-8": _arrow_bytes_replaced(
        b"arm_00000" * 3, b"arm_00000arm_0000\xffarm_00000"
    ),
}


@pytest.mark.parametrize("damage", ARROW_DAMAGE)
def test_a_damaged_arrow_payload_is_refused_naming_the_batch(stub, campaign, damage) -> None:
    payload = ARROW_DAMAGE[damage](campaign)
    bad = metrics_pb2.ReportBatch(batch_id="bad", arrow_ipc=payload)
    details = assert_refused(stub, campaign, bad, "arrow_ipc: not a valid Arrow IPC stream")
    assert details.endswith("(batch 1)")


def test_a_batch_the_server_fails_to_read_ends_the_call_with_an_error(
    stub, campaign, monkeypatch
) -> None:
    def failing(payload: bytes, schema: pa.Schema, field: str) -> pa.Table:
        raise RuntimeError("reading failed")

    monkeypatch.setattr(codec, "table_from_arrow", failing)
    bad = arrow_batch(arrow_rows(campaign))
    assert_refused(stub, campaign, bad, "internal error", grpc.StatusCode.INTERNAL)


def test_an_arrow_batch_with_an_unknown_column_is_refused(stub, campaign) -> None:
    table = arrow_rows(campaign).append_column("spend", pa.array([1, 2, 3]))
    assert_refused(stub, campaign, arrow_batch(table), "arrow_ipc")


def test_an_arrow_column_of_the_wrong_type_is_refused_naming_it(stub, campaign) -> None:
    table = arrow_rows(campaign)
    table = table.set_column(
        table.schema.get_field_index("clicks"), "clicks", pa.array(["a", "b", "c"])
    )
    assert_refused(stub, campaign, arrow_batch(table), "arrow_ipc.clicks")


def test_a_null_in_an_arrow_batch_is_a_required_field(stub, campaign) -> None:
    table = arrow_rows(campaign)
    index = table.schema.get_field_index("spend_micros")
    table = table.set_column(index, "spend_micros", pa.array([1, None, 3], pa.int64()))
    details = assert_refused(stub, campaign, arrow_batch(table), "rows[1].spend_micros")
    assert "required" in details


def test_an_arrow_batch_with_amounts_beyond_the_bound_is_refused(stub, campaign) -> None:
    table = arrow_rows(campaign)
    spend = pa.array([1, 5 * 10**18, 5 * 10**18], pa.int64())
    table = table.set_column(table.schema.get_field_index("spend_micros"), "spend_micros", spend)
    assert_refused(stub, campaign, arrow_batch(table), "rows[1].spend_micros")


# An Arrow timestamp may lie beyond the years 1 to 9999 (a datetime's range).
FAR_FUTURE_US = 2**62
FAR_PAST_US = -(2**62) + 1  # not on the hour either

ARROW_TIMES_OUT_OF_RANGE = {
    "hour far in the future": ("hour", FAR_FUTURE_US, "rows[1].hour"),
    "hour far in the past": ("hour", FAR_PAST_US, "rows[1].hour"),
    "version far in the future": ("version", FAR_FUTURE_US, "rows[1].version"),
}


@pytest.mark.parametrize("rule", ARROW_TIMES_OUT_OF_RANGE)
def test_an_arrow_time_beyond_the_years_1_to_9999_is_refused_naming_it(
    stub, campaign, rule: str
) -> None:
    name, moment, field = ARROW_TIMES_OUT_OF_RANGE[rule]
    table = arrow_rows(campaign)
    index = table.schema.get_field_index(name)
    moments = table.column(name).cast(pa.int64()).to_pylist()
    moments[1] = moment
    table = table.set_column(
        index, name, pa.array(moments, pa.int64()).cast(REPORT_SCHEMA.field(name).type)
    )
    assert_refused(stub, campaign, arrow_batch(table), field)


def test_arrow_columns_that_cast_safely_are_accepted(stub, campaign) -> None:
    table = arrow_rows(campaign)
    narrow = pa.table(
        {
            name: (
                column.cast(pa.int32())
                if name in ("impressions", "reach", "clicks")
                else column.cast(pa.timestamp("ms"))
                if name == "hour"
                else column.dictionary_encode()
                if name == "campaign_id"
                else column
            )
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )
    acks, error = ingest(stub, arrow_batch(narrow))
    assert error is None and acks[0].inserted == 3


def test_an_arrow_batch_with_the_same_rows_is_accepted_like_messages(stub, campaign) -> None:
    table = arrow_rows(campaign).cast(REPORT_SCHEMA)
    rows = [report(campaign, hour=to_timestamp(H1 + timedelta(hours=i))) for i in range(3)]
    acks, error = ingest(stub, arrow_batch(table), batch(*rows))
    assert error is None
    assert [(a.inserted, a.unchanged) for a in acks] == [(3, 0), (0, 3)]


# ----------------------------------------------------------------- events


def event(campaign: Campaign, **fields: object) -> metrics_pb2.ConversionEvent:
    fields.setdefault("event_id", "ev-1")
    fields.setdefault("time", to_timestamp(H1))
    event_id = str(fields.pop("event_id"))
    return make_event(campaign, event_id, **fields)


EVENT_RULES = {
    "missing event id": (dict(event_id=""), "events[1].event_id"),
    "event id too long": (dict(event_id="e" * 129), "events[1].event_id"),
    "missing arm": (dict(arm_id=""), "events[1].arm_id"),
    "unknown arm": (dict(arm_id="arm_nope"), "events[1].arm_id"),
    "negative value": (dict(value_micros=-5), "events[1].value_micros"),
    "value above 10^15 micros": (dict(value_micros=10**15 + 1), "events[1].value_micros"),
    "time after as_of": (dict(time=to_timestamp(H1 + timedelta(days=2))), "events[1].time"),
    "time unset": (dict(time=None), "events[1].time"),
    "source too long": (dict(source="s" * 65), "events[1].source"),
}


def event_count(stub: metrics_pb2_grpc.MetricsServiceStub, campaign: Campaign) -> int:
    summary = stub.GetCampaignSummary(
        metrics_pb2.GetCampaignSummaryRequest(
            campaign_id=campaign.campaign_id, as_of=to_timestamp(H1 + timedelta(days=3))
        ),
        metadata=ALPHA,
    )
    return summary.event_conversions


@pytest.mark.parametrize("rule", EVENT_RULES)
def test_a_bad_event_refuses_the_request_naming_the_field(stub, campaign, rule: str) -> None:
    fields, field = EVENT_RULES[rule]
    request = metrics_pb2.IngestEventsRequest(
        events=[
            event(campaign, event_id="ev-ok"),
            event(campaign, **{"event_id": "ev-bad", **fields}),
        ],
        as_of=to_timestamp(H1 + timedelta(hours=1)),
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.IngestEvents(request, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field), caught.value.details()
    assert event_count(stub, campaign) == 0


def test_an_event_for_an_unknown_campaign_is_not_found(stub, campaign) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.IngestEvents(
            metrics_pb2.IngestEventsRequest(events=[event(campaign, campaign_id="cmp_missing")]),
            metadata=ALPHA,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().startswith("events[0].campaign_id")


def test_an_events_request_without_events_is_refused(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.IngestEvents(metrics_pb2.IngestEventsRequest(), metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("events")


def test_an_as_of_in_the_future_is_refused(stub, campaign) -> None:
    request = metrics_pb2.IngestEventsRequest(events=[event(campaign)], as_of=to_timestamp(FUTURE))
    with pytest.raises(grpc.RpcError) as caught:
        stub.IngestEvents(request, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("as_of")


# --------------------------------------------------------- registrations


def registration(**fields: object) -> metrics_pb2.RegisterCampaignRequest:
    request = codec.register_request(synthetic.campaign("cmp_new", arms=2))
    for name, value in fields.items():
        if name == "arms":
            del request.arms[:]
            request.arms.extend(value)  # type: ignore[arg-type]
        elif name == "flight":
            request.ClearField("flight")
        else:
            setattr(request, name, value)
    return request


REGISTRATION_RULES = {
    "missing campaign id": (dict(campaign_id=""), "campaign_id"),
    "currency not ISO": (dict(currency="rupiah"), "currency"),
    "budget not positive": (dict(total_budget_micros=0), "total_budget_micros"),
    "no flight": (dict(flight=None), "flight"),
    "no arms": (dict(arms=[]), "arms"),
    "arm without platform": (
        dict(arms=[metrics_pb2.ArmRef(arm_id="a", platform=common_pb2.PLATFORM_UNSPECIFIED)]),
        "arms[0].platform",
    ),
    "duplicate arm ids": (
        dict(
            arms=[
                metrics_pb2.ArmRef(arm_id="a", platform=common_pb2.META),
                metrics_pb2.ArmRef(arm_id="a", platform=common_pb2.META),
            ]
        ),
        "arms[1].arm_id",
    ),
    "negative revision": (dict(revision=-1), "revision"),
}


@pytest.mark.parametrize("rule", REGISTRATION_RULES)
def test_a_bad_registration_is_refused_naming_the_field(stub, rule: str) -> None:
    fields, field = REGISTRATION_RULES[rule]
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterCampaign(registration(**fields), metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field), caught.value.details()


def test_a_registration_may_not_change_the_currency(stub, campaign) -> None:
    request = codec.register_request(campaign)
    request.currency = "USD"
    request.revision = 2
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterCampaign(request, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("currency")


def test_a_registration_may_not_move_an_arm_to_another_platform(stub, campaign) -> None:
    request = codec.register_request(campaign)
    request.arms[0].platform = common_pb2.TIKTOK
    request.revision = 2
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterCampaign(request, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("arms[0].platform")


# ---------------------------------------------------------------- queries

ANY = "cmp_any"  # input is checked before the campaign is looked up
SPAN = window(H0, H1)

QUERY_RULES = {
    "arm stats without campaign": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(window=SPAN),
        "campaign_id",
    ),
    "arm stats without window": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY),
        "window",
    ),
    "arm stats with a time out of range": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(
            campaign_id=ANY,
            window=common_pb2.TimeRange(start=to_timestamp(H0), end=Timestamp(seconds=10**13)),
        ),
        "window.end",
    ),
    "arm stats with an empty window": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY, window=window(H1, H0)),
        "window.end",
    ),
    "arm stats with a discount above 1": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY, window=SPAN, discount=1.5),
        "discount",
    ),
    "arm stats with a negative kappa": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY, window=SPAN, kappas_micros=[1e9, -1.0]),
        "kappas_micros[1]",
    ),
    "arm stats with too many kappas": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY, window=SPAN, kappas_micros=[1e9] * 65),
        "kappas_micros",
    ),
    "arm stats with an unknown count metric": (
        "GetArmStats",
        metrics_pb2.GetArmStatsRequest(campaign_id=ANY, window=SPAN, count_metric=9),
        "count_metric",
    ),
    "time series without metrics": (
        "GetTimeseries",
        metrics_pb2.GetTimeseriesRequest(campaign_id=ANY, window=SPAN),
        "metrics",
    ),
    "time series with an unknown metric": (
        "GetTimeseries",
        metrics_pb2.GetTimeseriesRequest(campaign_id=ANY, window=SPAN, metrics=[1, 42]),
        "metrics[1]",
    ),
    "time series with an unknown grouping": (
        "GetTimeseries",
        metrics_pb2.GetTimeseriesRequest(campaign_id=ANY, window=SPAN, metrics=[1], group_by=17),
        "group_by",
    ),
    "time series with an unknown granularity": (
        "GetTimeseries",
        metrics_pb2.GetTimeseriesRequest(campaign_id=ANY, window=SPAN, metrics=[1], granularity=5),
        "granularity",
    ),
    "summary without campaign": (
        "GetCampaignSummary",
        metrics_pb2.GetCampaignSummaryRequest(),
        "campaign_id",
    ),
    "summary with a long attribution window": (
        "GetCampaignSummary",
        metrics_pb2.GetCampaignSummaryRequest(campaign_id=ANY, attribution_window="w" * 41),
        "attribution_window",
    ),
}


@pytest.mark.parametrize("rule", QUERY_RULES)
def test_a_bad_query_is_refused_naming_the_field(stub, rule: str) -> None:
    method, request, field = QUERY_RULES[rule]
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request, metadata=ALPHA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field), caught.value.details()
