"""Metrics' side of data version watches (metrics.watch): a write is acknowledged
only once every leased watch of its tenant applied its notice, or that watch's
lease ran out; notices reach every open watch in order, renewals after them."""

from __future__ import annotations

import threading

import pytest

from jangkau.metrics import watch as watch_module
from jangkau.metrics.watch import MAX_WATCHES, Notice, VersionWatches
from jangkau.runtime.errors import ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(watches: VersionWatches, watch) -> list[Notice]:  # type: ignore[no-untyped-def]
    got = []
    while (notice := watches.next_notice(watch, 0)) is not None:
        got.append(notice)
    return got


def publishing(
    watches: VersionWatches, tenant: str, changes: dict[str, tuple[str, int]]
) -> threading.Thread:
    thread = threading.Thread(target=watches.publish, args=(tenant, changes), daemon=True)
    thread.start()
    return thread


def test_a_write_waits_until_the_leased_watch_applied_its_notice():
    watches = VersionWatches()
    watch = watches.open("alpha")
    watches.renew(watch, 1)
    assert drain(watches, watch) == [Notice(0, {}, 1)]
    writer = publishing(watches, "alpha", {"cmp-1": ("e-7", 0)})
    notice = watches.next_notice(watch, 5)
    assert notice == Notice(1, {"cmp-1": ("e-7", 0)})
    writer.join(0.2)
    assert writer.is_alive(), "acknowledged before the watch applied the change"
    watches.applied(watch, 1)
    writer.join(5)
    assert not writer.is_alive()


def test_a_write_does_not_wait_for_other_tenants_or_unleased_watches():
    watches = VersionWatches()
    other = watches.open("beta")
    watches.renew(other, 1)
    unleased = watches.open("alpha")
    watches.publish("alpha", {"cmp-1": ("e-2", 0)})  # returns: nobody to wait for
    # The unleased watch still gets the notice, in order, before a later renewal.
    watches.renew(unleased, 1)
    assert drain(watches, unleased) == [Notice(1, {"cmp-1": ("e-2", 0)}), Notice(0, {}, 1)]
    assert drain(watches, other) == [Notice(0, {}, 1)]


def test_a_watch_that_stops_answering_holds_writes_only_until_its_lease_runs_out(monkeypatch):
    monkeypatch.setattr(watch_module, "LEASE_SECONDS", 0.3)
    watches = VersionWatches()
    silent = watches.open("alpha")
    watches.renew(silent, 1)
    writer = publishing(watches, "alpha", {"cmp-1": ("e-3", 0)})
    writer.join(10)
    assert not writer.is_alive()
    assert Notice(1, {"cmp-1": ("e-3", 0)}) in drain(watches, silent)


def test_a_closed_watch_holds_writes_until_its_lease_runs_out(monkeypatch):
    """Its client may not have noticed the stream break yet, and trusts its lease."""
    monkeypatch.setattr(watch_module, "LEASE_SECONDS", 0.5)
    watches = VersionWatches()
    gone = watches.open("alpha")
    watches.renew(gone, 1)
    watches.close(gone)
    writer = publishing(watches, "alpha", {"cmp-1": ("e-4", 0)})
    writer.join(0.1)
    assert writer.is_alive()
    writer.join(10)
    assert not writer.is_alive()


def test_watches_are_capped_and_a_finished_one_frees_its_place():
    clock = Clock()
    watches = VersionWatches(clock)
    opened = [watches.open("alpha") for _ in range(MAX_WATCHES)]
    with pytest.raises(ResourceExhausted, match="watches"):
        watches.open("beta")
    watches.renew(opened[0], 1)
    watches.close(opened[0])
    with pytest.raises(ResourceExhausted):
        watches.open("beta")  # its lease still runs
    clock.now += watch_module.LEASE_SECONDS + 0.01
    watches.open("beta")


def test_a_watch_never_renewed_is_abandoned():
    clock = Clock()
    watches = VersionWatches(clock)
    idle = watches.open("alpha")
    assert not watches.finished(idle)
    clock.now += watch_module.ABANDONED_SECONDS + 0.01
    assert watches.finished(idle)
    assert watches.next_notice(idle, 0) is None
