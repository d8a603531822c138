"""Exact per-(arm, UTC day) partial statistics kept between GetArmStats calls.

The allocator asks every hour for the statistics of a campaign's whole flight
so far: all but the newest day are the same as an hour before. Hour weights
factor across days (discount^(end − t) = discount^(end − day end) ·
discount^(day end − t)), so the statistics of a window are, exactly, the sum of
its whole days' partial sums, each scaled once, plus its partial first and last
days computed from their rows. Whole days are cached per request shape
(campaign, attribution window, discount, κ values, count metric) and dropped
when the store's change log says a report of that day was written; a call then
reads and computes only the changed days and the two partial ones. A campaign
whose arms or their default windows changed (an arm's first report sets its
window) starts afresh: its days were read under the windows it had before.

The change log lives in the store process (the only writer of its file): a
backend with several writers would give the same log from its own snapshots.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from jangkau.metrics import domain
from jangkau.metrics.domain import (
    DAY_US,
    HOUR_US,
    CountMetric,
    HourRows,
    PartialSums,
    RegisteredCampaign,
)
from jangkau.metrics.store import MetricsStore

HOURS_PER_DAY = DAY_US // HOUR_US
# Memory the cached days may take, all campaigns together.
MAX_CACHE_BYTES = 256 * 1024 * 1024
# Longer windows are computed from their rows without the cache.
MAX_CACHED_DAYS = 400


@dataclass
class _Days:
    """One request shape's cached whole days: epoch day → sums of every arm."""

    arm_refs: np.ndarray
    # The arms' default windows: an arm's first report gives it one, and the days
    # read before that hold none of its reports.
    window_refs: np.ndarray
    sequence: int
    # None: a day without reports.
    days: dict[int, PartialSums | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Memory of `days`, updated under `lock`.
    nbytes: int = 0
    # The last sum over a run of whole days: (first day, stop day, weights'
    # reference moment in epoch µs, sums). Dropped whenever `days` changes; a later
    # end only rescales it (one factor for every day).
    whole: tuple[int, int, int, PartialSums] | None = None

    def measure(self) -> None:
        self.nbytes = sum(
            p.counts.nbytes + p.weighted.nbytes + p.exposure.nbytes + p.log_shape.nbytes
            for p in self.days.values()
            if p is not None
        )


# Reads a campaign's rows of the hour spans in a window: (tenant, campaign, spans, window).
HourReader = Callable[[str, RegisteredCampaign, Sequence[tuple[int, int]], str], HourRows]


class DayStatsCache:
    def __init__(
        self, store: MetricsStore, read_hours: HourReader, max_bytes: int = MAX_CACHE_BYTES
    ) -> None:
        """`store` gives the change log; `read_hours` the rows (the store's arm_hours,
        or the same hours already in memory)."""
        self.store = store
        self.read_hours = read_hours
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, _Days] = OrderedDict()  # type: ignore[type-arg]
        self._lock = threading.Lock()

    def arm_stats(
        self,
        tenant: str,
        registered: RegisteredCampaign,
        first_hour: int,
        stop_hour: int,
        end: datetime,
        discount: float,
        kappas_micros: Sequence[float],
        metric: CountMetric,
        window: str,
    ) -> domain.ArmStatsTable:
        """The statistics of hours [first_hour, stop_hour), weighted to `end`."""
        n_arms = len(registered.arms)
        end_us = domain.to_us(end)
        first_day = -(-first_hour // HOURS_PER_DAY)
        stop_day = stop_hour // HOURS_PER_DAY
        if not 0 < stop_day - first_day <= MAX_CACHED_DAYS:  # too short or too long to cache
            rows = self.read_hours(tenant, registered, [(first_hour, stop_hour)], window)
            weight = domain.hour_weights(rows.hour_us, end_us, discount)
            return domain.partial_sums(
                rows, rows.arm, n_arms, weight, kappas_micros, metric
            ).table()
        shape = (tenant, registered.campaign_id, window, discount, tuple(kappas_micros), metric)
        entry = self._entry(shape, registered)
        with entry.lock:
            sequence = self.store.change_sequence()  # before reading: see the module docstring
            self._forget_changed(entry, registered)
            missing = [d for d in range(first_day, stop_day) if d not in entry.days]
            edges = [
                (first_hour, first_day * HOURS_PER_DAY),
                (stop_day * HOURS_PER_DAY, stop_hour),
            ]
            spans = edges + [
                (lo * HOURS_PER_DAY, (hi + 1) * HOURS_PER_DAY)
                for lo, hi in domain.consecutive_runs(missing)
            ]
            rows = self.read_hours(tenant, registered, spans, window)
            in_edges = np.zeros(len(rows.arm), dtype=bool)
            for lo, hi in edges:
                in_edges |= (rows.hour_us >= lo * HOUR_US) & (rows.hour_us < hi * HOUR_US)
            edge_rows = _subset(rows, in_edges)
            weight = domain.hour_weights(edge_rows.hour_us, end_us, discount)
            edge_sums = domain.partial_sums(
                edge_rows, edge_rows.arm, n_arms, weight, kappas_micros, metric
            )
            parts = [(edge_sums, 1.0)]
            if missing:
                self._compute_days(
                    entry,
                    _subset(rows, ~in_edges),
                    missing,
                    n_arms,
                    discount,
                    kappas_micros,
                    metric,
                )
            entry.sequence = sequence
            log_discount = math.log(discount) if discount not in (0.0, 1.0) else 0.0
            whole = entry.whole
            # Every factor here is at most 1 (weights move only towards a later end):
            # one back to an earlier end could overflow with a small discount, and
            # would not bring back sums that had underflowed to 0.
            if whole is None or whole[:2] != (first_day, stop_day) or whole[2] > end_us:
                days = [
                    (sums, math.exp((end_us - (day + 1) * DAY_US) / HOUR_US * log_discount))
                    for day in range(first_day, stop_day)
                    if (sums := entry.days[day]) is not None
                ]
                whole = (first_day, stop_day, end_us, domain.combine(days)) if days else None
                if whole is not None:
                    entry.whole = whole
            if whole is not None:
                parts.append((whole[3], math.exp((end_us - whole[2]) / HOUR_US * log_discount)))
            total = domain.combine(parts)
            entry.measure()
        self._trim()
        return total.table()

    def _entry(self, shape: tuple, registered: RegisteredCampaign) -> _Days:  # type: ignore[type-arg]
        with self._lock:
            entry = self._entries.get(shape)
            if entry is None or not registered.reads_as(entry.arm_refs, entry.window_refs):
                # New, or the campaign's arms or their default windows changed.
                entry = _Days(
                    registered.arm_refs.copy(),
                    registered.window_refs.copy(),
                    self.store.change_sequence(),
                )
                self._entries[shape] = entry
            self._entries.move_to_end(shape)
            return entry

    def _forget_changed(self, entry: _Days, registered: RegisteredCampaign) -> None:
        """Drops the cached days in which a report of the campaign was written."""
        changed = self.store.changed_days(entry.sequence, entry.arm_refs)
        if changed is None:
            entry.days.clear()
            entry.whole = None
            return
        for day in changed.tolist():
            if day in entry.days:
                del entry.days[day]
                entry.whole = None

    def _compute_days(
        self,
        entry: _Days,
        rows: HourRows,
        days: list[int],
        n_arms: int,
        discount: float,
        kappas_micros: Sequence[float],
        metric: CountMetric,
    ) -> None:
        entry.whole = None
        observed = np.unique(rows.hour_us // DAY_US)
        sums = domain.day_sums(rows, n_arms, observed, discount, kappas_micros, metric)
        slots = {int(day): j for j, day in enumerate(observed.tolist())}
        for day in days:
            if day not in slots:
                entry.days[day] = None  # no reports that day
                continue
            index = np.arange(n_arms) * len(observed) + slots[day]
            entry.days[day] = PartialSums(
                sums.counts[index],
                sums.conversions[index],
                sums.weighted[index],
                sums.last_hour_us[index],
                sums.exposure[index],
                sums.log_shape[index],
            )

    def _trim(self) -> None:
        """Evicts the least recently used request shapes beyond the memory budget."""
        with self._lock:
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.nbytes


def _subset(rows: HourRows, keep: np.ndarray) -> HourRows:
    return HourRows(
        arm=rows.arm[keep],
        hour_us=rows.hour_us[keep],
        spend_micros=rows.spend_micros[keep],
        impressions=rows.impressions[keep],
        clicks=rows.clicks[keep],
        conversions=rows.conversions[keep],
    )
