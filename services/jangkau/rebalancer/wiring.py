"""Builds a Rebalancer from settings: the client, the state store, and the
platform adapters with the way a campaign's arms map onto platform entities."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import grpc

from jangkau.client import Jangkau
from jangkau.platforms.base import ArmTarget, CampaignTarget
from jangkau.platforms.sandbox import SandboxAdapter
from jangkau.rebalancer.job import Rebalancer
from jangkau.rebalancer.live import load as load_live
from jangkau.rebalancer.store import RebalancerStore
from jangkau.runtime.config import Settings
from jangkau.runtime.times import from_timestamp
from jangkau.v1 import budget_pb2


def sandbox_targets(
    client: Jangkau, adapter: SandboxAdapter
) -> Callable[[budget_pb2.Campaign], CampaignTarget]:
    """In the sandbox market an arm's entity is the arm itself and its account is
    its audience; the market is opened on first sight with each arm's reach."""

    def targets(campaign: budget_pb2.Campaign) -> CampaignTarget:
        target = CampaignTarget(
            campaign_id=campaign.id,
            currency=campaign.currency or "IDR",
            arms=tuple(
                ArmTarget(
                    arm_id=arm.id,
                    platform=arm.platform,
                    account_id=arm.audience_id,
                    entity_id=arm.id,
                )
                for arm in campaign.arms
            ),
        )
        if adapter.is_open(campaign.id):
            return target
        reachable: dict[str, int] = {}
        sizes: dict[str, dict[int, int]] = {}
        for arm in campaign.arms:
            if arm.audience_id not in sizes:
                try:
                    reply = client.audience.estimate_size(arm.audience_id)
                    sizes[arm.audience_id] = {p.platform: p.reachable for p in reply.platforms}
                except grpc.RpcError:
                    sizes[arm.audience_id] = {}
            reachable[arm.id] = sizes[arm.audience_id].get(arm.platform, 0)
        adapter.open_campaign(
            target,
            from_timestamp(campaign.flight.start),
            from_timestamp(campaign.flight.end),
            campaign.total_budget_micros,
            reachable,
        )
        return target

    return targets


def build(
    settings: Settings,
    client: Jangkau,
    clock: Callable[[], datetime],
    *,
    seed: int = 0,
    rejection_rate: float = 0.0,
    error_rate: float = 0.0,
) -> Rebalancer:
    store = RebalancerStore(settings.data_dir / "rebalancer.duckdb")
    if settings.platforms_file is not None:
        live = load_live(settings.platforms_file, clock)
        return Rebalancer(client, live.adapters, store, live.targets)
    adapter = SandboxAdapter(
        settings.sandbox_addr,
        clock,
        timeout=settings.call_timeout_seconds,
        seed=seed,
        rejection_rate=rejection_rate,
        error_rate=error_rate,
        token=client.token,
    )
    return Rebalancer(client, [adapter], store, sandbox_targets(client, adapter))
