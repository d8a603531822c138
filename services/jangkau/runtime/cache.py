"""Values kept in memory because recomputing them costs queries: `Memo`, a bounded
map of pure functions of their key, and `ReadCache`, the answers of read RPCs
under the version of the data they were computed from.

A service passes the version of what an answer reads: the write generation of
its DuckDB file (`Database.generation`) or a finer one of its own (metrics' per
campaign `DataVersions`). Take the version *before* computing: a write that
commits meanwhile moves the version on, so the answer is stored under the old
one and never served after the write; taken after, an answer computed from old
data could be stored under the new version and served indefinitely.

Both compute a key once even when many callers ask for it at the same time
(right after a write, every dashboard asks at once): the first computes, the
others wait for its value, or its error, which is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

from google.protobuf.message import Message
from opentelemetry import trace

from jangkau.runtime.auth import current_caller
from jangkau.runtime.telemetry import instruments

V = TypeVar("V")
M = TypeVar("M", bound=Message | bytes)

MIB = 1 << 20
# An answer larger than this share of its cache is not kept (it would evict many).
LARGEST_SHARE = 8


class Memo(Generic[V]):
    """A thread-safe map of values that are pure functions of their key, least
    recently used dropped first once their total size passes `capacity` (sizes
    by `size_of`, by default 1 each: a number of entries). `capacity` 0 keeps
    nothing, nor is a value larger than `largest` kept. A kept value is shared by
    every caller: nothing may modify it."""

    def __init__(
        self,
        capacity: int,
        size_of: Callable[[V], int] = lambda value: 1,
        largest: int | None = None,
    ) -> None:
        self.capacity = capacity
        self._size_of = size_of
        self._largest = capacity if largest is None else largest
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._flights: dict[Hashable, Future[V]] = {}
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, compute: Callable[[], V]) -> tuple[V, str]:
        """The value of `key`, and how it was had: "hit" (kept), "joined" (computed
        by another caller meanwhile) or "miss" (computed here, then kept)."""
        if self.capacity <= 0:
            return compute(), "miss"
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0], "hit"
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result(), "joined"
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.set_exception(exc)
            raise
        self._keep(key, value)
        flight.set_result(value)
        return value, "miss"

    def _keep(self, key: Hashable, value: V) -> None:
        size = self._size_of(value)
        with self._lock:
            del self._flights[key]
            if size > self._largest:
                return
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped


def _serialised_size(answer: Message | bytes) -> int:
    return len(answer) if isinstance(answer, bytes) else answer.ByteSize()


class ReadCache:
    """The answers of a service's read RPCs, keyed by method, the caller's tenant,
    the request's bytes and the version of the data; bounded by their serialised
    size (`capacity`, 0: off). An answer is a message or, for replies written
    straight to the wire format, its bytes. Answers of older versions are never
    asked for again and age out first."""

    def __init__(self, service: str, capacity: int) -> None:
        self.service = service
        self._memo: Memo[Message | bytes] = Memo(
            capacity, _serialised_size, capacity // LARGEST_SHARE
        )

    @property
    def size(self) -> int:
        return self._memo.size

    def __len__(self) -> int:
        return len(self._memo)

    def answer(
        self, method: str, request: Message, version: Hashable, compute: Callable[[], M]
    ) -> M:
        """The answer to `request` at `version`; the RPC returns it as is."""
        if self._memo.capacity <= 0:
            return compute()
        key = (
            method,
            current_caller().tenant,
            request.SerializeToString(deterministic=True),
            version,
        )
        answer, how = self._memo.get(key, compute)
        trace.get_current_span().set_attribute("jangkau.read_cache", how)
        instruments().read_cache.add(
            1, {"jangkau.service": self.service, "rpc.method": method, "jangkau.result": how}
        )
        return answer  # type: ignore[return-value]
