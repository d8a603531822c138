"""Server-assigned ids: a kind prefix and 16 random hex digits."""

from __future__ import annotations

import secrets


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"
