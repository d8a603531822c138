"""The population cells every audience is counted over: district × age band ×
gender × urban/rural, each with its voters, its share of people online and its
reachable share on each platform.

Province voter rolls and internet penetration (where APJII published it) come
from services/jangkau/data/provinces.csv; every kabupaten and kota, with its
Kemendagri code, name and population by sex, from regencies.csv. Below the
kabupaten/kota everything is synthetic but deterministic for a seed, and every
assumption is written in services/jangkau/data/README.md. Pure numpy; `seed()`
writes the result through the store.
"""

from __future__ import annotations

import csv
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from jangkau.audience.domain import (
    AGE_BANDS,
    CONNECTIVITY_HIGH_FROM,
    CONNECTIVITY_MEDIUM_FROM,
    Connectivity,
    Gender,
    Locality,
)

if TYPE_CHECKING:
    from jangkau.audience.store import AudienceStore

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PROVINCES_CSV = DATA_DIR / "provinces.csv"
REGENCIES_CSV = DATA_DIR / "regencies.csv"

DEFAULT_SEED = 20241127
NATIONAL_DISTRICTS = 7277
GENERATOR_VERSION = "2"
JAKARTA = 31
FIRST_KOTA = 71  # regency numbers 01-69 are kabupaten, 71-99 kota

# APJII 2024 national penetration in urban and rural areas; fills provinces
# without a published figure (README: "modelled").
URBAN_PENETRATION = 0.822
RURAL_PENETRATION = 0.740

# Voters by age band (17, 18-24, 25-34, 35-44, 45-54, 55-64, 65+), modelled.
AGE_MIX = np.array([0.020, 0.140, 0.210, 0.210, 0.185, 0.135, 0.100])
# Online share relative to the province's average, by age band, modelled.
AGE_ONLINE_OFFSET = np.array([0.12, 0.12, 0.10, 0.04, -0.05, -0.17, -0.35])
# Half of APJII's 8.2-point urban/rural gap, either side of the province mean.
LOCALITY_ONLINE_OFFSET = {Locality.URBAN: 0.041, Locality.RURAL: -0.041}
# Share of online people using each platform, by age band, modelled.
PLATFORM_USE = {
    "meta": np.array([0.78, 0.84, 0.88, 0.86, 0.82, 0.74, 0.62]),
    "google": np.array([0.92, 0.95, 0.95, 0.94, 0.92, 0.88, 0.80]),
    "x": np.array([0.22, 0.26, 0.22, 0.15, 0.10, 0.06, 0.03]),
    "tiktok": np.array([0.78, 0.74, 0.62, 0.50, 0.38, 0.26, 0.15]),
}
# X is used more in cities (modelled); the others alike in town and country.
PLATFORM_URBAN_FACTOR = {"meta": 1.0, "google": 1.0, "x": 1.25, "tiktok": 1.0}
PLATFORM_RURAL_FACTOR = {"meta": 1.0, "google": 1.0, "x": 0.75, "tiktok": 1.0}

CELL_SCHEMA = pa.schema(
    [
        ("district", pa.int32()),
        ("regency", pa.int16()),
        ("province", pa.int8()),
        ("age_band", pa.int8()),
        ("gender", pa.int8()),
        ("locality", pa.int8()),
        ("connectivity", pa.int8()),
        ("voters", pa.int32()),
        ("online_share", pa.float64()),
        ("meta_share", pa.float64()),
        ("google_share", pa.float64()),
        ("x_share", pa.float64()),
        ("tiktok_share", pa.float64()),
    ]
)

PROVINCE_SCHEMA = pa.schema(
    [
        ("code", pa.int8()),
        ("name", pa.string()),
        ("dpt_2024", pa.int64()),
        ("internet_penetration", pa.float64()),
        ("penetration_modelled", pa.bool_()),
        ("regencies", pa.int16()),
        ("districts", pa.int16()),
        ("urban_share", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Province:
    code: int
    name: str
    dpt: int
    # Percent of people using the internet (APJII 2024); None where unpublished.
    penetration: float | None
    regencies: int


def load_provinces(path: Path = PROVINCES_CSV) -> list[Province]:
    """The 38 provinces of the reference data (the overseas row is not a region)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Province(
            code=int(row["code"]),
            name=row["name"],
            dpt=int(row["dpt_2024"]),
            penetration=float(row["internet_penetration_2024"])
            if row["internet_penetration_2024"]
            else None,
            regencies=int(row["pilkada_2024_regencies"]),
        )
        for row in rows
        if row["pilkada_2024_regencies"]
    ]


@dataclass(frozen=True)
class Regency:
    """A kabupaten or kota: its 4-digit Kemendagri code (the first two digits are
    its province), its name, and its population by sex (Kemendagri 2025)."""

    code: int
    name: str
    male: int
    female: int

    @property
    def province(self) -> int:
        return self.code // 100

    @property
    def population(self) -> int:
        return self.male + self.female

    @property
    def is_kota(self) -> bool:
        return self.code % 100 >= FIRST_KOTA


def load_regencies(path: Path = REGENCIES_CSV) -> list[Regency]:
    """The 514 kabupaten and kota of the reference data, by code."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    regencies = [
        Regency(
            code=int(row["code"]),
            name=row["name"],
            male=int(row["population_male"]),
            female=int(row["population_female"]),
        )
        for row in rows
    ]
    return sorted(regencies, key=lambda r: r.code)


@functools.cache
def regency_names() -> dict[int, str]:
    """Code → name of every kabupaten and kota (the reference data, read once)."""
    return {r.code: r.name for r in load_regencies()}


@dataclass(frozen=True)
class Population:
    cells: pa.Table
    provinces: pa.Table
    info: dict[str, str]


def apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Splits a whole number in proportion to weights (largest remainders)."""
    raw = total * weights / weights.sum()
    whole = np.floor(raw).astype(np.int64)
    short = int(total - whole.sum())
    whole[np.argsort(-(raw - whole), kind="stable")[:short]] += 1
    return whole


def apportion_rows(totals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`apportion` for each row of a matrix of weights."""
    raw = totals[:, None] * weights / weights.sum(axis=1, keepdims=True)
    whole = np.floor(raw).astype(np.int64)
    short = totals - whole.sum(axis=1)
    rank = np.argsort(np.argsort(-(raw - whole), axis=1, kind="stable"), axis=1, kind="stable")
    return whole + (rank < short[:, None])


def generate(seed: int = DEFAULT_SEED, districts: int = NATIONAL_DISTRICTS) -> Population:
    """Builds the cells deterministically. `districts` below the national 7,277
    gives a smaller population with the same provinces (for tests); below twice
    the 514 kabupaten/kota, a province keeps only its most populous ones."""
    provinces = load_provinces()
    rng = np.random.default_rng(seed)
    n_prov = len(provinces)
    if districts < n_prov:
        raise ValueError(f"districts must be at least {n_prov}")
    dpt = np.array([p.dpt for p in provinces], dtype=np.int64)
    real_regencies = np.array([p.regencies for p in provinces], dtype=np.int64)
    by_province: dict[int, list[Regency]] = {p.code: [] for p in provinces}
    for regency in load_regencies():
        by_province[regency.province].append(regency)
    for p in provinces:
        if len(by_province[p.code]) != p.regencies:
            raise ValueError(
                f"regencies.csv has {len(by_province[p.code])} kabupaten/kota for province "
                f"{p.code}; provinces.csv says {p.regencies}"
            )

    # Districts per province: half by kab/kota count, half by voters; at least
    # one per kab/kota when there are enough districts.
    base = real_regencies if districts >= 2 * real_regencies.sum() else np.ones(n_prov, np.int64)
    shares = 0.5 * real_regencies / real_regencies.sum() + 0.5 * dpt / dpt.sum()
    province_districts = base + apportion(districts - int(base.sum()), shares)
    regencies = np.minimum(real_regencies, province_districts)

    codes: list[np.ndarray] = []
    regency_of: list[np.ndarray] = []
    voters: list[np.ndarray] = []
    urban: list[np.ndarray] = []
    female: list[np.ndarray] = []
    for i, province in enumerate(provinces):
        n_reg, n_dist = int(regencies[i]), int(province_districts[i])
        # A small population keeps the province's most populous kabupaten/kota.
        kept = sorted(by_province[province.code], key=lambda r: -r.population)[:n_reg]
        kept.sort(key=lambda r: r.code)
        is_kota = np.array([r.is_kota for r in kept])
        # Kota are smaller in area: fewer districts each.
        size = rng.lognormal(0.0, 0.35, n_reg) * np.where(is_kota, 0.45, 1.0)
        per_regency = 1 + apportion(n_dist - n_reg, size)
        per_regency = np.minimum(per_regency, 99)
        # The province's voter roll, split over its kabupaten/kota as their
        # population is, then over each one's districts at random.
        regency_voters = apportion(province.dpt, np.array([r.population for r in kept], float))
        for regency, count, total in zip(kept, per_regency, regency_voters, strict=True):
            codes.append(regency.code * 100 + np.arange(1, count + 1))
            regency_of.append(np.full(count, regency.code))
            voters.append(apportion(int(total), rng.lognormal(0.0, 0.45, count)))
            # Voters by sex as the kabupaten/kota's population, give or take.
            share = regency.female / regency.population
            female.append(np.clip(share + rng.normal(0.0, 0.004, count), 0.3, 0.7))
        district_kota = np.repeat(is_kota, per_regency)
        n = int(per_regency.sum())
        kota_urban = np.where(rng.random(n) < 0.6, 1.0, rng.beta(6.0, 1.5, n))
        kab_urban = np.where(rng.random(n) < 0.25, 0.0, rng.beta(2.0, 2.0, n))
        district_urban = np.where(district_kota, kota_urban, kab_urban)
        urban.append(np.ones(n) if province.code == JAKARTA else district_urban)

    district = np.concatenate(codes).astype(np.int64)
    district_regency = np.concatenate(regency_of).astype(np.int64)
    district_voters = np.concatenate(voters)
    district_urban = np.concatenate(urban)
    district_female = np.concatenate(female)
    n_districts = len(district)

    # Age mix per district: younger where urban, with Dirichlet noise.
    tilt = np.array([0.0, 0.08, 0.06, 0.0, -0.03, -0.08, -0.1])
    age_mean = AGE_MIX[None, :] * (1.0 + district_urban[:, None] * tilt[None, :])
    age_mean /= age_mean.sum(axis=1, keepdims=True)
    age_mix = np.vstack([rng.dirichlet(400.0 * row) for row in age_mean])

    # Cell weights within a district, in (locality, age band, gender) order.
    n_bands = len(AGE_BANDS)
    locality_mix = np.stack([district_urban, 1.0 - district_urban], axis=1)
    gender_mix = np.stack([1.0 - district_female, district_female], axis=1)
    weights = (
        locality_mix[:, :, None, None] * age_mix[:, None, :, None] * gender_mix[:, None, None, :]
    ).reshape(n_districts, -1)
    cell_voters = apportion_rows(district_voters, weights).reshape(-1)

    per_district = 2 * n_bands * 2
    locality_axis = np.repeat([Locality.URBAN, Locality.RURAL], n_bands * 2)
    band_axis = np.tile(np.repeat(np.arange(n_bands), 2), 2)
    gender_axis = np.tile([Gender.MALE, Gender.FEMALE], 2 * n_bands)
    cell_district = np.repeat(district, per_district)
    cell_regency = np.repeat(district_regency, per_district)
    cell_province = cell_district // 10_000
    cell_locality = np.tile(locality_axis, n_districts)
    cell_band = np.tile(band_axis, n_districts)
    cell_gender = np.tile(gender_axis, n_districts)
    cell_urban = cell_locality == Locality.URBAN

    # Online share: province target, shifted by locality, age, gender and a
    # district effect, then recentred so each province's voter-weighted mean
    # equals its target exactly.
    province_codes = np.array([p.code for p in provinces])
    province_index = np.searchsorted(province_codes, cell_province)
    urban_voters = np.bincount(province_index, cell_voters * cell_urban, minlength=n_prov)
    province_voters = np.bincount(province_index, cell_voters, minlength=n_prov)
    province_urban = urban_voters / province_voters
    target = np.array(
        [
            p.penetration / 100.0
            if p.penetration is not None
            else province_urban[i] * URBAN_PENETRATION + (1 - province_urban[i]) * RURAL_PENETRATION
            for i, p in enumerate(provinces)
        ]
    )
    district_effect = np.repeat(rng.normal(0.0, 0.03, n_districts), per_district)
    raw = (
        target[province_index]
        + np.where(
            cell_urban,
            LOCALITY_ONLINE_OFFSET[Locality.URBAN],
            LOCALITY_ONLINE_OFFSET[Locality.RURAL],
        )
        + AGE_ONLINE_OFFSET[cell_band]
        + np.where(cell_gender == Gender.MALE, 0.01, -0.01)
        + district_effect
    )
    shift = _calibrate(raw, cell_voters.astype(np.float64), province_index, target)
    online = np.clip(raw + shift[province_index], 0.05, 0.98)

    platform_shares = {}
    for name, use in PLATFORM_USE.items():
        noise = np.repeat(rng.lognormal(0.0, 0.05, n_districts), per_district)
        factor = np.where(cell_urban, PLATFORM_URBAN_FACTOR[name], PLATFORM_RURAL_FACTOR[name])
        platform_shares[name] = online * np.minimum(1.0, use[cell_band] * factor * noise)

    connectivity = np.where(
        online >= CONNECTIVITY_HIGH_FROM,
        Connectivity.HIGH,
        np.where(online >= CONNECTIVITY_MEDIUM_FROM, Connectivity.MEDIUM, Connectivity.LOW),
    )

    keep = cell_voters > 0
    cells = pa.Table.from_arrays(
        [
            pa.array(cell_district[keep], pa.int32()),
            pa.array(cell_regency[keep], pa.int16()),
            pa.array(cell_province[keep], pa.int8()),
            pa.array(cell_band[keep], pa.int8()),
            pa.array(cell_gender[keep], pa.int8()),
            pa.array(cell_locality[keep], pa.int8()),
            pa.array(connectivity[keep], pa.int8()),
            pa.array(cell_voters[keep], pa.int32()),
            pa.array(online[keep]),
            pa.array(platform_shares["meta"][keep]),
            pa.array(platform_shares["google"][keep]),
            pa.array(platform_shares["x"][keep]),
            pa.array(platform_shares["tiktok"][keep]),
        ],
        schema=CELL_SCHEMA,
    )
    province_table = pa.Table.from_arrays(
        [
            pa.array(province_codes, pa.int8()),
            pa.array([p.name for p in provinces]),
            pa.array(dpt),
            pa.array(np.round(target * 100.0, 2)),
            pa.array([p.penetration is None for p in provinces]),
            pa.array(regencies, pa.int16()),
            pa.array(province_districts, pa.int16()),
            pa.array(province_urban),
        ],
        schema=PROVINCE_SCHEMA,
    )
    info = {
        "seed": str(seed),
        "districts": str(n_districts),
        "generator_version": GENERATOR_VERSION,
        "generated_at": datetime.now(UTC).isoformat(),
    }
    return Population(cells, province_table, info)


def _calibrate(
    raw: np.ndarray, voters: np.ndarray, group: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """Per group, the shift s with voter-weighted mean of clip(raw + s) = target (bisection)."""
    low = np.full(len(target), -0.6)
    high = np.full(len(target), 0.6)
    total = np.bincount(group, voters, minlength=len(target))
    for _ in range(40):
        middle = (low + high) / 2
        value = np.clip(raw + middle[group], 0.05, 0.98)
        mean = np.bincount(group, value * voters, minlength=len(target)) / total
        too_high = mean > target
        high = np.where(too_high, middle, high)
        low = np.where(too_high, low, middle)
    return (low + high) / 2


def upgrade(store: AudienceStore) -> bool:
    """Rebuilds cells an earlier generator made (version 1 had synthetic kabupaten/kota)
    with this one, keeping their seed and number of districts; True when it did. The
    cells are reference data, not a tenant's: audiences keep their rules and are
    counted over the new cells."""
    info = store.population_info()
    if info.get("generator_version") == GENERATOR_VERSION:
        return False
    built = generate(
        int(info.get("seed", DEFAULT_SEED)), int(info.get("districts", NATIONAL_DISTRICTS))
    )
    store.replace_population(built.cells, built.provinces, built.info)
    log.info(
        "population cells rebuilt by generator %s (were %s)",
        GENERATOR_VERSION,
        info.get("generator_version", "unversioned"),
    )
    return True


def seed(data_dir: Path, seed: int = DEFAULT_SEED, *, districts: int = NATIONAL_DISTRICTS) -> int:
    """`jangkau data seed`: (re)builds the population cells in the audience
    service's DuckDB file under `data_dir`; returns the number of cells. Stop the
    audience service first (one process owns the file)."""
    from jangkau.audience.store import AudienceStore

    population = generate(seed, districts)
    store = AudienceStore(Path(data_dir))
    try:
        store.replace_population(population.cells, population.provinces, population.info)
    finally:
        store.close()
    return population.cells.num_rows
