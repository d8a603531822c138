"""Personal data at rest (UU PDP No. 27/2022): after an upload no raw or
normalised phone number or e-mail is anywhere in the service's files, and
deleting a list erases its hashes from disk."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import grpc
import pytest

from jangkau.v1 import audience_pb2 as pb
from tests import test_audience_support as support

# Fixture: a server of the test's own.
api = support.api

COUNT = 3000


def phones() -> list[str]:
    return [f"0812-{7000 + i // 1000:04d}-{i % 1000:04d}" for i in range(COUNT)]


def emails() -> list[str]:
    return [f"  Pemilih.Nomor{i}@Contoh-Mail.CO.ID " for i in range(COUNT)]


def every_file(folder: Path) -> bytes:
    """The bytes of every file under the data folder: DuckDB file, WAL, hash files."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_no_raw_or_normalised_identifier_is_on_disk_after_an_upload(api):
    uploaded = api.upload(phones(), emails())
    assert uploaded.accepted == 2 * COUNT
    folder = api.data_dir
    names = {p.name for p in folder.rglob("*")}
    assert "audience.duckdb" in names
    data = every_file(folder)
    lowered = data.lower()
    # The scan sees what the files hold: the hashes are there in plain bytes.
    assert hashlib.sha256(b"6281270000000").digest() in data
    assert hashlib.sha256(b"+6281270000000").digest() in data

    national = {p.replace("-", "").encode() for p in phones()}  # 081270000000
    international = {b"62" + n[1:] for n in national}  # 6281270000000
    digit_runs = set(re.findall(rb"\d{8,}", data))
    assert not digit_runs & (national | international)
    for raw in phones()[:50]:
        assert raw.encode() not in data
    found_emails = set(re.findall(rb"[a-z0-9._%+-]+@[a-z0-9.-]+", lowered))
    assert not found_emails & {e.strip().lower().encode() for e in emails()}
    assert b"contoh-mail" not in lowered


def test_the_hashes_of_a_deleted_list_are_gone_from_disk(api):
    uploaded = api.upload(phones()[:500])
    digest = hashlib.sha256(b"6281270000007").digest()
    assert digest in every_file(api.data_dir)
    api.stub.DeleteContactList(
        pb.DeleteContactListRequest(list_id=uploaded.id), metadata=api.md(), timeout=10
    )
    assert digest not in every_file(api.data_dir)
    with pytest.raises(grpc.RpcError) as caught:
        api.stub.GetContactList(
            pb.GetContactListRequest(list_id=uploaded.id), metadata=api.md(), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_list_keeps_its_purpose_consent_and_upload_time(api):
    uploaded = api.upload(phones()[:10])
    found = api.stub.GetContactList(
        pb.GetContactListRequest(list_id=uploaded.id), metadata=api.md(), timeout=10
    )
    assert found.purpose == "volunteer coordination"
    assert found.consent_basis == pb.EXPLICIT_CONSENT
    assert found.upload_time.seconds > 0
