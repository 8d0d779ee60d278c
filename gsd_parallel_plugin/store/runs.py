"""Runs and their workers: budget ceilings, states, log offsets and exact cost."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..models import WorkerState
from ..money import NANOS_PER_USD, usd_to_nanos
from .records import RecordsMixin
from .rows import (
    RUN_STATES,
    WORKER_STATES,
    RunRow,
    WorkerRow,
    now,
    worker_row,
)
from .schema import check_fields

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
_TOKEN_COLUMNS = {
    "input": "tokens_input", "output": "tokens_output",
    "cache_read": "tokens_cache_read", "cacheRead": "tokens_cache_read",
    "cache_write": "tokens_cache_write", "cacheWrite": "tokens_cache_write",
}  # fmt: skip
_UNSET: Any = object()


class RunsMixin(RecordsMixin):
    """Runs and workers (part of :class:`~gsd_parallel_plugin.store.Store`)."""

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
        check_fields(fields, _RUN_FIELDS, "run")
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
            c.execute("UPDATE runs SET state = ?, ended_at = ? WHERE id = ?", (state, ended, run_id))

    def finish_run(self, run_id: int) -> None:
        """Mark a run finished unless it already ended (keeps ``budget_exceeded``)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET state = 'finished', ended_at = ? WHERE id = ? AND state = 'active'",
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
        return worker_row(row) if row else None

    def workers(self, run_id: int | None = None) -> list[WorkerRow]:
        """Workers of ``run_id`` (None = the newest run), ordered by milestone ID."""
        if run_id is None:
            latest = self.latest_run()
            if latest is None:
                return []
            run_id = latest.id
        sql = f"{_WORKER_SELECT} WHERE w.run_id = ? ORDER BY w.milestone_id"
        return [worker_row(r) for r in self._conn.execute(sql, (run_id,))]

    def update_worker(self, milestone_id: str, run_id: int, **fields: Any) -> WorkerRow:
        """Set plain worker fields (not state: :meth:`set_state`; not cost: :meth:`record_output`).

        ``milestone_budget`` is in USD (None removes the envelope). KeyError if no row.
        """
        check_fields(fields, _WORKER_FIELDS, "worker")
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
