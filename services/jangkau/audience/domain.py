"""The audience domain: the population cell model's dimensions, audiences and
contact lists as values, platform policy, and the arithmetic that turns the
store's measured sums into size and reach estimates. Pure: no gRPC, no SQL.

Enum values equal the proto enums' numbers (jangkau.v1), so the edge converts
with `int()` both ways.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from jangkau.platforms.eligibility import ELIGIBILITY
from jangkau.runtime.vocabulary import CampaignKind as CampaignKind
from jangkau.runtime.vocabulary import Platform as Platform

if TYPE_CHECKING:
    from jangkau.audience.rules import Rule


class Gender(IntEnum):
    MALE = 1
    FEMALE = 2


class Locality(IntEnum):
    URBAN = 1
    RURAL = 2


class Connectivity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class ConsentBasis(IntEnum):
    EXPLICIT_CONSENT = 1
    CONTRACT = 2
    LEGITIMATE_INTEREST = 3


class IdentifierKind(IntEnum):
    PHONE = 1
    EMAIL = 2


PLATFORMS: tuple[Platform, ...] = tuple(Platform)

# 17 is the voting age; ages are whole years.
VOTING_AGE = 17
MAX_AGE = 120


@dataclass(frozen=True)
class AgeBand:
    """One age band of the population cells: ages first..last, inclusive.

    Inside a band ages are taken as evenly spread over first..spread_last; an
    age condition that cuts a band counts the band in proportion (README).
    """

    index: int
    first: int
    last: int
    spread_last: int

    @property
    def label(self) -> str:
        if self.first == self.last:
            return str(self.first)
        return f"{self.first}+" if self.last >= MAX_AGE else f"{self.first}-{self.last}"

    @property
    def width(self) -> int:
        return self.spread_last - self.first + 1


# Google's age brackets, with 17-year-old first-time voters on their own.
AGE_BANDS: tuple[AgeBand, ...] = (
    AgeBand(0, 17, 17, 17),
    AgeBand(1, 18, 24, 24),
    AgeBand(2, 25, 34, 34),
    AgeBand(3, 35, 44, 44),
    AgeBand(4, 45, 54, 54),
    AgeBand(5, 55, 64, 64),
    # Few voters are older than 84: the 65+ band is spread over 65..84.
    AgeBand(6, 65, MAX_AGE, 84),
)

# Connectivity bands by the share of a cell's people online.
CONNECTIVITY_MEDIUM_FROM = 0.65
CONNECTIVITY_HIGH_FROM = 0.80


def connectivity_band(online_share: float) -> Connectivity:
    if online_share >= CONNECTIVITY_HIGH_FROM:
        return Connectivity.HIGH
    if online_share >= CONNECTIVITY_MEDIUM_FROM:
        return Connectivity.MEDIUM
    return Connectivity.LOW


# Smallest audience each platform serves (also a guard against micro-targeting).
MINIMUM_AUDIENCE: Mapping[Platform, int] = {p: 100 for p in Platform}

# Modelled share of a contact list's identifiers each platform matches to an
# account (README: no Indonesian match-rate figures were found).
MATCH_RATES: Mapping[Platform, Mapping[IdentifierKind, float]] = {
    Platform.META: {IdentifierKind.PHONE: 0.60, IdentifierKind.EMAIL: 0.45},
    Platform.GOOGLE: {IdentifierKind.PHONE: 0.40, IdentifierKind.EMAIL: 0.55},
    Platform.X: {IdentifierKind.PHONE: 0.10, IdentifierKind.EMAIL: 0.15},
    Platform.TIKTOK: {IdentifierKind.PHONE: 0.45, IdentifierKind.EMAIL: 0.25},
}


def match_rates(phones: int, emails: int) -> dict[Platform, float]:
    """Expected matched share of a list with this many phones and emails, per platform."""
    total = phones + emails
    if total == 0:
        return {p: 0.0 for p in Platform}
    return {
        p: (phones * rates[IdentifierKind.PHONE] + emails * rates[IdentifierKind.EMAIL]) / total
        for p, rates in MATCH_RATES.items()
    }


@dataclass(frozen=True)
class Audience:
    id: str
    tenant: str
    name: str
    rule: Rule
    # Uses a contact list, directly or through an excluded audience.
    uses_contact_lists: bool
    # Only age, gender and region conditions (Google election ads' limit).
    demographic_only: bool
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class ContactList:
    """A contact list's metadata; its identifiers exist only as hashes in the store."""

    id: str
    tenant: str
    name: str
    purpose: str
    consent_basis: ConsentBasis
    default_country: str
    # Where the list's people live (Kemendagri codes); empty: nationwide.
    region_codes: tuple[str, ...]
    upload_time: datetime
    phones: int
    emails: int
    duplicates: int
    rejected: Mapping[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.phones + self.emails

    @property
    def match_rates(self) -> dict[Platform, float]:
        return match_rates(self.phones, self.emails)


def policy_verdict(
    platform: Platform, kind: CampaignKind, uses_contact_lists: bool, demographic_only: bool
) -> tuple[bool, str]:
    """(allowed, reason): may this audience serve this kind of campaign on this
    platform, by the platforms' eligibility table (the one budget applies)."""
    rule = ELIGIBILITY[(platform, kind)]
    if not rule.allowed:
        return False, rule.reason
    refused = rule.refuses_audience(uses_contact_lists, demographic_only)
    if refused is not None:
        return False, f"{rule.reason}; this audience {refused}"
    return True, ""


@dataclass(frozen=True)
class ListReach:
    """Voters the store measured as reachable only through contact lists with these rates."""

    rates: Mapping[Platform, float]
    voters: float


@dataclass(frozen=True)
class Measures:
    """Expected sums over the cells for one plan (see rules.Plan)."""

    # Voters included through their cell's conditions; reached at the cells' shares.
    voters_via_cells: float
    reach_via_cells: Mapping[Platform, float]
    # Voters included only as contact-list members; reached at the lists' match rates.
    via_lists: Sequence[ListReach] = ()

    @property
    def voters(self) -> float:
        return self.voters_via_cells + sum(part.voters for part in self.via_lists)

    def reachable(self, platform: Platform) -> float:
        via_lists = sum(part.voters * part.rates[platform] for part in self.via_lists)
        return self.reach_via_cells[platform] + via_lists


@dataclass(frozen=True)
class PlatformEstimate:
    platform: Platform
    reachable: int
    targetable: bool
    allowed: bool
    reason: str
    minimum: int


@dataclass(frozen=True)
class RegencyEstimate:
    """The part of an audience in one kabupaten or kota."""

    code: str
    name: str
    voters: int
    platforms: tuple[PlatformEstimate, ...]


@dataclass(frozen=True)
class SizeEstimate:
    voters: int
    platforms: tuple[PlatformEstimate, ...]
    # Asked for: by kabupaten/kota, most voters first.
    regencies: tuple[RegencyEstimate, ...] = ()


def count(expected: float) -> int:
    """An expected number of people as a whole count (never negative)."""
    return max(0, round(expected))


def size_estimate(
    measures: Measures,
    platforms: Iterable[Platform],
    kind: CampaignKind,
    uses_contact_lists: bool,
    demographic_only: bool,
) -> SizeEstimate:
    estimates = []
    for platform in platforms:
        reachable = count(measures.reachable(platform))
        minimum = MINIMUM_AUDIENCE[platform]
        allowed, reason = policy_verdict(platform, kind, uses_contact_lists, demographic_only)
        targetable = reachable >= minimum
        if allowed and not targetable:
            reason = f"reachable {reachable} is under the platform minimum of {minimum}"
        estimates.append(
            PlatformEstimate(platform, reachable, targetable, allowed, reason, minimum)
        )
    return SizeEstimate(voters=count(measures.voters), platforms=tuple(estimates))


# Column names of each platform's hashed customer-list upload, and which stored
# phone form the platform hashes (Google: E.164 with "+"; the others: digits).
EXPORT_SCHEMAS: Mapping[Platform, tuple[str, str]] = {
    Platform.META: ("EMAIL", "PHONE"),
    Platform.GOOGLE: ("hashedEmail", "hashedPhoneNumber"),
    Platform.X: ("email", "phone_number"),
}
PHONE_WITH_PLUS: frozenset[Platform] = frozenset({Platform.GOOGLE})
MAX_EXPORT_CHUNK = 10_000


@dataclass(frozen=True)
class ExportRecord:
    kind: IdentifierKind
    # SHA-256 hex of the identifier, normalised for the export's platform.
    sha256_hex: str

    def values(self) -> tuple[str, str]:
        """The record in schema order (email, phone): one value, the other empty."""
        if self.kind is IdentifierKind.EMAIL:
            return (self.sha256_hex, "")
        return ("", self.sha256_hex)


class RegionIndex:
    """The districts of the population and their voters: which region codes
    exist, and how many voters live in a set of regions."""

    def __init__(self, districts: np.ndarray, voters: np.ndarray) -> None:
        self.districts = np.asarray(districts, dtype=np.int64)
        self.voters = np.asarray(voters, dtype=np.int64)
        self.total_voters = int(self.voters.sum())
        self._known: set[str] = set()
        for code in self.districts.tolist():
            text = f"{code:06d}"
            self._known.update((text[:2], text[:4], text))

    def known(self, code: str) -> bool:
        return code in self._known

    def within(self, codes: Iterable[str]) -> np.ndarray:
        """Which districts lie in any of these regions (by code prefix)."""
        inside = np.zeros(len(self.districts), dtype=bool)
        for code in codes:
            inside |= self.districts // 10 ** (6 - len(code)) == int(code)
        return inside

    def within_all(self, region_sets: Sequence[Iterable[str]]) -> np.ndarray:
        """Which districts lie in every one of these sets of regions (all: nationwide)."""
        inside = np.ones(len(self.districts), dtype=bool)
        for codes in region_sets:
            inside &= self.within(codes)
        return inside

    def voters_in_all(self, region_sets: Sequence[Iterable[str]]) -> int:
        """Voters living in every one of these sets of regions (all: nationwide)."""
        return int(self.voters[self.within_all(region_sets)].sum())
