"""``doctor --fix`` for merges: finish or clean up an attempt that ``kill -9`` cut short.

A merge is journaled before it touches git (see :mod:`.attempt`), so an unfinished row says
how far it got. It *landed* exactly when its squash commit is on the integration branch;
then it is recorded as merged (and its worktree and branch cleaned up, as a finished merge
would have). Otherwise it is recorded ``aborted`` and the user retries with ``merge <MID>``.
Either way its temporary worktree goes. Nothing runs while a live merge holds the lock.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from .. import hints
from ..store import MergeRow, Store
from ..workspace import layout
from ..workspace.git import Git, GitCommandError
from .revert import is_revert_row
from .revert import recover_row as recover_revert_row
from .steps import (
    MergeLock,
    cleanup_after_landing,
    remove_temp_worktree,
    set_slice_point,
    short,
)


def _landed(g: Git, row: MergeRow) -> bool:
    if not row.commit_sha or g.branch_sha(row.integration_branch) is None:
        return False
    return g.is_ancestor(row.commit_sha, f"refs/heads/{row.integration_branch}")


def _is_slice_merge(g: Git, commit: str) -> bool:
    try:
        message = g.run("log", "-1", "--format=%B", commit)
    except GitCommandError:
        return False
    return any(line.startswith("GSD-Slice:") for line in message.splitlines())


def recover(root: Path, store: Store, fix: bool) -> list[str]:
    """One line per interrupted merge (and per stray temporary worktree): what was found and,
    with ``fix``, what was done."""
    gsd_dir = (root / ".gsd").resolve()
    parallel_dir = layout.parallel_dir(gsd_dir)
    lock = MergeLock(parallel_dir)
    if not lock.acquire(0):
        who = lock.holder() or {}
        return [f"a merge is running now (pid {who.get('pid', '?')}): run doctor again later"]
    try:
        g = Git(root)
        rows = store.unfinished_merges()
        lines = [_recover_row(g, root, store, row, parallel_dir, fix) for row in rows]
        known = {Path(r.worktree).name for r in rows if r.worktree}
        lines += _stray_worktrees(g, parallel_dir, fix, known)
        return lines
    finally:
        lock.release()


def _recover_row(g: Git, root: Path, store: Store, row: MergeRow, parallel_dir: Path, fix: bool) -> str:
    if is_revert_row(row):  # a `revert` journals like a merge (see .revert)
        return recover_revert_row(g, root, store, row, fix) + _temp_worktree(g, row, parallel_dir, fix)
    mid, integ = row.milestone_id, row.integration_branch
    line = f"{mid}: merge #{row.id} was interrupted at step '{row.step}'"
    if _landed(g, row):
        assert row.commit_sha is not None
        line += f"; it had landed on {integ} as {short(row.commit_sha)}"
        if fix:
            slice_merge = _is_slice_merge(g, row.commit_sha)
            if slice_merge and row.branch_sha:
                set_slice_point(g, mid, row.branch_sha)
            store.finish_merge(
                row.id, "merged", mark_milestone=not slice_merge, commit_sha=row.commit_sha,
                error="interrupted after landing; recorded by doctor --fix",
            )  # fmt: skip
            line += "; recorded it as merged"
            if not slice_merge and row.branch_sha:
                notes = cleanup_after_landing(root, mid, row.branch_sha)
                line += "".join(f"; {n}" for n in notes)
    else:
        line += f"; it did not land ({integ} is unchanged)"
        if fix:
            store.finish_merge(
                row.id, "aborted", error=f"interrupted at step '{row.step}'; cleaned by doctor"
            )
            line += f"; retry with {hints.cmd(f'merge {mid}')}"
    return line + _temp_worktree(g, row, parallel_dir, fix)


def _temp_worktree(g: Git, row: MergeRow, parallel_dir: Path, fix: bool) -> str:
    """The row's temporary worktree: removed with ``fix``; what was found, for the line."""
    if not row.worktree:
        return ""
    path = Path(row.worktree)
    present = os.path.lexists(path) or g.find_worktree(path) is not None
    if present and fix:
        remove_temp_worktree(g, path, parallel_dir)
        return f"; removed its temporary worktree {path}"
    if present:
        return f"; its temporary worktree {path} is still there"
    return ""


def finish_landed_cleanups(root: Path, store: Store, keep: set[str]) -> list[str]:
    """Clean up after milestones recorded merged whose clean-up a ``kill -9`` cut short.

    A merge is recorded ``merged`` before its milestone's worktree and branch go: killed in
    between, they stay behind. For each merged milestone not in ``keep`` (it has a worker
    again) whose branch still points at what landed, or whose worktree is still there, this
    does what the merge would have done next (a dirty worktree is kept, as then). One line per
    milestone cleaned or kept.
    """
    from ..workspace.layout import branch_name
    from ..workspace.worktrees import worktree_path

    g = Git(root)
    lines: list[str] = []
    merged = store.merged_milestones()
    for mid in sorted(merged):
        if mid in keep:
            continue
        rows = [r for r in store.merges(mid) if r.outcome in {"merged", "skipped"} and r.branch_sha]
        landed_tip = rows[-1].branch_sha if rows else None
        tip = g.branch_sha(branch_name(mid))
        wt = worktree_path(root, mid)
        if landed_tip is None or not (tip == landed_tip or (tip is None and wt.is_dir())):
            continue
        notes = cleanup_after_landing(root, mid, landed_tip)
        lines.append(f"{mid}: finished the clean-up of its merge" + "".join(f"; {n}" for n in notes))
    return lines


def _stray_worktrees(g: Git, parallel_dir: Path, fix: bool, known: set[str]) -> list[str]:
    """Temporary merge worktrees no unfinished journal row accounts for."""
    merging = parallel_dir / layout.MERGING_DIRNAME
    lines = []
    try:
        leftovers = sorted(merging.iterdir()) if merging.is_dir() else []
    except OSError:
        leftovers = []
    for path in leftovers:
        if path.name in known:
            continue
        if fix:
            remove_temp_worktree(g, path, parallel_dir)
            lines.append(f"removed stray temporary merge worktree {path}")
        else:
            lines.append(f"stray temporary merge worktree {path}")
    if fix:
        with suppress(GitCommandError):
            g.run("worktree", "prune")
    return lines
