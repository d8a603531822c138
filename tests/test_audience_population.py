"""The population cells: real province totals and real kabupaten/kota (codes,
names, population), synthetic but plausible and deterministic below them, and
seeded into the service's store."""

from __future__ import annotations

import numpy as np
import pytest

from jangkau.audience import population
from jangkau.audience.domain import (
    AGE_BANDS,
    CONNECTIVITY_HIGH_FROM,
    CONNECTIVITY_MEDIUM_FROM,
    Connectivity,
    Gender,
)
from jangkau.audience.service import AudienceService
from jangkau.audience.store import AudienceStore


@pytest.fixture(scope="module")
def national() -> population.Population:
    return population.generate()


def column(table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def test_cells_hold_exactly_each_provinces_voter_roll(national):
    cells = national.cells
    provinces = population.load_provinces()
    voters = np.bincount(column(cells, "province"), column(cells, "voters"))
    for p in provinces:
        assert voters[p.code] == p.dpt
    assert int(column(cells, "voters").sum()) == 203_056_748


def test_there_are_7277_districts_under_514_kabupaten_and_kota(national):
    cells = national.cells
    assert len(np.unique(column(cells, "district"))) == 7277
    assert len(np.unique(column(cells, "regency"))) == 514
    assert national.cells.num_rows >= 100_000


def test_each_province_has_its_real_number_of_kabupaten_and_kota(national):
    regencies = np.unique(column(national.cells, "regency"))
    counts = np.bincount(regencies // 100)
    for p in population.load_provinces():
        assert counts[p.code] == p.regencies


def test_the_reference_data_lists_every_kabupaten_and_kota_once():
    regencies = population.load_regencies()
    assert len(regencies) == 514
    assert len({r.code for r in regencies}) == 514
    counts = np.bincount([r.province for r in regencies])
    for p in population.load_provinces():
        assert counts[p.code] == p.regencies
    for r in regencies:
        # Kemendagri numbers kabupaten 01-69 and kota 71-99 (Jakarta's are administrative).
        assert r.name.split()[0] == ("Kota" if r.is_kota else "Kabupaten"), r
        assert r.male > 0 and r.female > 0
    assert {r.code: r.name for r in regencies}[3273] == "Kota Bandung"
    assert sum(r.population for r in regencies) == 284_973_643


def test_the_cells_use_the_real_kabupaten_and_kota_codes(national):
    real = {r.code for r in population.load_regencies()}
    assert set(np.unique(column(national.cells, "regency")).tolist()) == real


def test_a_provinces_voters_are_split_over_its_regencies_as_their_population(national):
    cells = national.cells
    voters = np.bincount(column(cells, "regency").astype(int), column(cells, "voters"))
    dpt = {p.code: p.dpt for p in population.load_provinces()}
    regencies = population.load_regencies()
    people = np.bincount([r.province for r in regencies], [r.population for r in regencies])
    for r in regencies:
        expected = dpt[r.province] * r.population / people[r.province]
        assert abs(voters[r.code] - expected) < 1, r
    # Kota Bandung: 2,591,763 of Jawa Barat's 51,316,378 people, so of its 35,714,901 voters.
    assert voters[3273] == pytest.approx(35_714_901 * 2_591_763 / 51_316_378, abs=1)


def test_each_regencys_voters_are_split_by_sex_as_its_population(national):
    cells = national.cells
    regency = column(cells, "regency").astype(int)
    voters = column(cells, "voters").astype(float)
    female = column(cells, "gender") == Gender.FEMALE
    all_voters = np.bincount(regency, voters)
    female_voters = np.bincount(regency, voters * female)
    for r in population.load_regencies():
        assert female_voters[r.code] / all_voters[r.code] == pytest.approx(
            r.female / r.population, abs=0.01
        ), r
    # Kabupaten Halmahera Tengah (mining towns): 39,000 women of 106,500 people.
    assert female_voters[8202] / all_voters[8202] == pytest.approx(0.366, abs=0.01)


def test_a_small_population_keeps_each_provinces_most_populous_regencies():
    small = population.generate(districts=120)
    kept = set(np.unique(column(small.cells, "regency")).tolist())
    by_province: dict[int, list[population.Regency]] = {}
    for r in population.load_regencies():
        by_province.setdefault(r.province, []).append(r)
    for code, regencies in by_province.items():
        inside = sorted((r for r in regencies if r.code in kept), key=lambda r: r.population)
        outside = [r for r in regencies if r.code not in kept]
        assert inside, code
        assert all(o.population <= inside[0].population for o in outside), code
    assert 3201 in kept  # Kabupaten Bogor, Jawa Barat's largest


def test_codes_roll_up_by_prefix_and_use_kemendagri_ranges(national):
    district = column(national.cells, "district").astype(int)
    regency = column(national.cells, "regency").astype(int)
    province = column(national.cells, "province").astype(int)
    assert np.all(district // 100 == regency)
    assert np.all(regency // 100 == province)
    number = regency % 100
    assert np.all(((number >= 1) & (number <= 69)) | ((number >= 71) & (number <= 99)))


def test_generation_is_deterministic_for_a_seed():
    first = population.generate(seed=7, districts=200)
    again = population.generate(seed=7, districts=200)
    other = population.generate(seed=8, districts=200)
    assert first.cells.equals(again.cells)
    assert not first.cells.equals(other.cells)


def test_each_provinces_mean_online_share_is_its_penetration(national):
    cells = national.cells
    voters = column(cells, "voters").astype(float)
    online = column(cells, "online_share")
    province = column(cells, "province")
    targets = dict(
        zip(
            column(national.provinces, "code"),
            column(national.provinces, "internet_penetration"),
            strict=True,
        )
    )
    for p in population.load_provinces():
        inside = province == p.code
        mean = (voters[inside] * online[inside]).sum() / voters[inside].sum()
        expected = p.penetration if p.penetration is not None else targets[p.code]
        assert mean * 100 == pytest.approx(expected, abs=0.01)


def test_missing_penetration_is_modelled_from_urban_and_rural_and_marked(national):
    rows = {r["code"]: r for r in national.provinces.to_pylist()}
    for p in population.load_provinces():
        row = rows[p.code]
        assert row["penetration_modelled"] is (p.penetration is None)
        if p.penetration is None:
            u = row["urban_share"]
            assert row["internet_penetration"] == pytest.approx(
                100 * (0.822 * u + 0.74 * (1 - u)), abs=0.01
            )


def test_connectivity_band_follows_the_online_share(national):
    online = column(national.cells, "online_share")
    band = column(national.cells, "connectivity")
    assert np.all(band[online >= CONNECTIVITY_HIGH_FROM] == Connectivity.HIGH)
    middle = (online >= CONNECTIVITY_MEDIUM_FROM) & (online < CONNECTIVITY_HIGH_FROM)
    assert np.all(band[middle] == Connectivity.MEDIUM)
    assert np.all(band[online < CONNECTIVITY_MEDIUM_FROM] == Connectivity.LOW)


def test_platform_shares_never_exceed_the_online_share(national):
    online = column(national.cells, "online_share")
    for name in ("meta_share", "google_share", "x_share", "tiktok_share"):
        share = column(national.cells, name)
        assert np.all(share >= 0)
        assert np.all(share <= online + 1e-12)


def test_younger_voters_are_more_online_than_older(national):
    voters = column(national.cells, "voters").astype(float)
    online = column(national.cells, "online_share")
    band = column(national.cells, "age_band")
    means = [
        (voters[band == b.index] * online[band == b.index]).sum() / voters[band == b.index].sum()
        for b in AGE_BANDS
    ]
    assert means[1] > means[3] > means[5] > means[6]


def test_seed_writes_the_cells_and_returns_their_number(tmp_path):
    count = population.seed(tmp_path, seed=3, districts=100)
    store = AudienceStore(tmp_path)
    try:
        assert len(store.cell_arrays()["voters"]) == count
        assert store.population_info()["districts"] == "100"
    finally:
        store.close()


def test_seeding_again_replaces_the_cells(tmp_path):
    population.seed(tmp_path, districts=100)
    count = population.seed(tmp_path, districts=60)
    store = AudienceStore(tmp_path)
    try:
        assert len(store.cell_arrays()["voters"]) == count
    finally:
        store.close()


def test_the_service_seeds_the_national_population_on_first_open(tmp_path):
    service = AudienceService.open(tmp_path)
    try:
        assert service.regions.total_voters == 203_056_748
        assert len(service.regions.districts) == 7277
    finally:
        service.close()


def test_cells_of_an_earlier_generator_are_rebuilt_on_open_with_their_seed(tmp_path):
    old = population.generate(seed=5, districts=90)
    store = AudienceStore(tmp_path)
    try:
        # As version 1 left them: its own cells (here any), its version, its seed.
        store.replace_population(
            old.cells.slice(0, 100), old.provinces, {**old.info, "generator_version": "1"}
        )
    finally:
        store.close()
    service = AudienceService.open(tmp_path)
    try:
        info = service.store.population_info()
        assert info["generator_version"] == population.GENERATOR_VERSION
        assert (info["seed"], info["districts"]) == ("5", "90")
        assert len(service.regions.districts) == 90
        assert service.regions.total_voters == 203_056_748
    finally:
        service.close()


def test_cells_of_this_generator_are_kept_on_open(tmp_path):
    population.seed(tmp_path, seed=5, districts=90)
    store = AudienceStore(tmp_path)
    try:
        made = store.population_info()["generated_at"]
    finally:
        store.close()
    service = AudienceService.open(tmp_path)
    try:
        assert service.store.population_info()["generated_at"] == made
    finally:
        service.close()
