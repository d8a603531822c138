"""Bearer tokens → (tenant, role), and the caller of the current RPC.

Tokens come from the JSON file named by JANGKAU_TOKENS_FILE:

    {"tokens": [{"token": "…", "tenant": "team-a", "role": "buyer"},
                {"token_sha256": "<hex>", "tenant": "team-b", "role": "viewer"}]}

Without that file the development tokens below are in force (local runs only).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from jangkau.runtime.errors import Unauthenticated


class Role(StrEnum):
    # Reads and writes its tenant's objects.
    BUYER = "buyer"
    # Reads only.
    VIEWER = "viewer"
    # Another jangkau process (rebalancer, platform feeds): reads and writes.
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    tenant: str
    role: Role
    # The raw token, forwarded on calls this RPC makes to other services.
    token: str

    @property
    def can_write(self) -> bool:
        return self.role is not Role.VIEWER


DEV_TOKEN = "jangkau-dev-token"
DEV_TENANT = "dev"
DEV_TOKENS: tuple[dict[str, str], ...] = (
    {"token": DEV_TOKEN, "tenant": DEV_TENANT, "role": "buyer"},
    {"token": "jangkau-dev-viewer-token", "tenant": DEV_TENANT, "role": "viewer"},
    {"token": "jangkau-dev-service-token", "tenant": DEV_TENANT, "role": "service"},
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Authorization values recently accepted, each with its caller: hashing and comparing
# a token costs more than the rest of a call's checks, and callers reuse theirs.
RECENT_CALLERS = 256


class TokenBook:
    """Maps token digests to tenants and roles."""

    def __init__(self, entries: tuple[dict[str, str], ...] | list[dict[str, str]]) -> None:
        self._by_digest: dict[str, tuple[str, Role]] = {}
        for i, entry in enumerate(entries):
            digest = entry.get("token_sha256") or (
                _digest(entry["token"]) if "token" in entry else ""
            )
            tenant = entry.get("tenant", "")
            if not digest or not tenant:
                raise ValueError(f"tokens[{i}]: needs token or token_sha256, and tenant")
            try:
                role = Role(entry.get("role", "buyer"))
            except ValueError:
                raise ValueError(f"tokens[{i}].role: one of buyer, viewer, service") from None
            self._by_digest[digest.lower()] = (tenant, role)
        self._recent: dict[str, Caller] = {}

    @classmethod
    def load(cls, path: Path | None) -> TokenBook:
        if path is None:
            return cls(DEV_TOKENS)
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"JANGKAU_TOKENS_FILE={path}: {exc}") from None
        return cls(document.get("tokens", []))

    def authenticate(self, authorization: str | None) -> Caller:
        recent = self._recent.get(authorization) if authorization else None
        if recent is not None:
            return recent
        caller = self._authenticate(authorization)
        if len(self._recent) >= RECENT_CALLERS:
            self._recent.clear()
        self._recent[authorization] = caller  # type: ignore[index]
        return caller

    def _authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated(
                "missing authorization metadata: send 'authorization: Bearer <token>'"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        token = token.strip()
        digest = _digest(token)
        for known, (tenant, role) in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return Caller(tenant=tenant, role=role, token=token)
        raise Unauthenticated("unknown token")


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "jangkau_caller", default=None
)


def caller_if_any() -> Caller | None:
    """The caller of the RPC being served; None outside one (jobs, tests)."""
    return _CALLER.get()


def current_caller() -> Caller:
    """The authenticated caller of the RPC being served."""
    caller = _CALLER.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller")
    return caller


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    """Makes `caller` the current caller for the block (the interceptor, and jobs)."""
    reset = _CALLER.set(caller)
    try:
        yield caller
    finally:
        _CALLER.reset(reset)
