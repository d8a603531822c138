"""Audience rule trees: the typed tree, validation with node paths, expansion of
excluded audiences, and planning into weighted cell conditions that the store
renders as one parameterised DuckDB query. Pure: no gRPC, no SQL.

How a rule counts voters (services/jangkau/data/README.md has the whole model):
each population cell holds the voters of one district × age band × gender ×
locality. Region, gender, locality and connectivity are cell attributes and hold
or fail for a whole cell. Three things are finer than a cell, and each is taken
as spread evenly over the cell's voters:

- age: inside a band ages are spread evenly, so `age 30..40` counts 5/10 of the
  25-34 band and 6/10 of the 35-44 band;
- contact lists: a list's members are spread like the voters of the regions the
  list declares (nationwide when it declares none), so a list of N people in a
  region of V voters puts a share N/V of every cell there in the list; people
  in several of the rule's lists are counted exactly (hash intersection);
- interests: each catalogue interest holds for a fixed share of every cell,
  independently of everything else.

A rule is then a boolean function of cell attributes and these finer variables,
and its size is the expected number of voters for which it holds. The planner
enumerates the finer variables' values (age segments, list memberships,
interests), reduces the rule to a pure cell condition for each, and merges them
into terms `Σ weight · [condition] · voters`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import numpy as np

from jangkau.audience.domain import (
    AGE_BANDS,
    MAX_AGE,
    VOTING_AGE,
    Audience,
    Connectivity,
    ContactList,
    Gender,
    Locality,
    RegionIndex,
)
from jangkau.runtime.errors import FieldViolation, InvalidArgument

# ---------------------------------------------------------------- the rule tree


@dataclass(frozen=True)
class All:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Region:
    # Kemendagri codes of 2, 4 or 6 digits; a district matches by prefix.
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Age:
    min: int
    max: int


# Enum members held as ints: validation refuses values outside the enums.
@dataclass(frozen=True)
class GenderIs:
    genders: tuple[int, ...]


@dataclass(frozen=True)
class LocalityIs:
    locality: int


@dataclass(frozen=True)
class ConnectivityIn:
    bands: tuple[int, ...]


@dataclass(frozen=True)
class InContactList:
    list_id: str


@dataclass(frozen=True)
class ExcludeAudience:
    audience_id: str


@dataclass(frozen=True)
class Interest:
    name: str


# Only in plans: a constant, and a set of age bands (cell attribute).
@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class AgeBandIn:
    bands: tuple[int, ...]


# Any node. Const and AgeBandIn appear only in plans, never in a caller's rule.
Node: TypeAlias = (
    All
    | AnyOf
    | Not
    | Region
    | Age
    | GenderIs
    | LocalityIs
    | ConnectivityIn
    | InContactList
    | ExcludeAudience
    | Interest
    | Const
    | AgeBandIn
)
# A caller's rule tree.
Rule: TypeAlias = Node
# A condition on cell attributes only (All, AnyOf, Not, Region, GenderIs,
# LocalityIs, ConnectivityIn, AgeBandIn, Const): what the store turns into SQL.
Condition: TypeAlias = Node
TRUE = Const(True)
FALSE = Const(False)

MAX_CHILDREN = 50
MAX_DEPTH = 12
MAX_NODES = 500
MAX_REGION_CODES = 500
MAX_EXPANDED_NODES = 2000
MAX_EXCLUSION_DEPTH = 8
# Each distinct list or interest doubles the planner's work.
MAX_LISTS_PER_RULE = 4
MAX_INTERESTS_PER_RULE = 4

# Interest categories and the modelled share of voters holding each (README).
INTEREST_SHARES: Mapping[str, float] = {
    "agriculture": 0.10,
    "automotive": 0.14,
    "badminton": 0.10,
    "business": 0.12,
    "education": 0.20,
    "environment": 0.08,
    "fashion": 0.15,
    "film": 0.25,
    "food": 0.40,
    "football": 0.22,
    "gaming": 0.15,
    "music": 0.35,
    "parenting": 0.18,
    "sports": 0.30,
    "technology": 0.18,
    "travel": 0.15,
    "volunteering": 0.06,
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Sensitive categories (UU PDP No. 27/2022 "data pribadi spesifik" and the
# platforms' removed targeting): these attributes do not exist here. Matched by
# whole words, in English and Indonesian.
SENSITIVE_WORDS: Mapping[str, frozenset[str]] = {
    "religion": _words(
        "religion religions religious faith agama islam islamic muslim moslem christian "
        "christianity kristen protestant protestan katolik catholic hindu hinduism buddha "
        "buddhist buddhism konghucu confucian confucianism church gereja mosque masjid "
        "pesantren santri dakwah quran bible atheist haji hajj umrah"
    ),
    "ethnicity": _words(
        "ethnicity ethnic ethnicities race racial ras suku etnis tribe tribal javanese jawa "
        "sundanese sunda batak minang minangkabau bugis betawi madurese madura dayak papuan "
        "chinese tionghoa melayu malay"
    ),
    "health": _words(
        "health kesehatan medical medicine disease diseases illness sick sakit pregnancy "
        "pregnant hamil disability disabled disabilitas mental depression hiv aids diabetes "
        "cancer obesity covid addiction"
    ),
    "political affiliation": _words(
        "political politics politik party partai parties affiliation ideology ideologi "
        "candidate kandidat paslon caleg voter pdip gerindra golkar pks nasdem pkb demokrat "
        "ppp communist komunis"
    ),
    "sexual orientation": _words(
        "sexual sexuality orientation lgbt lgbtq gay lesbian bisexual transgender"
    ),
    "criminal record": _words("criminal crime conviction prison penjara"),
    "biometric or genetic data": _words("biometric biometrics genetic genetics dna"),
    "financial hardship": _words("debt utang hutang poverty miskin loan pinjol"),
    "trade union membership": _words("union unions serikat"),
}

_WORD = re.compile(r"[a-z0-9]+")


def sensitive_category(name: str) -> str | None:
    """The sensitive category an interest name belongs to, if any."""
    words = set(_WORD.findall(name.lower()))
    for category, vocabulary in SENSITIVE_WORDS.items():
        if words & vocabulary:
            return category
    return None


# ---------------------------------------------------------------- validation


class RuleContext(Protocol):
    """What validation needs to know about the caller's world."""

    def region_known(self, code: str) -> bool: ...

    def contact_list(self, list_id: str) -> ContactList | None: ...

    def audience(self, audience_id: str) -> Audience | None: ...


@dataclass(frozen=True)
class CheckedRule:
    """A valid rule and what it means once excluded audiences are expanded."""

    rule: Rule
    expanded: Rule
    list_ids: tuple[str, ...]
    # The tenant's lists the expanded rule names, by id.
    lists: Mapping[str, ContactList]
    interests: tuple[str, ...]
    uses_contact_lists: bool
    demographic_only: bool


def check(
    rule: Rule, context: RuleContext, path: str = "rule", audience_id: str | None = None
) -> CheckedRule:
    """Validates a rule whole (every error, each at its node's path) and expands it.

    `audience_id` is the audience the rule will belong to, so that an exclusion
    leading back to it is refused as a cycle.
    """
    problems: list[FieldViolation] = []
    _validate(rule, context, path, 1, problems)
    if _count_nodes(rule) > MAX_NODES:
        problems.append(FieldViolation(path, f"more than {MAX_NODES} nodes"))
    if problems:
        raise InvalidArgument.of(problems)
    stack = (audience_id,) if audience_id else ()
    expanded = _expand(rule, context, path, stack, problems)
    if problems:
        raise InvalidArgument.of(problems)
    if _count_nodes(expanded) > MAX_EXPANDED_NODES:
        raise InvalidArgument(
            path, f"more than {MAX_EXPANDED_NODES} nodes with exclusions expanded"
        )
    list_ids = tuple(sorted({n.list_id for n in _walk(expanded) if isinstance(n, InContactList)}))
    interests = tuple(sorted({n.name for n in _walk(expanded) if isinstance(n, Interest)}))
    lists = {}
    for list_id in list_ids:
        found = context.contact_list(list_id)
        if found is None:
            raise InvalidArgument(path, f"no contact list {list_id}")
        lists[list_id] = found
    if len(list_ids) > MAX_LISTS_PER_RULE:
        raise InvalidArgument(
            path, f"uses {len(list_ids)} contact lists; at most {MAX_LISTS_PER_RULE}"
        )
    if len(interests) > MAX_INTERESTS_PER_RULE:
        raise InvalidArgument(
            path, f"uses {len(interests)} interests; at most {MAX_INTERESTS_PER_RULE}"
        )
    demographic = all(
        isinstance(n, All | AnyOf | Not | Region | Age | GenderIs) for n in _walk(expanded)
    )
    return CheckedRule(
        rule=rule,
        expanded=expanded,
        list_ids=list_ids,
        lists=lists,
        interests=interests,
        uses_contact_lists=bool(list_ids),
        demographic_only=demographic,
    )


def _validate(
    node: Rule, context: RuleContext, path: str, depth: int, out: list[FieldViolation]
) -> None:
    def bad(field: str, reason: str) -> None:
        out.append(FieldViolation(f"{path}.{field}" if field else path, reason))

    if depth > MAX_DEPTH:
        bad("", f"nested deeper than {MAX_DEPTH} levels")
        return
    match node:
        case All(rules) | AnyOf(rules):
            key = "all" if isinstance(node, All) else "any"
            if not 1 <= len(rules) <= MAX_CHILDREN:
                bad(key, f"needs 1..{MAX_CHILDREN} rules, got {len(rules)}")
            for i, child in enumerate(rules):
                _validate(child, context, f"{path}.{key}[{i}]", depth + 1, out)
        case Not(rule):
            _validate(rule, context, f"{path}.not", depth + 1, out)
        case Region(codes):
            if not 1 <= len(codes) <= MAX_REGION_CODES:
                bad("region.codes", f"needs 1..{MAX_REGION_CODES} codes, got {len(codes)}")
            for i, code in enumerate(codes):
                if not (code.isascii() and code.isdigit() and len(code) in (2, 4, 6)):
                    bad(f"region.codes[{i}]", f"{code!r} is not a 2, 4 or 6-digit Kemendagri code")
                elif not context.region_known(code):
                    bad(f"region.codes[{i}]", f"unknown region code {code}")
        case Age(low, high):
            if not VOTING_AGE <= low <= MAX_AGE:
                bad("age.min", f"must be {VOTING_AGE}..{MAX_AGE} (17 is the voting age), got {low}")
            elif not VOTING_AGE <= high <= MAX_AGE:
                bad("age.max", f"must be {VOTING_AGE}..{MAX_AGE}, got {high}")
            elif high < low:
                bad("age.max", f"empty range: max {high} is under min {low}")
        case GenderIs(genders):
            if not 1 <= len(genders) <= 2:
                bad("gender.genders", f"needs 1..2 genders, got {len(genders)}")
            for i, gender in enumerate(genders):
                if gender not in tuple(Gender):
                    bad(f"gender.genders[{i}]", "must be MALE or FEMALE")
        case LocalityIs(locality):
            if locality not in tuple(Locality):
                bad("locality.locality", "must be URBAN or RURAL")
        case ConnectivityIn(bands):
            if not 1 <= len(bands) <= 3:
                bad("connectivity.bands", f"needs 1..3 bands, got {len(bands)}")
            for i, band in enumerate(bands):
                if band not in tuple(Connectivity):
                    bad(f"connectivity.bands[{i}]", "must be CONNECTIVITY_LOW, _MEDIUM or _HIGH")
        case InContactList(list_id):
            if not list_id:
                bad("contact_list_id", "required")
            elif context.contact_list(list_id) is None:
                bad("contact_list_id", f"no contact list {list_id}")
        case ExcludeAudience(audience_id):
            if not audience_id:
                bad("exclude_audience_id", "required")
            elif context.audience(audience_id) is None:
                bad("exclude_audience_id", f"no audience {audience_id}")
        case Interest(name):
            category = sensitive_category(name)
            if category is not None:
                bad(
                    "interest.name",
                    f"{name!r} is a sensitive category ({category}): it does not exist and "
                    "cannot be targeted",
                )
            elif name not in INTEREST_SHARES:
                bad(
                    "interest.name",
                    f"unknown interest {name!r}; one of {', '.join(INTEREST_SHARES)}",
                )


def _expand(
    node: Rule,
    context: RuleContext,
    path: str,
    stack: tuple[str, ...],
    out: list[FieldViolation],
    nested: int = 0,
) -> Rule:
    """Replaces each excluded audience by NOT its own (expanded) rule. `stack`:
    the audiences whose rules lead here, the rule's own audience first when it
    has one; `nested`: how many exclusions lead here (the same for a new rule
    and for an audience's stored one)."""
    match node:
        case All(rules):
            return All(
                tuple(
                    _expand(r, context, f"{path}.all[{i}]", stack, out, nested)
                    for i, r in enumerate(rules)
                )
            )
        case AnyOf(rules):
            return AnyOf(
                tuple(
                    _expand(r, context, f"{path}.any[{i}]", stack, out, nested)
                    for i, r in enumerate(rules)
                )
            )
        case Not(rule):
            return Not(_expand(rule, context, f"{path}.not", stack, out, nested))
        case ExcludeAudience(audience_id):
            field = f"{path}.exclude_audience_id"
            if audience_id in stack:
                chain = " → ".join((*stack[stack.index(audience_id) :], audience_id))
                out.append(FieldViolation(field, f"exclusion cycle: {chain}"))
                return FALSE
            if nested >= MAX_EXCLUSION_DEPTH:
                out.append(
                    FieldViolation(field, f"exclusions nested deeper than {MAX_EXCLUSION_DEPTH}")
                )
                return FALSE
            audience = context.audience(audience_id)
            if audience is None:
                out.append(FieldViolation(field, f"no audience {audience_id}"))
                return FALSE
            # Errors inside another audience's rule are reported at this node.
            inner: list[FieldViolation] = []
            expanded = _expand(
                audience.rule, context, field, (*stack, audience_id), inner, nested + 1
            )
            out.extend(FieldViolation(field, v.reason) for v in inner[:1])
            return Not(expanded)
        case _:
            return node


def _walk(node: Rule | Condition) -> Iterable[Rule | Condition]:
    yield node
    match node:
        case All(rules) | AnyOf(rules):
            for child in rules:
                yield from _walk(child)
        case Not(rule):
            yield from _walk(rule)


def _count_nodes(node: Rule) -> int:
    return sum(1 for _ in _walk(node))


def references(rule: Rule) -> tuple[set[str], set[str]]:
    """(contact list ids, excluded audience ids) the rule names directly."""
    lists = {n.list_id for n in _walk(rule) if isinstance(n, InContactList)}
    audiences = {n.audience_id for n in _walk(rule) if isinstance(n, ExcludeAudience)}
    return lists, audiences


# ---------------------------------------------------------------- serialisation


def to_json(rule: Rule) -> str:
    return json.dumps(_to_plain(rule), separators=(",", ":"))


def from_json(text: str) -> Rule:
    return _from_plain(json.loads(text))


def _to_plain(node: Rule) -> dict[str, Any]:
    match node:
        case All(rules):
            return {"all": [_to_plain(r) for r in rules]}
        case AnyOf(rules):
            return {"any": [_to_plain(r) for r in rules]}
        case Not(rule):
            return {"not": _to_plain(rule)}
        case Region(codes):
            return {"region": list(codes)}
        case Age(low, high):
            return {"age": [low, high]}
        case GenderIs(genders):
            return {"gender": [int(g) for g in genders]}
        case LocalityIs(locality):
            return {"locality": int(locality)}
        case ConnectivityIn(bands):
            return {"connectivity": [int(b) for b in bands]}
        case InContactList(list_id):
            return {"contact_list": list_id}
        case ExcludeAudience(audience_id):
            return {"exclude_audience": audience_id}
        case Interest(name):
            return {"interest": name}
    raise TypeError(f"not a rule node: {node!r}")


def _from_plain(plain: dict[str, Any]) -> Rule:
    ((key, value),) = plain.items()
    match key:
        case "all":
            return All(tuple(_from_plain(p) for p in value))
        case "any":
            return AnyOf(tuple(_from_plain(p) for p in value))
        case "not":
            return Not(_from_plain(value))
        case "region":
            return Region(tuple(value))
        case "age":
            return Age(value[0], value[1])
        case "gender":
            return GenderIs(tuple(value))
        case "locality":
            return LocalityIs(value)
        case "connectivity":
            return ConnectivityIn(tuple(value))
        case "contact_list":
            return InContactList(value)
        case "exclude_audience":
            return ExcludeAudience(value)
        case "interest":
            return Interest(value)
    raise ValueError(f"unknown rule node {key!r}")


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class ListMembership:
    """People in exactly these lists (among a rule's lists): the region they are
    spread over, and their share of each of that region's cells."""

    lists: frozenset[str]
    region: Condition
    share: float


@dataclass(frozen=True)
class Term:
    """`weight · voters` of every cell where `condition` holds."""

    condition: Condition
    weight: float
    # Empty: people included through their cell's conditions, reached at the
    # cell's platform shares. Otherwise included only as members of these lists
    # (they would not be without them), reached at the lists' match rates.
    via_lists: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    terms: tuple[Term, ...]
    # Every term has weight 1, is reached through cells, and no two overlap:
    # the plan is the plain condition OR(terms), one cell either in or out.
    exclusive: bool

    def condition(self) -> Condition:
        """The plan as one cell condition (only for exclusive plans)."""
        if not self.exclusive:
            raise ValueError("a weighted plan is not one condition")
        return disjunction([t.condition for t in self.terms])


def memberships(
    pattern_counts: Mapping[frozenset[str], int],
    lists: Mapping[str, ContactList],
    regions: RegionIndex,
) -> tuple[ListMembership, ...]:
    """Membership shares from the count of identifiers in each exact combination
    of lists. People in several lists are spread over the intersection of the
    lists' regions. Shares are capped district by district, so that no cell is
    more than fully listed: where the combinations present in a district add up
    to more than its voters, each of them is scaled down by the fullest district
    of its region, and combinations living elsewhere keep their size."""
    found = []
    where = []
    for combination, count in sorted(pattern_counts.items(), key=lambda kv: sorted(kv[0])):
        if not combination or count <= 0:
            continue
        declared = [lists[i].region_codes for i in sorted(combination) if lists[i].region_codes]
        inside = regions.within_all(declared) & (regions.voters > 0)
        voters = int(regions.voters[inside].sum())
        share = min(1.0, count / voters) if voters > 0 else 0.0
        condition = conjunction([Region(codes) for codes in declared])
        found.append(ListMembership(frozenset(combination), condition, share))
        where.append(inside)
    listed = np.zeros(len(regions.voters))
    for m, inside in zip(found, where, strict=True):
        listed[inside] += m.share
    capped = []
    for m, inside in zip(found, where, strict=True):
        fullest = float(listed[inside].max()) if inside.any() else 0.0
        share = m.share / fullest if fullest > 1.0 else m.share
        capped.append(ListMembership(m.lists, m.region, share))
    return tuple(m for m in capped if m.share > 0)


def interest_assignments(interests: Sequence[str]) -> list[tuple[frozenset[str], float]]:
    """Every combination of the interests held, with its probability."""
    out = []
    for held in itertools.product((False, True), repeat=len(interests)):
        probability = 1.0
        for name, has in zip(interests, held, strict=True):
            share = INTEREST_SHARES[name]
            probability *= share if has else 1.0 - share
        out.append(
            (frozenset(n for n, has in zip(interests, held, strict=True) if has), probability)
        )
    return out


def age_segments(rule: Rule) -> list[list[tuple[int, float]]]:
    """Per age band: (a representative age, share of the band) for each stretch
    of ages on which every age condition of the rule is constant."""
    cuts: set[int] = set()
    for node in _walk(rule):
        if isinstance(node, Age):
            cuts.update((node.min, node.max + 1))
    out = []
    for band in AGE_BANDS:
        edges = sorted(
            {band.first, band.spread_last + 1}
            | {c for c in cuts if band.first < c <= band.spread_last}
        )
        out.append([(lo, (hi - lo) / band.width) for lo, hi in itertools.pairwise(edges)])
    return out


def plan(checked: CheckedRule, list_memberships: Sequence[ListMembership] = ()) -> Plan:
    """The rule as weighted cell conditions (see the module docstring)."""
    rule = checked.expanded
    segments = age_segments(rule)
    interests = interest_assignments(checked.interests)
    people = _people_entries(list_memberships)
    # (via lists, condition) → weight per age band
    weights: dict[tuple[tuple[str, ...], Condition], list[float]] = {}

    def add(via: tuple[str, ...], condition: Condition, band: int, weight: float) -> None:
        if condition == FALSE or weight == 0.0:
            return
        weights.setdefault((via, condition), [0.0] * len(AGE_BANDS))[band] += weight

    for band, band_segments in enumerate(segments):
        for age, age_share in band_segments:
            for held_lists, region, list_weight in people:
                for held_interests, interest_weight in interests:
                    weight = age_share * list_weight * interest_weight
                    held = _reduce(rule, age, held_lists, held_interests)
                    if held == FALSE:
                        continue
                    if not held_lists:
                        add((), conjunction([region, held]), band, weight)
                        continue
                    # Split: who is in through the cells anyway, and who only through a list.
                    without = _reduce(rule, age, frozenset(), held_interests)
                    add((), conjunction([region, held, without]), band, weight)
                    add(
                        tuple(sorted(held_lists)),
                        conjunction([region, held, negation(without)]),
                        band,
                        weight,
                    )

    terms = []
    everyone = tuple(range(len(AGE_BANDS)))
    for (via, condition), by_band in weights.items():
        by_weight: dict[float, list[int]] = {}
        for band, weight in enumerate(by_band):
            if abs(weight) > 1e-15:
                # Twelve significant digits: equal weights summed in another order merge.
                by_weight.setdefault(float(f"{weight:.12g}"), []).append(band)
        for weight, bands in by_weight.items():
            scoped = (
                condition
                if tuple(bands) == everyone
                else conjunction([AgeBandIn(tuple(bands)), condition])
            )
            terms.append(Term(scoped, weight, via))
    exclusive = (
        not list_memberships
        and not checked.interests
        and all(len(s) == 1 for s in segments)
        and all(t.weight == 1.0 and not t.via_lists for t in terms)
    )
    return Plan(tuple(terms), exclusive)


def _people_entries(
    list_memberships: Sequence[ListMembership],
) -> list[tuple[frozenset[str], Condition, float]]:
    """(lists held, where, weight) entries whose weighted sum, in every cell, is
    the distribution of list membership there; "in no list" is 1 minus the rest."""
    entries: dict[tuple[frozenset[str], Condition], float] = {(frozenset(), TRUE): 1.0}
    for m in list_memberships:
        entries[(m.lists, m.region)] = entries.get((m.lists, m.region), 0.0) + m.share
        nobody: tuple[frozenset[str], Condition] = (frozenset(), m.region)
        entries[nobody] = entries.get(nobody, 0.0) - m.share
    return [(held, where, w) for (held, where), w in entries.items() if abs(w) > 1e-15]


def _reduce(node: Rule, age: int, lists: frozenset[str], interests: frozenset[str]) -> Condition:
    """The rule for people of this age, list memberships and interests: a cell condition."""
    match node:
        case All(rules):
            return conjunction([_reduce(r, age, lists, interests) for r in rules])
        case AnyOf(rules):
            return disjunction([_reduce(r, age, lists, interests) for r in rules])
        case Not(rule):
            return negation(_reduce(rule, age, lists, interests))
        case Age(low, high):
            return TRUE if low <= age <= high else FALSE
        case InContactList(list_id):
            return TRUE if list_id in lists else FALSE
        case Interest(name):
            return TRUE if name in interests else FALSE
        case Region() | GenderIs() | LocalityIs() | ConnectivityIn() | Const():
            return node
        case ExcludeAudience():
            raise ValueError("exclusions must be expanded before planning")
    raise TypeError(f"not a rule node: {node!r}")


def _flatten(children: Iterable[Condition], kind: type[All] | type[AnyOf]) -> list[Condition]:
    out: list[Condition] = []
    for child in children:
        parts = (
            child.rules if isinstance(child, All | AnyOf) and isinstance(child, kind) else (child,)
        )
        for part in parts:
            if part not in out:
                out.append(part)
    return out


def conjunction(children: Iterable[Condition]) -> Condition:
    parts = [c for c in _flatten(children, All) if c != TRUE]
    if FALSE in parts or any(negation(c) in parts for c in parts):
        return FALSE
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def disjunction(children: Iterable[Condition]) -> Condition:
    parts = [c for c in _flatten(children, AnyOf) if c != FALSE]
    if TRUE in parts or any(negation(c) in parts for c in parts):
        return TRUE
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


def negation(child: Condition) -> Condition:
    if isinstance(child, Const):
        return Const(not child.value)
    if isinstance(child, Not):
        return child.rule
    return Not(child)


# ---------------------------------------------------------------- exports


def may_hold_for_members(rule: Rule, lists: frozenset[str]) -> bool:
    """Whether the rule can hold for someone known only to be in exactly these
    lists (every other condition unknown): such people are exported."""
    return _maybe(rule, lists) is not False


def _maybe(node: Rule, lists: frozenset[str]) -> bool | None:
    """Three-valued evaluation: True, False, or None for unknown."""
    match node:
        case All(rules):
            found = [_maybe(r, lists) for r in rules]
            if False in found:
                return False
            return True if all(v is True for v in found) else None
        case AnyOf(rules):
            found = [_maybe(r, lists) for r in rules]
            if True in found:
                return True
            return False if all(v is False for v in found) else None
        case Not(rule):
            inner = _maybe(rule, lists)
            return None if inner is None else not inner
        case InContactList(list_id):
            return list_id in lists
        case Const(value):
            return value
    return None


def factor(conditions: Sequence[Condition]) -> tuple[Condition, list[Condition]]:
    """(what every condition requires, what each requires beyond it): so that a
    query filters once on the common part and tests only the rest per term."""
    parts = [list(c.rules) if isinstance(c, All) else [c] for c in conditions]
    if not parts:
        return FALSE, []
    common = [p for p in parts[0] if all(p in other for other in parts[1:])]
    rest = [conjunction([p for p in own if p not in common]) for own in parts]
    return conjunction(common), rest
