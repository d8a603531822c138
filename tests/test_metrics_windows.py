"""Attribution window names are numbered per tenant: a tenant names at most
4095 distinct windows, and no tenant's names use up another's. A store written
when one numbering served every tenant keeps every report under its window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import grpc
import numpy as np
import pyarrow as pa
import pytest

from jangkau.metrics import store as store_module
from jangkau.metrics import synthetic
from jangkau.metrics.domain import REPORT_SCHEMA, Campaign
from jangkau.metrics.service import MetricsService
from jangkau.runtime.store import Database
from jangkau.runtime.times import to_us
from tests.test_metrics_support import (
    ALPHA,
    BETA,
    H0,
    MetricsApi,
    arm_stats,
    batch,
    ingest,
    new_campaign,
    report,
    start_metrics,
)

MAX_WINDOWS = 4095


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MetricsApi, Campaign]]:
    """A server on which alpha names its maximum of windows, w0 .. w4094."""
    api = start_metrics(tmp_path_factory.mktemp("metrics"))
    c = new_campaign(api.stub, ALPHA, arms=1)
    rows = [
        report(c, 0, H0 - timedelta(hours=i % 24), attribution_window=f"w{i}")
        for i in range(MAX_WINDOWS)
    ]
    acks, error = ingest(api.stub, batch(*rows), metadata=ALPHA)
    assert error is None and acks[0].inserted == MAX_WINDOWS
    yield api, c
    api.close()


def by_arm(response: object) -> list[tuple[int, float, int]]:
    """(spend, conversions, hours observed) of each arm."""
    return [(a.spend_micros, a.conversions, a.hours_observed) for a in response.arms]  # type: ignore[attr-defined]


def test_a_tenant_at_its_window_limit_leaves_other_tenants_room_for_new_names(full) -> None:
    api, _ = full
    c = new_campaign(api.stub, BETA, arms=2)
    acks, error = ingest(
        api.stub,
        batch(
            report(c, 0, H0, attribution_window="1d_view_7d_click", spend_micros=10, conversions=1),
            report(c, 0, H0, attribution_window="28d_click", spend_micros=20, conversions=2),
            report(c, 1, H0, attribution_window="28d_click", spend_micros=30, conversions=3),
            report(c, 1, H0 + timedelta(hours=1), attribution_window="28d_click", spend_micros=40),
        ),
        metadata=BETA,
    )
    assert error is None and acks[0].inserted == 4
    stats = arm_stats(api.stub, c, BETA, attribution_window="28d_click")
    assert by_arm(stats) == [(20, 2.0, 1), (70, 5.0, 2)]
    stats = arm_stats(api.stub, c, BETA, attribution_window="1d_view_7d_click")
    assert by_arm(stats) == [(10, 1.0, 1), (0, 0.0, 0)]
    # Each arm's default window is that of its first report.
    assert by_arm(arm_stats(api.stub, c, BETA)) == [(10, 1.0, 1), (70, 5.0, 2)]


def test_a_tenant_past_its_window_limit_is_refused_naming_the_field(full) -> None:
    api, c = full
    acks, error = ingest(
        api.stub, batch(report(c, 0, H0, attribution_window="one_too_many")), metadata=ALPHA
    )
    assert acks == [] and error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("rows[0].attribution_window")
    assert f"this tenant, which already names its maximum of {MAX_WINDOWS}" in error.details()
    assert arm_stats(api.stub, c, attribution_window="one_too_many").arms[0].hours_observed == 0


def test_a_tenant_at_its_window_limit_still_reports_under_its_windows(full) -> None:
    api, c = full
    restated = report(
        c, 0, H0, attribution_window="w0", spend_micros=5, version=H0 + timedelta(hours=3)
    )
    acks, error = ingest(api.stub, batch(restated), metadata=ALPHA)
    assert error is None and acks[0].replaced == 1
    assert arm_stats(api.stub, c, attribution_window="w0").arms[0].spend_micros == 5


def reports(c: Campaign, *rows: tuple[int, int, str, int]) -> pa.Table:
    """REPORT_SCHEMA rows of (arm, hours after H0, window, spend)."""
    return pa.Table.from_pylist(
        [
            {
                "campaign_id": c.campaign_id,
                "arm_id": c.arms[arm].arm_id,
                "platform": int(c.arms[arm].platform),
                "hour": H0 + timedelta(hours=hours),
                "attribution_window": name,
                "impressions": 100,
                "reach": 50,
                "clicks": 5,
                "conversions": 1.0,
                "conversion_value_micros": 0,
                "spend_micros": spend,
                "currency": c.currency,
                "version": H0 + timedelta(hours=hours + 1),
            }
            for arm, hours, name, spend in rows
        ],
        schema=REPORT_SCHEMA,
    )


def test_batches_before_the_one_past_the_window_limit_commit(tmp_path: Path) -> None:
    service = MetricsService(store_module.DuckDBMetricsStore(tmp_path / "m.duckdb"))
    c = synthetic.campaign("cmp_windows", arms=1, start=H0 - timedelta(days=1))
    service.register("alpha", c)
    try:
        names = [(0, -(i % 24), f"w{i}", 1) for i in range(MAX_WINDOWS - 1)]
        assert service.ingest_reports("alpha", reports(c, *names)).inserted == MAX_WINDOWS - 1
        last = reports(c, (0, 1, "w0", 1), (0, 1, "last_name", 1))
        past = reports(c, (0, 2, "w1", 1), (0, 2, "last_name", 1), (0, 2, "past_limit", 1))
        after = reports(c, (0, 3, "w2", 1))
        done, refusal = service.ingest_batches("alpha", [last, past, after])
        assert [d.inserted for d in done] == [2]
        assert refusal is not None and refusal.message.startswith("rows[2].attribution_window")
        stored = service.store.report_rows(service.campaign("alpha", c.campaign_id))
        assert stored.num_rows == MAX_WINDOWS + 1
    finally:
        service.store.close()


# ------------------------------------------------- a store of the old schema

TENANT_WINDOWS = "SELECT tenant, name, window_ref FROM attribution_windows ORDER BY ALL"
# The old store's arms: arm_ref → the window_ref of its first report.
DEFAULT_WINDOW = {1: 1, 2: 1, 3: 3}


def old_store(path: Path, campaigns: dict[str, Campaign]) -> None:
    """A store file before windows were numbered per tenant (every migration but
    the one that did it): one numbering, 7d_click 1, 1d_view 2, 28d_click 3.
    alpha's arms 1 and 2 report under 7d_click and 1d_view, beta's arm 3 under
    28d_click and 7d_click; each arm's default is its first report's window."""
    db = Database(path, store_module.MIGRATIONS[:1])
    # (arm_ref, hours after H0, window_ref, spend) of each report.
    rows = [(1, 0, 1, 11), (1, 0, 2, 12), (2, 1, 1, 21), (3, 0, 3, 31), (3, 1, 1, 32)]
    arm_ref, hours, window_ref, spend = (np.array(column) for column in zip(*rows, strict=True))
    hour_us = to_us(H0) + hours * store_module.HOUR_US
    old_reports = pa.table(
        {
            "report_key": store_module.report_keys(arm_ref, hour_us, window_ref),
            "arm_ref": pa.array(arm_ref, pa.int32()),
            "window_ref": pa.array(window_ref, pa.int16()),
            "hour": pa.array(hour_us).cast(REPORT_SCHEMA.field("hour").type),
            "impressions": [100] * len(rows),
            "reach": [50] * len(rows),
            "clicks": [5] * len(rows),
            "conversions": [1.0] * len(rows),
            "conversion_value_micros": [0] * len(rows),
            "spend_micros": spend,
            "version": pa.array(hour_us + store_module.HOUR_US).cast(
                REPORT_SCHEMA.field("version").type
            ),
        }
    )
    with db.transaction() as cur:
        cur.executemany(
            "INSERT INTO attribution_windows VALUES (?, ?)",
            [(1, "7d_click"), (2, "1d_view"), (3, "28d_click")],
        )
        refs = iter(range(1, 4))
        for tenant, c in campaigns.items():
            cur.execute(
                "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    tenant,
                    c.campaign_id,
                    c.currency,
                    c.total_budget_micros,
                    c.flight_start,
                    c.flight_end,
                    c.revision,
                ],
            )
            for arm in c.arms:
                ref = next(refs)
                cur.execute(
                    "INSERT INTO arms VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [ref, tenant, c.campaign_id, arm.arm_id, int(arm.platform), arm.audience_id]
                    + [DEFAULT_WINDOW[ref]],
                )
        cur.register("old_reports", old_reports)
        cur.execute("INSERT INTO hourly_reports SELECT * FROM old_reports")
    db.close()


def open_old_store(path: Path) -> tuple[MetricsService, dict[str, Campaign]]:
    """The old store opened by today's service, and its campaigns by tenant."""
    start = H0 - timedelta(days=1)
    campaigns = {
        "alpha": synthetic.campaign("cmp_alpha", arms=2, start=start),
        "beta": synthetic.campaign("cmp_beta", arms=1, start=start),
    }
    old_store(path, campaigns)
    return MetricsService(store_module.DuckDBMetricsStore(path)), campaigns


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[tuple[MetricsService, dict[str, Campaign]]]:
    service, campaigns = open_old_store(tmp_path / "m.duckdb")
    try:
        yield service, campaigns
    finally:
        service.store.close()


def stored(service: MetricsService, tenant: str, c: Campaign) -> list[tuple[str, int, str, int]]:
    """(arm, hours after H0, window, spend) of every stored report of the campaign."""
    rows = service.store.report_rows(service.campaign(tenant, c.campaign_id)).to_pylist()
    return [
        (
            r["arm_id"],
            (r["hour"] - H0) // timedelta(hours=1),
            r["attribution_window"],
            r["spend_micros"],
        )
        for r in rows
    ]


def spend(service: MetricsService, tenant: str, c: Campaign, window: str) -> list[int]:
    result = service.arm_stats(
        tenant, c.campaign_id, H0 - timedelta(days=1), H0 + timedelta(days=1),
        attribution_window=window,
    )  # fmt: skip
    return [int(s) for s in result.stats.spend_micros]


def test_an_old_store_keeps_every_report_under_its_window_for_each_tenant(migrated) -> None:
    service, campaigns = migrated
    alpha, beta = campaigns["alpha"], campaigns["beta"]
    a0, a1, b0 = alpha.arms[0].arm_id, alpha.arms[1].arm_id, beta.arms[0].arm_id
    assert stored(service, "alpha", alpha) == [
        (a0, 0, "1d_view", 12),
        (a0, 0, "7d_click", 11),
        (a1, 1, "7d_click", 21),
    ]
    assert stored(service, "beta", beta) == [(b0, 0, "28d_click", 31), (b0, 1, "7d_click", 32)]
    assert spend(service, "alpha", alpha, "7d_click") == [11, 21]
    assert spend(service, "alpha", alpha, "1d_view") == [12, 0]
    assert spend(service, "alpha", alpha, "28d_click") == [0, 0]
    assert spend(service, "beta", beta, "7d_click") == [32]
    assert spend(service, "beta", beta, "28d_click") == [31]
    assert spend(service, "beta", beta, "") == [31]


def test_an_old_store_restates_its_stored_reports(migrated) -> None:
    service, campaigns = migrated
    beta = campaigns["beta"]
    restated = reports(beta, (0, 0, "28d_click", 99)).set_column(
        12, "version", pa.array([H0 + timedelta(hours=5)], REPORT_SCHEMA.field("version").type)
    )
    assert service.ingest_reports("beta", restated).replaced == 1
    assert stored(service, "beta", beta) == [
        (beta.arms[0].arm_id, 0, "28d_click", 99),
        (beta.arms[0].arm_id, 1, "7d_click", 32),
    ]


def test_an_old_store_numbers_new_names_per_tenant(tmp_path: Path) -> None:
    service, campaigns = open_old_store(tmp_path / "m.duckdb")
    alpha, beta = campaigns["alpha"], campaigns["beta"]
    try:
        assert service.ingest_reports("alpha", reports(alpha, (1, 2, "28d_click", 5))).inserted == 1
        assert service.ingest_reports("beta", reports(beta, (0, 2, "1d_view", 6))).inserted == 1
        assert spend(service, "alpha", alpha, "28d_click") == [0, 5]
        assert spend(service, "beta", beta, "1d_view") == [6]
        assert spend(service, "beta", beta, "28d_click") == [31]
    finally:
        service.store.close()
    with duckdb.connect(str(tmp_path / "m.duckdb"), read_only=True) as con:
        # Each tenant's names keep their ids, and a new one takes its lowest free id.
        assert con.execute(TENANT_WINDOWS).fetchall() == [
            ("alpha", "1d_view", 2),
            ("alpha", "28d_click", 3),
            ("alpha", "7d_click", 1),
            ("beta", "1d_view", 2),
            ("beta", "28d_click", 3),
            ("beta", "7d_click", 1),
        ]
