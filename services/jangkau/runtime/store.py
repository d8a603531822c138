"""A service's own DuckDB file: schema migrations, one writer at a time, readers
on their own cursors. SQL lives in each service's store module, not here."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb


class Database:
    """One DuckDB file owned by one process.

    Writes are serialised by a lock and committed before the caller returns, so
    an acknowledged write is in the write-ahead log. Each thread reads through a
    cursor of its own (a DuckDB connection object is not shared across threads).

    `generation` moves on after every write transaction (committed or not): as
    this process is the file's only writer, it versions everything read from the
    file, for answers cached by `jangkau.runtime.cache`.

    `threads` caps the threads DuckDB gives one query (None: one per core). A
    service sets it from JANGKAU_DUCKDB_THREADS: its calls already run side by
    side on the serving threads, and its queries are small, so splitting each
    across the cores costs more in hand-offs than it saves.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str],
        *,
        read_only: bool = False,
        threads: int | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = duckdb.connect(str(path), read_only=read_only)
        # Every timestamp comes back as aware UTC, whatever the machine's zone.
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        if threads is not None:
            self._con.execute(f"SET GLOBAL threads = {int(threads)}")
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._generation = 0
        if not read_only:
            self._migrate(migrations)

    def _migrate(self, migrations: Sequence[str]) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] if row and row[0] is not None else 0
        for version, sql in enumerate(migrations, start=1):
            if version <= current:
                continue
            con.begin()
            try:
                con.execute(sql)
                con.execute("INSERT INTO schema_version VALUES (?)", [version])
                con.commit()
            except Exception:
                con.rollback()
                raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, for reads outside a transaction."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        yield self.cursor()

    @property
    def generation(self) -> int:
        """The number of write transactions so far; read it before the data it versions."""
        return self._generation

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction; committed when the block ends, rolled back on error."""
        with self._write_lock:
            cur = self.cursor()
            cur.begin()
            try:
                yield cur
            except BaseException:
                cur.rollback()
                raise
            else:
                cur.commit()
            finally:
                # After the commit, before the writer returns: a read that starts once
                # the write is acknowledged sees the new generation.
                self._generation += 1

    def checkpoint(self) -> None:
        with self._write_lock:
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        with self._cursors_lock:
            for cur in self._cursors:
                with suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
        self._con.close()
