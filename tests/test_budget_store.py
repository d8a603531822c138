"""The budget store on a real DuckDB file: campaigns by tenant, the decision log
(one per campaign and period), and the in-memory index every Allocate reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from jangkau.budget.store import BudgetStore
from tests.test_budget_support import facts

NOW = datetime(2024, 10, 1, 12, tzinfo=UTC)
P0 = datetime(2024, 10, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path):
    s = BudgetStore(tmp_path / "budget.duckdb")
    yield s
    s.close()


def add_campaign(store: BudgetStore, campaign_id: str = "cmp_1", tenant: str = "alpha") -> None:
    store.insert_campaign(tenant, campaign_id, "ACTIVE", NOW, b"campaign", [facts()])


def test_previous_decision_is_the_latest_before_the_period(store):
    add_campaign(store)
    for h in (3, 1, 5):
        store.insert_decision("alpha", "cmp_1", P0 + h * HOUR, f"dec_{h}", NOW, b"x")
    assert store.revision_and_previous("alpha", "cmp_1", P0 + 5 * HOUR) == (1, "dec_3")
    assert store.revision_and_previous("alpha", "cmp_1", P0 + 6 * HOUR) == (1, "dec_5")
    assert store.revision_and_previous("alpha", "cmp_1", P0 + HOUR) == (1, None)


def test_a_period_keeps_its_first_decision(store):
    add_campaign(store)
    first = store.insert_decision("alpha", "cmp_1", P0, "dec_a", NOW, b"a")
    second = store.insert_decision("alpha", "cmp_1", P0, "dec_b", NOW, b"b")
    assert first.decision_id == second.decision_id == "dec_a"
    assert second.body == b"a"
    assert [d.decision_id for d in store.list_decisions("alpha", "cmp_1", 0, 10)] == ["dec_a"]


def test_the_index_after_a_reopen_matches_the_table(tmp_path):
    s = BudgetStore(tmp_path / "budget.duckdb")
    add_campaign(s)
    s.insert_decision("alpha", "cmp_1", P0, "dec_a", NOW, b"a")
    s.update_campaign("alpha", "cmp_1", 1, "PAUSED", b"v2", [facts()])
    s.close()
    reopened = BudgetStore(tmp_path / "budget.duckdb")
    try:
        assert reopened.revision_and_previous("alpha", "cmp_1", P0 + HOUR) == (2, "dec_a")
        reopened.insert_decision("alpha", "cmp_1", P0 + HOUR, "dec_b", NOW, b"b")
        assert reopened.revision_and_previous("alpha", "cmp_1", P0 + 2 * HOUR) == (2, "dec_b")
        assert reopened.decision_for("alpha", "cmp_1", P0 + HOUR).body == b"b"
    finally:
        reopened.close()


def test_an_update_with_a_stale_revision_changes_nothing(store):
    add_campaign(store)
    assert store.update_campaign("alpha", "cmp_1", 1, "ACTIVE", b"v2", [facts()])
    assert not store.update_campaign("alpha", "cmp_1", 1, "ACTIVE", b"v3", [facts()])
    assert store.get_campaign("alpha", "cmp_1").body == b"v2"
    assert store.campaign_revision("alpha", "cmp_1") == 2


def test_another_tenant_sees_neither_campaign_nor_decisions(store):
    add_campaign(store)
    store.insert_decision("alpha", "cmp_1", P0, "dec_a", NOW, b"a")
    assert store.get_campaign("beta", "cmp_1") is None
    assert store.revision_and_previous("beta", "cmp_1", P0 + HOUR) is None
    assert store.decision_for("beta", "cmp_1", P0) is None
    assert store.list_campaigns("beta", None, 0, 10) == []


def test_audience_facts_read_back_per_platform(store):
    add_campaign(store)
    (got,) = store.audience_facts("alpha", "cmp_1").values()
    expected = facts()
    assert replace(got, reach=()) == replace(expected, reach=())
    assert set(got.reach) == set(expected.reach)


def test_refreshed_audience_facts_replace_the_stored_ones_and_only_when_they_changed(store):
    add_campaign(store)
    add_campaign(store, "cmp_2")
    # The same facts with their reach in another order: nothing to write.
    same = replace(facts(), reach=tuple(reversed(facts().reach)))
    assert not store.refresh_facts("alpha", "cmp_1", 1, [same])
    assert store.facts_refresh("alpha", "cmp_1") == 0

    narrowed = facts(contact_lists=True, reachable=900)
    assert store.refresh_facts("alpha", "cmp_1", 1, [narrowed, facts("aud_b")])
    got = store.audience_facts("alpha", "cmp_1")
    assert set(got) == {"aud_a", "aud_b"}
    assert got["aud_a"].uses_contact_lists and got["aud_a"].voters == 900
    assert {r.reachable for r in got["aud_a"].reach} == {900}
    first = store.facts_refresh("alpha", "cmp_1")
    assert first > 0
    # The campaign's revision stays; the other campaign is untouched.
    assert store.campaign_revision("alpha", "cmp_1") == 1
    assert store.facts_refresh("alpha", "cmp_2") == 0
    assert set(store.audience_facts("alpha", "cmp_2")) == {"aud_a"}

    assert store.refresh_facts("alpha", "cmp_1", 1, [facts("aud_b")])  # aud_a deleted
    assert set(store.audience_facts("alpha", "cmp_1")) == {"aud_b"}
    assert store.facts_refresh("alpha", "cmp_1") > first

    # An update came between reading the campaign and writing its facts: the update's
    # facts (of its own audiences) stand.
    store.update_campaign("alpha", "cmp_1", 1, "ACTIVE", b"v2", [facts("aud_c")])
    assert not store.refresh_facts("alpha", "cmp_1", 1, [facts("aud_b")])
    assert set(store.audience_facts("alpha", "cmp_1")) == {"aud_c"}
    assert not store.refresh_facts("alpha", "cmp_missing", 1, [facts()])


def test_campaign_reads_are_versioned_by_campaign_writes_alone(store):
    before = store.campaigns_generation
    add_campaign(store)
    created = store.campaigns_generation
    assert created > before
    store.insert_decision("alpha", "cmp_1", P0, "dec_a", NOW, b"a")
    # A decision moves the store's generation, not the campaigns'.
    assert store.campaigns_generation == created
    generation = store.generation
    assert store.update_campaign("alpha", "cmp_1", 1, "PAUSED", b"v2", [facts()])
    assert store.campaigns_generation > created
    assert store.generation > generation
    updated = store.campaigns_generation
    with pytest.raises(duckdb.ConstraintException):
        add_campaign(store)  # the id is taken: the write fails, and counts as one
    assert store.campaigns_generation > updated
