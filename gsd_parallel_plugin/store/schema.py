"""Opening the store: DDL, version checks, refusing files that are not ours, transactions.

:class:`StoreBase` is the connection every part of :class:`~gsd_parallel_plugin.store.Store`
builds on. A file that is not ours, corrupt, or from a newer version is a
:class:`StoreError` naming the path; it is never modified, deleted or replaced.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError
from .rows import COMMANDS, RUN_STATES, now

SCHEMA_VERSION = 1
APP = "gsd-parallel"
APPLICATION_ID = 0x47534450  # "GSDP" in the SQLite header, so `file` tools can tell too
BUSY_TIMEOUT_MS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL CHECK (state IN {RUN_STATES!r}),
    started_at REAL NOT NULL, ended_at REAL, budget_ceiling_nanos INTEGER,
    supervisor_pid INTEGER, supervisor_create_time REAL);
CREATE UNIQUE INDEX runs_one_active ON runs(state) WHERE state = 'active';
CREATE TABLE workers (
    run_id INTEGER NOT NULL REFERENCES runs(id), milestone_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, pid INTEGER, create_time REAL,
    worktree TEXT NOT NULL, branch TEXT NOT NULL,
    cost_nanos INTEGER NOT NULL DEFAULT 0,
    tokens_input INTEGER NOT NULL DEFAULT 0, tokens_output INTEGER NOT NULL DEFAULT 0,
    tokens_cache_read INTEGER NOT NULL DEFAULT 0, tokens_cache_write INTEGER NOT NULL DEFAULT 0,
    units_done INTEGER NOT NULL DEFAULT 0, current_unit TEXT,
    restarts INTEGER NOT NULL DEFAULT 0,
    stdout_offset INTEGER NOT NULL DEFAULT 0, stderr_offset INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL, updated_at REAL NOT NULL, last_activity_at REAL,
    last_error TEXT, state_reason TEXT, milestone_budget_nanos INTEGER,
    last_progress_at REAL,
    PRIMARY KEY (run_id, milestone_id));
CREATE TABLE milestones (
    id TEXT PRIMARY KEY, completed_at REAL, merged_at REAL, merge_commit TEXT);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL CHECK (command IN {COMMANDS!r}),
    milestone_id TEXT, args TEXT NOT NULL DEFAULT '{{}}', created_at REAL NOT NULL,
    claimed_at REAL, claimed_by INTEGER);
CREATE INDEX commands_pending ON commands(id) WHERE claimed_at IS NULL;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    run_id INTEGER REFERENCES runs(id), milestone_id TEXT,
    kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT);
CREATE TABLE merges (
    id INTEGER PRIMARY KEY AUTOINCREMENT, milestone_id TEXT NOT NULL,
    branch TEXT NOT NULL, integration_branch TEXT NOT NULL, base_sha TEXT, branch_sha TEXT,
    step TEXT NOT NULL, worktree TEXT, commit_sha TEXT, outcome TEXT, files TEXT NOT NULL
    DEFAULT '[]', error TEXT, started_at REAL NOT NULL, updated_at REAL NOT NULL,
    finished_at REAL);
CREATE INDEX merges_unfinished ON merges(id) WHERE outcome IS NULL;
"""

# Version n -> n+1 upgrade scripts; run in one transaction when an older store is opened.
_MIGRATIONS: dict[int, str] = {}


CONFIRM_SECONDS = 1.5
"""How long an open that looks like damage is retried before SQLite's own check decides."""
CONFIRM_INTERVAL = 0.1


class _Suspect(Exception):
    """The file looked wrong once: maybe damaged, maybe a moment of contention."""

    def __init__(self, why: str, *, header: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.header = header


class NoStore(StoreError):
    """Read-only open of a store that does not exist yet (nothing has run here)."""


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the caller's transaction.

    (``executescript`` would COMMIT first, breaking the create-once-under-lock guarantee.)
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def check_fields(given: Mapping[str, Any], allowed: set[str], what: str) -> None:
    """Refuse an update naming a column it may not set (a typo must not become SQL)."""
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"cannot update {what} field(s) {unknown}; allowed: {sorted(allowed)}")


_S = TypeVar("_S", bound="StoreBase")


class StoreBase:
    """One sqlite connection: opening and checking the file, transactions, closing.

    The parts of :class:`~gsd_parallel_plugin.store.Store` (runs and workers, records,
    merge journal) build on it; its constructor is documented there.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # What looks like damage is often a moment: a lock held across the busy timeout, the
        # last connection checkpointing as the supervisor exits. Look again for a while, and
        # call the file damaged only when SQLite's own check agrees (see _verdict).
        deadline = time.monotonic() + CONFIRM_SECONDS
        while True:
            try:
                self._open_once()
                return
            except _Suspect as exc:
                if time.monotonic() >= deadline:
                    raise self._verdict(exc) from None
                time.sleep(CONFIRM_INTERVAL)

    def _open_once(self) -> None:
        if self.readonly and (not self.path.exists() or self.path.stat().st_size == 0):
            raise NoStore(f"no coordination store at {self.path}: nothing has run here yet")
        self._check_header()
        if not self.readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Read-only is mode=rw (never creates the file) + query_only, not mode=ro: a
            # mode=ro connection cannot remove the -wal/-shm files when it closes last.
            uri = self.path.resolve().as_uri() + "?mode=rw" if self.readonly else str(self.path)
            self._conn = sqlite3.connect(uri, uri=self.readonly, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open coordination store {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        try:
            if self.readonly:
                self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._open_schema()
            if not self.readonly:  # per connection; WAL+NORMAL may lose the last commits on
                # power loss, never corrupt, and offset and cost always roll back together
                self._conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise _Suspect(str(exc)) from None
        except BaseException:
            self._conn.close()
            raise

    def _verdict(self, suspect: _Suspect) -> StoreError:
        """Damaged only when SQLite's ``quick_check`` says so (or the file is not SQLite)."""
        if suspect.header:
            return self._fail(suspect.why)
        try:
            # mode=rw + query_only, as a read-only Store: it leaves no -wal/-shm behind.
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=rw", uri=True)
        except sqlite3.Error as exc:
            return StoreError(f"cannot open coordination store {self.path}: {exc}")
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA busy_timeout = {min(BUSY_TIMEOUT_MS, 2000)}")
            rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
        except sqlite3.OperationalError as exc:
            return self._busy(f"{suspect.why}; SQLite's integrity check could not run: {exc}")
        except sqlite3.DatabaseError as exc:
            return self._fail(f"damaged: {suspect.why}; SQLite's integrity check: {exc}")
        finally:
            conn.close()
        if rows != ["ok"]:
            return self._fail(f"damaged: {suspect.why}; SQLite's integrity check: {rows[0]}")
        return self._busy(f"{suspect.why}; SQLite's integrity check passes")

    def _busy(self, why: str) -> StoreError:
        """A store we cannot read now but have no reason to call damaged: keep it."""
        return StoreError(
            f"coordination store {self.path} cannot be read right now ({why}): another "
            "gsd-parallel process is probably using it; it is not damaged, do not move it: "
            "run the command again in a moment"
        )

    @classmethod
    def open_readonly(cls: type[_S], path: Path | str) -> _S | None:
        """Read-only store, or None when there is none yet (for ``status``/``watch``)."""
        try:
            return cls(path, readonly=True)
        except NoStore:
            return None

    def _fail(self, why: str) -> StoreError:
        return StoreError(
            f"{self.path} is not a gsd-parallel coordination store ({why}):"
            " move it aside and run the command again"
        )

    def _check_header(self) -> None:
        """Refuse non-SQLite bytes before sqlite sees them (it would say little)."""
        try:
            with self.path.open("rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read coordination store {self.path}: {exc}") from None
        if head and head != SQLITE_MAGIC:
            raise _Suspect("not an SQLite database", header=True)

    def _inspect(self) -> tuple[set[str], int, str | None]:
        """Tables, user_version and meta app, reading only (no WAL switch yet).

        One read transaction, so a concurrent initialiser is seen entirely or not at all.
        """
        own = not self._conn.in_transaction
        try:
            if own:
                self._conn.execute("BEGIN")
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
            tables = {r[0] for r in self._conn.execute(sql)}
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            app = None
            if "meta" in tables:
                row = self._conn.execute("SELECT value FROM meta WHERE key='app'").fetchone()
                app = row[0] if row else None
        except sqlite3.DatabaseError as exc:
            if own and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _Suspect(str(exc)) from None
        if own:
            self._conn.execute("COMMIT")
        if app_id not in (0, APPLICATION_ID):
            raise self._fail("it belongs to another application")
        return tables - {"sqlite_sequence"}, version, app

    def _open_schema(self) -> None:
        tables, version, app = self._inspect()
        if not tables and version == 0:
            if self.readonly:
                raise NoStore(f"no coordination store at {self.path}: nothing has run here yet")
            self._enable_wal()
            with self.transaction():  # re-check: another process may have won the race
                tables, version, app = self._inspect()
                if not tables and version == 0:
                    _run_script(self._conn, _SCHEMA)
                    self._conn.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [("app", APP), ("created_at", repr(now()))],
                    )
                    self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    return
        if app != APP:
            raise self._fail("it belongs to another application")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer gsd-parallel (store schema {version},"
                f" this version knows {SCHEMA_VERSION}): upgrade gsd-parallel"
            )
        if version < 1:
            raise self._fail(f"unknown schema version {version}")
        if self.readonly:
            return
        self._enable_wal()
        self._add_late_columns()
        if version < SCHEMA_VERSION:
            with self.transaction():
                current = self._conn.execute("PRAGMA user_version").fetchone()[0]
                for v in range(current, SCHEMA_VERSION):
                    _run_script(self._conn, _MIGRATIONS[v])
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _add_late_columns(self) -> None:
        """Columns added to schema 1 before its release, for stores made before them."""
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(workers)")}
        if "last_progress_at" not in have:
            with self.transaction() as c:
                have = {r[1] for r in c.execute("PRAGMA table_info(workers)")}
                if "last_progress_at" not in have:
                    c.execute("ALTER TABLE workers ADD COLUMN last_progress_at REAL")

    def _enable_wal(self) -> None:
        """Switch to WAL, retrying: SQLite skips the busy handler for this pragma, so
        processes opening a fresh store together would otherwise see "locked"."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                mode = str(exc)
            if mode == "wal":
                return
            if time.monotonic() > deadline:
                raise StoreError(f"cannot use WAL for coordination store {self.path}: {mode}")
            time.sleep(0.01)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error); nested calls join the outer."""
        if self.readonly:
            raise StoreError(f"coordination store {self.path} was opened read-only")
        if self._conn.in_transaction:
            yield self._conn
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"coordination store {self.path} is unavailable: {exc}") from None
        try:
            yield self._conn
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
