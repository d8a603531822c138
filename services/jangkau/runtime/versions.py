"""Data versions that follow time: each change of a campaign's data says the
earliest instant it may have touched, so an answer about the instants before
some `end` (a window, a summary as of a moment) is affected only by the changes
that touched something before `end`. Reports of a fresh hour, the bulk of the
writes, then leave every answer about the hours before it as it was.

Metrics labels each answer with the version of the latest change relevant to
it (`ChangeHistory.version_before`); the budget service, told of each change by
metrics' data version watch, finds the same label for the answers it keeps.
"""

from __future__ import annotations

from collections import deque

from google.protobuf.timestamp_pb2 import Timestamp

# The earliest instant of a change that may have touched any (a registration, a
# write that failed part-way): relevant to every answer.
ANY_TIME_US = -(2**63)
# Changes kept per campaign: enough for every answer about recent hours, while
# the writes of fresh hours after them are still arriving.
KEPT_CHANGES = 64


class ChangeHistory:
    """The latest changes of one campaign's data, oldest first: (version,
    earliest instant touched, µs since the epoch). `base` is the version of
    the latest change no longer kept (or the one given at the start)."""

    def __init__(self, base: str | None, capacity: int = KEPT_CHANGES) -> None:
        self.base = base
        self._changes: deque[tuple[str, int]] = deque()
        self._capacity = capacity

    def add(self, version: str, earliest_us: int) -> None:
        if len(self._changes) == self._capacity:
            self.base = self._changes.popleft()[0]
        self._changes.append((version, earliest_us))

    def version_before(self, end_us: int) -> str | None:
        """The version of the data before `end_us`: that of the latest kept change
        that touched an instant before it, else `base` (no change kept since
        touched one, so that data is as it was at `base`)."""
        for version, earliest_us in reversed(self._changes):
            if earliest_us < end_us:
                return version
        return self.base


def changed_from_wire(earliest_us: int) -> Timestamp | None:
    """The earliest instant of a change as sent (CampaignDataVersion.changed_from):
    unset for any instant."""
    if earliest_us == ANY_TIME_US:
        return None
    stamp = Timestamp()
    stamp.FromMicroseconds(earliest_us)
    return stamp


def changed_from_us(changed_from: Timestamp | None) -> int:
    """The earliest instant of a change as received, µs since the epoch."""
    return ANY_TIME_US if changed_from is None else changed_from.ToMicroseconds()
