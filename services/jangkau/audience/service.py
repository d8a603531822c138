"""The audience service's use cases, one method per RPC, over the domain and
the store and independent of gRPC (the edge translates messages to these
calls). Every method takes the caller's tenant; another tenant's objects are
not found."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from jangkau.audience import population, rules
from jangkau.audience.domain import (
    EXPORT_SCHEMAS,
    MAX_EXPORT_CHUNK,
    MINIMUM_AUDIENCE,
    PHONE_WITH_PLUS,
    PLATFORMS,
    Audience,
    CampaignKind,
    ConsentBasis,
    ContactList,
    ExportRecord,
    IdentifierKind,
    ListReach,
    Measures,
    Platform,
    RegencyEstimate,
    RegionIndex,
    SizeEstimate,
    count,
    size_estimate,
)
from jangkau.audience.normalise import CALLING_CODES, ContactHasher
from jangkau.audience.rules import All, CheckedRule, Plan, Rule
from jangkau.audience.store import AudienceStore, CellSums
from jangkau.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Violations,
)
from jangkau.runtime.ids import new_id
from jangkau.runtime.times import utcnow

MAX_NAME = 200
MAX_PURPOSE = 500
MAX_OVERLAP = 20
MAX_IDENTIFIERS_PER_MESSAGE = 100_000


@dataclass(frozen=True)
class ContactListHeader:
    name: str
    purpose: str
    consent_basis: int
    default_country: str
    region_codes: tuple[str, ...]


@dataclass(frozen=True)
class ContactChunk:
    phones: Sequence[str]
    emails: Sequence[str]


@dataclass(frozen=True)
class ExportPart:
    """One chunk of an export: records in the platform's schema order."""

    platform: Platform
    schema: tuple[str, str]
    records: list[tuple[str, str]]
    index: int
    last: bool


@dataclass(frozen=True)
class OverlapMatrix:
    audience_ids: tuple[str, ...]
    voters: tuple[int, ...]
    # Row-major n×n.
    shared_voters: tuple[int, ...]


class _Context:
    """What rule validation sees: one tenant's lists and audiences, the regions."""

    def __init__(
        self, service: AudienceService, tenant: str, replaced: Audience | None = None
    ) -> None:
        self._service = service
        self._tenant = tenant
        self._lists: dict[str, ContactList | None] = {}
        # `replaced`: an audience as an update is about to store it.
        self._audiences: dict[str, Audience | None] = (
            {} if replaced is None else {replaced.id: replaced}
        )

    def region_known(self, code: str) -> bool:
        return self._service.regions.known(code)

    def contact_list(self, list_id: str) -> ContactList | None:
        if list_id not in self._lists:
            self._lists[list_id] = self._service.known_list(self._tenant, list_id)
        return self._lists[list_id]

    def audience(self, audience_id: str) -> Audience | None:
        if audience_id not in self._audiences:
            self._audiences[audience_id] = self._service.store.get_audience(
                self._tenant, audience_id
            )
        return self._audiences[audience_id]


class AudienceService:
    def __init__(self, store: AudienceStore) -> None:
        self.store = store
        self.regions = RegionIndex(*store.district_voters())
        # Lists never change once uploaded: their metadata and the membership
        # counts of list combinations are kept until the list is deleted.
        self._lists: dict[tuple[str, str], ContactList] = {}
        self._memberships: OrderedDict[tuple[str, ...], dict[frozenset[str], int]] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Audience writes one at a time: an update re-checks and re-flags the
        # audiences excluding it, which must not change in between.
        self._audience_writes = threading.Lock()

    @classmethod
    def open(
        cls, data_dir: Path, *, seed_if_empty: bool = True, threads: int | None = None
    ) -> AudienceService:
        """Opens the store (DuckDB `threads` per query: see runtime.store.Database);
        builds the national population cells on first start, and builds them again
        (same seed, same number of districts) when an earlier generator made them."""
        store = AudienceStore(data_dir, threads=threads)
        try:
            if seed_if_empty:
                if store.population_is_empty():
                    built = population.generate()
                    store.replace_population(built.cells, built.provinces, built.info)
                else:
                    population.upgrade(store)
            return cls(store)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------ audiences

    def create_audience(self, tenant: str, name: str, rule: Rule | None) -> Audience:
        _check_name(name, "name")
        with self._audience_writes:
            checked = self._check(tenant, rule, "rule")
            now = utcnow()
            audience = Audience(
                id=new_id("aud"),
                tenant=tenant,
                name=name,
                rule=checked.rule,
                uses_contact_lists=checked.uses_contact_lists,
                demographic_only=checked.demographic_only,
                create_time=now,
                update_time=now,
            )
            _refuse_missing(self.store.insert_audience(audience))
        return audience

    def update_audience(
        self, tenant: str, audience_id: str, name: str, rule: Rule | None
    ) -> Audience:
        """Replaces an audience's name and rule. The audiences that exclude it,
        directly or through others, take its new rule too: the update is refused
        when it would take one of them over a limit, and their flags follow it."""
        current = self.get_audience(tenant, audience_id)
        _check_name(name, "name")
        with self._audience_writes:
            checked = self._check(tenant, rule, "rule", audience_id=audience_id)
            updated = Audience(
                id=current.id,
                tenant=tenant,
                name=name,
                rule=checked.rule,
                uses_contact_lists=checked.uses_contact_lists,
                demographic_only=checked.demographic_only,
                create_time=current.create_time,
                update_time=utcnow(),
            )
            dependants = self._recheck_dependants(updated)
            _refuse_missing(self.store.update_audience(updated, dependants))
        return updated

    def _recheck_dependants(self, updated: Audience) -> list[Audience]:
        """The audiences excluding this one, directly or through others, checked
        with its new rule in place, with the flags that rule gives them."""
        context = _Context(self, updated.tenant, replaced=updated)
        found: list[Audience] = []
        waiting = [updated.id]
        seen = {updated.id}
        while waiting:
            excluded = waiting.pop()
            for dependant_id in self.store.referencing_audiences(
                updated.tenant, "audience", excluded
            ):
                dependant = context.audience(dependant_id)
                if dependant_id in seen or dependant is None:
                    continue
                seen.add(dependant_id)
                waiting.append(dependant_id)
                try:
                    checked = rules.check(dependant.rule, context, "rule", dependant_id)
                except InvalidArgument as exc:
                    reasons = "; ".join(dict.fromkeys(v.reason for v in exc.violations))
                    raise FailedPrecondition(
                        f"audience {dependant_id} excludes audience {excluded}, and with this "
                        f"rule it would be refused ({reasons}); change it first"
                    ) from None
                found.append(
                    replace(
                        dependant,
                        uses_contact_lists=checked.uses_contact_lists,
                        demographic_only=checked.demographic_only,
                    )
                )
        return found

    def get_audience(self, tenant: str, audience_id: str, field: str = "audience_id") -> Audience:
        if not audience_id:
            raise InvalidArgument(field, "required")
        audience = self.store.get_audience(tenant, audience_id)
        if audience is None:
            raise NotFound(f"audience {audience_id} not found")
        return audience

    def list_audiences(self, tenant: str, offset: int, limit: int) -> list[Audience]:
        return self.store.list_audiences(tenant, offset, limit)

    def delete_audience(
        self, tenant: str, audience_id: str, delete_unused_lists: bool
    ) -> tuple[list[str], int]:
        """Deletes an audience; with `delete_unused_lists`, also the contact lists
        it named that no other audience names. (deleted list ids, hashes removed)."""
        audience = self.get_audience(tenant, audience_id)
        _, excluders = self.store.delete_audience(tenant, audience_id)
        if excluders:
            raise FailedPrecondition(
                f"audience {audience_id} is excluded by {', '.join(excluders)}; change those first"
            )
        deleted: list[str] = []
        removed = 0
        if delete_unused_lists:
            list_ids, _ = rules.references(audience.rule)
            for list_id in sorted(list_ids):
                count, _ = self._delete_list(tenant, list_id)
                if count is not None:
                    deleted.append(list_id)
                    removed += count
        return deleted, removed

    # ------------------------------------------------------------ estimates

    def estimate_size(
        self,
        tenant: str,
        audience_id: str | None,
        rule: Rule | None,
        kind: int,
        platforms: Sequence[int],
        by_regency: bool = False,
    ) -> SizeEstimate:
        problems = Violations()
        chosen: list[Platform] = []
        for i, value in enumerate(platforms):
            known = problems.check(value in tuple(Platform), f"platforms[{i}]", "unknown platform")
            if known and Platform(value) not in chosen:
                chosen.append(Platform(value))
        problems.check(
            kind == 0 or kind in tuple(CampaignKind), "campaign_kind", "unknown campaign kind"
        )
        problems.raise_if_any()
        campaign_kind = CampaignKind(kind) if kind else CampaignKind.COMMERCIAL
        checked = self._target(tenant, audience_id, rule)
        plan = self.plan(checked)

        def estimate(measures: Measures) -> SizeEstimate:
            return size_estimate(
                measures,
                chosen or PLATFORMS,
                campaign_kind,
                checked.uses_contact_lists,
                checked.demographic_only,
            )

        if not by_regency:
            return estimate(self._measures(checked, plan))
        # One scan grouped by kabupaten/kota; the whole is the sum of its parts.
        by_code = self.store.measure_by_regency(plan)
        whole = estimate(_measures_from(CellSums.total(by_code.values()), checked.lists))
        names = population.regency_names()
        parts = []
        for code, sums in by_code.items():
            part = estimate(_measures_from(sums, checked.lists))
            if part.voters:
                parts.append(
                    RegencyEstimate(str(code), names.get(code, ""), part.voters, part.platforms)
                )
        parts.sort(key=lambda p: (-p.voters, p.code))
        return replace(whole, regencies=tuple(parts))

    def plan(self, checked: CheckedRule) -> Plan:
        lists = dict(checked.lists)
        if not lists:
            return rules.plan(checked)
        memberships = rules.memberships(self._membership_counts(lists), lists, self.regions)
        return rules.plan(checked, memberships)

    def check_rule(self, tenant: str, rule: Rule | None, field: str = "rule") -> CheckedRule:
        return self._check(tenant, rule, field)

    def overlap(self, tenant: str, audience_ids: Sequence[str]) -> OverlapMatrix:
        problems = Violations()
        problems.check(
            2 <= len(audience_ids) <= MAX_OVERLAP,
            "audience_ids",
            f"needs 2..{MAX_OVERLAP} audiences, got {len(audience_ids)}",
        )
        seen: set[str] = set()
        for i, audience_id in enumerate(audience_ids):
            problems.check(bool(audience_id), f"audience_ids[{i}]", "required")
            problems.check(audience_id not in seen, f"audience_ids[{i}]", "listed twice")
            seen.add(audience_id)
        problems.raise_if_any()
        context = _Context(self, tenant)
        checked = []
        for i, audience_id in enumerate(audience_ids):
            audience = self.get_audience(tenant, audience_id, f"audience_ids[{i}]")
            checked.append(rules.check(audience.rule, context, f"audience_ids[{i}]"))
        n = len(checked)
        plans = [self.plan(c) for c in checked]
        shared = np.zeros((n, n))
        # Whole-cell audiences: one scan counts every pair of them exactly.
        whole = [i for i, p in enumerate(plans) if p.exclusive]
        if whole:
            among = self.store.overlap_of_conditions([plans[i].condition() for i in whole])
            shared[np.ix_(whole, whole)] = among
        # Any pair with a weighted audience: the count of the AND of both rules.
        for i in range(n):
            if not plans[i].exclusive:
                shared[i, i] = self._measures(checked[i], plans[i]).voters
            for j in range(i + 1, n):
                if not (plans[i].exclusive and plans[j].exclusive):
                    both = _both(checked[i], checked[j])
                    shared[i, j] = shared[j, i] = self._measures(both).voters
        counts = np.maximum(0, np.rint(shared)).astype(np.int64)
        # Shared voters never exceed either audience. Besides float rounding, this
        # guards the list model: the AND of two rules places people in several of
        # their lists by those lists' shared region, where one rule alone spreads
        # them over its own list's region (rules.memberships), which can count more.
        diagonal = np.diag(counts).copy()
        counts = np.minimum(counts, np.minimum(diagonal[:, None], diagonal[None, :]))
        return OverlapMatrix(
            audience_ids=tuple(audience_ids),
            voters=tuple(int(v) for v in diagonal),
            shared_voters=tuple(int(v) for v in counts.reshape(-1)),
        )

    # ------------------------------------------------------------ contact lists

    def upload_contact_list(
        self, tenant: str, header: ContactListHeader | None, chunks: Iterable[ContactChunk]
    ) -> ContactList:
        """Hashes every identifier of the stream and stores the distinct hashes;
        the header is checked before any identifier is read."""
        if header is None:
            raise InvalidArgument("header", "the first message must carry the header")
        country = header.default_country or "ID"
        problems = Violations()
        _check_name(header.name, "header.name", problems)
        problems.check(
            1 <= len(header.purpose) <= MAX_PURPOSE,
            "header.purpose",
            f"must be 1..{MAX_PURPOSE} characters (why the identifiers were collected)",
        )
        problems.check(
            header.consent_basis in tuple(ConsentBasis),
            "header.consent_basis",
            "required: EXPLICIT_CONSENT, CONTRACT or LEGITIMATE_INTEREST",
        )
        problems.check(
            country in CALLING_CODES,
            "header.default_country",
            f"unknown country {country!r}; one of {', '.join(sorted(CALLING_CODES))}",
        )
        for i, code in enumerate(header.region_codes):
            problems.check(
                self.regions.known(code), f"header.region_codes[{i}]", f"unknown region {code!r}"
            )
        problems.raise_if_any()
        hasher = ContactHasher(CALLING_CODES[country])
        for i, chunk in enumerate(chunks, start=1):
            size = len(chunk.phones) + len(chunk.emails)
            if size > MAX_IDENTIFIERS_PER_MESSAGE:
                raise InvalidArgument(
                    f"messages[{i}].chunk",
                    f"{size} identifiers; at most {MAX_IDENTIFIERS_PER_MESSAGE:,} per message",
                )
            hasher.add(chunk.phones, chunk.emails)
        distinct = self.store.distinct_hashes(hasher.table())
        kinds = distinct.column("kind").to_numpy()
        phones = int((kinds == IdentifierKind.PHONE).sum())
        emails = int((kinds == IdentifierKind.EMAIL).sum())
        rejected = sum(hasher.rejected.values())
        contact_list = ContactList(
            id=new_id("lst"),
            tenant=tenant,
            name=header.name,
            purpose=header.purpose,
            consent_basis=ConsentBasis(header.consent_basis),
            default_country=country,
            region_codes=tuple(dict.fromkeys(header.region_codes)),
            upload_time=utcnow(),
            phones=phones,
            emails=emails,
            duplicates=hasher.seen - rejected - phones - emails,
            rejected=dict(sorted(hasher.rejected.items())),
        )
        self.store.insert_contact_list(contact_list, distinct)
        return contact_list

    def get_contact_list(self, tenant: str, list_id: str) -> ContactList:
        if not list_id:
            raise InvalidArgument("list_id", "required")
        found = self.known_list(tenant, list_id)
        if found is None:
            raise NotFound(f"contact list {list_id} not found")
        return found

    def list_contact_lists(self, tenant: str, offset: int, limit: int) -> list[ContactList]:
        return self.store.list_contact_lists(tenant, offset, limit)

    def delete_contact_list(self, tenant: str, list_id: str) -> int:
        self.get_contact_list(tenant, list_id)
        removed, users = self._delete_list(tenant, list_id)
        if users:
            raise FailedPrecondition(
                f"contact list {list_id} is used by {', '.join(users)}; change or delete those first"
            )
        if removed is None:
            raise NotFound(f"contact list {list_id} not found")
        return removed

    def export_audience(
        self, tenant: str, audience_id: str, platform: int, chunk_size: int
    ) -> Iterator[ExportPart]:
        """The audience's list members who may belong to it, hashed in the
        platform's form, in chunks. Checks everything before the first chunk."""
        problems = Violations()
        problems.check(
            platform in tuple(EXPORT_SCHEMAS),
            "platform",
            "required: META, GOOGLE or X (TikTok carries no political audiences)",
        )
        problems.check(
            0 <= chunk_size <= MAX_EXPORT_CHUNK,
            "chunk_size",
            f"must be 1..{MAX_EXPORT_CHUNK:,} (0: {MAX_EXPORT_CHUNK:,})",
        )
        problems.raise_if_any()
        audience = self.get_audience(tenant, audience_id)
        checked = rules.check(audience.rule, _Context(self, tenant), "audience_id")
        if not checked.list_ids:
            raise FailedPrecondition(
                f"audience {audience_id} uses no contact list: nothing to export; "
                "target it by its conditions"
            )
        list_ids = checked.list_ids
        # Each combination of lists a member may be on (a bit per list), kept when
        # the rule may hold for its members.
        exported = {
            pattern: combination
            for pattern in range(1, 1 << len(list_ids))
            if rules.may_hold_for_members(
                checked.expanded,
                combination := frozenset(i for n, i in enumerate(list_ids) if pattern >> n & 1),
            )
        }
        chosen = Platform(platform)
        self._refuse_under_minimum(audience_id, checked, chosen, set(exported.values()))
        return self._export(checked, chosen, list(exported), chunk_size or MAX_EXPORT_CHUNK)

    def _refuse_under_minimum(
        self,
        audience_id: str,
        checked: CheckedRule,
        platform: Platform,
        exported: set[frozenset[str]],
    ) -> None:
        """Refuses an export the platform would match to fewer people than its
        minimum audience: it would refuse the list, and so few could be single
        people. Counted are the exported members the platform is expected to
        match, and at most the audience's reach there (its other conditions)."""
        listed = sum(
            members * min(checked.lists[i].match_rates[platform] for i in combination)
            for combination, members in self._membership_counts(checked.lists).items()
            if combination in exported
        )
        matched = count(min(listed, self._measures(checked).reachable(platform)))
        minimum = MINIMUM_AUDIENCE[platform]
        if matched < minimum:
            raise FailedPrecondition(
                f"audience {audience_id} would match about {matched} people on "
                f"{platform.name}, under its minimum audience of {minimum}: "
                "an export this small is refused"
            )

    def _export(
        self, checked: CheckedRule, platform: Platform, patterns: Sequence[int], chunk_size: int
    ) -> Iterator[ExportPart]:
        list_ids = checked.list_ids
        schema = EXPORT_SCHEMAS[platform]
        batches = self.store.export_rows(list_ids, patterns, chunk_size) if patterns else ()
        # A full chunk is held back until the next record shows it is not the last.
        held: ExportPart | None = None
        pending: list[tuple[str, str]] = []
        index = 0
        plus = platform in PHONE_WITH_PLUS
        for rows in batches:
            for kind, digits_hash, plus_hash in rows:
                if kind == IdentifierKind.EMAIL:
                    record = ExportRecord(IdentifierKind.EMAIL, digits_hash.hex())
                else:
                    phone_hash = plus_hash if plus else digits_hash
                    record = ExportRecord(IdentifierKind.PHONE, phone_hash.hex())
                pending.append(record.values())
                if len(pending) == chunk_size:
                    if held is not None:
                        yield held
                    held = ExportPart(platform, schema, pending, index, False)
                    index += 1
                    pending = []
        if held is not None and not pending:
            yield replace(held, last=True)
            return
        if held is not None:
            yield held
        yield ExportPart(platform, schema, pending, index, True)

    # ------------------------------------------------------------ internals

    def _check(
        self, tenant: str, rule: Rule | None, field: str, audience_id: str | None = None
    ) -> CheckedRule:
        if rule is None:
            raise InvalidArgument(field, "required")
        return rules.check(rule, _Context(self, tenant), field, audience_id)

    def _target(self, tenant: str, audience_id: str | None, rule: Rule | None) -> CheckedRule:
        if audience_id is not None:
            audience = self.get_audience(tenant, audience_id)
            return rules.check(audience.rule, _Context(self, tenant), "audience_id")
        if rule is None:
            raise InvalidArgument("target", "set audience_id or rule")
        return self._check(tenant, rule, "rule")

    def _membership_counts(self, lists: Mapping[str, ContactList]) -> dict[frozenset[str], int]:
        ids = tuple(sorted(lists))
        if len(ids) == 1:
            return {frozenset(ids): lists[ids[0]].accepted}
        with self._cache_lock:
            cached = self._memberships.get(ids)
            if cached is not None:
                self._memberships.move_to_end(ids)
                return cached
        counts = self.store.membership_counts(ids)
        with self._cache_lock:
            self._memberships[ids] = counts
            while len(self._memberships) > 256:
                self._memberships.popitem(last=False)
        return counts

    def known_list(self, tenant: str, list_id: str) -> ContactList | None:
        """A list's metadata, from memory once read (lists are immutable)."""
        key = (tenant, list_id)
        with self._cache_lock:
            found = self._lists.get(key)
            if found is None:
                # Read under the lock, so that a deletion cannot slip in between.
                found = self.store.get_contact_list(tenant, list_id)
                if found is not None:
                    self._lists[key] = found
        return found

    def _delete_list(self, tenant: str, list_id: str) -> tuple[int | None, list[str]]:
        with self._cache_lock:
            removed, users = self.store.delete_contact_list(tenant, list_id)
            if removed is not None:
                self._lists.pop((tenant, list_id), None)
                for ids in [ids for ids in self._memberships if list_id in ids]:
                    del self._memberships[ids]
        return removed, users

    def _measures(self, checked: CheckedRule, plan: Plan | None = None) -> Measures:
        sums = self.store.measure(plan or self.plan(checked))
        return _measures_from(sums, checked.lists)


def _measures_from(sums: CellSums, lists: Mapping[str, ContactList]) -> Measures:
    parts = []
    for via, voters in sums.via_lists.items():
        rates = {
            platform: min(lists[i].match_rates[platform] for i in via) for platform in PLATFORMS
        }
        parts.append(ListReach(rates, voters))
    return Measures(sums.voters_via_cells, sums.reach_via_cells, tuple(parts))


def _both(a: CheckedRule, b: CheckedRule) -> CheckedRule:
    """The AND of two checked rules (an overlap)."""
    return CheckedRule(
        rule=All((a.rule, b.rule)),
        expanded=All((a.expanded, b.expanded)),
        list_ids=tuple(sorted(set(a.list_ids) | set(b.list_ids))),
        lists={**a.lists, **b.lists},
        interests=tuple(sorted(set(a.interests) | set(b.interests))),
        uses_contact_lists=a.uses_contact_lists or b.uses_contact_lists,
        demographic_only=a.demographic_only and b.demographic_only,
    )


def _refuse_missing(missing: list[str]) -> None:
    if missing:
        raise FailedPrecondition(
            f"{', '.join(missing)} deleted while the audience was being saved; try again"
        )


def _check_name(name: str, field: str, problems: Violations | None = None) -> None:
    ok = 1 <= len(name) <= MAX_NAME and name.strip() == name and bool(name)
    reason = f"must be 1..{MAX_NAME} characters, without leading or trailing spaces"
    if problems is not None:
        problems.check(ok, field, reason)
    elif not ok:
        raise InvalidArgument(field, reason)
