"""Server-assigned ids (a kind prefix and 16 random hex digits), and seeds fixed
per key and period."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def period_seed(key: str, period_start: datetime) -> int:
    """A non-zero 64-bit seed fixed per (key, period)."""
    digest = hashlib.sha256(f"{key}|{period_start.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1
