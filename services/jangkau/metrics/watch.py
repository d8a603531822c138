"""Data version changes pushed to watching clients under leases.

The budget service keeps each campaign's latest arm statistics with the data
version they were read at. Asking metrics before every Allocate whether that
version is still current is a round trip each time; a watch replaces it. A
watching client (one per tenant) renews a lease every fraction of
LEASE_SECONDS, and every write of the tenant's campaigns, once committed, is
acknowledged to its writer only after each client holding a lease has applied
the notice of the change, or after that client's lease has run out. A client
that trusts its answers only while its own lease runs (measured from when it
asked for the renewal, so it ends before the lease this side counts) therefore
never serves an answer made stale by a write acknowledged before.

Notices go to every open watch, leased or not, in order on its stream, and a
renewal is answered after the notices queued before it: a client whose lease
lapsed and is renewed has applied every change it missed meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jangkau.runtime.errors import ResourceExhausted

# How long a renewal keeps a lease, and so the longest a write waits for a
# client that stopped answering.
LEASE_SECONDS = 2.0
# Open watches at once, all tenants together: each holds a serving thread.
MAX_WATCHES = 4
# A watch whose lease ran out this long ago, with no renewal since, is closed.
ABANDONED_SECONDS = 3 * LEASE_SECONDS


@dataclass(frozen=True)
class Notice:
    # 0 for a lease renewal alone.
    sequence: int
    # Campaign id -> (version of the change, earliest instant it touched, µs since
    # the epoch; see runtime.versions).
    changes: Mapping[str, tuple[str, int]]
    renewal: int = 0


@dataclass
class Watch:
    """One client's stream."""

    tenant: str
    # Monotonic seconds.
    opened: float
    pending: deque[Notice] = field(default_factory=deque)
    sequence: int = 0
    applied: int = 0
    # Monotonic seconds; the lease as this side counts it (from the renewal's arrival).
    lease_until: float = 0.0
    closed: bool = False


class VersionWatches:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._watches: list[Watch] = []
        self._changed = threading.Condition()

    def open(self, tenant: str) -> Watch:
        with self._changed:
            self._drop_finished()
            if len(self._watches) >= MAX_WATCHES:
                raise ResourceExhausted(
                    f"{MAX_WATCHES} data version watches are open; ask per answer instead"
                )
            watch = Watch(tenant, self._clock())
            self._watches.append(watch)
            return watch

    def close(self, watch: Watch) -> None:
        """The stream ended. Its lease is still honoured until it runs out: the
        client may not have noticed yet."""
        with self._changed:
            watch.closed = True
            self._changed.notify_all()

    def close_all(self) -> None:
        """Ends every watch (the service is stopping); their leases are still honoured."""
        with self._changed:
            for watch in self._watches:
                watch.closed = True
            self._changed.notify_all()

    def renew(self, watch: Watch, renewal: int) -> None:
        with self._changed:
            watch.lease_until = self._clock() + LEASE_SECONDS
            watch.pending.append(Notice(0, {}, renewal))
            self._changed.notify_all()

    def applied(self, watch: Watch, sequence: int) -> None:
        with self._changed:
            watch.applied = max(watch.applied, min(sequence, watch.sequence))
            self._changed.notify_all()

    def publish(self, tenant: str, changes: Mapping[str, tuple[str, int]]) -> None:
        """Tells the tenant's watches of committed changes (campaign id → the
        change's version and earliest instant) and returns once each leased one
        has applied them or its lease has run out. Call before acknowledging the
        write."""
        if not changes:
            return
        with self._changed:
            # A closed watch gets the notice too, though it is never sent: its client
            # cannot apply it, so the write waits out that client's lease.
            awaited: list[tuple[Watch, int]] = []
            for watch in self._watches:
                if watch.tenant == tenant:
                    watch.sequence += 1
                    watch.pending.append(Notice(watch.sequence, dict(changes)))
                    awaited.append((watch, watch.sequence))
            self._changed.notify_all()
            while True:
                now = self._clock()
                waiting = [w for w, seq in awaited if w.applied < seq and now < w.lease_until]
                if not waiting:
                    return
                self._changed.wait(min(w.lease_until for w in waiting) - now)

    def next_notice(self, watch: Watch, timeout: float) -> Notice | None:
        """The watch's next notice to send, waiting up to `timeout` seconds; None
        when there is none yet, or when the watch is closed or abandoned (see
        `finished`)."""
        with self._changed:
            deadline = self._clock() + timeout
            while not watch.pending and not self._finished(watch):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
            if self._finished(watch):
                return None
            return watch.pending.popleft()

    def finished(self, watch: Watch) -> bool:
        with self._changed:
            return self._finished(watch)

    def _finished(self, watch: Watch) -> bool:
        """Closed, or abandoned: no lease asked for since ABANDONED_SECONDS after
        the last one ran out (or after opening)."""
        last = max(watch.lease_until, watch.opened)
        return watch.closed or self._clock() > last + ABANDONED_SECONDS

    def _drop_finished(self) -> None:
        """Forgets watches whose streams ended and whose leases ran out."""
        now = self._clock()
        self._watches = [w for w in self._watches if not (w.closed and now >= w.lease_until)]
