"""Live platform wiring from the platforms file: adapters, arm placements, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jangkau.platforms.base import InvalidTarget
from jangkau.platforms.google_ads import GoogleAdsAdapter
from jangkau.platforms.meta import MetaAdapter
from jangkau.rebalancer.live import PlatformsFileError, load
from jangkau.v1 import budget_pb2, common_pb2


def clock() -> datetime:
    return datetime(2024, 10, 1, tzinfo=UTC)


def campaign() -> budget_pb2.Campaign:
    return budget_pb2.Campaign(
        id="cmp_0000000000000001",
        currency="IDR",
        arms=[
            budget_pb2.Arm(id="meta-muda", platform=common_pb2.META, audience_id="aud_1"),
            budget_pb2.Arm(id="google-muda", platform=common_pb2.GOOGLE, audience_id="aud_1"),
        ],
    )


def write(tmp_path, document) -> object:
    path = tmp_path / "platforms.json"
    path.write_text(json.dumps(document))
    return path


DOCUMENT = {
    "meta": {"access_token_env": "TEST_META_TOKEN"},
    "google": {
        "access_token_env": "TEST_GOOGLE_TOKEN",
        "developer_token_env": "TEST_GOOGLE_DEV_TOKEN",
        "login_customer_id": "1234567890",
    },
    "campaigns": {
        "cmp_0000000000000001": {
            "meta-muda": {
                "account_id": "act_9",
                "entity_id": "238500",
                "time_zone": "Asia/Jakarta",
            },
            "google-muda": {
                "account_id": "1234567890",
                "entity_id": "customers/1234567890/campaigns/55",
                "budget_id": "customers/1234567890/campaignBudgets/77",
            },
        }
    },
}


def test_the_file_builds_one_adapter_per_platform_and_places_every_arm(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_GOOGLE_DEV_TOKEN", "dev-token")
    live = load(write(tmp_path, DOCUMENT), clock)
    assert {type(a) for a in live.adapters} == {MetaAdapter, GoogleAdsAdapter}
    target = live.targets(campaign())
    meta = target.arm("meta-muda")
    assert (meta.platform, meta.account_id, meta.entity_id, meta.time_zone) == (
        common_pb2.META,
        "act_9",
        "238500",
        "Asia/Jakarta",
    )
    assert target.arm("google-muda").budget_id == "customers/1234567890/campaignBudgets/77"


def test_an_arm_without_a_placement_fails_its_campaign_naming_the_arm(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_GOOGLE_DEV_TOKEN", "dev-token")
    document = json.loads(json.dumps(DOCUMENT))
    del document["campaigns"]["cmp_0000000000000001"]["google-muda"]
    live = load(write(tmp_path, document), clock)
    with pytest.raises(InvalidTarget, match="google-muda"):
        live.targets(campaign())


def test_a_secret_is_named_by_an_environment_variable_that_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_GOOGLE_DEV_TOKEN", raising=False)
    with pytest.raises(PlatformsFileError, match=r"google\.developer_token_env"):
        load(write(tmp_path, DOCUMENT), clock)


def test_a_placement_without_an_entity_is_refused_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_GOOGLE_DEV_TOKEN", "dev-token")
    document = json.loads(json.dumps(DOCUMENT))
    del document["campaigns"]["cmp_0000000000000001"]["meta-muda"]["entity_id"]
    with pytest.raises(
        PlatformsFileError, match=r"campaigns\.cmp_0000000000000001\.meta-muda\.entity_id"
    ):
        load(write(tmp_path, document), clock)
