"""Protobuf wire format written column-wise with numpy: one message per row of a
table, every field encoded for all rows at once, for replies with thousands of
small repeated messages where building each one through the protobuf API costs
several microseconds a message.

Each field becomes a block of bytes per row (rows × width) with a mask of the
bytes the row uses; a row's message is its used bytes in field order, and the
messages of all rows are the used bytes in row order. Fields at their default
(0, 0.0, "") are left out, as protobuf's own serialisation does, so the result
parses to the message the protobuf API would have built.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_VARINT_BYTES = 10
_SEVENS = np.arange(_VARINT_BYTES, dtype=np.uint64) * np.uint64(7)
_POSITIONS = np.arange(_VARINT_BYTES)

VARINT, FIXED64, LENGTH_DELIMITED = 0, 1, 2


def _key(field: int, wire_type: int) -> np.ndarray:
    """The field's tag as varint bytes."""
    value = (field << 3) | wire_type
    out = []
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return np.array(out, dtype=np.uint8)


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's varint (int64 as protobuf writes it: negatives take ten bytes),
    as rows × 10 bytes and the mask of the bytes each row uses."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    groups = (v[:, None] >> _SEVENS) & np.uint64(0x7F)
    length = 1 + (v[:, None] >> _SEVENS[1:] != 0).sum(axis=1)
    more = (length - 1)[:, None] > _POSITIONS
    return (groups | (more * 0x80).astype(np.uint64)).astype(np.uint8), length[:, None] > _POSITIONS


class WireRows:
    """The messages of `rows` rows, built field by field in field-number order."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._blocks: list[np.ndarray] = []
        self._used: list[np.ndarray] = []

    def _field(
        self, field: int, wire_type: int, present: np.ndarray, block: np.ndarray, used: np.ndarray
    ) -> None:
        key = _key(field, wire_type)
        self._blocks.append(np.concatenate([np.broadcast_to(key, (self.rows, len(key))), block], 1))
        self._used.append(
            np.concatenate([np.ones((self.rows, len(key)), bool), used], 1) & present[:, None]
        )

    def int64(self, field: int, values: np.ndarray) -> WireRows:
        """An int64 (or enum, int32, bool) field."""
        block, used = varints(values)
        self._field(field, VARINT, np.asarray(values) != 0, block, used)
        return self

    def double(self, field: int, values: np.ndarray) -> WireRows:
        doubles = np.ascontiguousarray(values, dtype="<f8")
        # Protobuf leaves out +0.0 only (its bits are all zero); -0.0 is written.
        present = doubles.view(np.int64) != 0
        block = doubles.view(np.uint8).reshape(self.rows, 8)
        self._field(field, FIXED64, present, block, np.ones(block.shape, bool))
        return self

    def string(self, field: int, values: pa.Array) -> WireRows:
        """A string field from an Arrow string array (UTF-8 as stored)."""
        values = values.cast(pa.string())
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
            values.offset : values.offset + self.rows + 1
        ]
        data = np.frombuffer(values.buffers()[2] or b"\0", dtype=np.uint8)
        lengths = np.diff(offsets).astype(np.int64)
        width = int(lengths.max(initial=0))
        positions = np.arange(width)
        used = positions < lengths[:, None]
        index = np.minimum(offsets[:-1, None] + positions, len(data) - 1)
        self._length_delimited(field, lengths > 0, data[index], used)
        return self

    def message(self, field: int, inner: WireRows, present: np.ndarray | None = None) -> WireRows:
        """A message field whose value, per row, is the row's message of `inner`
        (written when `present`, default: every row, even an empty message)."""
        block, used = inner.matrix()
        if present is None:
            present = np.ones(self.rows, bool)
        self._length_delimited(field, present, block, used)
        return self

    def raw(self, block: np.ndarray) -> WireRows:
        """Bytes already encoded (whole fields), the same number for every row."""
        self._blocks.append(block)
        self._used.append(np.ones(block.shape, bool))
        return self

    def _length_delimited(
        self, field: int, present: np.ndarray, block: np.ndarray, used: np.ndarray
    ) -> None:
        length, length_used = varints(used.sum(axis=1))
        self._field(
            field,
            LENGTH_DELIMITED,
            present,
            np.concatenate([length, block], 1),
            np.concatenate([length_used, used], 1),
        )

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's bytes (rows × width) and the mask of the ones it uses."""
        if not self._blocks:
            return np.zeros((self.rows, 0), np.uint8), np.zeros((self.rows, 0), bool)
        return np.concatenate(self._blocks, 1), np.concatenate(self._used, 1)

    def repeated(self, field: int) -> bytes:
        """The rows as the entries of repeated message field `field`, in row order:
        the serialised form of a message whose only field that is."""
        outer = WireRows(self.rows).message(field, self)
        block, used = outer.matrix()
        return block[used].tobytes()
