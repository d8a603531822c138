"""Live platform wiring: the Meta, Google Ads and X adapters and where each arm of a
campaign lives on them, from the JSON file named by JANGKAU_PLATFORMS_FILE.

    {
      "meta":   {"access_token_env": "META_ACCESS_TOKEN", "api_version": "v24.0"},
      "google": {"access_token_env": "GOOGLE_ADS_ACCESS_TOKEN",
                 "developer_token_env": "GOOGLE_ADS_DEVELOPER_TOKEN",
                 "login_customer_id": "1234567890"},
      "x":      {"consumer_key_env": "X_CONSUMER_KEY", "consumer_secret_env": "X_CONSUMER_SECRET",
                 "token_env": "X_ACCESS_TOKEN", "token_secret_env": "X_ACCESS_TOKEN_SECRET"},
      "campaigns": {
        "cmp_…": {"meta-muda": {"account_id": "act_1", "entity_id": "2385…",
                                "time_zone": "Asia/Jakarta"},
                  "google-muda": {"account_id": "1234567890",
                                  "entity_id": "customers/1234567890/campaigns/55",
                                  "budget_id": "customers/1234567890/campaignBudgets/77"}}
      }
    }

Secrets never sit in the file: it names the environment variables that hold them
(mounted from a Kubernetes Secret). A platform left out has no adapter; an arm with
no mapping fails its campaign (fail static) with the arm named."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jangkau.platforms.base import ArmTarget, CampaignTarget, Clock, InvalidTarget, PlatformAdapter
from jangkau.platforms.google_ads import GoogleAdsAdapter
from jangkau.platforms.http import HttpTransport, UrllibTransport
from jangkau.platforms.meta import MetaAdapter
from jangkau.platforms.x_ads import OAuth1Signer, XAdsAdapter
from jangkau.v1 import budget_pb2, common_pb2


class PlatformsFileError(ValueError):
    """The platforms file is unusable; the message names the field."""


def _secret(section: Mapping[str, Any], key: str, where: str) -> Callable[[], str]:
    name = section.get(key)
    if not isinstance(name, str) or not name:
        raise PlatformsFileError(f"{where}.{key}: the name of an environment variable")

    def read() -> str:
        value = os.environ.get(name, "")
        if not value:
            raise PlatformsFileError(f"{where}.{key}: environment variable {name} is not set")
        return value

    return read


@dataclass(frozen=True)
class LivePlatforms:
    adapters: list[PlatformAdapter]
    # campaign id → arm id → where it lives
    placements: dict[str, dict[str, ArmTarget]]

    def targets(self, campaign: budget_pb2.Campaign) -> CampaignTarget:
        placed = self.placements.get(campaign.id, {})
        arms = []
        for arm in campaign.arms:
            target = placed.get(arm.id)
            if target is None:
                raise InvalidTarget(
                    arm.platform,
                    f"arm {arm.id} of {campaign.id} has no entry in the platforms file",
                )
            arms.append(
                ArmTarget(
                    arm.id,
                    arm.platform,
                    target.account_id,
                    target.entity_id,
                    target.budget_id,
                    target.time_zone,
                )
            )
        return CampaignTarget(campaign.id, campaign.currency or "IDR", tuple(arms))


def load(
    path: Path,
    clock: Clock,
    transport: HttpTransport | None = None,
) -> LivePlatforms:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlatformsFileError(f"JANGKAU_PLATFORMS_FILE={path}: {exc}") from None
    if not isinstance(document, dict):
        raise PlatformsFileError("the platforms file must hold a JSON object")
    http = transport or UrllibTransport()
    adapters: list[PlatformAdapter] = []
    if "meta" in document:
        meta = document["meta"]
        options = {"api_version": meta["api_version"]} if "api_version" in meta else {}
        adapters.append(
            MetaAdapter(http, _secret(meta, "access_token_env", "meta"), clock=clock, **options)
        )
    if "google" in document:
        google = document["google"]
        adapters.append(
            GoogleAdsAdapter(
                http,
                _secret(google, "access_token_env", "google"),
                _secret(google, "developer_token_env", "google")(),
                login_customer_id=str(google.get("login_customer_id", "")),
                clock=clock,
            )
        )
    if "x" in document:
        x = document["x"]
        signer = OAuth1Signer(
            *(
                _secret(x, key, "x")()
                for key in (
                    "consumer_key_env",
                    "consumer_secret_env",
                    "token_env",
                    "token_secret_env",
                )
            ),
            clock=clock,
        )
        adapters.append(XAdsAdapter(http, signer, clock=clock))
    placements: dict[str, dict[str, ArmTarget]] = {}
    for campaign_id, arms in (document.get("campaigns") or {}).items():
        placements[campaign_id] = {}
        for arm_id, entry in arms.items():
            where = f"campaigns.{campaign_id}.{arm_id}"
            if not isinstance(entry, dict) or not entry.get("entity_id"):
                raise PlatformsFileError(f"{where}.entity_id: required")
            placements[campaign_id][arm_id] = ArmTarget(
                arm_id,
                common_pb2.PLATFORM_UNSPECIFIED,
                str(entry.get("account_id", "")),
                str(entry["entity_id"]),
                str(entry.get("budget_id", "")),
                str(entry.get("time_zone", "UTC")),
            )
    return LivePlatforms(adapters, placements)
