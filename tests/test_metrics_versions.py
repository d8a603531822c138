"""GetArmStats data versions: an unchanged campaign answers `not_modified`, any
write of its reports or events before the window's end, and any registration,
moves the version, writes of later times leave it, and a restarted service never
hands out a version it gave before."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from jangkau.metrics import codec
from jangkau.metrics.service import DataVersions
from jangkau.runtime.times import to_timestamp, to_us
from jangkau.v1 import metrics_pb2
from tests import test_metrics_support as support
from tests.test_metrics_support import (
    ALPHA,
    BETA,
    H0,
    MetricsApi,
    arm_stats,
    batch,
    event,
    ingest,
    new_campaign,
    report,
    start_metrics,
    window,
)

shared_metrics = support.shared_metrics


@pytest.fixture
def stub(shared_metrics: MetricsApi):  # type: ignore[no-untyped-def]
    return shared_metrics.stub


def test_an_unchanged_campaign_answers_not_modified_without_arms(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c)))
    first = arm_stats(stub, c)
    assert first.data_version and not first.not_modified and len(first.arms) == 3
    again = arm_stats(stub, c, if_version_not=first.data_version)
    assert again.not_modified
    assert again.data_version == first.data_version
    assert len(again.arms) == 0


def test_a_stale_version_gets_the_full_answer(stub) -> None:
    c = new_campaign(stub)
    got = arm_stats(stub, c, if_version_not="0000-1")
    assert not got.not_modified and len(got.arms) == 3


def test_a_new_report_changes_the_version(stub) -> None:
    c = new_campaign(stub)
    before = arm_stats(stub, c)
    ingest(stub, batch(report(c, hour=H0 + timedelta(hours=1))))
    after = arm_stats(stub, c, if_version_not=before.data_version)
    assert not after.not_modified
    assert after.data_version != before.data_version
    assert after.arms[0].spend_micros > before.arms[0].spend_micros


def test_reports_from_the_windows_end_on_keep_its_version(stub) -> None:
    c = new_campaign(stub)
    ending = window(H0 - timedelta(days=1), H0 + timedelta(hours=5))
    ingest(stub, batch(report(c)))
    before = arm_stats(stub, c, window=ending)
    ingest(
        stub, batch(report(c, hour=H0 + timedelta(hours=5)), report(c, 1, H0 + timedelta(days=3)))
    )
    assert arm_stats(stub, c, window=ending, if_version_not=before.data_version).not_modified
    # A wider window sees the new hours: its version moved.
    assert arm_stats(stub, c).arms[0].hours_observed == 2
    ingest(stub, batch(report(c, 1, H0 + timedelta(hours=4))))
    after = arm_stats(stub, c, window=ending, if_version_not=before.data_version)
    assert not after.not_modified
    assert after.data_version != before.data_version
    assert after.arms[1].hours_observed == 1


def test_events_from_the_windows_end_on_keep_its_version(stub) -> None:
    c = new_campaign(stub)
    ending = window(H0 - timedelta(days=1), H0 + timedelta(hours=5))
    before = arm_stats(stub, c, window=ending)

    def ingest_event(event_id: str, at: datetime) -> None:
        stub.IngestEvents(
            metrics_pb2.IngestEventsRequest(
                events=[event(c, event_id, time=at)], as_of=to_timestamp(H0 + timedelta(hours=6))
            ),
            metadata=ALPHA,
            timeout=10,
        )

    ingest_event(f"late-{c.campaign_id}", H0 + timedelta(hours=5))
    assert arm_stats(stub, c, window=ending, if_version_not=before.data_version).not_modified
    ingest_event(f"early-{c.campaign_id}", H0 + timedelta(hours=4, minutes=59))
    after = arm_stats(stub, c, window=ending, if_version_not=before.data_version)
    assert not after.not_modified
    assert after.arms[0].event_conversions == 1


def test_a_replayed_batch_keeps_the_version(stub) -> None:
    c = new_campaign(stub)
    ingest(stub, batch(report(c)))
    before = arm_stats(stub, c)
    ingest(stub, batch(report(c)))
    assert arm_stats(stub, c, if_version_not=before.data_version).not_modified


def test_a_new_event_changes_the_version(stub) -> None:
    c = new_campaign(stub)
    before = arm_stats(stub, c)
    stub.IngestEvents(
        metrics_pb2.IngestEventsRequest(
            events=[event(c, f"ev-{c.campaign_id}")],
            as_of=to_timestamp(H0 + timedelta(hours=1)),
        ),
        metadata=ALPHA,
        timeout=10,
    )
    after = arm_stats(stub, c, if_version_not=before.data_version)
    assert not after.not_modified
    assert after.arms[0].event_conversions == 1


def test_registering_again_changes_the_version(stub) -> None:
    c = new_campaign(stub)
    before = arm_stats(stub, c)
    stub.RegisterCampaign(codec.register_request(c), metadata=ALPHA, timeout=10)
    assert not arm_stats(stub, c, if_version_not=before.data_version).not_modified


def test_writes_of_another_campaign_keep_the_version(stub) -> None:
    c, other = new_campaign(stub), new_campaign(stub)
    before = arm_stats(stub, c)
    ingest(stub, batch(report(other)))
    assert arm_stats(stub, c, if_version_not=before.data_version).not_modified


def test_another_tenants_campaign_is_not_found_even_with_a_version(stub) -> None:
    c = new_campaign(stub)
    version = arm_stats(stub, c).data_version
    with pytest.raises(grpc.RpcError) as err:
        arm_stats(stub, c, metadata=BETA, if_version_not=version)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_restart_changes_the_version(tmp_path: Path) -> None:
    api = start_metrics(tmp_path)
    try:
        c = new_campaign(api.stub)
        ingest(api.stub, batch(report(c)))
        before = arm_stats(api.stub, c)
    finally:
        api.close()
    api = start_metrics(tmp_path)
    try:
        # As many writes as before the restart: only the epoch tells the versions apart.
        for _ in range(2):
            api.stub.RegisterCampaign(codec.register_request(c), metadata=ALPHA, timeout=10)
        after = arm_stats(api.stub, c, if_version_not=before.data_version)
        assert not after.not_modified
        assert after.data_version != before.data_version
        assert after.arms[0].spend_micros == before.arms[0].spend_micros
    finally:
        api.close()


def test_a_write_is_a_change_from_its_earliest_instant_and_a_failed_one_from_any():
    versions = DataVersions()
    start = versions.before("t", "c", H0)
    with versions.writing("t", ["c"]) as changed:
        changed({"c": to_us(H0 + timedelta(hours=2))})
        changed({"c": to_us(H0 + timedelta(hours=5))})
    assert versions.before("t", "c", H0 + timedelta(hours=2)) == start
    after_write = versions.before("t", "c", H0 + timedelta(hours=3))
    assert after_write != start
    with pytest.raises(RuntimeError), versions.writing("t", ["c"]):
        raise RuntimeError("the store failed part-way")
    assert versions.before("t", "c", H0 - timedelta(days=365)) not in (start, after_write)
    latest = versions.before("t", "c", H0 + timedelta(days=1))
    # Nothing reported: no change.
    with versions.writing("t", ["c"]):
        pass
    assert versions.before("t", "c", H0 + timedelta(days=1)) == latest
