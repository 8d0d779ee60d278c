"""``merge --preview``: what merging everything in flight would give, before anything merges.

``merge --dry-run`` asks git whether each completed branch would merge; the preview goes
further: it stacks every milestone branch in flight (complete *and* still running, their
committed work) in merge order, exactly as :mod:`.plan` stacks the dry run (``git merge-tree
--write-tree``, each clean result an unreferenced commit on the previous one), and runs
``parallel.merge_check`` on the combined tree after each milestone is added. Two branches that
merge cleanly but break the build together show up here, while their workers can still fix it.

Nothing of the user's moves: no branch, no HEAD, no index, no working-tree file. The check
runs in a temporary detached worktree outside the repository (a fresh temporary directory),
removed before the preview returns. A milestone that conflicts or fails the check is left out
of the stack, as the real merge would stop there; the ones after it are previewed without it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..milestone_ids import is_valid_milestone_id
from ..workspace.git import Git, GitCommandError, merge_tree
from ..workspace.layout import BRANCH_PREFIX, branch_name
from .attempt import MergeEnv
from .plan import DRY_RUN_IDENT, _take_theirs, merge_candidates
from .steps import NO_HOOKS, auto_resolvable, run_merge_check, slice_point

OUTCOMES = ("clean", "conflict", "check_failed", "skipped")


@dataclass(frozen=True)
class PreviewResult:
    """One milestone in the preview, with everything before it in the stack."""

    id: str
    state: str
    """``complete`` (a merge candidate now) or ``running`` (its committed work so far)."""
    outcome: str
    """``clean``, ``conflict`` (``files``), ``check_failed`` (``output``) or ``skipped``."""
    files: tuple[str, ...] = ()
    output: str | None = None
    """The merge_check failure: its command, exit status and the last lines of its output."""
    error: str | None = None
    checked: bool = False
    """True when merge_check ran on the tree with this milestone in it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "outcome": self.outcome,
            "files": list(self.files),
            "output": self.output,
            "error": self.error,
            "checked": self.checked,
        }


def in_flight(env: MergeEnv) -> tuple[list[str], list[str]]:
    """(complete, running): unmerged milestone branches, split by whether they can merge now."""
    complete, _notes = merge_candidates(env)
    merged = env.store.merged_milestones()
    g = Git(env.root)
    running = sorted(
        mid
        for b in g.list_branches(BRANCH_PREFIX)
        if is_valid_milestone_id(mid := b.removeprefix(BRANCH_PREFIX))
        and mid not in merged
        and mid not in complete
    )
    return complete, running


class _Checkout:
    """A detached worktree in a temporary directory, made on first use, for merge_check."""

    def __init__(self, g: Git) -> None:
        self.g = g
        self.dir: Path | None = None

    def at(self, commit: str) -> Path:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="gsd-parallel-preview-"))
            path = self.dir / "tree"
            self.g.run(*NO_HOOKS, "worktree", "add", "--quiet", "--detach", str(path), commit)
            return path
        path = self.dir / "tree"
        wg = Git(path)
        wg.run(*NO_HOOKS, "checkout", "--quiet", "--force", "--detach", commit)
        wg.run("clean", "-ffdq")  # what the last check left behind (ignored caches stay)
        return path

    def remove(self) -> None:
        if self.dir is None:
            return
        with suppress(GitCommandError):
            self.g.run("worktree", "remove", "--force", "--force", str(self.dir / "tree"))
        shutil.rmtree(self.dir, ignore_errors=True)
        with suppress(GitCommandError):
            self.g.run("worktree", "prune")
        self.dir = None


def preview(env: MergeEnv, order: Sequence[str], running: Sequence[str] = ()) -> list[PreviewResult]:
    """Stack ``order`` onto the integration branch one by one, merge_check after each; no ref moves."""
    g = Git(env.root, env=DRY_RUN_IDENT)
    check = env.preferences.merge_check
    tips: dict[str, str] = {}
    results: list[PreviewResult] = []
    checkout = _Checkout(Git(env.root))
    try:
        for mid in order:
            state = "running" if mid in running else "complete"
            integ = env.integration_branch(mid)
            if integ not in tips:
                sha = g.branch_sha(integ)
                if sha is None:
                    results.append(PreviewResult(mid, state, "skipped", error=f"{integ} does not exist"))
                    continue
                tips[integ] = sha
            tip = g.branch_sha(branch_name(mid))
            if tip is None:
                results.append(PreviewResult(mid, state, "skipped", error=f"no branch {branch_name(mid)}"))
                continue
            if g.is_ancestor(tip, tips[integ]):
                results.append(PreviewResult(mid, state, "skipped", error="nothing committed beyond "
                                             f"{integ} yet"))  # fmt: skip
                continue
            ours = tips[integ]
            point = slice_point(g, mid, tip)
            if point is not None:  # what already landed is the merge base, as in the real merge
                ours = g.run("commit-tree", f"{ours}^{{tree}}", "-p", point, "-m", "gsd preview")
            tree, conflicts = merge_tree(g, ours, tip)
            code = tuple(p for p in conflicts if not auto_resolvable(p))
            auto = tuple(p for p in conflicts if auto_resolvable(p))
            if code:
                results.append(PreviewResult(mid, state, "conflict", code))
                continue
            if auto:
                tree = _take_theirs(g, tree, tip, auto)
            landed = g.run("commit-tree", tree, "-p", tips[integ], "-m", f"gsd-parallel preview: {mid}")
            if check:
                failure = run_merge_check(check, checkout.at(landed), mid)
                if failure is not None:
                    results.append(PreviewResult(mid, state, "check_failed", output=failure, checked=True))
                    continue
            tips[integ] = landed
            results.append(PreviewResult(mid, state, "clean", checked=bool(check)))
    finally:
        checkout.remove()
    return results
