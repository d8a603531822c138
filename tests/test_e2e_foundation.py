"""The three services as real subprocesses (the `jangkau up` code path): health,
reflection, and data written through each that survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jangkau.client import Jangkau
from jangkau.runtime.launcher import free_port
from jangkau.runtime.times import to_timestamp
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, metrics_pb2
from tests.conftest import TOKENS

SERVICES = {
    "audience": "jangkau.v1.AudienceService",
    "budget": "jangkau.v1.BudgetService",
    "metrics": "jangkau.v1.MetricsService",
}


def client_for(cluster, token: str = TOKENS["alpha"]) -> Jangkau:
    return Jangkau(
        audience_addr=cluster.addresses["audience"],
        budget_addr=cluster.addresses["budget"],
        metrics_addr=cluster.addresses["metrics"],
        token=token,
    )


def listed_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        return {s.name for r in replies for s in r.list_services_response.service}


def test_each_service_is_serving_and_lists_its_api_by_reflection(start_cluster):
    cluster = start_cluster()
    for name, full_name in SERVICES.items():
        address = cluster.addresses[name]
        with grpc.insecure_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=full_name), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        assert full_name in listed_services(address)


def demographic_rule() -> audience_pb2.Rule:
    return audience_pb2.Rule(
        all=audience_pb2.RuleList(
            rules=[
                audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=["32"])),
                audience_pb2.Rule(age=audience_pb2.AgeRange(min=17, max=35)),
            ]
        )
    )


def test_an_audience_survives_a_restart_of_the_audience_service(start_cluster):
    cluster = start_cluster("audience")
    with client_for(cluster) as jk:
        created = jk.audience.create_audience("Jabar muda", demographic_rule())
    cluster.restart("audience")
    with client_for(cluster) as jk:
        again = jk.audience.get_audience(created.id)
    assert again.name == "Jabar muda"
    assert again.rule == created.rule


def campaign_for(audience_id: str) -> budget_pb2.Campaign:
    start = datetime(2024, 9, 25, tzinfo=UTC)
    return budget_pb2.Campaign(
        name="Pilgub Jabar",
        kind=common_pb2.POLITICAL,
        currency="IDR",
        total_budget_micros=5_000_000_000 * 1_000_000,
        flight=common_pb2.TimeRange(
            start=to_timestamp(start), end=to_timestamp(datetime(2024, 11, 27, tzinfo=UTC))
        ),
        political_authorization=True,
        arms=[
            budget_pb2.Arm(id="meta-muda", platform=common_pb2.META, audience_id=audience_id),
            budget_pb2.Arm(id="google-muda", platform=common_pb2.GOOGLE, audience_id=audience_id),
        ],
    )


def test_a_campaign_and_its_reports_survive_restarts(start_cluster):
    cluster = start_cluster()
    hour = datetime(2024, 10, 1, 5, tzinfo=UTC)
    with client_for(cluster) as jk:
        audience = jk.audience.create_audience("Jabar muda", demographic_rule())
        campaign = jk.budget.create_campaign(campaign_for(audience.id))
        report = metrics_pb2.HourlyReport(
            campaign_id=campaign.id,
            arm_id="meta-muda",
            platform=common_pb2.META,
            hour=to_timestamp(hour),
            attribution_window="7d_click",
            impressions=1000,
            reach=800,
            clicks=30,
            conversions=3,
            spend_micros=250_000 * 1_000_000,
            currency="IDR",
            version=to_timestamp(hour + timedelta(hours=2)),
        )
        acks = jk.metrics.ingest_reports(
            [metrics_pb2.ReportBatch(batch_id="b1", rows=metrics_pb2.ReportRows(rows=[report]))]
        )
        assert acks[0].inserted == 1
    cluster.restart("budget")
    cluster.restart("metrics")
    with client_for(cluster) as jk:
        assert jk.budget.get_campaign(campaign.id).name == "Pilgub Jabar"
        stats = jk.metrics.arm_stats(campaign.id, hour, hour + timedelta(hours=1))
    by_arm = {a.arm_id: a for a in stats.arms}
    assert by_arm["meta-muda"].spend_micros == 250_000 * 1_000_000
    assert by_arm["meta-muda"].conversions == 3


def test_another_tenant_cannot_see_a_campaign(start_cluster):
    cluster = start_cluster()
    with client_for(cluster) as jk:
        audience = jk.audience.create_audience("Jabar muda", demographic_rule())
        campaign = jk.budget.create_campaign(campaign_for(audience.id))
    with client_for(cluster, TOKENS["beta"]) as other:
        try:
            other.budget.get_campaign(campaign.id)
            raise AssertionError("beta saw alpha's campaign")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_to_up_stops_every_child_within_ten_seconds(tmp_path):
    env = dict(os.environ)
    env.update(
        {
            "JANGKAU_DATA_DIR": str(tmp_path / "data"),
            "JANGKAU_AUDIENCE_ADDR": f"127.0.0.1:{free_port()}",
            "JANGKAU_BUDGET_ADDR": f"127.0.0.1:{free_port()}",
            "JANGKAU_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        }
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "jangkau.cli.main", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            lines.append(line)
            if "development token" in line or up.poll() is not None:
                break
        assert any("development token" in line for line in lines), "".join(lines)
        children = _children(up.pid)
        assert len(children) == 3
        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        up.wait(15)
        while any(_alive(c) for c in children) and time.monotonic() - started < 10:
            time.sleep(0.1)
        assert time.monotonic() - started <= 10
        assert not [c for c in children if _alive(c)]
        assert up.returncode == 0
    finally:
        if up.poll() is None:
            up.kill()
