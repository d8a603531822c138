"""Contact identifiers → the normalised forms the ad platforms hash, and their
SHA-256 digests. Raw phones and emails live only in the memory of one upload
call; nothing here keeps them.

Platform forms (DESIGN.md §2):
- email, every platform: trimmed, lower-case (`  Budi@Mail.ID ` → `budi@mail.id`);
- phone, Meta and X: digits with the country code, no "+", no trunk zero
  (`0812-3456-7890` → `6281234567890`);
- phone, Google: E.164 with "+" (`+6281234567890`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from jangkau.audience.domain import IdentifierKind

# ISO 3166 country → calling code, for numbers written without one.
CALLING_CODES: dict[str, str] = {
    "ID": "62",
    "MY": "60",
    "SG": "65",
    "TL": "670",
    "BN": "673",
    "PH": "63",
    "TH": "66",
    "AU": "61",
    "NL": "31",
    "SA": "966",
    "HK": "852",
    "TW": "886",
    "JP": "81",
    "KR": "82",
    "US": "1",
}
INDONESIA = "62"

# Calling code → the shortest and longest of its national significant numbers
# (without the trunk zero), after the countries' numbering plans as notified to
# the ITU. Numbers of other calling codes are held to 8 to 15 digits in all.
NATIONAL_DIGITS: dict[str, tuple[int, int]] = {
    "62": (8, 12),
    "60": (8, 10),
    "65": (8, 8),
    "670": (7, 8),
    "673": (7, 7),
    "63": (8, 10),
    "66": (8, 9),
    "61": (9, 9),
    "31": (9, 9),
    "966": (8, 9),
    "852": (8, 8),
    "886": (8, 9),
    "81": (9, 10),
    "82": (8, 10),
    "1": (10, 10),
}
# Calling codes form a prefix code: at most one of them starts a number.
_CODES_LONGEST_FIRST = sorted(NATIONAL_DIGITS, key=len, reverse=True)

# Separators people write inside phone numbers (deleted by str.translate).
_SEPARATORS = str.maketrans("", "", " \t\n\r\f\v\u00a0-./()")
_EMAIL_DOMAIN = re.compile(r"^[^\s@.]+(\.[^\s@.]+)+$")
_WHITESPACE = re.compile(r"\s")

REJECT_PHONE_EMPTY = "phone: empty"
REJECT_PHONE_NOT_A_NUMBER = "phone: not a number"
REJECT_PHONE_COUNTRY_CODE = "phone: no country code after + or 00"
REJECT_PHONE_TOO_SHORT = "phone: too short"
REJECT_PHONE_TOO_LONG = "phone: too long"
REJECT_EMAIL_EMPTY = "email: empty"
REJECT_EMAIL_NO_AT = "email: no @"
REJECT_EMAIL_MANY_AT = "email: more than one @"
REJECT_EMAIL_NO_LOCAL = "email: nothing before @"
REJECT_EMAIL_SPACE = "email: space inside"
REJECT_EMAIL_DOMAIN = "email: bad domain"
REJECT_EMAIL_TOO_LONG = "email: too long"


def phone_digits(raw: str, calling_code: str = INDONESIA) -> tuple[str, str]:
    """(digits with country code, "") or ("", rejection reason).

    `calling_code` applies to numbers written without one: `0812…` (trunk zero)
    and `812…` both become `62812…`; `+62…` and `0062…` carry their own. A
    number that starts with the calling code's digits but no "+" (`62812…`) is
    taken as carrying it when that reads as a valid number, and as a national
    number otherwise (`6512 3456` in Singapore is `65 6512 3456`).
    """
    # "+62 (0)812…" writes the trunk zero that international dialling drops.
    if "(" in raw:
        raw = raw.replace("(0)", "")
    text = raw.translate(_SEPARATORS)
    if not text:
        return "", REJECT_PHONE_EMPTY
    if text[0] == "+":
        body, international = text[1:], True
    elif text.startswith("00"):
        body, international = text[2:], True
    else:
        body, international = text, False
    if not body or not (body.isascii() and body.isdigit()):
        return "", REJECT_PHONE_NOT_A_NUMBER
    if international and body.startswith("0"):
        # No calling code starts with 0: "+0812…" is a national number behind a "+".
        return "", REJECT_PHONE_COUNTRY_CODE
    if international:
        return _international(body)
    if body.startswith(calling_code):
        with_code = _international(body)
        national = _with_code(calling_code, body)
        return national if with_code[1] and not national[1] else with_code
    return _with_code(calling_code, body)


def _international(body: str) -> tuple[str, str]:
    """A number written with its calling code (after the "+" or "00")."""
    code = next((c for c in _CODES_LONGEST_FIRST if body.startswith(c)), "")
    return _with_code(code, body[len(code) :])


def _with_code(code: str, national: str) -> tuple[str, str]:
    """A calling code and a national number, checked for length. For the codes
    of NATIONAL_DIGITS a trunk zero is dropped, also one kept after the code
    ("62 0812…", a common slip): none of their national numbers starts with 0.
    Other codes ("": one not known) are held to 8 to 15 digits in all."""
    if code in NATIONAL_DIGITS:
        national = national.removeprefix("0")
        low, high = NATIONAL_DIGITS[code]
    else:
        low, high = 8 - len(code), 15 - len(code)
    if len(national) < low:
        return "", REJECT_PHONE_TOO_SHORT
    if len(national) > high:
        return "", REJECT_PHONE_TOO_LONG
    return code + national, ""


def meta_phone(digits: str) -> str:
    """Meta's (and X's) phone form: digits with country code, no "+"."""
    return digits


def google_phone(digits: str) -> str:
    """Google's phone form: E.164 with "+"."""
    return "+" + digits


def normalise_email(raw: str) -> tuple[str, str]:
    """(trimmed lower-case email, "") or ("", rejection reason)."""
    text = raw.strip().lower()
    if not text:
        return "", REJECT_EMAIL_EMPTY
    if len(text) > 254:
        return "", REJECT_EMAIL_TOO_LONG
    ats = text.count("@")
    if ats == 0:
        return "", REJECT_EMAIL_NO_AT
    if ats > 1:
        return "", REJECT_EMAIL_MANY_AT
    if _WHITESPACE.search(text):
        return "", REJECT_EMAIL_SPACE
    local, domain = text.split("@")
    if not local:
        return "", REJECT_EMAIL_NO_LOCAL
    if len(local) > 64:
        return "", REJECT_EMAIL_TOO_LONG
    if not _EMAIL_DOMAIN.match(domain):
        return "", REJECT_EMAIL_DOMAIN
    return text, ""


def sha256_hex(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()


# Columns of a hashed identifier table: the kind, the SHA-256 of the digits form
# (emails; Meta and X phones) and of the "+" form (Google phones; emails again).
HASH_SCHEMA = pa.schema(
    [
        ("kind", pa.int8()),
        ("sha256", pa.binary(32)),
        ("sha256_plus", pa.binary(32)),
    ]
)


@dataclass
class ContactHasher:
    """Normalises and hashes the chunks of one upload; keeps only digests and counts."""

    calling_code: str = INDONESIA
    rejected: Counter[str] = field(default_factory=Counter)
    seen: int = 0
    _batches: list[pa.RecordBatch] = field(default_factory=list)

    def add(self, phones: Sequence[str], emails: Sequence[str]) -> None:
        sha = hashlib.sha256
        rejected = self.rejected
        code = self.calling_code
        digits_hashes: list[bytes] = []
        plus_hashes: list[bytes] = []
        # Bound methods: this loop runs once per identifier of the upload.
        add_digits, add_plus = digits_hashes.append, plus_hashes.append
        for raw in phones:
            digits, reason = phone_digits(raw, code)
            if reason:
                rejected[reason] += 1
                continue
            encoded = digits.encode()
            add_digits(sha(encoded).digest())
            add_plus(sha(b"+" + encoded).digest())
        valid_phones = len(digits_hashes)
        for raw in emails:
            email, reason = normalise_email(raw)
            if reason:
                rejected[reason] += 1
                continue
            digest = sha(email.encode()).digest()
            add_digits(digest)
            add_plus(digest)
        self.seen += len(phones) + len(emails)
        if digits_hashes:
            kinds = np.full(len(digits_hashes), IdentifierKind.EMAIL, dtype=np.int8)
            kinds[:valid_phones] = IdentifierKind.PHONE
            self._batches.append(
                pa.RecordBatch.from_arrays(
                    [
                        pa.array(kinds),
                        pa.array(digits_hashes, pa.binary(32)),
                        pa.array(plus_hashes, pa.binary(32)),
                    ],
                    schema=HASH_SCHEMA,
                )
            )

    def table(self) -> pa.Table:
        """Every valid identifier's digests (duplicates included; the store keeps one)."""
        return pa.Table.from_batches(self._batches, schema=HASH_SCHEMA)
