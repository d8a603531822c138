"""Tokens file parsing and authentication."""

from __future__ import annotations

import hashlib
import json

import pytest

from jangkau.runtime.auth import DEV_TOKEN, Role, TokenBook
from jangkau.runtime.errors import Unauthenticated


def test_development_tokens_apply_without_a_tokens_file():
    caller = TokenBook.load(None).authenticate(f"Bearer {DEV_TOKEN}")
    assert (caller.tenant, caller.role) == ("dev", Role.BUYER)


def test_tokens_may_be_stored_as_sha256_digests(tmp_path):
    path = tmp_path / "tokens.json"
    digest = hashlib.sha256(b"s3cret").hexdigest()
    path.write_text(
        json.dumps({"tokens": [{"token_sha256": digest, "tenant": "t", "role": "viewer"}]})
    )
    caller = TokenBook.load(path).authenticate("Bearer s3cret")
    assert (caller.tenant, caller.role, caller.can_write) == ("t", Role.VIEWER, False)


def test_a_tokens_file_replaces_the_development_tokens(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"token": "x", "tenant": "t"}]}))
    with pytest.raises(Unauthenticated):
        TokenBook.load(path).authenticate(f"Bearer {DEV_TOKEN}")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer unknown"])
def test_bad_authorization_is_unauthenticated(header):
    with pytest.raises(Unauthenticated):
        TokenBook.load(None).authenticate(header)


def test_an_unknown_role_in_the_tokens_file_is_refused_naming_the_entry():
    with pytest.raises(ValueError, match=r"tokens\[0\]\.role"):
        TokenBook([{"token": "x", "tenant": "t", "role": "admin"}])


def test_a_token_seen_before_is_answered_with_the_same_caller_and_others_still_refused():
    book = TokenBook.load(None)
    first = book.authenticate(f"Bearer {DEV_TOKEN}")
    assert book.authenticate(f"Bearer {DEV_TOKEN}") is first
    with pytest.raises(Unauthenticated):
        book.authenticate("Bearer unknown")
    # A refused value is not remembered: it stays refused.
    with pytest.raises(Unauthenticated):
        book.authenticate("Bearer unknown")


def test_the_memory_of_recent_tokens_stays_bounded(monkeypatch):
    monkeypatch.setattr("jangkau.runtime.auth.RECENT_CALLERS", 3)
    tokens = [{"token": f"t{i}", "tenant": "t"} for i in range(10)]
    book = TokenBook(tokens)
    for i in range(10):
        assert book.authenticate(f"Bearer t{i}").token == f"t{i}"
        assert len(book._recent) <= 3
