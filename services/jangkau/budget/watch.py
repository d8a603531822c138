"""The budget service's side of metrics' data version watches (the protocol is
in jangkau.metrics.watch and MetricsService.WatchDataVersions).

Per tenant, a thread keeps one WatchDataVersions stream open, with the token of
a caller of that tenant: it applies each notice (the changes of campaigns'
data, each with its version and the earliest instant it touched; see
runtime.versions), acknowledges it, and renews the lease. A metrics snapshot
read while a lease runs is labelled with the stream's session; it is reused
without asking metrics again while the same session's lease still runs and the
latest change announced that touched its window is the one it was read at (or
none was announced). A broken stream ends its session, so snapshots labelled
with it are asked about again (GetArmStats `if_version_not`), as they are
whenever no lease runs.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator

import grpc

from jangkau.runtime.auth import Caller, acting_as
from jangkau.runtime.versions import ChangeHistory, changed_from_us
from jangkau.v1 import metrics_pb2, metrics_pb2_grpc

log = logging.getLogger("jangkau.budget.watch")

# Taken off every lease granted: the time from reading the clock to the renewal
# leaving, and any difference in clock rates.
LEASE_MARGIN_SECONDS = 0.25
# How often the lease is renewed: several times a lease, so one late answer
# does not let it run out.
RENEW_SECONDS = 0.4
# A stream's deadline: it is opened again after this, in a new session.
STREAM_SECONDS = 600.0
# Waits between attempts to open a stream after one failed.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
# Tenants watched at once by one process (metrics caps its watches too); the
# others' snapshots are asked about on each use.
WATCHED_TENANTS = 4

_STOP = object()


class TenantWatch:
    """One tenant's stream, reopened whenever it breaks, until `stop`."""

    def __init__(self, stub: metrics_pb2_grpc.MetricsServiceStub, caller: Caller) -> None:
        self.stub = stub
        # The caller whose token opens the next stream (the latest seen: tokens rotate).
        self.caller = caller
        self._lock = threading.Lock()
        self._session = 0
        self._lease_until = 0.0
        # Per campaign, the changes announced in this session.
        self._changes: dict[str, ChangeHistory] = {}
        self._stopped = threading.Event()
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"version-watch-{caller.tenant}", daemon=True
        )
        self._thread.start()

    def session(self) -> int | None:
        """The session whose lease runs now; None when no lease runs."""
        with self._lock:
            return self._session if time.monotonic() < self._lease_until else None

    def unchanged(self, session: int | None, campaign_id: str, version: str, end_us: int) -> bool:
        """Whether a snapshot of the campaign's data before `end_us` (µs since the
        epoch), read at `version` in `session`, is still current without asking
        metrics: the session's lease runs now, and the latest change announced in
        it that touched an instant before `end_us` is of that version (or none
        was announced, and none forgotten)."""
        with self._lock:
            if session != self._session or time.monotonic() >= self._lease_until:
                return False
            changes = self._changes.get(campaign_id)
            return changes is None or changes.version_before(end_us) in (None, version)

    def stop(self) -> None:
        self._stopped.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        failures = 0
        while True:
            try:
                self._watch()
                failures = 0
            except grpc.RpcError as exc:
                failures += 1
                code = exc.code() if hasattr(exc, "code") else None
                if not self._stopped.is_set():
                    log.info("data version watch broke", extra={"fields": {"code": str(code)}})
            except Exception:  # noqa: BLE001 (the thread must not die silently)
                failures += 1
                log.exception("data version watch failed")
            finally:
                with self._lock:
                    self._lease_until = 0.0
            if self._stopped.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]):
                return

    def _watch(self) -> None:
        with self._lock:
            self._session += 1
            self._changes = {}
            self._lease_until = 0.0
        outbox: queue.Queue[object] = queue.Queue()
        # Renewal number -> when it was asked for (the lease runs from then).
        asked: dict[int, float] = {}
        renewals = itertools.count(1)

        def requests() -> Iterator[metrics_pb2.WatchDataVersionsRequest]:
            renewed = 0.0
            item: object = None
            while item is not _STOP:
                if isinstance(item, int):
                    yield metrics_pb2.WatchDataVersionsRequest(applied=item)
                # Renewed on time however busy the stream is with acknowledgements.
                now = time.monotonic()
                if now - renewed >= RENEW_SECONDS:
                    renewed = now
                    number = next(renewals)
                    asked[number] = now
                    yield metrics_pb2.WatchDataVersionsRequest(renewal=number)
                try:
                    item = outbox.get(timeout=max(0.0, renewed + RENEW_SECONDS - time.monotonic()))
                except queue.Empty:
                    item = None

        with acting_as(self.caller):
            call = self.stub.WatchDataVersions(requests(), timeout=STREAM_SECONDS)
        self._call = call
        if self._stopped.is_set():
            call.cancel()  # stopped while the call was being opened
        try:
            for notice in call:
                with self._lock:
                    for change in notice.changes:
                        changes = self._changes.get(change.campaign_id)
                        if changes is None:
                            changes = self._changes[change.campaign_id] = ChangeHistory(None)
                        changes.add(
                            change.data_version,
                            changed_from_us(
                                change.changed_from if change.HasField("changed_from") else None
                            ),
                        )
                    started = asked.pop(notice.renewal, None) if notice.renewal else None
                    if started is not None:
                        self._lease_until = max(
                            self._lease_until,
                            started + notice.lease_ms / 1000 - LEASE_MARGIN_SECONDS,
                        )
                if notice.sequence:
                    outbox.put(notice.sequence)
        finally:
            outbox.put(_STOP)
            self._call = None


class DataVersionWatches:
    """The watches of one process: one per tenant, for the first WATCHED_TENANTS
    tenants whose snapshots were asked for."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = metrics_pb2_grpc.MetricsServiceStub(channel)
        self._watches: dict[str, TenantWatch] = {}
        self._lock = threading.Lock()
        self._closed = False

    def of(self, caller: Caller | None) -> TenantWatch | None:
        """The watch of the caller's tenant, started on first use; None for no
        caller, or a tenant beyond the first WATCHED_TENANTS."""
        if caller is None:
            return None
        with self._lock:
            watch = self._watches.get(caller.tenant)
            if watch is None:
                if self._closed or len(self._watches) >= WATCHED_TENANTS:
                    return None
                watch = self._watches[caller.tenant] = TenantWatch(self._stub, caller)
            else:
                watch.caller = caller
            return watch

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watches = list(self._watches.values())
            self._watches.clear()
        for watch in watches:
            watch.stop()
