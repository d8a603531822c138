"""Memo and ReadCache: values computed once per key even when asked concurrently,
errors passed on but never kept, answers kept apart by tenant and data version,
and memory bounded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from jangkau.runtime.auth import Caller, Role, acting_as
from jangkau.runtime.cache import Memo, ReadCache
from jangkau.runtime.config import Settings
from jangkau.v1 import budget_pb2


def test_memo_computes_a_key_once_for_concurrent_callers():
    memo: Memo[int] = Memo(16)
    started, release = threading.Event(), threading.Event()
    calls = []

    def compute() -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return 42

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(memo.get, "k", compute)
        assert started.wait(5)
        others = [pool.submit(memo.get, "k", compute) for _ in range(7)]
        release.set()
        results = [first.result(5), *(f.result(5) for f in others)]
    assert len(calls) == 1
    assert results[0] == (42, "miss")
    assert all(value == 42 for value, _ in results)
    assert {how for _, how in results[1:]} <= {"joined", "hit"}
    assert memo.get("k", lambda: 0) == (42, "hit")


def test_memo_passes_an_error_to_waiters_and_does_not_keep_it():
    memo: Memo[int] = Memo(16)
    started, release = threading.Event(), threading.Event()

    def failing() -> int:
        started.set()
        release.wait(5)
        raise LookupError("campaign gone")

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(memo.get, "k", failing)
        assert started.wait(5)
        waiter = pool.submit(memo.get, "k", failing)
        release.set()
        for future in (first, waiter):
            with pytest.raises(LookupError, match="campaign gone"):
                future.result(5)
    assert memo.get("k", lambda: 7) == (7, "miss")


def test_memo_drops_the_least_recently_used_beyond_its_capacity():
    memo: Memo[str] = Memo(10, size_of=len, largest=6)
    memo.get("a", lambda: "aaaa")
    memo.get("b", lambda: "bbbb")
    memo.get("a", lambda: "?")  # a is now the most recently used
    memo.get("c", lambda: "cccc")  # 12 > 10: b goes
    assert memo.size == 8
    assert memo.get("a", lambda: "?") == ("aaaa", "hit")
    assert memo.get("b", lambda: "BBBB") == ("BBBB", "miss")
    assert memo.get("big", lambda: "x" * 7) == ("x" * 7, "miss")  # larger than `largest`
    assert memo.get("big", lambda: "y") == ("y", "miss")


def test_memo_of_capacity_zero_keeps_nothing():
    memo: Memo[int] = Memo(0)
    assert memo.get("k", lambda: 1) == (1, "miss")
    assert memo.get("k", lambda: 2) == (2, "miss")
    assert len(memo) == 0


def _as(tenant: str):  # type: ignore[no-untyped-def]
    return acting_as(Caller(tenant=tenant, role=Role.BUYER, token=f"{tenant}-token"))


def test_read_cache_keeps_answers_apart_by_request_tenant_and_version():
    cache = ReadCache("budget", 1 << 20)
    asked = budget_pb2.GetCampaignRequest(campaign_id="cmp-1")
    other = budget_pb2.GetCampaignRequest(campaign_id="cmp-2")

    def named(name: str):  # type: ignore[no-untyped-def]
        return lambda: budget_pb2.Campaign(name=name)

    with _as("alpha"):
        assert cache.answer("GetCampaign", asked, 1, named("v1")).name == "v1"
        assert cache.answer("GetCampaign", asked, 1, named("again")).name == "v1"
        assert cache.answer("GetCampaign", other, 1, named("other")).name == "other"
        # A write moved the version on: computed anew.
        assert cache.answer("GetCampaign", asked, 2, named("v2")).name == "v2"
    with _as("beta"):
        assert cache.answer("GetCampaign", asked, 2, named("beta's")).name == "beta's"


def test_read_cache_bounds_its_memory_and_can_be_turned_off():
    cache = ReadCache("metrics", 4096)
    with _as("alpha"):
        for i in range(100):
            cache.answer(
                "GetCampaign",
                budget_pb2.GetCampaignRequest(campaign_id=f"cmp-{i}"),
                0,
                lambda: budget_pb2.Campaign(name="n" * 100),
            )
        assert 0 < cache.size <= 4096
        assert len(cache) < 100
        off = ReadCache("metrics", 0)
        computed = []
        for _ in range(3):
            off.answer(
                "GetCampaign",
                budget_pb2.GetCampaignRequest(),
                0,
                lambda: computed.append(1) or budget_pb2.Campaign(),
            )
        assert len(computed) == 3


@pytest.mark.parametrize("raw", ["-1", "lots", "1.5"])
def test_a_bad_cache_size_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("JANGKAU_READ_CACHE_MB", raw)
    with pytest.raises(SystemExit, match="JANGKAU_READ_CACHE_MB"):
        Settings.from_env("budget")


def test_the_cache_size_comes_from_the_environment_and_zero_turns_it_off(monkeypatch):
    monkeypatch.delenv("JANGKAU_READ_CACHE_MB", raising=False)
    assert Settings.from_env("budget").read_cache_mb == 64
    monkeypatch.setenv("JANGKAU_READ_CACHE_MB", "0")
    assert Settings.from_env("budget").read_cache_mb == 0
