"""Contact identifiers are normalised per platform and hashed with SHA-256; the
expected digests are computed here with hashlib on the literal normalised text."""

from __future__ import annotations

import hashlib

import pytest

from jangkau.audience.normalise import (
    ContactHasher,
    google_phone,
    meta_phone,
    normalise_email,
    phone_digits,
    sha256_hex,
)

INDONESIAN_WRITINGS = [
    "0812 3456 7890",
    "0812-3456-7890",
    "+62 812-3456-7890",
    "6281234567890",
    "+62 (0)812 3456 7890",
    "0062 812 3456 7890",
    "812.3456.7890",
    "  62 0812 3456 7890 ",
]


@pytest.mark.parametrize("raw", INDONESIAN_WRITINGS)
def test_meta_phone_is_digits_with_country_code_and_no_plus(raw):
    digits, reason = phone_digits(raw)
    assert reason == ""
    assert sha256_hex(meta_phone(digits)) == hashlib.sha256(b"6281234567890").hexdigest()


@pytest.mark.parametrize("raw", INDONESIAN_WRITINGS)
def test_google_phone_is_e164_with_plus(raw):
    digits, _ = phone_digits(raw)
    assert sha256_hex(google_phone(digits)) == hashlib.sha256(b"+6281234567890").hexdigest()


@pytest.mark.parametrize(
    "raw", ["  Budi.Santoso@Mail.ID ", "BUDI.SANTOSO@MAIL.ID", "\tbudi.santoso@mail.id\n"]
)
def test_email_is_trimmed_and_lower_case_for_every_platform(raw):
    email, reason = normalise_email(raw)
    assert reason == ""
    assert sha256_hex(email) == hashlib.sha256(b"budi.santoso@mail.id").hexdigest()


def test_a_number_written_with_another_country_code_keeps_it():
    digits, _ = phone_digits("+65 9123 4567")
    assert meta_phone(digits) == "6591234567"


def test_the_default_country_applies_only_to_numbers_without_a_code():
    assert phone_digits("012 345 6789", calling_code="60") == ("60123456789", "")
    assert phone_digits("+62 812 3456 7890", calling_code="60") == ("6281234567890", "")


@pytest.mark.parametrize(
    ("raw", "calling_code", "digits"),
    [
        # Singapore numbers have 8 digits: "6512 3456" cannot be +65 123456.
        ("6512 3456", "65", "6565123456"),
        # Pematangsiantar's 0622 without its trunk zero: +62 2123456 would be too short.
        ("622 123 456", "62", "62622123456"),
    ],
)
def test_a_national_number_starting_with_the_calling_codes_digits_gets_the_code(
    raw, calling_code, digits
):
    assert phone_digits(raw, calling_code) == (digits, "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "phone: empty"),
        ("   ", "phone: empty"),
        ("0812-34AB-7890", "phone: not a number"),
        ("+", "phone: not a number"),
        ("0812 345", "phone: too short"),
        ("0812 3456 7890 1234", "phone: too long"),
        ("+0812-3456-7890", "phone: no country code after + or 00"),
        ("000 812 3456 7890", "phone: no country code after + or 00"),
        ("+65 1234 567", "phone: too short"),
        ("+1 212 555 12345", "phone: too long"),
    ],
)
def test_an_invalid_phone_is_rejected_with_its_reason(raw, reason):
    assert phone_digits(raw) == ("", reason)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "email: empty"),
        ("budi.mail.id", "email: no @"),
        ("budi@@mail.id", "email: more than one @"),
        ("@mail.id", "email: nothing before @"),
        ("budi santoso@mail.id", "email: space inside"),
        ("budi@mail", "email: bad domain"),
        ("budi@mail..id", "email: bad domain"),
    ],
)
def test_an_invalid_email_is_rejected_with_its_reason(raw, reason):
    assert normalise_email(raw) == ("", reason)


def test_the_hasher_keeps_only_digests_and_counts_rejections_by_reason():
    hasher = ContactHasher()
    hasher.add(["0812 3456 7890", "abc", ""], ["Budi@Mail.ID", "nope"])
    table = hasher.table()
    assert hasher.seen == 5
    assert dict(hasher.rejected) == {
        "phone: not a number": 1,
        "phone: empty": 1,
        "email: no @": 1,
    }
    rows = table.to_pylist()
    assert [r["sha256"].hex() for r in rows] == [
        hashlib.sha256(b"6281234567890").hexdigest(),
        hashlib.sha256(b"budi@mail.id").hexdigest(),
    ]
    assert rows[0]["sha256_plus"].hex() == hashlib.sha256(b"+6281234567890").hexdigest()
    assert rows[1]["sha256_plus"] == rows[1]["sha256"]


def test_the_hasher_counts_a_national_number_behind_a_plus_as_rejected():
    hasher = ContactHasher(calling_code="65")
    hasher.add(["6512 3456", "+0812-3456-7890"], [])
    assert dict(hasher.rejected) == {"phone: no country code after + or 00": 1}
    (row,) = hasher.table().to_pylist()
    assert row["sha256"].hex() == hashlib.sha256(b"6565123456").hexdigest()
    assert row["sha256_plus"].hex() == hashlib.sha256(b"+6565123456").hexdigest()
