"""The store's shared records: queued commands, the event log, milestone facts.

Kept below runs/workers and the merge journal because both write them: a worker's state
change logs an event and may mark its milestone complete; a merge marks it merged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .rows import COMMANDS, CommandRow, EventRow, MilestoneRow, command_row, event_row, now
from .schema import StoreBase


class RecordsMixin(StoreBase):
    """Commands, events and milestone facts (part of :class:`~gsd_parallel_plugin.store.Store`)."""

    # ------------------------------------------------------------------ commands

    def enqueue(
        self, command: str, milestone_id: str | None = None, args: Mapping[str, Any] | None = None
    ) -> int:
        """Queue ``pause``/``resume``/``stop`` for one milestone (None = all); returns its id."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {COMMANDS}")
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO commands (command, milestone_id, args, created_at) VALUES (?, ?, ?, ?)",
                (command, milestone_id, json.dumps(dict(args or {})), now()),
            )
            return int(cur.lastrowid or 0)

    def _commands(self, where: str, params: tuple[Any, ...] = ()) -> list[CommandRow]:
        rows = self._conn.execute(
            "SELECT id, command, milestone_id, args, created_at, claimed_at FROM commands"
            f" {where} ORDER BY id",
            params,
        )
        return [command_row(r) for r in rows]

    def claim_commands(self) -> list[CommandRow]:
        """Take every unclaimed command, oldest first; each is returned to one claimer only."""
        with self.transaction() as c:
            pending = self._commands("WHERE claimed_at IS NULL")
            if pending:
                c.execute(
                    "UPDATE commands SET claimed_at = ?, claimed_by = ? WHERE claimed_at IS NULL AND id <= ?",
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
        events = [event_row(r) for r in rows]
        return events[::-1] if after_id is None else events

    def events_of_kind(self, kind: str, run_id: int | None = None) -> list[EventRow]:
        """Every event of one kind (optionally of one run), oldest first."""
        where, params = "WHERE kind = ?", list[Any]([kind])
        if run_id is not None:
            where, params = where + " AND run_id = ?", [*params, run_id]
        rows = self._conn.execute(f"SELECT * FROM events {where} ORDER BY id", params)
        return [event_row(r) for r in rows]

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

    def unmark_milestone(self, milestone_id: str) -> None:
        """Forget that the milestone completed and merged (``revert``: it is to run again)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE milestones SET completed_at = NULL, merged_at = NULL, merge_commit = NULL"
                " WHERE id = ?",
                (milestone_id,),
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
