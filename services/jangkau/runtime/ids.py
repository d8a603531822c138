"""Server-assigned ids: a kind prefix and 16 random hex digits."""

from __future__ import annotations

import re
import secrets

_ID = re.compile(r"^[a-z]{3}_[0-9a-f]{16}$")


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def looks_like_id(value: str, kind: str) -> bool:
    return bool(_ID.match(value)) and value.startswith(kind + "_")
