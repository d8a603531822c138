"""The DuckDB file every service owns: how many threads a query gets, from
JANGKAU_DUCKDB_THREADS through Settings to each service's store."""

from __future__ import annotations

import duckdb
import pytest

from jangkau.runtime import store as runtime_store
from jangkau.runtime.config import Settings
from jangkau.runtime.store import Database


def _threads(db: Database) -> int:
    with db.read() as cur:
        return int(cur.execute("SELECT current_setting('threads')").fetchall()[0][0])


def _duckdb_default_threads() -> int:
    with duckdb.connect() as con:
        return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])


def test_a_database_gives_a_query_the_threads_it_is_told(tmp_path):
    capped = Database(tmp_path / "capped.duckdb", [], threads=1)
    free = Database(tmp_path / "free.duckdb", [])
    try:
        assert _threads(capped) == 1
        # Unset: DuckDB's own default (a thread per core it sees).
        assert _threads(free) == _duckdb_default_threads()
    finally:
        capped.close()
        free.close()


def test_the_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("JANGKAU_DUCKDB_THREADS", raising=False)
    assert Settings.from_env("metrics").duckdb_threads == 1
    monkeypatch.setenv("JANGKAU_DUCKDB_THREADS", "3")
    assert Settings.from_env("metrics").duckdb_threads == 3


@pytest.mark.parametrize("raw", ["0", "-2", "many", "1.5"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("JANGKAU_DUCKDB_THREADS", raw)
    with pytest.raises(SystemExit, match="JANGKAU_DUCKDB_THREADS"):
        Settings.from_env("budget")


@pytest.mark.parametrize("service", ["audience", "budget", "metrics"])
def test_each_service_opens_its_store_with_the_configured_threads(
    service, serve_in_process, monkeypatch
):
    opened: list[Database] = []
    original = Database.__init__

    def recording(self: Database, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(runtime_store.Database, "__init__", recording)
    # Not DuckDB's default (a thread per core), so a store left at it is caught.
    wanted = _duckdb_default_threads() + 1
    serve_in_process(service, duckdb_threads=wanted)
    assert opened, f"{service} opened no DuckDB file"
    assert [_threads(db) for db in opened] == [wanted] * len(opened)
