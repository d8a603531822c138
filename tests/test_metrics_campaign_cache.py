"""The metrics store's cache of registered campaigns never keeps a campaign read
before a registration changed it: a read that raced with the change is answered
but not kept."""

from __future__ import annotations

import threading
from dataclasses import replace

from jangkau.metrics import store as store_module
from jangkau.metrics import synthetic
from jangkau.metrics.domain import Arm, Platform

TENANT = "alpha"


def test_a_campaign_read_during_its_registration_is_not_kept(tmp_path, monkeypatch):
    store = store_module.DuckDBMetricsStore(tmp_path / "m.duckdb")
    before = synthetic.campaign("cmp_race", arms=2, hours=48)
    store.register_campaign(TENANT, before)
    after = replace(
        before, arms=(*before.arms, Arm("arm_new", Platform.META, "aud_new")), revision=2
    )
    read, release = threading.Event(), threading.Event()
    original = store_module.DuckDBMetricsStore._load

    def paused_load(self, cur, tenant, campaign_ids):  # type: ignore[no-untyped-def]
        loaded = original(self, cur, tenant, campaign_ids)
        if threading.current_thread().name == "reader":
            read.set()
            release.wait(10)
        return loaded

    monkeypatch.setattr(store_module.DuckDBMetricsStore, "_load", paused_load)
    seen: list[int] = []
    reader = threading.Thread(
        target=lambda: seen.append(len(store.campaigns(TENANT, ["cmp_race"])["cmp_race"].arms)),
        name="reader",
    )
    try:
        reader.start()
        assert read.wait(10)
        # The reader holds the campaign as it was; the new arm is registered meanwhile.
        store.register_campaign(TENANT, after)
        release.set()
        reader.join(10)
        assert seen == [2]
        assert len(store.campaigns(TENANT, ["cmp_race"])["cmp_race"].arms) == 3
    finally:
        release.set()
        store.close()
