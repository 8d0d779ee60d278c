"""The merge journal: one row per merge attempt, opened before git is touched.

A row whose ``outcome`` is still None is a merge that was interrupted; ``doctor --fix``
finds them with :meth:`MergeJournalMixin.unfinished_merges`.
"""

from __future__ import annotations

import json
from typing import Any

from .records import RecordsMixin
from .rows import MERGE_OUTCOMES, MergeRow, merge_row, now
from .schema import check_fields

_MERGE_FIELDS = {"step", "worktree", "commit_sha", "base_sha", "branch_sha", "files", "error"}


class MergeJournalMixin(RecordsMixin):
    """The merge journal (part of :class:`~gsd_parallel_plugin.store.Store`)."""

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
        check_fields(fields, _MERGE_FIELDS, "merge")
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
        return merge_row(row) if row else None

    def merges(self, milestone_id: str | None = None) -> list[MergeRow]:
        """Journal rows, oldest first, optionally for one milestone."""
        if milestone_id is None:
            rows = self._conn.execute("SELECT * FROM merges ORDER BY id")
        else:
            rows = self._conn.execute(
                "SELECT * FROM merges WHERE milestone_id = ? ORDER BY id", (milestone_id,)
            )
        return [merge_row(r) for r in rows]

    def unfinished_merges(self) -> list[MergeRow]:
        """Merges with no outcome: interrupted mid-way, for ``doctor --fix`` to clean up."""
        return [merge_row(r) for r in self._conn.execute(
            "SELECT * FROM merges WHERE outcome IS NULL ORDER BY id")]  # fmt: skip
