"""Random rule trees: EstimateSize and Overlap agree with a brute-force count
over the same cells in numpy, which walks every single year of age, every
combination of list memberships and interests, and evaluates the tree on each
cell directly (no planning, no SQL)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jangkau.audience.domain import (
    AGE_BANDS,
    MATCH_RATES,
    PLATFORMS,
    IdentifierKind,
    Platform,
)
from jangkau.audience.rules import (
    INTEREST_SHARES,
    Age,
    All,
    AnyOf,
    ConnectivityIn,
    GenderIs,
    InContactList,
    Interest,
    LocalityIs,
    Not,
    Region,
    Rule,
)
from jangkau.audience.service import AudienceService
from tests.test_audience_support import random_hashes, seeded, store_list

TENANT = "prop"
SHARE_COLUMNS = {
    Platform.META: "meta_share",
    Platform.GOOGLE: "google_share",
    Platform.X: "x_share",
    Platform.TIKTOK: "tiktok_share",
}
INTERESTS = ("sports", "music")


@dataclass
class World:
    service: AudienceService
    cells: dict[str, np.ndarray]
    # list id → its declared regions
    regions: dict[str, tuple[str, ...]]
    # identifiers in exactly each combination of lists
    patterns: dict[frozenset[str], int]
    codes: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    service = AudienceService.open(seeded(tmp_path_factory.mktemp("prop"), districts=60))
    rng = np.random.default_rng(11)
    both = random_hashes(rng, 80_000)
    only_a = random_hashes(rng, 320_000)
    only_b = random_hashes(rng, 120_000)
    a = store_list(service, TENANT, np.concatenate([both, only_a]), list_id="lst_a000000000000000")
    b = store_list(
        service, TENANT, np.concatenate([both, only_b]), ("32",), list_id="lst_b000000000000000"
    )
    cells = service.store.cell_arrays()
    district = cells["district"].astype(np.int64)
    codes = sorted(
        {f"{d:06d}"[:2] for d in district[::7]}
        | {f"{d:06d}"[:4] for d in district[::11]}
        | {f"{d:06d}" for d in district[::13]}
    )
    yield World(
        service=service,
        cells=cells,
        regions={a.id: (), b.id: ("32",)},
        patterns={
            frozenset({a.id, b.id}): 80_000,
            frozenset({a.id}): 320_000,
            frozenset({b.id}): 120_000,
        },
        codes=codes,
    )
    service.close()


# ---------------------------------------------------------------- the brute force


def inside(cells: dict[str, np.ndarray], codes: tuple[str, ...]) -> np.ndarray:
    district = cells["district"].astype(np.int64)
    found = np.zeros(len(district), dtype=bool)
    for code in codes:
        found |= district // 10 ** (6 - len(code)) == int(code)
    return found


def holds(
    node: Rule, cells: dict[str, np.ndarray], age: int, lists: frozenset[str], likes: frozenset[str]
) -> np.ndarray:
    n = len(cells["voters"])
    match node:
        case All(children):
            out = np.ones(n, dtype=bool)
            for child in children:
                out &= holds(child, cells, age, lists, likes)
            return out
        case AnyOf(children):
            out = np.zeros(n, dtype=bool)
            for child in children:
                out |= holds(child, cells, age, lists, likes)
            return out
        case Not(child):
            return ~holds(child, cells, age, lists, likes)
        case Region(codes):
            return inside(cells, codes)
        case Age(low, high):
            return np.full(n, low <= age <= high)
        case GenderIs(genders):
            return np.isin(cells["gender"], genders)
        case LocalityIs(value):
            return cells["locality"] == value
        case ConnectivityIn(bands):
            return np.isin(cells["connectivity"], bands)
        case InContactList(list_id):
            return np.full(n, list_id in lists)
        case Interest(name):
            return np.full(n, name in likes)
    raise TypeError(node)


def nodes(node: Rule) -> Iterator[Rule]:
    yield node
    if isinstance(node, All | AnyOf):
        for child in node.rules:
            yield from nodes(child)
    elif isinstance(node, Not):
        yield from nodes(node.rule)


def brute_force(rule: Rule, world: World) -> tuple[float, dict[Platform, float]]:
    cells = world.cells
    voters = cells["voters"].astype(np.float64)
    used = sorted({n.list_id for n in nodes(rule) if isinstance(n, InContactList)})
    likes_used = sorted({n.name for n in nodes(rule) if isinstance(n, Interest)})

    # Identifiers in exactly each combination of the lists this rule uses.
    counts: dict[frozenset[str], int] = {}
    for pattern, count in world.patterns.items():
        seen = pattern & set(used)
        if seen:
            counts[frozenset(seen)] = counts.get(frozenset(seen), 0) + count
    membership: list[tuple[frozenset[str], np.ndarray]] = []
    nobody = np.ones(len(voters))
    for pattern, count in counts.items():
        where = np.ones(len(voters), dtype=bool)
        for list_id in pattern:
            if world.regions[list_id]:
                where &= inside(cells, world.regions[list_id])
        probability = where * count / voters[where].sum()
        membership.append((pattern, probability))
        nobody -= probability
    membership.append((frozenset(), nobody))

    total = 0.0
    reach = dict.fromkeys(PLATFORMS, 0.0)
    for age in range(17, 85):
        band = next(b for b in AGE_BANDS if b.first <= age <= b.spread_last)
        base = voters * (cells["age_band"] == band.index) / band.width
        for combo in itertools.product((False, True), repeat=len(likes_used)):
            likes = frozenset(n for n, on in zip(likes_used, combo, strict=True) if on)
            p_likes = np.prod(
                [
                    INTEREST_SHARES[n] if on else 1 - INTEREST_SHARES[n]
                    for n, on in zip(likes_used, combo, strict=True)
                ]
            )
            for lists, p_lists in membership:
                weight = base * p_likes * p_lists
                held = holds(rule, cells, age, lists, likes)
                anyway = holds(rule, cells, age, frozenset(), likes) if lists else held
                total += (weight * held).sum()
                for platform, column in SHARE_COLUMNS.items():
                    reach[platform] += (weight * (held & anyway) * cells[column]).sum()
                    if lists:
                        rate = MATCH_RATES[platform][IdentifierKind.PHONE]
                        reach[platform] += (weight * (held & ~anyway)).sum() * rate
    return total, reach


# ---------------------------------------------------------------- random rules


def leaves(world: World) -> st.SearchStrategy[Rule]:
    codes = st.lists(st.sampled_from(world.codes), min_size=1, max_size=3).map(tuple)
    ages = st.tuples(st.integers(17, 100), st.integers(0, 40)).map(
        lambda t: Age(t[0], min(120, t[0] + t[1]))
    )
    return st.one_of(
        codes.map(Region),
        ages,
        st.lists(st.sampled_from([1, 2]), min_size=1, max_size=2, unique=True).map(
            lambda g: GenderIs(tuple(g))
        ),
        st.sampled_from([1, 2]).map(LocalityIs),
        st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3, unique=True).map(
            lambda b: ConnectivityIn(tuple(b))
        ),
        st.sampled_from(sorted(world.regions)).map(InContactList),
        st.sampled_from(INTERESTS).map(Interest),
    )


def trees(world: World) -> st.SearchStrategy[Rule]:
    return st.recursive(
        leaves(world),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda c: All(tuple(c))),
            st.lists(children, min_size=1, max_size=3).map(lambda c: AnyOf(tuple(c))),
            children.map(Not),
        ),
        max_leaves=7,
    )


PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(data=st.data())
def test_estimate_size_equals_the_brute_force_count(world: World, data: st.DataObject) -> None:
    rule = data.draw(trees(world))
    estimate = world.service.estimate_size(TENANT, None, rule, 0, [])
    expected_voters, expected_reach = brute_force(rule, world)
    assert abs(estimate.voters - expected_voters) <= 1
    for platform in estimate.platforms:
        assert abs(platform.reachable - expected_reach[platform.platform]) <= 1


@settings(PROPERTY, max_examples=20)
@given(data=st.data())
def test_each_regencys_part_is_the_audience_narrowed_to_it(
    world: World, data: st.DataObject
) -> None:
    rule = data.draw(trees(world))
    whole = world.service.estimate_size(TENANT, None, rule, 0, [], by_regency=True)
    # The whole, added up from the parts, is the estimate asked for without them.
    plain = world.service.estimate_size(TENANT, None, rule, 0, [])
    assert abs(whole.voters - plain.voters) <= 1
    for mine, theirs in zip(whole.platforms, plain.platforms, strict=True):
        assert abs(mine.reachable - theirs.reachable) <= 1
    parts = whole.regencies
    assert abs(sum(r.voters for r in parts) - whole.voters) <= max(1, len(parts))
    if not parts:
        return
    for part in data.draw(st.lists(st.sampled_from(parts), min_size=1, max_size=2)):
        narrowed = All((rule, Region((part.code,))))
        alone = world.service.estimate_size(TENANT, None, narrowed, 0, [])
        assert abs(part.voters - alone.voters) <= 1
        for mine, theirs in zip(part.platforms, alone.platforms, strict=True):
            assert abs(mine.reachable - theirs.reachable) <= 1


@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_overlap_equals_the_brute_force_count_of_both(world: World, data: st.DataObject) -> None:
    chosen = [data.draw(trees(world)) for _ in range(3)]
    ids = [world.service.create_audience(TENANT, f"a{i}", r).id for i, r in enumerate(chosen)]
    matrix = world.service.overlap(TENANT, ids)
    n = len(ids)
    alone = [brute_force(rule, world)[0] for rule in chosen]
    for i in range(n):
        for j in range(i, n):
            both, _ = brute_force(All((chosen[i], chosen[j])), world)
            # Never more than either audience: the AND of two rules can place members
            # of several lists by the lists' shared region where one rule alone spreads
            # them over its own list's (see rules.memberships), and count a little more.
            expected = min(both, alone[i], alone[j])
            assert abs(matrix.shared_voters[i * n + j] - expected) <= 1
            assert matrix.shared_voters[i * n + j] == matrix.shared_voters[j * n + i]


@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_overlap_of_whole_cell_audiences_is_exact(world: World, data: st.DataObject) -> None:
    """Audiences of band-aligned ages and cell conditions only: the one-scan path."""
    cell_leaves = st.one_of(
        st.lists(st.sampled_from(world.codes), min_size=1, max_size=3).map(
            lambda c: Region(tuple(c))
        ),
        st.sampled_from([Age(18, 24), Age(17, 34), Age(45, 120)]),
        st.sampled_from([1, 2]).map(LocalityIs),
        st.sampled_from([1, 2]).map(lambda g: GenderIs((g,))),
    )
    tree = st.recursive(
        cell_leaves,
        lambda c: st.one_of(
            st.lists(c, min_size=1, max_size=3).map(lambda x: All(tuple(x))),
            c.map(Not),
        ),
        max_leaves=5,
    )
    chosen = [data.draw(tree) for _ in range(4)]
    ids = [world.service.create_audience(TENANT, f"c{i}", r).id for i, r in enumerate(chosen)]
    matrix = world.service.overlap(TENANT, ids)
    n = len(ids)
    for i in range(n):
        for j in range(n):
            expected, _ = brute_force(All((chosen[i], chosen[j])), world)
            assert abs(matrix.shared_voters[i * n + j] - expected) <= 1
