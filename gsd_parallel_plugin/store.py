"""The SQLite coordination store: ``.gsd/parallel/coordinator.db``.

One file shared by the supervisor (the writer), CLI commands (enqueue commands, read),
``watch`` (read-only, polling) and ``merge``. Conventions, chosen so that several
processes can share it and a crash never loses or double-counts anything:

- WAL, ``busy_timeout`` 10 s, ``foreign_keys=ON``, autocommit connections
  (``isolation_level=None``) and explicit ``BEGIN IMMEDIATE`` for every write, so a write
  transaction is serialised against other writers from its first statement.
- Money is integer **nano-USD** (``*_nanos`` columns, 1 USD = 10**9): sums are exact, so
  1000 x 0.01 is 10.0, not 9.99999999999998. Rows expose USD floats as properties
  (``cost``, ``budget_ceiling``, ``milestone_budget``); use :func:`usd_to_nanos` to convert.
- Timestamps are epoch seconds as floats (``time.time()``); :func:`to_ms` converts for the
  GSD status files, which use epoch milliseconds.
- The schema is versioned by ``PRAGMA user_version`` plus a ``meta`` table
  (``app = 'gsd-parallel'``). A file that is not ours, corrupt, or from a newer version is a
  :class:`StoreError` naming the path; it is never modified, deleted or replaced.
- A :class:`Store` (one sqlite connection) belongs to one thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Literal

from .errors import StoreError
from .models import WorkerState

SCHEMA_VERSION = 1
APP = "gsd-parallel"
APPLICATION_ID = 0x47534450  # "GSDP" in the SQLite header, so `file` tools can tell too
NANOS_PER_USD = 1_000_000_000
BUSY_TIMEOUT_MS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"

RunState = Literal["active", "finished", "budget_exceeded"]
RUN_STATES: tuple[str, ...] = ("active", "finished", "budget_exceeded")
COMMANDS: tuple[str, ...] = ("pause", "resume", "stop")
WORKER_STATES: frozenset[str] = frozenset(s.value for s in WorkerState)
MERGE_OUTCOMES: tuple[str, ...] = ("merged", "conflict", "failed", "skipped", "aborted")

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


def now() -> float:
    """Current time as the store writes it: epoch seconds (float)."""
    return time.time()


def to_ms(ts: float | None) -> int | None:
    """Epoch seconds -> epoch milliseconds (GSD status files), None stays None."""
    return None if ts is None else round(ts * 1000)


def usd_to_nanos(usd: float | Decimal | str | int) -> int:
    """USD amount -> integer nano-USD, using the decimal that ``repr`` shows for floats."""
    value = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
    return int(value.scaleb(9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int | None) -> float | None:
    """Integer nano-USD -> float USD (correctly rounded: 10**10 nanos is exactly 10.0)."""
    return None if nanos is None else nanos / NANOS_PER_USD


class NoStore(StoreError):
    """Read-only open of a store that does not exist yet (nothing has run here)."""


class _Row:
    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict, with USD floats next to the nano-USD integers."""
        out = asdict(self)  # type: ignore[call-overload]
        for k, v in out.items():
            out[k] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for name in ("cost", "budget_ceiling", "milestone_budget"):
            if hasattr(self, name):
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class RunRow(_Row):
    id: int
    state: str
    started_at: float
    ended_at: float | None
    budget_ceiling_nanos: int | None
    supervisor_pid: int | None
    supervisor_create_time: float | None

    @property
    def budget_ceiling(self) -> float | None:
        return nanos_to_usd(self.budget_ceiling_nanos)


@dataclass(frozen=True)
class WorkerRow(_Row):
    """One milestone in one run; restarts reuse the row, so cost covers every attempt.

    ``completed_at``/``merged_at``/``merge_commit`` are facts about the milestone (from
    the ``milestones`` table), not about this run.
    """

    run_id: int
    milestone_id: str
    title: str
    state: str
    pid: int | None
    create_time: float | None
    worktree: Path
    branch: str
    cost_nanos: int
    tokens_input: int
    tokens_output: int
    tokens_cache_read: int
    tokens_cache_write: int
    units_done: int
    current_unit: str | None
    restarts: int
    stdout_offset: int
    stderr_offset: int
    started_at: float
    updated_at: float
    last_activity_at: float | None
    last_error: str | None
    state_reason: str | None
    milestone_budget_nanos: int | None
    completed_at: float | None
    merged_at: float | None
    merge_commit: str | None
    last_progress_at: float | None = None
    """When the worker last finished a unit or committed (burn-without-progress detection)."""

    @property
    def cost(self) -> float:
        return self.cost_nanos / NANOS_PER_USD

    @property
    def milestone_budget(self) -> float | None:
        return nanos_to_usd(self.milestone_budget_nanos)

    @property
    def tokens_total(self) -> int:
        return sum((self.tokens_input, self.tokens_output,
                    self.tokens_cache_read, self.tokens_cache_write))  # fmt: skip


@dataclass(frozen=True)
class CommandRow(_Row):
    id: int
    command: str
    milestone_id: str | None  # None = all workers
    args: Mapping[str, Any]
    created_at: float
    claimed_at: float | None = None


@dataclass(frozen=True)
class EventRow(_Row):
    id: int
    at: float
    run_id: int | None
    milestone_id: str | None
    kind: str
    message: str
    data: Any = None


@dataclass(frozen=True)
class MilestoneRow(_Row):
    id: str
    completed_at: float | None
    merged_at: float | None
    merge_commit: str | None


@dataclass(frozen=True)
class MergeRow(_Row):
    """One merge attempt; ``outcome`` is None while it is unfinished (see ``doctor --fix``)."""

    id: int
    milestone_id: str
    branch: str
    integration_branch: str
    base_sha: str | None
    branch_sha: str | None
    step: str
    worktree: str | None
    commit_sha: str | None
    outcome: str | None
    files: tuple[str, ...] = field(default=())
    error: str | None = None
    started_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None


_WORKER_SELECT = (
    "SELECT w.*, m.completed_at, m.merged_at, m.merge_commit FROM workers w"
    " LEFT JOIN milestones m ON m.id = w.milestone_id"
)
_WORKER_FIELDS = {
    "title", "pid", "create_time", "worktree", "branch", "current_unit", "restarts",
    "stdout_offset", "stderr_offset", "started_at", "last_activity_at", "last_error",
    "state_reason", "milestone_budget", "last_progress_at",
}  # fmt: skip
_RUN_FIELDS = {"budget_ceiling", "supervisor_pid", "supervisor_create_time"}
_MERGE_FIELDS = {"step", "worktree", "commit_sha", "base_sha", "branch_sha", "files", "error"}
_TOKEN_COLUMNS = {
    "input": "tokens_input", "output": "tokens_output",
    "cache_read": "tokens_cache_read", "cacheRead": "tokens_cache_read",
    "cache_write": "tokens_cache_write", "cacheWrite": "tokens_cache_write",
}  # fmt: skip
_UNSET: Any = object()


def _worker(row: sqlite3.Row) -> WorkerRow:
    return WorkerRow(**{**dict(row), "worktree": Path(row["worktree"])})


def _merge(row: sqlite3.Row) -> MergeRow:
    return MergeRow(**{**dict(row), "files": tuple(json.loads(row["files"]))})


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the caller's transaction.

    (``executescript`` would COMMIT first, breaking the create-once-under-lock guarantee.)
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _check_fields(given: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"cannot update {what} field(s) {unknown}; allowed: {sorted(allowed)}")


class Store:
    """A connection to the coordination store at ``path``.

    Writable (default): creates the parent directory and the schema when the file is new
    or empty. ``readonly=True`` opens with ``mode=ro`` and never creates anything; a
    missing or empty file raises :class:`NoStore` (see also :meth:`open_readonly`);
    writes raise :class:`StoreError`.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and (not self.path.exists() or self.path.stat().st_size == 0):
            raise NoStore(f"no coordination store at {self.path}: nothing has run here yet")
        self._check_header()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Read-only is mode=rw (never creates the file) + query_only, not mode=ro: a
            # mode=ro connection cannot remove the -wal/-shm files when it closes last.
            uri = self.path.resolve().as_uri() + "?mode=rw" if readonly else str(self.path)
            self._conn = sqlite3.connect(uri, uri=readonly, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open coordination store {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        try:
            if readonly:
                self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._open_schema()
            if not readonly:  # per connection; WAL+NORMAL may lose the last commits on power
                # loss, never corrupt, and offset and cost always roll back together
                self._conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path | str) -> Store | None:
        """Read-only store, or None when there is none yet (for ``status``/``watch``)."""
        try:
            return cls(path, readonly=True)
        except NoStore:
            return None

    # ------------------------------------------------------------------ plumbing

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
            raise self._fail("not an SQLite database")

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
            raise self._fail(f"damaged: {exc}") from None
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs

    def _run(self, where: str, params: tuple[Any, ...] = ()) -> RunRow | None:
        row = self._one(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT 1", params)
        return RunRow(**dict(row)) if row else None

    def run(self, run_id: int) -> RunRow | None:
        return self._run("WHERE id = ?", (run_id,))

    def active_run(self) -> RunRow | None:
        """The run in state ``active`` (at most one exists: a unique index says so)."""
        return self._run("WHERE state = 'active'")

    def latest_run(self) -> RunRow | None:
        """The newest run in any state (``budget_exceeded`` makes start/resume refuse)."""
        return self._run("")

    def create_run(
        self,
        budget_ceiling: float | None = None,
        *,
        supervisor_pid: int | None = None,
        supervisor_create_time: float | None = None,
    ) -> RunRow:
        """Start a new active run; StoreError if one is active already."""
        ceiling = None if budget_ceiling is None else usd_to_nanos(budget_ceiling)
        with self.transaction() as c:
            if self.active_run() is not None:
                raise StoreError(f"a parallel run is already active in {self.path}")
            cur = c.execute(
                "INSERT INTO runs (state, started_at, budget_ceiling_nanos, supervisor_pid,"
                " supervisor_create_time) VALUES ('active', ?, ?, ?, ?)",
                (now(), ceiling, supervisor_pid, supervisor_create_time),
            )
        run = self.run(int(cur.lastrowid or 0))
        assert run is not None
        return run

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set ``budget_ceiling`` (USD), ``supervisor_pid`` or ``supervisor_create_time``."""
        _check_fields(fields, _RUN_FIELDS, "run")
        if "budget_ceiling" in fields:
            value = fields.pop("budget_ceiling")
            fields["budget_ceiling_nanos"] = None if value is None else usd_to_nanos(value)
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            with self.transaction() as c:
                c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def set_run_state(self, run_id: int, state: str) -> None:
        """Move a run to ``finished``/``budget_exceeded`` (sets ``ended_at``) or back."""
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        ended = None if state == "active" else now()
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET state = ?, ended_at = ? WHERE id = ?", (state, ended, run_id)
            )

    def finish_run(self, run_id: int) -> None:
        """Mark a run finished unless it already ended (keeps ``budget_exceeded``)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET state = 'finished', ended_at = ?"
                " WHERE id = ? AND state = 'active'",
                (now(), run_id),
            )

    def run_total_nanos(self, run_id: int) -> int:
        """Exact cost of a run: the sum over its workers, every restart included."""
        sql = "SELECT COALESCE(SUM(cost_nanos), 0) FROM workers WHERE run_id = ?"
        row = self._one(sql, (run_id,))
        return int(row[0]) if row else 0

    def run_total_cost(self, run_id: int) -> float:
        return self.run_total_nanos(run_id) / NANOS_PER_USD

    # ------------------------------------------------------------------ workers

    def add_worker(
        self,
        run_id: int,
        milestone_id: str,
        title: str,
        worktree: Path | str,
        branch: str,
        *,
        stdout_offset: int = 0,
        stderr_offset: int = 0,
    ) -> WorkerRow:
        """New ``starting`` row, or the run's existing row for the milestone (cost kept).

        Pass the current log sizes as offsets when the logs already hold an older run's
        output; logs should be appended to (never truncated) across restarts.
        """
        t = now()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO workers (run_id, milestone_id, title, state, worktree, branch,"
                " stdout_offset, stderr_offset, started_at, updated_at)"
                " VALUES (?, ?, ?, 'starting', ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, milestone_id) DO UPDATE SET title = excluded.title,"
                " worktree = excluded.worktree, branch = excluded.branch, updated_at = ?",
                (run_id, milestone_id, title, str(worktree), branch, stdout_offset,
                 stderr_offset, t, t, t),
            )  # fmt: skip
        row = self.worker(milestone_id, run_id)
        assert row is not None
        return row

    def worker(self, milestone_id: str, run_id: int | None = None) -> WorkerRow | None:
        """The milestone's row in ``run_id``; None = its row in the newest run that has one."""
        if run_id is None:
            sql = f"{_WORKER_SELECT} WHERE w.milestone_id = ? ORDER BY w.run_id DESC LIMIT 1"
            row = self._one(sql, (milestone_id,))
        else:
            sql = f"{_WORKER_SELECT} WHERE w.milestone_id = ? AND w.run_id = ?"
            row = self._one(sql, (milestone_id, run_id))
        return _worker(row) if row else None

    def workers(self, run_id: int | None = None) -> list[WorkerRow]:
        """Workers of ``run_id`` (None = the newest run), ordered by milestone ID."""
        if run_id is None:
            latest = self.latest_run()
            if latest is None:
                return []
            run_id = latest.id
        sql = f"{_WORKER_SELECT} WHERE w.run_id = ? ORDER BY w.milestone_id"
        return [_worker(r) for r in self._conn.execute(sql, (run_id,))]

    def update_worker(self, milestone_id: str, run_id: int, **fields: Any) -> WorkerRow:
        """Set plain worker fields (not state: :meth:`set_state`; not cost: :meth:`record_output`).

        ``milestone_budget`` is in USD (None removes the envelope). KeyError if no row.
        """
        _check_fields(fields, _WORKER_FIELDS, "worker")
        if "milestone_budget" in fields:
            value = fields.pop("milestone_budget")
            fields["milestone_budget_nanos"] = None if value is None else usd_to_nanos(value)
        if "worktree" in fields:
            fields["worktree"] = str(fields["worktree"])
        sets = "".join(f"{k} = ?, " for k in fields)
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE workers SET {sets}updated_at = ? WHERE run_id = ? AND milestone_id = ?",
                (*fields.values(), now(), run_id, milestone_id),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no worker {milestone_id} in run {run_id}")
        row = self.worker(milestone_id, run_id)
        assert row is not None
        return row

    def set_state(
        self, milestone_id: str, run_id: int, state: str | WorkerState, reason: str | None = None
    ) -> str:
        """Change a worker's state, log a ``state`` event, return the old state.

        Setting the same state and reason again changes nothing and logs nothing.
        ``complete`` also records the milestone's completion time (first one wins).
        """
        new = str(state)
        if new not in WORKER_STATES:
            raise ValueError(f"unknown worker state {new!r}")
        with self.transaction() as c:
            row = self._one(
                "SELECT state, state_reason FROM workers WHERE run_id = ? AND milestone_id = ?",
                (run_id, milestone_id),
            )
            if row is None:
                raise KeyError(f"no worker {milestone_id} in run {run_id}")
            if (row["state"], row["state_reason"]) == (new, reason):
                return new
            c.execute(
                "UPDATE workers SET state = ?, state_reason = ?, updated_at = ?"
                " WHERE run_id = ? AND milestone_id = ?",
                (new, reason, now(), run_id, milestone_id),
            )
            if new == WorkerState.COMPLETE.value:
                self.mark_completed(milestone_id)
            message = f"{milestone_id}: {row['state']} -> {new}"
            message += f" ({reason})" if reason else ""
            data = {"old": row["state"], "new": new, "reason": reason}
            self.add_event("state", message, milestone_id=milestone_id, data=data, run_id=run_id)
        return str(row["state"])

    def record_output(
        self,
        run_id: int,
        milestone_id: str,
        *,
        expected_offset: int,
        new_offset: int,
        cost_delta: float | Decimal | str = 0,
        cost_nanos: int = 0,
        tokens: Mapping[str, int] | None = None,
        units_delta: int = 0,
        current_unit: str | None = _UNSET,
        activity_at: float | None = None,
    ) -> WorkerRow | None:
        """Advance the stdout offset and add what those bytes produced, in one transaction.

        Compare-and-set: when the stored offset is not ``expected_offset`` (another reader
        got there first, or a restarted supervisor re-read old bytes) nothing changes and
        None is returned; otherwise the updated row. ``cost_delta`` is USD and
        ``cost_nanos`` nano-USD (both are added; pass whichever you have); ``tokens`` keys
        are ``input``/``output``/``cache_read``/``cache_write`` (GSD's camelCase accepted).
        ``current_unit`` left out keeps the stored one. KeyError if there is no such worker.
        """
        if new_offset < expected_offset:
            raise ValueError(f"offset would go back: {expected_offset} -> {new_offset}")
        sets = ["stdout_offset = ?", "cost_nanos = cost_nanos + ?", "units_done = units_done + ?"]
        params: list[Any] = [new_offset, usd_to_nanos(cost_delta) + int(cost_nanos), units_delta]
        for key, value in (tokens or {}).items():
            if key not in _TOKEN_COLUMNS:
                raise ValueError(f"unknown token kind {key!r}")
            sets.append(f"{_TOKEN_COLUMNS[key]} = {_TOKEN_COLUMNS[key]} + ?")
            params.append(int(value))
        if current_unit is not _UNSET:
            sets.append("current_unit = ?")
            params.append(current_unit)
        t = now()
        sets += ["last_activity_at = ?", "updated_at = ?"]
        params += [t if activity_at is None else activity_at, t]
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE workers SET {', '.join(sets)}"
                " WHERE run_id = ? AND milestone_id = ? AND stdout_offset = ?",
                (*params, run_id, milestone_id, expected_offset),
            )
            if cur.rowcount == 0:
                if self.worker(milestone_id, run_id) is None:
                    raise KeyError(f"no worker {milestone_id} in run {run_id}")
                return None
            return self.worker(milestone_id, run_id)

    def add_cost(
        self,
        run_id: int,
        milestone_id: str,
        cost_nanos: int,
        tokens: Mapping[str, int] | None = None,
    ) -> tuple[WorkerRow, int]:
        """Add cost a host reported itself (no log offset involved); (row, run total nanos).

        Both are read in the same transaction as the write, so they are exact even while
        other processes add cost. KeyError if there is no such worker.
        """
        if cost_nanos < 0:
            raise ValueError(f"cost cannot go down: {cost_nanos} nano-USD")
        sets = ["cost_nanos = cost_nanos + ?"]
        params: list[Any] = [int(cost_nanos)]
        for key, value in (tokens or {}).items():
            if key not in _TOKEN_COLUMNS:
                raise ValueError(f"unknown token kind {key!r}")
            sets.append(f"{_TOKEN_COLUMNS[key]} = {_TOKEN_COLUMNS[key]} + ?")
            params.append(int(value))
        t = now()
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE workers SET {', '.join(sets)}, last_activity_at = ?, updated_at = ?"
                " WHERE run_id = ? AND milestone_id = ?",
                (*params, t, t, run_id, milestone_id),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no worker {milestone_id} in run {run_id}")
            row = self.worker(milestone_id, run_id)
            total = self.run_total_nanos(run_id)
        assert row is not None
        return row, total

    # ------------------------------------------------------------------ commands

    def enqueue(
        self, command: str, milestone_id: str | None = None, args: Mapping[str, Any] | None = None
    ) -> int:
        """Queue ``pause``/``resume``/``stop`` for one milestone (None = all); returns its id."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {COMMANDS}")
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO commands (command, milestone_id, args, created_at)"
                " VALUES (?, ?, ?, ?)",
                (command, milestone_id, json.dumps(dict(args or {})), now()),
            )
            return int(cur.lastrowid or 0)

    def _commands(self, where: str, params: tuple[Any, ...] = ()) -> list[CommandRow]:
        rows = self._conn.execute(
            "SELECT id, command, milestone_id, args, created_at, claimed_at FROM commands"
            f" {where} ORDER BY id",
            params,
        )
        return [CommandRow(**{**dict(r), "args": json.loads(r["args"])}) for r in rows]

    def claim_commands(self) -> list[CommandRow]:
        """Take every unclaimed command, oldest first; each is returned to one claimer only."""
        with self.transaction() as c:
            pending = self._commands("WHERE claimed_at IS NULL")
            if pending:
                c.execute(
                    "UPDATE commands SET claimed_at = ?, claimed_by = ?"
                    " WHERE claimed_at IS NULL AND id <= ?",
                    (now(), os.getpid(), pending[-1].id),
                )
        return pending

    def pending_commands(self) -> list[CommandRow]:
        """Queued commands nobody has claimed yet (for ``status``)."""
        return self._commands("WHERE claimed_at IS NULL")

    # ------------------------------------------------------------------ events

    def add_event(
        self,
        kind: str,
        message: str,
        milestone_id: str | None = None,
        data: Any = None,
        run_id: int | None = None,
    ) -> int:
        """Append to the event log; ids only grow, in commit order (safe to tail by id)."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO events (at, run_id, milestone_id, kind, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (now(), run_id, milestone_id, kind, message,
                 None if data is None else json.dumps(data)),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

    def events(
        self, limit: int = 20, after_id: int | None = None, run_id: int | None = None
    ) -> list[EventRow]:
        """Oldest first. ``after_id`` None: the newest ``limit`` events; else the first
        ``limit`` events with a larger id (tail with the last id you saw)."""
        where, params = "WHERE id > ?", [after_id or 0]
        if run_id is not None:
            where, params = where + " AND run_id = ?", [*params, run_id]
        order = "DESC" if after_id is None else "ASC"
        rows = self._conn.execute(
            f"SELECT * FROM events {where} ORDER BY id {order} LIMIT ?", (*params, limit)
        ).fetchall()
        events = [
            EventRow(**{**dict(r), "data": None if r["data"] is None else json.loads(r["data"])})
            for r in rows
        ]
        return events[::-1] if after_id is None else events

    def events_of_kind(self, kind: str, run_id: int | None = None) -> list[EventRow]:
        """Every event of one kind (optionally of one run), oldest first."""
        where, params = "WHERE kind = ?", list[Any]([kind])
        if run_id is not None:
            where, params = where + " AND run_id = ?", [*params, run_id]
        rows = self._conn.execute(f"SELECT * FROM events {where} ORDER BY id", params)
        return [
            EventRow(**{**dict(r), "data": None if r["data"] is None else json.loads(r["data"])})
            for r in rows
        ]

    # ------------------------------------------------------------------ milestones

    def mark_completed(self, milestone_id: str, at: float | None = None) -> None:
        """Record when the milestone completed (kept if already set: merge order by completion)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO milestones (id, completed_at) VALUES (?, ?) ON CONFLICT (id)"
                " DO UPDATE SET completed_at = COALESCE(completed_at, excluded.completed_at)",
                (milestone_id, now() if at is None else at),
            )

    def mark_merged(self, milestone_id: str, commit: str, at: float | None = None) -> None:
        """Record that the milestone landed on its integration branch as ``commit``."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO milestones (id, merged_at, merge_commit) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET merged_at = excluded.merged_at,"
                " merge_commit = excluded.merge_commit",
                (milestone_id, now() if at is None else at, commit),
            )

    def milestones(self) -> dict[str, MilestoneRow]:
        rows = self._conn.execute("SELECT * FROM milestones ORDER BY id")
        return {r["id"]: MilestoneRow(**dict(r)) for r in rows}

    def merged_milestones(self) -> dict[str, str]:
        """Milestone ID -> merge commit, for every milestone that has landed."""
        return {m.id: m.merge_commit for m in self.milestones().values() if m.merge_commit}

    def completed_milestones(self) -> dict[str, float]:
        """Milestone ID -> completion time, for every milestone recorded as complete."""
        return {m.id: m.completed_at for m in self.milestones().values() if m.completed_at}

    # ------------------------------------------------------------------ merge journal

    def begin_merge(
        self,
        milestone_id: str,
        branch: str,
        integration_branch: str,
        base_sha: str | None,
        branch_sha: str | None,
        *,
        step: str = "started",
    ) -> int:
        """Open a journal row before touching git; returns the merge id."""
        t = now()
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO merges (milestone_id, branch, integration_branch, base_sha,"
                " branch_sha, step, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (milestone_id, branch, integration_branch, base_sha, branch_sha, step, t, t),
            )
            return int(cur.lastrowid or 0)

    def update_merge(self, merge_id: int, **fields: Any) -> None:
        """Record progress: ``step``, ``worktree``, ``commit_sha``, ``files``, ``error``, SHAs."""
        _check_fields(fields, _MERGE_FIELDS, "merge")
        if "files" in fields:
            fields["files"] = json.dumps(list(fields["files"]))
        if "worktree" in fields and fields["worktree"] is not None:
            fields["worktree"] = str(fields["worktree"])
        sets = "".join(f"{k} = ?, " for k in fields)
        with self.transaction() as c:
            cur = c.execute(
                f"UPDATE merges SET {sets}updated_at = ? WHERE id = ?",
                (*fields.values(), now(), merge_id),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no merge {merge_id}")

    def finish_merge(
        self, merge_id: int, outcome: str, *, mark_milestone: bool = True, **fields: Any
    ) -> MergeRow:
        """Close a journal row with its outcome; ``merged`` also marks the milestone merged
        (needs ``commit_sha``), in the same transaction, unless ``mark_milestone`` is False
        (a per-slice merge: part of the milestone landed, its dependents still wait)."""
        if outcome not in MERGE_OUTCOMES:
            raise ValueError(f"unknown merge outcome {outcome!r}")
        with self.transaction() as c:
            self.update_merge(merge_id, **fields)
            t = now()
            c.execute(
                "UPDATE merges SET outcome = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (outcome, t, t, merge_id),
            )
            row = self.merge(merge_id)
            assert row is not None
            if outcome == "merged" and mark_milestone:
                if not row.commit_sha:
                    raise ValueError("a merged outcome needs commit_sha")
                self.mark_merged(row.milestone_id, row.commit_sha, at=t)
        return row

    def merge(self, merge_id: int) -> MergeRow | None:
        row = self._one("SELECT * FROM merges WHERE id = ?", (merge_id,))
        return _merge(row) if row else None

    def merges(self, milestone_id: str | None = None) -> list[MergeRow]:
        """Journal rows, oldest first, optionally for one milestone."""
        if milestone_id is None:
            rows = self._conn.execute("SELECT * FROM merges ORDER BY id")
        else:
            rows = self._conn.execute(
                "SELECT * FROM merges WHERE milestone_id = ? ORDER BY id", (milestone_id,)
            )
        return [_merge(r) for r in rows]

    def unfinished_merges(self) -> list[MergeRow]:
        """Merges with no outcome: interrupted mid-way, for ``doctor --fix`` to clean up."""
        return [_merge(r) for r in self._conn.execute(
            "SELECT * FROM merges WHERE outcome IS NULL ORDER BY id")]  # fmt: skip
