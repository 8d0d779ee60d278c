"""Rows the store returns, and the money and time conventions they follow.

Money is integer nano-USD in the database and on every row (``*_nanos``); rows also expose
USD floats as properties for display. Timestamps are epoch seconds (floats).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..models import WorkerState
from ..money import NANOS_PER_USD, nanos_to_usd

RunState = Literal["active", "finished", "budget_exceeded"]
RUN_STATES: tuple[str, ...] = ("active", "finished", "budget_exceeded")
COMMANDS: tuple[str, ...] = ("pause", "resume", "stop")
WORKER_STATES: frozenset[str] = frozenset(s.value for s in WorkerState)
MERGE_OUTCOMES: tuple[str, ...] = ("merged", "conflict", "failed", "skipped", "aborted", "reverted")
"""``reverted``: a journal row of ``revert`` (:mod:`..merge.revert`) that landed."""


def now() -> float:
    """Current time as the store writes it: epoch seconds (float)."""
    return time.time()


def to_ms(ts: float | None) -> int | None:
    """Epoch seconds -> epoch milliseconds (GSD status files), None stays None."""
    return None if ts is None else round(ts * 1000)


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


def worker_row(row: sqlite3.Row) -> WorkerRow:
    """A ``workers`` row joined with its ``milestones`` facts (see :mod:`.runs`)."""
    return WorkerRow(**{**dict(row), "worktree": Path(row["worktree"])})


def merge_row(row: sqlite3.Row) -> MergeRow:
    return MergeRow(**{**dict(row), "files": tuple(json.loads(row["files"]))})


def event_row(row: sqlite3.Row) -> EventRow:
    return EventRow(**{**dict(row), "data": None if row["data"] is None else json.loads(row["data"])})


def command_row(row: sqlite3.Row) -> CommandRow:
    return CommandRow(**{**dict(row), "args": json.loads(row["args"])})
