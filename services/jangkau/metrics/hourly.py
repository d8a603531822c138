"""A small campaign's hourly delivery kept in memory between reads, for the
timeseries and summaries that dashboards ask right after each report batch.

Per (tenant, campaign, attribution window) the cache holds the delivery sums of
every stored hour of the campaign's arms. A read first asks the store's change
log for the reports of the campaign's arms written since the cache last looked,
with the values they stored, and puts them in place, so an hourly report batch
costs no query at all. A campaign whose arms changed (or whose arms' default
windows did) is read whole again, as is every campaign once the log no longer
reaches back far enough. As in `day_stats`, the change sequence is taken before
reading, so a write committed meanwhile is applied again next time (the same
values), never missed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from jangkau.metrics.domain import ALL_HOURS, BucketSums, RegisteredCampaign
from jangkau.metrics.store import MetricsStore


@dataclass
class _Hours:
    arm_refs: np.ndarray
    window_refs: np.ndarray
    sequence: int
    sums: BucketSums | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class HourlyDeliveryCache:
    def __init__(self, store: MetricsStore, capacity_cells: int) -> None:
        self.store = store
        self.capacity_cells = capacity_cells
        self._entries: OrderedDict[tuple[str, str, str], _Hours] = OrderedDict()
        self._lock = threading.Lock()

    def hours(self, tenant: str, registered: RegisteredCampaign, window: str) -> BucketSums:
        """Every stored hour of the campaign's arms in `window` (each arm's default
        window when empty): delivery sums per (arm position, hour start)."""
        entry = self._entry((tenant, registered.campaign_id, window), registered)
        with entry.lock:
            sequence = self.store.change_sequence()  # before reading: see the docstring
            written = (
                None
                if entry.sums is None
                else self.store.changed_hours(entry.sequence, registered, window)
            )
            if entry.sums is not None and written is not None:
                entry.sums = entry.sums.updated(written)
            else:
                entry.sums = self.store.bucket_sums(registered, *ALL_HOURS, window, daily=False)
            entry.sequence = sequence
            sums = entry.sums
        self._trim()
        return sums

    def _entry(self, key: tuple[str, str, str], registered: RegisteredCampaign) -> _Hours:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not registered.reads_as(entry.arm_refs, entry.window_refs):
                # New, or the campaign's arms or their default windows changed.
                entry = _Hours(
                    registered.arm_refs.copy(),
                    registered.window_refs.copy(),
                    self.store.change_sequence(),
                )
                self._entries[key] = entry
            self._entries.move_to_end(key)
            return entry

    def _trim(self) -> None:
        """Drops the least recently read campaigns beyond the capacity."""
        with self._lock:
            total = sum(len(e.sums) for e in self._entries.values() if e.sums is not None)
            while total > self.capacity_cells and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= len(dropped.sums) if dropped.sums is not None else 0
