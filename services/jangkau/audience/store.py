"""The audience service's storage: population cells, audiences and contact-list
metadata in one DuckDB file (`audience.duckdb`), and each contact list's hashes
in a Parquet file of its own (`audience-lists/<list id>.parquet`), so that
deleting a list erases its hashes from disk rather than leaving them in freed
database blocks. SQL only: plans arrive from rules.py already validated, and
every value reaches DuckDB as a bound parameter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jangkau.audience import rules
from jangkau.audience.domain import (
    Audience,
    ConsentBasis,
    ContactList,
    Platform,
)
from jangkau.audience.normalise import HASH_SCHEMA
from jangkau.audience.rules import (
    AgeBandIn,
    All,
    AnyOf,
    Condition,
    ConnectivityIn,
    Const,
    GenderIs,
    LocalityIs,
    Not,
    Plan,
    Region,
)
from jangkau.runtime.store import Database

DATABASE_FILE = "audience.duckdb"
LISTS_FOLDER = "audience-lists"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE cells (
        district INTEGER NOT NULL,      -- 6-digit Kemendagri code
        regency SMALLINT NOT NULL,      -- its first 4 digits
        province TINYINT NOT NULL,      -- its first 2 digits
        age_band TINYINT NOT NULL,      -- domain.AGE_BANDS index
        gender TINYINT NOT NULL,        -- domain.Gender
        locality TINYINT NOT NULL,      -- domain.Locality
        connectivity TINYINT NOT NULL,  -- domain.Connectivity
        voters INTEGER NOT NULL,
        online_share DOUBLE NOT NULL,   -- share of the cell's voters online, 0..1
        meta_share DOUBLE NOT NULL,     -- share reachable on each platform, 0..online_share
        google_share DOUBLE NOT NULL,
        x_share DOUBLE NOT NULL,
        tiktok_share DOUBLE NOT NULL
    );
    CREATE TABLE provinces (
        code TINYINT NOT NULL,
        name VARCHAR NOT NULL,
        dpt_2024 BIGINT NOT NULL,
        internet_penetration DOUBLE NOT NULL,  -- percent
        penetration_modelled BOOLEAN NOT NULL,
        regencies SMALLINT NOT NULL,
        districts SMALLINT NOT NULL,
        urban_share DOUBLE NOT NULL
    );
    CREATE TABLE population_info (key VARCHAR NOT NULL, value VARCHAR NOT NULL);
    CREATE TABLE audiences (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        rule_json VARCHAR NOT NULL,
        uses_contact_lists BOOLEAN NOT NULL,
        demographic_only BOOLEAN NOT NULL,
        create_time TIMESTAMPTZ NOT NULL,
        update_time TIMESTAMPTZ NOT NULL
    );
    -- What each audience's rule names directly: 'list' or 'audience' ids.
    CREATE TABLE audience_references (
        tenant VARCHAR NOT NULL,
        audience_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        target_id VARCHAR NOT NULL
    );
    CREATE TABLE contact_lists (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        purpose VARCHAR NOT NULL,
        consent_basis TINYINT NOT NULL,
        default_country VARCHAR NOT NULL,
        region_codes VARCHAR[] NOT NULL,
        upload_time TIMESTAMPTZ NOT NULL,
        phones BIGINT NOT NULL,
        emails BIGINT NOT NULL,
        duplicates BIGINT NOT NULL,
        rejected_json VARCHAR NOT NULL
    );
    """,
]

_SHARE_COLUMNS: Mapping[Platform, str] = {
    Platform.META: "meta_share",
    Platform.GOOGLE: "google_share",
    Platform.X: "x_share",
    Platform.TIKTOK: "tiktok_share",
}


@dataclass(frozen=True)
class CellSums:
    """What one plan measured over the cells (see domain.Measures)."""

    voters_via_cells: float
    reach_via_cells: Mapping[Platform, float]
    # Voters included only through these lists, per combination of lists.
    via_lists: Mapping[tuple[str, ...], float]

    @staticmethod
    def total(parts: Iterable[CellSums]) -> CellSums:
        """The sums of disjoint parts of the cells (kabupaten/kota) added up."""
        voters = 0.0
        reach = dict.fromkeys(_SHARE_COLUMNS, 0.0)
        via_lists: dict[tuple[str, ...], float] = {}
        for part in parts:
            voters += part.voters_via_cells
            for platform, value in part.reach_via_cells.items():
                reach[platform] += value
            for lists, value in part.via_lists.items():
                via_lists[lists] = via_lists.get(lists, 0.0) + value
        return CellSums(voters, reach, via_lists)


def _cell_sums(row: Sequence[float | None], list_groups: list[tuple[str, ...]]) -> CellSums:
    """A measure query's row: voters, reach per platform, voters via each list group."""
    values = [float(v or 0.0) for v in row]
    reach = dict(zip(_SHARE_COLUMNS, values[1:5], strict=True))
    via_lists = dict(zip(list_groups, values[5:], strict=True))
    return CellSums(values[0], reach, via_lists)


class AudienceStore:
    def __init__(self, data_dir: Path, *, threads: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.lists_dir = self.data_dir / LISTS_FOLDER
        self.lists_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.data_dir / DATABASE_FILE, MIGRATIONS, threads=threads)
        self._remove_orphan_files()

    def close(self) -> None:
        self.db.close()

    @property
    def generation(self) -> int:
        """Moves on with every write: the version of every read below."""
        return self.db.generation

    # ------------------------------------------------------------ population

    def population_is_empty(self) -> bool:
        with self.db.read() as cur:
            row = _first(cur.execute("SELECT count(*) FROM cells").fetchall())
        return not row or row[0] == 0

    def replace_population(
        self, cells: pa.Table, provinces: pa.Table, info: Mapping[str, str]
    ) -> None:
        with self.db.transaction() as cur:
            cur.register("new_cells", cells)
            cur.register("new_provinces", provinces)
            try:
                cur.execute("DELETE FROM cells")
                cur.execute("INSERT INTO cells SELECT * FROM new_cells")
                cur.execute("DELETE FROM provinces")
                cur.execute("INSERT INTO provinces SELECT * FROM new_provinces")
                cur.execute("DELETE FROM population_info")
                cur.executemany("INSERT INTO population_info VALUES (?, ?)", list(info.items()))
            finally:
                cur.unregister("new_cells")
                cur.unregister("new_provinces")
        self.db.checkpoint()

    def district_voters(self) -> tuple[np.ndarray, np.ndarray]:
        """(district codes, voters), sorted by code."""
        with self.db.read() as cur:
            found = cur.execute(
                "SELECT district, sum(voters)::BIGINT AS voters FROM cells "
                "GROUP BY district ORDER BY district"
            ).fetchnumpy()
        return found["district"].astype(np.int64), found["voters"].astype(np.int64)

    def cell_arrays(self) -> dict[str, np.ndarray]:
        """Every cell, column by column (tests and benchmarks)."""
        with self.db.read() as cur:
            found = cur.execute(
                "SELECT * FROM cells ORDER BY district, age_band, gender, locality"
            ).fetchnumpy()
        return {name: np.asarray(values) for name, values in found.items()}

    def population_info(self) -> dict[str, str]:
        with self.db.read() as cur:
            return dict(cur.execute("SELECT key, value FROM population_info").fetchall())

    # ------------------------------------------------------------ measuring

    def measure_sql(
        self, plan: Plan, *, by_regency: bool = False
    ) -> tuple[str, list[object], list[tuple[str, ...]]]:
        """The one query that measures a plan: (SQL, parameters, list groups in
        column order after the cells' voters and reach). `by_regency`: one row per
        kabupaten/kota with cells in the audience, its code first."""
        shares = ", ".join(_SHARE_COLUMNS.values())
        key, group = ("regency, ", " GROUP BY regency") if by_regency else ("", "")
        if plan.exclusive:
            params: list[object] = []
            where = _render(plan.condition(), params)
            reach = ", ".join(f"sum(voters * {c})" for c in _SHARE_COLUMNS.values())
            return (
                f"SELECT {key}sum(voters)::DOUBLE, {reach} FROM cells WHERE {where}{group}",
                params,
                [],
            )
        # Conditions every term shares filter the cells once; each term tests the rest.
        common, rest = rules.factor([t.condition for t in plan.terms])
        groups: dict[tuple[str, ...], list[tuple[rules.Term, Condition]]] = {(): []}
        for term, own in zip(plan.terms, rest, strict=True):
            groups.setdefault(term.via_lists, []).append((term, own))
        params = []
        columns = []
        for i, members in enumerate(groups.values()):
            parts = []
            for term, own in members:
                parts.append(f"CASE WHEN {_render(own, params)} THEN ? ELSE 0.0 END")
                params.append(term.weight)
            columns.append(f"({' + '.join(parts) or '0.0'}) AS w{i}")
        where = _render(rules.conjunction([common, rules.disjunction(rest)]), params)
        outer = ["sum(voters * w0)"]
        outer += [f"sum(voters * w0 * {c})" for c in _SHARE_COLUMNS.values()]
        outer += [f"sum(voters * w{i})" for i in range(1, len(groups))]
        sql = (
            f"SELECT {key}{', '.join(outer)} FROM ("
            f"SELECT {key}voters, {shares}, {', '.join(columns)} FROM cells WHERE {where})"
            f"{group}"
        )
        return sql, params, list(groups)[1:]

    def measure(self, plan: Plan) -> CellSums:
        sql, params, list_groups = self.measure_sql(plan)
        with self.db.read() as cur:
            row = _first(cur.execute(sql, params).fetchall())
        assert row is not None  # an aggregate without GROUP BY has one row
        return _cell_sums(row, list_groups)

    def measure_by_regency(self, plan: Plan) -> dict[int, CellSums]:
        """`measure` for each kabupaten/kota with cells in the plan's audience."""
        sql, params, list_groups = self.measure_sql(plan, by_regency=True)
        with self.db.read() as cur:
            rows = cur.execute(sql, params).fetchall()
        return {int(row[0]): _cell_sums(row[1:], list_groups) for row in rows}

    def overlap_of_conditions(self, conditions: Sequence[Condition]) -> np.ndarray:
        """Voters in each pair of conditions, in one scan (n ≤ 62): an n×n matrix."""
        params: list[object] = []
        bits = []
        for i, condition in enumerate(conditions):
            bits.append(f"CASE WHEN {_render(condition, params)} THEN ? ELSE 0 END")
            params.append(1 << i)
        sql = (
            f"SELECT ({' + '.join(bits)})::BIGINT AS mask, sum(voters)::DOUBLE AS voters "
            "FROM cells GROUP BY mask"
        )
        with self.db.read() as cur:
            found = cur.execute(sql, params).fetchnumpy()
        masks = np.asarray(found["mask"], dtype=np.int64)
        voters = np.asarray(found["voters"], dtype=np.float64)
        member = ((masks[:, None] >> np.arange(len(conditions))[None, :]) & 1).astype(np.float64)
        return member.T @ (member * voters[:, None])

    # ------------------------------------------------------------ audiences

    def insert_audience(self, audience: Audience) -> list[str]:
        """Stores a new audience, unless a list or audience its rule names is gone
        by now (checked in the same transaction): then nothing is stored and the
        missing ids are returned."""
        with self.db.transaction() as cur:
            missing = _missing_references(cur, audience)
            if missing:
                return missing
            cur.execute(
                "INSERT INTO audiences VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    audience.id,
                    audience.tenant,
                    audience.name,
                    rules.to_json(audience.rule),
                    audience.uses_contact_lists,
                    audience.demographic_only,
                    audience.create_time,
                    audience.update_time,
                ],
            )
            _write_references(cur, audience)
        return []

    def update_audience(self, audience: Audience, dependants: Sequence[Audience] = ()) -> list[str]:
        """Replaces an audience's name and rule, and the flags of the audiences
        that exclude it (`dependants`, their rules unchanged since they were read);
        as insert_audience for references."""
        with self.db.transaction() as cur:
            missing = _missing_references(cur, audience)
            if missing:
                return missing
            cur.execute(
                "UPDATE audiences SET name = ?, rule_json = ?, uses_contact_lists = ?, "
                "demographic_only = ?, update_time = ? WHERE tenant = ? AND id = ?",
                [
                    audience.name,
                    rules.to_json(audience.rule),
                    audience.uses_contact_lists,
                    audience.demographic_only,
                    audience.update_time,
                    audience.tenant,
                    audience.id,
                ],
            )
            cur.execute(
                "DELETE FROM audience_references WHERE tenant = ? AND audience_id = ?",
                [audience.tenant, audience.id],
            )
            _write_references(cur, audience)
            for dependant in dependants:
                cur.execute(
                    "UPDATE audiences SET uses_contact_lists = ?, demographic_only = ? "
                    "WHERE tenant = ? AND id = ? AND rule_json = ?",
                    [
                        dependant.uses_contact_lists,
                        dependant.demographic_only,
                        dependant.tenant,
                        dependant.id,
                        rules.to_json(dependant.rule),
                    ],
                )
        return []

    def get_audience(self, tenant: str, audience_id: str) -> Audience | None:
        with self.db.read() as cur:
            row = _first(
                cur.execute(
                    f"SELECT {_AUDIENCE_COLUMNS} FROM audiences WHERE tenant = ? AND id = ?",
                    [tenant, audience_id],
                ).fetchall()
            )
        return _audience(row) if row else None

    def list_audiences(self, tenant: str, offset: int, limit: int) -> list[Audience]:
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT {_AUDIENCE_COLUMNS} FROM audiences WHERE tenant = ? "
                "ORDER BY create_time DESC, id LIMIT ? OFFSET ?",
                [tenant, limit, offset],
            ).fetchall()
        return [_audience(row) for row in rows]

    def delete_audience(self, tenant: str, audience_id: str) -> tuple[bool, list[str]]:
        """(deleted, audiences excluding it): an audience another one excludes
        is kept. Checked and deleted in one transaction."""
        with self.db.transaction() as cur:
            excluders = _referrers(cur, tenant, "audience", audience_id)
            if excluders:
                return False, excluders
            found = cur.execute(
                "DELETE FROM audiences WHERE tenant = ? AND id = ? RETURNING id",
                [tenant, audience_id],
            ).fetchall()
            cur.execute(
                "DELETE FROM audience_references WHERE tenant = ? AND audience_id = ?",
                [tenant, audience_id],
            )
        return bool(found), []

    def referencing_audiences(self, tenant: str, kind: str, target_id: str) -> list[str]:
        """Audiences whose rule names this list ('list') or audience ('audience')."""
        with self.db.read() as cur:
            return _referrers(cur, tenant, kind, target_id)

    # ------------------------------------------------------------ contact lists

    @staticmethod
    def distinct_hashes(hashes: pa.Table) -> pa.Table:
        """One row per distinct identifier. Computed in a private in-memory
        database: the upload's work never touches the service's file."""
        with duckdb.connect() as scratch:
            scratch.register("upload_hashes", hashes)
            return scratch.sql(
                "SELECT kind, sha256, any_value(sha256_plus) AS sha256_plus "
                "FROM upload_hashes GROUP BY kind, sha256"
            ).to_arrow_table()

    def insert_contact_list(self, contact_list: ContactList, hashes: pa.Table) -> None:
        """Stores the list's distinct hashes (already deduplicated) and its metadata."""
        path = self._list_file(contact_list.id)
        partial = path.with_suffix(".partial")
        # Digests do not compress; plain pages also keep the file scannable by tests.
        pq.write_table(hashes.select(HASH_SCHEMA.names), partial, compression="none")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
        try:
            with self.db.transaction() as cur:
                cur.execute(
                    "INSERT INTO contact_lists VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        contact_list.id,
                        contact_list.tenant,
                        contact_list.name,
                        contact_list.purpose,
                        int(contact_list.consent_basis),
                        contact_list.default_country,
                        list(contact_list.region_codes),
                        contact_list.upload_time,
                        contact_list.phones,
                        contact_list.emails,
                        contact_list.duplicates,
                        json.dumps(dict(contact_list.rejected), sort_keys=True),
                    ],
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def get_contact_list(self, tenant: str, list_id: str) -> ContactList | None:
        with self.db.read() as cur:
            row = _first(
                cur.execute(
                    f"SELECT {_LIST_COLUMNS} FROM contact_lists WHERE tenant = ? AND id = ?",
                    [tenant, list_id],
                ).fetchall()
            )
        return _contact_list(row) if row else None

    def list_contact_lists(self, tenant: str, offset: int, limit: int) -> list[ContactList]:
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT {_LIST_COLUMNS} FROM contact_lists WHERE tenant = ? "
                "ORDER BY upload_time DESC, id LIMIT ? OFFSET ?",
                [tenant, limit, offset],
            ).fetchall()
        return [_contact_list(row) for row in rows]

    def delete_contact_list(self, tenant: str, list_id: str) -> tuple[int | None, list[str]]:
        """(hashes removed, or None when the tenant has no such list; audiences
        using it). A list an audience uses is kept. The row goes in one
        transaction with the check, then the hashes file."""
        with self.db.transaction() as cur:
            users = _referrers(cur, tenant, "list", list_id)
            if users:
                return None, users
            found = cur.execute(
                "DELETE FROM contact_lists WHERE tenant = ? AND id = ? RETURNING phones + emails",
                [tenant, list_id],
            ).fetchall()
        if not found:
            return None, []
        self._list_file(list_id).unlink(missing_ok=True)
        return int(found[0][0]), []

    def membership_counts(self, list_ids: Sequence[str]) -> dict[frozenset[str], int]:
        """Identifiers in exactly each combination of these lists (hash intersection)."""
        union, params = self._union_of_lists(list_ids)
        sql = (
            "SELECT pattern, count(*) FROM ("
            f"SELECT bit_or(bit) AS pattern FROM ({union}) GROUP BY sha256"
            ") GROUP BY pattern"
        )
        with self.db.read() as cur:
            rows = cur.execute(sql, params).fetchall()
        return {
            frozenset(i for n, i in enumerate(list_ids) if pattern >> n & 1): int(count)
            for pattern, count in rows
        }

    def export_rows(
        self, list_ids: Sequence[str], patterns: Sequence[int], batch_rows: int
    ) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Distinct identifiers of these lists whose membership pattern (bit n:
        in list n) is one of `patterns`, sorted, in batches of
        (kind, sha256, sha256_plus) rows."""
        union, params = self._union_of_lists(list_ids)
        marks = ", ".join("?" for _ in patterns)
        sql = (
            "SELECT kind, sha256, any_value(sha256_plus) AS sha256_plus "
            f"FROM ({union}) GROUP BY kind, sha256 HAVING bit_or(bit) IN ({marks}) "
            "ORDER BY kind, sha256"
        )
        with self.db.read() as cur:
            cur.execute(sql, [*params, *patterns])
            while rows := cur.fetchmany(batch_rows):
                yield rows

    def _union_of_lists(self, list_ids: Sequence[str]) -> tuple[str, list[object]]:
        parts = []
        params: list[object] = []
        for n, list_id in enumerate(list_ids):
            parts.append("SELECT kind, sha256, sha256_plus, ?::BIGINT AS bit FROM read_parquet(?)")
            params += [1 << n, str(self._list_file(list_id))]
        return " UNION ALL ".join(parts), params

    def _list_file(self, list_id: str) -> Path:
        # Ids are server-made ("lst_" + hex); never a caller's text.
        return self.lists_dir / f"{list_id}.parquet"

    def _remove_orphan_files(self) -> None:
        """Hashes files without a list row: a crash between writing the file and
        committing the row, or between deleting the row and the file."""
        with self.db.read() as cur:
            known = {row[0] for row in cur.execute("SELECT id FROM contact_lists").fetchall()}
        for path in self.lists_dir.iterdir():
            if path.suffix == ".partial" or path.stem not in known:
                path.unlink(missing_ok=True)


_AUDIENCE_COLUMNS = (
    "id, tenant, name, rule_json, uses_contact_lists, demographic_only, create_time, update_time"
)
_LIST_COLUMNS = (
    "id, tenant, name, purpose, consent_basis, default_country, region_codes, upload_time, "
    "phones, emails, duplicates, rejected_json"
)


def _first(rows: list[tuple]) -> tuple | None:
    # fetchone() would leave the cursor's result unfinished.
    return rows[0] if rows else None


def _audience(row: tuple) -> Audience:
    return Audience(
        id=row[0],
        tenant=row[1],
        name=row[2],
        rule=rules.from_json(row[3]),
        uses_contact_lists=row[4],
        demographic_only=row[5],
        create_time=row[6],
        update_time=row[7],
    )


def _contact_list(row: tuple) -> ContactList:
    return ContactList(
        id=row[0],
        tenant=row[1],
        name=row[2],
        purpose=row[3],
        consent_basis=ConsentBasis(row[4]),
        default_country=row[5],
        region_codes=tuple(row[6]),
        upload_time=row[7],
        phones=int(row[8]),
        emails=int(row[9]),
        duplicates=int(row[10]),
        rejected=json.loads(row[11]),
    )


def _referrers(cur: duckdb.DuckDBPyConnection, tenant: str, kind: str, target_id: str) -> list[str]:
    rows = cur.execute(
        "SELECT DISTINCT audience_id FROM audience_references "
        "WHERE tenant = ? AND kind = ? AND target_id = ? ORDER BY audience_id",
        [tenant, kind, target_id],
    ).fetchall()
    return [row[0] for row in rows]


def _missing_references(cur: duckdb.DuckDBPyConnection, audience: Audience) -> list[str]:
    """The lists and audiences the rule names that the tenant no longer has."""
    lists, audiences = rules.references(audience.rule)
    missing = []
    for table, ids in (("contact_lists", lists), ("audiences", audiences)):
        for target in sorted(ids):
            found = cur.execute(
                f"SELECT count(*) FROM {table} WHERE tenant = ? AND id = ?",
                [audience.tenant, target],
            ).fetchall()
            if not found[0][0]:
                missing.append(target)
    return missing


def _write_references(cur: duckdb.DuckDBPyConnection, audience: Audience) -> None:
    lists, audiences = rules.references(audience.rule)
    rows = [(audience.tenant, audience.id, "list", i) for i in sorted(lists)]
    rows += [(audience.tenant, audience.id, "audience", i) for i in sorted(audiences)]
    if rows:
        cur.executemany("INSERT INTO audience_references VALUES (?, ?, ?, ?)", rows)


_REGION_COLUMNS = {2: "province", 4: "regency", 6: "district"}


def _render(condition: Condition, params: list[object]) -> str:
    """A cell condition as SQL over the `cells` columns; values go to `params`."""

    def marks(values: Sequence[object]) -> str:
        params.extend(values)
        return ", ".join("?" for _ in values)

    match condition:
        case Const(value):
            return "TRUE" if value else "FALSE"
        case All(parts):
            return "(" + " AND ".join(_render(p, params) for p in parts) + ")"
        case AnyOf(parts):
            return "(" + " OR ".join(_render(p, params) for p in parts) + ")"
        case Not(part):
            return f"(NOT {_render(part, params)})"
        case Region(codes):
            tests = []
            for length, column in _REGION_COLUMNS.items():
                values = sorted({int(c) for c in codes if len(c) == length})
                if values:
                    tests.append(f"{column} IN ({marks(values)})")
            return "(" + " OR ".join(tests) + ")" if tests else "FALSE"
        case GenderIs(genders):
            return f"gender IN ({marks([int(g) for g in genders])})"
        case LocalityIs(locality):
            return f"locality = {marks([int(locality)])}"
        case ConnectivityIn(bands):
            return f"connectivity IN ({marks([int(b) for b in bands])})"
        case AgeBandIn(bands):
            return f"age_band IN ({marks(list(bands))})"
    raise TypeError(f"not a cell condition: {condition!r}")
