"""What to merge and what merging would do: candidates, ``merge --dry-run``, per-slice targets.

Nothing here moves a ref or touches a working tree. The dry run stacks
``git merge-tree --write-tree`` over the candidates in merge order: each clean result becomes
an unreferenced commit object whose parent is the previous tip, so the next milestone is
merged onto everything before it, exactly as the real merges would be. Those objects go to a
throwaway object directory (:class:`..workspace.git.ScratchObjects`): the repository gains none.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..milestone_ids import MILESTONE_ID_RE
from ..workspace import layout
from ..workspace.git import Git, GitCommandError, ScratchObjects, merge_tree, split_z
from ..workspace.layout import BRANCH_PREFIX, branch_name, branch_ref, checkout_display
from .attempt import MergeEnv, SliceMerge
from .steps import (
    auto_resolvable,
    slice_point,
    unfinished_checkout_merge,
)

DRY_RUN_IDENT = {
    "GIT_AUTHOR_NAME": "gsd-parallel",
    "GIT_AUTHOR_EMAIL": "gsd-parallel@localhost",
    "GIT_COMMITTER_NAME": "gsd-parallel",
    "GIT_COMMITTER_EMAIL": "gsd-parallel@localhost",
}


# --------------------------------------------------------------------------- candidates


def _milestone_files(g: Git, ref: str, mid: str, suffix: str) -> list[str]:
    """Paths of ``.gsd/milestones/<MID…>/<MID>-<SUFFIX>.md`` in ``ref``'s tree."""
    dirs = [
        d
        for d in split_z(g.run("ls-tree", "--name-only", "-z", ref, "--", ".gsd/milestones/"))
        if (name := d.rsplit("/", 1)[-1]) == mid or name.startswith(mid + "-")
    ]
    want = f"{mid}-{suffix}.md".lower()
    found = []
    for d in dirs:
        for path in split_z(g.run("ls-tree", "--name-only", "-z", ref, "--", d + "/")):
            if path.rsplit("/", 1)[-1].lower() == want:
                found.append(path)
    return found


def complete_on_branch(g: Git, mid: str) -> bool:
    """True when ``gsd-parallel/<MID>`` commits a terminal ``<MID>-SUMMARY.md``."""
    from ..project import is_terminal_summary

    ref = branch_ref(mid)
    try:
        paths = _milestone_files(g, ref, mid, "SUMMARY")
        return any(is_terminal_summary(g.run("show", f"{ref}:{p}")) for p in paths)
    except GitCommandError:
        return False


def merge_candidates(env: MergeEnv) -> tuple[list[str], list[str]]:
    """Complete, unmerged milestones that have a branch (the store's word, or a terminal
    SUMMARY on the branch or in the worktree); and notes about ones that cannot merge."""
    from ..project.summary import milestone_complete_in
    from ..workspace.worktrees import worktree_path

    g = Git(env.root)
    merged = env.store.merged_milestones()
    completed = env.store.completed_milestones()
    branches = {b.removeprefix(BRANCH_PREFIX) for b in g.list_branches(BRANCH_PREFIX)}
    candidates = []
    for mid in sorted(branches):
        if not MILESTONE_ID_RE.fullmatch(mid) or mid in merged:
            continue
        wt_gsd = worktree_path(env.root, mid) / ".gsd"
        if (
            mid in completed
            or complete_on_branch(g, mid)
            or (wt_gsd.is_dir() and milestone_complete_in(wt_gsd, mid))
        ):
            candidates.append(mid)
    notes = [
        f"{mid} is complete but its branch {branch_name(mid)} no longer exists: nothing to merge"
        for mid in sorted(completed)
        if mid not in merged and mid not in branches
    ]
    return candidates, notes


# --------------------------------------------------------------------------- dry run


@dataclass(frozen=True)
class DryRunResult:
    id: str
    outcome: str
    """``clean``, ``conflict``, ``refused`` (``merge`` would not land it: ``error`` says
    why) or ``skipped``."""
    files: tuple[str, ...] = ()
    """Conflicting files that would stop the merge."""
    resolved: tuple[str, ...] = field(default=())
    """Conflicts that would resolve themselves (``.gsd/**``, junk)."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "files": list(self.files),
            "resolved": list(self.resolved),
            "error": self.error,
        }


def dry_run(env: MergeEnv, order: list[str]) -> list[DryRunResult]:
    """Predict each merge in ``order``, each on top of the ones before it; touches no ref."""
    with ScratchObjects(Git(env.root), prefix="gsd-parallel-dry-objects-") as objects:
        return _predict(env, order, Git(env.root, env={**DRY_RUN_IDENT, **objects.env}))


def _predict(env: MergeEnv, order: list[str], g: Git) -> list[DryRunResult]:
    """:func:`dry_run` with ``g`` writing its objects where they are thrown away."""
    tips: dict[str, str] = {}
    results: list[DryRunResult] = []
    for mid in order:
        integ = env.integration_branch(mid)
        if integ not in tips:
            sha = g.branch_sha(integ)
            if sha is None:
                results.append(DryRunResult(mid, "skipped", error=f"{integ} does not exist"))
                continue
            tips[integ] = sha
        tip = g.branch_sha(branch_name(mid))
        if tip is None:
            results.append(DryRunResult(mid, "skipped", error=f"no branch {branch_name(mid)}"))
            continue
        unfinished = unfinished_checkout_merge(env.root, mid)
        if unfinished is not None:
            results.append(DryRunResult(mid, "refused", error=unfinished))
            continue
        if g.is_ancestor(tip, tips[integ]):
            dirty = _dirty_checkout(env, mid)
            error = (
                f"{branch_name(mid)} has no commits beyond {integ}, but its checkout has "
                f"uncommitted changes in {len(dirty)} file(s) ({', '.join(dirty[:5])}): "
                f"commit them in {checkout_display(mid)} first"
                if dirty
                else "nothing to merge"
            )
            results.append(DryRunResult(mid, "refused" if dirty else "skipped", error=error))
            continue
        ours = tips[integ]
        point = slice_point(g, mid, tip)
        if point is not None:  # merge base = what already landed, as the real merge does
            ours = g.run("commit-tree", f"{ours}^{{tree}}", "-p", point, "-m", "gsd dry run")
        tree, conflicts = merge_tree(g, ours, tip)
        code = tuple(p for p in conflicts if not auto_resolvable(p))
        auto = tuple(p for p in conflicts if auto_resolvable(p))
        if code:
            results.append(DryRunResult(mid, "conflict", code, auto))
            continue  # the real merge stops here; the rest is predicted without it
        if auto:
            tree = _take_theirs(g, tree, tip, auto)
        landed = g.run("commit-tree", tree, "-p", tips[integ], "-m", f"gsd-parallel dry run: {mid}")
        blocked, refusal = _landing_refusal(env, g, integ, tips[integ], landed)
        if refusal is not None:
            results.append(DryRunResult(mid, "refused", blocked, auto, error=refusal))
            continue  # the real merge does not land: the rest is predicted without it
        tips[integ] = landed
        results.append(DryRunResult(mid, "clean", (), auto))
    return results


def _dirty_checkout(env: MergeEnv, mid: str) -> list[str]:
    """The checkout's uncommitted files, as ``merge`` counts them (``.gsd`` copies aside)."""
    from ..errors import GsdParallelError
    from ..workspace.worktrees import worktree_path

    wt = worktree_path(env.root, mid)
    if not wt.is_dir():
        return []
    try:
        return [
            p
            for xy, p in Git(wt).status_porcelain(untracked="all")
            if not (xy == "??" and (p == ".gsd" or p.startswith(".gsd/")))
        ]
    except GsdParallelError:
        return []


def _landing_refusal(
    env: MergeEnv, g: Git, integ: str, base: str, landed: str
) -> tuple[tuple[str, ...], str | None]:
    """What would stop the merge from moving ``integ`` to ``landed`` (``merge`` checks the
    same things in the same order): the blocking files and the reason, or no reason."""
    from ..workspace.worktrees import planning_mode
    from .steps import paths_in_the_way, unmerged_paths

    where = g.branch_checked_out_at(integ)
    if where is None:
        return (), None  # the ref moves by update-ref: nothing in the way
    wg = Git(where)
    theirs = unmerged_paths(wg)
    if theirs or wg.ok("rev-parse", "-q", "--verify", "MERGE_HEAD"):
        shown = ", ".join(theirs[:10]) or "no conflicts left"
        return tuple(theirs), (
            f"{where} is in the middle of a merge of its own (unmerged: {shown}): finish it, "
            "or run `git merge --abort` there"
        )
    changed = split_z(g.run("diff", "--name-only", "--no-renames", "-z", base, landed))
    if planning_mode(env.root) in {"untracked", "symlink"}:
        changed = [p for p in changed if p != ".gsd" and not p.startswith(".gsd/")]
    blocked = paths_in_the_way(wg, changed)
    if blocked:
        shown = ", ".join(blocked[:10]) + (f" (+{len(blocked) - 10} more)" if len(blocked) > 10 else "")
        return tuple(blocked), (
            f"uncommitted changes in {where} would be overwritten by the merge: {shown}; "
            "commit or move them first"
        )
    return (), None


def _take_theirs(g: Git, tree: str, theirs: str, paths: tuple[str, ...]) -> str:
    """``tree`` with ``paths`` as in ``theirs`` (absent there: removed), via a scratch index."""
    scratch = Path(tempfile.mkdtemp(prefix="gsd-parallel-dry-"))
    try:
        gi = g.with_env({"GIT_INDEX_FILE": str(scratch / "index")})
        gi.run("read-tree", tree)
        for path in paths:
            entry = gi.run("ls-tree", "-z", theirs, "--", path).rstrip("\0")
            if entry:
                meta = entry.split("\t", 1)[0].split()
                gi.run("update-index", "--add", "--cacheinfo", meta[0], meta[2], path)
            else:
                gi.run("update-index", "--force-remove", "--", path)
        return gi.run("write-tree")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- per-slice


def done_slices(g: Git, ref: str, path: str) -> frozenset[str]:
    """Slices marked done in the roadmap at ``ref:path`` (none when it is not there)."""
    from ..project import parse_roadmap

    try:
        text = g.run("show", f"{ref}:{path}")
    except GitCommandError:
        return frozenset()
    return frozenset(s.id for s in parse_roadmap(text) if s.done)


def next_slice_merge(g: Git, mid: str, integration_branch: str) -> SliceMerge | None:
    """The newly finished slices on ``gsd-parallel/<MID>`` and the commit that finished them.

    None when nothing new is done, or when the roadmap is not in git (a project that keeps
    ``.gsd`` untracked): then the milestone merges once, when it completes.
    """
    tip = g.branch_sha(branch_name(mid))
    if tip is None:
        return None
    roadmaps = _milestone_files(g, tip, mid, "ROADMAP")
    if not roadmaps:
        return None
    roadmap = roadmaps[0]
    point = slice_point(g, mid, tip)
    if point is None:
        try:
            point = g.run("merge-base", f"refs/heads/{integration_branch}", tip)
        except GitCommandError:
            return None
    done_now = done_slices(g, tip, roadmap)
    new = done_now - done_slices(g, point, roadmap)
    if not new:
        return None
    target = tip
    history = g.run("rev-list", "--reverse", f"{point}..{tip}", "--", roadmap).split()
    for commit in history:  # the first commit at which all of them were done
        if done_slices(g, commit, roadmap) >= done_now:
            target = commit
            break
    return SliceMerge(target, tuple(sorted(new)))


def slice_ref(mid: str) -> str:
    return f"{layout.MERGED_REF_PREFIX}{mid}"
