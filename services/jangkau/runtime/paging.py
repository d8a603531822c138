"""Page tokens for List RPCs: an opaque, tamper-evident offset."""

from __future__ import annotations

import base64
import json

from jangkau.runtime.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# No listing here reaches this many rows; a larger offset is a forged token, and
# DuckDB's OFFSET takes a signed 64-bit value.
MAX_OFFSET = 2**53


def page_bounds(page_size: int, page_token: str, field: str = "page") -> tuple[int, int]:
    """(offset, limit) for a PageRequest's fields."""
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"{field}.page_size", f"must be 0..{MAX_PAGE_SIZE}, got {page_size}")
    size = page_size or DEFAULT_PAGE_SIZE
    if not page_token:
        return 0, size
    try:
        offset = json.loads(base64.urlsafe_b64decode(page_token.encode()))["o"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(f"{field}.page_token", "not a token this service issued") from None
    return offset, size


def next_token(offset: int, size: int, returned: int) -> str:
    """Token of the following page, or "" when this page was the last."""
    if returned < size:
        return ""
    return base64.urlsafe_b64encode(json.dumps({"o": offset + size}).encode()).decode()
