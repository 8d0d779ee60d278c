"""``revert MID``: take a merged milestone back off its integration branch, so it can run again.

A milestone lands as squash commits carrying a ``GSD-Milestone: <MID>`` trailer (one, or one
per slice with per-slice merges; see :mod:`.attempt`). A revert undoes all of them, newest
first, the way a merge lands: built in a temporary worktree detached at the integration tip
(``.gsd/parallel/merging/revert-<MID>-<n>``), one ``revert: <title>`` commit per milestone with
the trailers ``GSD-Reverted-Milestone: <MID>`` and one ``GSD-Reverts: <sha>`` per squash commit
(a reverted squash commit no longer counts as merged), ``parallel.merge_check`` run there, then
the integration branch moves by fast-forward or ``update-ref`` with the old value checked
(:func:`.steps.land_on_branch`). It is journaled in the merge journal like a merge (steps
``revert-…``, outcome ``reverted``), under the same merge lock, so ``doctor --fix`` finishes a
revert killed after it landed and undoes (cleans up) one killed before.

Afterwards the milestone is not complete any more: the revert takes its SUMMARY and roadmap
ticks off the integration branch (when ``.gsd`` is tracked; with an untracked ``.gsd`` the
SUMMARY is renamed aside), the store forgets its completion and merge, and its worker row, if
it was ``complete``, becomes ``stopped`` (reason :data:`REVERTED_REASON`).

Merged milestones that depend on it (``depends_on``, transitively) make ``revert`` refuse;
``--with-dependents`` reverts them too, newest first, in the same landing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import hints
from ..errors import GsdParallelError
from ..milestone_ids import validate_milestone_id
from ..workspace import layout
from ..workspace.git import Git, GitCommandError
from ..workspace.layout import branch_name
from .steps import (
    FALLBACK_IDENT,
    NO_HOOKS,
    MergeLock,
    auto_resolvable,
    land_on_branch,
    remove_temp_worktree,
    run_merge_check,
    short,
    split_z,
    take_milestone_side,
    take_side,
    unmerged_paths,
)

if TYPE_CHECKING:
    from ..store import MergeRow, Store
    from .attempt import MergeEnv

STEP_PREFIX = "revert-"
"""Journal rows of a revert have steps ``revert-started`` … ``revert-landing``."""
MILESTONE_TRAILER = "GSD-Milestone"
REVERTED_TRAILER = "GSD-Reverted-Milestone"
REVERTS_TRAILER = "GSD-Reverts"
REVERTED_REASON = "reverted"
"""The state reason of a worker row whose milestone was reverted."""


def is_revert_row(row: MergeRow) -> bool:
    return row.step.startswith(STEP_PREFIX)


# --------------------------------------------------------------------------- what landed


def landed_commits(g: Git, integ: str) -> dict[str, list[str]]:
    """Milestone ID -> its squash commits on ``integ`` not reverted since, newest first."""
    fmt = (
        f"%H%x00%(trailers:key={MILESTONE_TRAILER},valueonly,separator=%x02)"
        f"%x00%(trailers:key={REVERTS_TRAILER},valueonly,separator=%x02)%x01"
    )
    out = g.run(
        "log", f"--format={fmt}", "-E", f"--grep=^({MILESTONE_TRAILER}|{REVERTS_TRAILER}): ",
        f"refs/heads/{integ}", "--",
    )  # fmt: skip
    reverted: set[str] = set()
    found: dict[str, list[str]] = {}
    for record in out.split("\x01"):
        fields = record.strip("\n").split("\x00")
        if len(fields) != 3 or not fields[0]:
            continue
        sha, mids, reverts = fields
        reverted.update(v.strip() for v in reverts.split("\x02") if v.strip())
        if sha in reverted:  # log is newest first: its revert was seen already
            continue
        for mid in (m.strip() for m in mids.split("\x02")):
            if mid:
                found.setdefault(mid, []).append(sha)
    return found


def reverted_in(g: Git, base: str, commit: str) -> list[str]:
    """The milestones the revert commits in ``base..commit`` name, oldest first."""
    out = g.run(
        "log", "--reverse",
        f"--format=%(trailers:key={REVERTED_TRAILER},valueonly,separator=%x00)%x01",
        f"{base}..{commit}",
    )  # fmt: skip
    mids = [m.strip() for rec in out.split("\x01") for m in rec.split("\x00")]
    return list(dict.fromkeys(m for m in mids if m))


# --------------------------------------------------------------------------- the plan


class NotMerged(GsdParallelError):
    """The milestone has no (unreverted) squash commit on its integration branch."""


@dataclass
class RevertPlan:
    mid: str
    integ: str
    order: list[tuple[str, list[str]]]
    """(milestone, its squash commits newest first), newest milestone first."""
    dependents: list[str] = field(default_factory=list)
    """Merged milestones that depend on ``mid`` (directly or through others)."""
    with_dependents: bool = False
    unmerged_dependents: list[str] = field(default_factory=list)
    """Dependents not merged that have a branch: it started from the work being reverted."""

    @property
    def refused(self) -> bool:
        return bool(self.dependents) and not self.with_dependents

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.mid,
            "integration_branch": self.integ,
            "revert": [{"id": m, "commits": shas} for m, shas in self.order],
            "dependents": self.dependents,
            "refused": self.refused,
            "unmerged_dependents": self.unmerged_dependents,
        }


def plan_revert(env: MergeEnv, mid: str, with_dependents: bool) -> RevertPlan:
    """What ``revert MID`` would take back, or :class:`NotMerged`."""
    validate_milestone_id(mid)
    g = Git(env.root)
    integ = env.integration_branch(mid)
    if g.branch_sha(integ) is None:
        raise NotMerged(f"{mid} is not merged: its integration branch {integ} does not exist")
    landed = landed_commits(g, integ)
    if mid not in landed:
        known = env.project.get(mid) is not None or mid in env.store.milestones()
        why = "is not merged" if known else "is not a milestone of this project"
        raise NotMerged(f"{mid} {why}: no commit on {integ} has the trailer `GSD-Milestone: {mid}`")
    dependents: list[str] = []
    wanted = {mid}
    changed = True
    while changed:  # transitive: what depends on anything being reverted
        changed = False
        for m in env.project.milestones:
            if m.id in wanted or m.id not in landed or env.integration_branch(m.id) != integ:
                continue
            if wanted & set(m.depends_on):
                wanted.add(m.id)
                dependents.append(m.id)
                changed = True
    tip = f"refs/heads/{integ}"
    reverting = wanted if with_dependents else {mid}
    newest = sorted(reverting, key=lambda m: _age(g, landed[m][0], tip))
    unmerged = sorted(
        m.id for m in env.project.milestones
        if m.id not in landed and reverting & set(m.depends_on)
        and g.branch_sha(branch_name(m.id)) is not None
    )  # fmt: skip
    return RevertPlan(mid, integ, [(m, landed[m]) for m in newest], sorted(dependents),
                      with_dependents, unmerged)  # fmt: skip


def _age(g: Git, sha: str, tip: str) -> int:
    """Sort key, newest first: how many commits came after ``sha`` on the branch."""
    return int(g.run("rev-list", "--count", f"{sha}..{tip}").strip() or 0)


# --------------------------------------------------------------------------- doing it


@dataclass(frozen=True)
class RevertResult:
    outcome: str
    """``reverted``, ``conflict`` or ``failed`` (nothing moved then)."""
    commit: str | None = None
    files: tuple[str, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()


def revert(env: MergeEnv, plan: RevertPlan) -> RevertResult:
    """Revert ``plan`` on its integration branch under the merge lock; never raises for a
    revert that cannot be done: the result says why."""
    lock = MergeLock(env.parallel_dir)
    if not lock.acquire(env.lock_timeout):
        who = lock.holder() or {}
        pid = f" (pid {who['pid']})" if who.get("pid") else ""
        return RevertResult("failed", error=f"a merge is running{pid}; try again when it is done")
    try:
        return _Revert(env, plan).run()
    finally:
        lock.release()


class _Revert:
    def __init__(self, env: MergeEnv, plan: RevertPlan) -> None:
        self.env, self.plan = env, plan
        self.g = Git(env.root)
        self.store = env.store
        self.tmp: Path | None = None
        self.row = 0
        self.base = ""

    def run(self) -> RevertResult:
        base = self.g.branch_sha(self.plan.integ)
        assert base is not None
        self.base = base
        newest = self.plan.order[0][1][0]
        self.row = self.store.begin_merge(
            self.plan.mid, branch_name(self.plan.mid), self.plan.integ, base, newest,
            step=f"{STEP_PREFIX}started",
        )  # fmt: skip
        try:
            return self._attempt()
        except GsdParallelError as exc:
            return self._fail("failed", error=str(exc))
        except BaseException as exc:
            with suppress(Exception):
                self._fail("failed", error=f"interrupted: {type(exc).__name__}: {exc}")
            raise
        finally:
            if self.tmp is not None:
                remove_temp_worktree(self.g, self.tmp, self.env.parallel_dir)

    def _attempt(self) -> RevertResult:
        tg = Git(self._make_tmp())
        for mid, shas in self.plan.order:
            files = self._revert_one(tg, mid, shas)
            if files:
                return self._fail(
                    "conflict",
                    files=files,
                    error=(
                        f"reverting {mid} conflicts in {len(files)} file(s) that later commits on "
                        f"{self.plan.integ} changed too: {', '.join(files[:10])}; nothing was "
                        f"changed. Revert it by hand (`git revert {' '.join(short(s) for s in shas)}`"
                        f" on {self.plan.integ}, resolve, and keep a `{REVERTS_TRAILER}: <sha>` "
                        "line per reverted commit in the message so gsd-parallel sees it reverted)"
                    ),
                )
        commit = tg.rev_parse("HEAD")
        assert commit is not None
        self.store.update_merge(self.row, step=f"{STEP_PREFIX}committed", commit_sha=commit)
        check = self.env.preferences.merge_check
        if check:
            assert self.tmp is not None
            failure = run_merge_check(check, self.tmp, self.plan.mid)
            if failure is not None:
                return self._fail("failed", error=failure)
        changed = split_z(self.g.run("diff", "--name-only", "--no-renames", "-z", self.base, commit))
        self.store.update_merge(self.row, step=f"{STEP_PREFIX}landing")
        blocked, error = land_on_branch(
            self.g, self.plan.integ, self.base, commit, changed,
            reflog=f"gsd-parallel: revert {self.plan.mid}", retry=f"revert {self.plan.mid}",
            what="revert",
        )  # fmt: skip
        if error is not None:
            return self._fail("failed", files=blocked, error=error)
        notes = finish_landed(self.env.root, self.store, self.row, self.base, commit)
        return RevertResult("reverted", commit, notes=tuple(notes))

    def _make_tmp(self) -> Path:
        from ..workspace.worktrees import ensure_excludes

        ensure_excludes(self.env.root)
        path = self.env.parallel_dir / layout.MERGING_DIRNAME / f"revert-{self.plan.mid}-{self.row}"
        if os.path.lexists(path):
            remove_temp_worktree(self.g, path, self.env.parallel_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store.update_merge(self.row, step=f"{STEP_PREFIX}worktree", worktree=path)
        self.tmp = path
        self.g.run(*NO_HOOKS, "worktree", "add", "--quiet", "--detach", str(path), self.base)
        return path

    def _revert_one(self, tg: Git, mid: str, shas: Sequence[str]) -> list[str]:
        """Revert one milestone's squash commits (newest first) as one commit; the code
        conflicts left unresolved (then nothing is committed)."""
        for sha in shas:
            try:
                tg.run(*NO_HOOKS, "revert", "--no-commit", "--no-edit", sha)
            except GitCommandError:
                if not unmerged_paths(tg):
                    raise
            conflicts = unmerged_paths(tg)
            own = _own_planning(mid)
            # Its own planning files go back to before it ran; other .gsd and junk stay as now.
            take_milestone_side(tg, [p for p in conflicts if p.startswith(own)])
            take_side(tg, [p for p in conflicts if auto_resolvable(p) and not p.startswith(own)], "ours")
            left = unmerged_paths(tg)
            with suppress(GitCommandError):
                tg.run("revert", "--quit")
            if left:
                return left
        ident: tuple[str, ...] = ()
        if not (tg.ok("var", "GIT_AUTHOR_IDENT") and tg.ok("var", "GIT_COMMITTER_IDENT")):
            ident = FALLBACK_IDENT
        tg.run(*ident, *NO_HOOKS, "commit", "--no-verify", "-q", "--allow-empty",
               "--cleanup=whitespace", "-m", self._message(mid, shas))  # fmt: skip
        return []

    def _message(self, mid: str, shas: Sequence[str]) -> str:
        milestone = self.env.project.get(mid)
        title = milestone.title if milestone is not None else mid
        body = (
            f"Takes the work of {mid} back off {self.plan.integ}: reverts "
            f"{', '.join(short(s) for s in shas)}."
        )
        trailers = [f"{REVERTED_TRAILER}: {mid}", *(f"{REVERTS_TRAILER}: {s}" for s in shas)]
        return f"revert: {title}\n\n{body}\n\n" + "\n".join(trailers) + "\n"

    def _fail(self, outcome: str, *, files: Sequence[str] = (), error: str) -> RevertResult:
        self.store.finish_merge(self.row, outcome, mark_milestone=False, files=list(files),
                                error=f"revert: {error}")  # fmt: skip
        _event(self.store, f"revert of {self.plan.mid} failed: {error.splitlines()[0]}", self.plan.mid)
        return RevertResult(outcome, files=tuple(files), error=error)


def _own_planning(mid: str) -> str:
    return f".gsd/milestones/{mid}"


def _event(store: Store, message: str, mid: str, data: Any = None) -> None:
    run = store.active_run()
    store.add_event("merge", message, mid, data=data, run_id=run.id if run else None)


# --------------------------------------------------------------------------- afterwards


def finish_landed(root: Path, store: Store, row_id: int, base: str, commit: str) -> list[str]:
    """After the revert commit(s) landed: the milestones are not complete or merged any more
    (store, worker rows, untracked SUMMARY), the journal row closes. Safe to run twice
    (``doctor --fix`` runs it for a revert killed after landing). Returns notes."""
    from ..workspace.worktrees import planning_mode

    g = Git(root)
    mids = reverted_in(g, base, commit)
    notes: list[str] = []
    with store.transaction():
        for mid in mids:
            store.unmark_milestone(mid)
            worker = store.worker(mid)
            if worker is not None and worker.state == "complete":
                store.set_state(mid, worker.run_id, "stopped", REVERTED_REASON)
        store.finish_merge(row_id, "reverted", mark_milestone=False, commit_sha=commit)
        row = store.merge(row_id)
        integ = row.integration_branch if row else "?"
        for mid in mids:
            _event(store, f"{mid} reverted on {integ} by {short(commit)}", mid,
                   {"commit": commit, "reverted": mids})  # fmt: skip
    if planning_mode(root) in {"untracked", "symlink"}:
        notes += _set_aside_summaries(root, mids)
    for mid in mids:
        if g.branch_sha(branch_name(mid)) is not None:
            notes.append(
                f"{mid}: its branch {branch_name(mid)} is still there (kept after its merge); "
                f"delete it (`git branch -D {branch_name(mid)}`) before the rerun, or the rerun "
                "continues from it"
            )
    return notes


def _set_aside_summaries(root: Path, mids: Sequence[str]) -> list[str]:
    """With ``.gsd`` out of git the revert cannot take the SUMMARY back: rename it aside."""
    from ..project import read_project

    notes = []
    project = read_project(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for mid in mids:
        milestone = project.get(mid)
        if milestone is None:
            continue
        for summary in milestone.path.glob("*"):
            if summary.name.lower() == f"{mid}-summary.md".lower():
                target = summary.with_name(f"{mid}-SUMMARY.reverted-{stamp}.md")
                summary.rename(target)
                notes.append(f"{mid}: moved its SUMMARY aside to {target.name}")
    return notes


# --------------------------------------------------------------------------- doctor


def recover_row(g: Git, root: Path, store: Store, row: MergeRow, fix: bool) -> str:
    """``doctor``: a revert cut short. Landed: finish it. Not landed: close it (nothing moved)."""
    mid, integ = row.milestone_id, row.integration_branch
    line = f"{mid}: revert #{row.id} was interrupted at step '{row.step}'"
    tip = g.branch_sha(integ)
    landed = bool(row.commit_sha and row.base_sha and tip and g.is_ancestor(row.commit_sha, tip))
    if landed:
        assert row.commit_sha is not None and row.base_sha is not None
        line += f"; it had landed on {integ} as {short(row.commit_sha)}"
        if fix:
            notes = finish_landed(root, store, row.id, row.base_sha, row.commit_sha)
            mids = reverted_in(g, row.base_sha, row.commit_sha)
            line += f"; finished it: {', '.join(mids)} not complete any more"
            line += "".join(f"; {n}" for n in notes)
    else:
        line += f"; it did not land ({integ} is unchanged)"
        if fix:
            why = f"revert interrupted at step '{row.step}'; undone by doctor"
            store.finish_merge(row.id, "aborted", mark_milestone=False, error=why)
            line += f"; undone, retry with {hints.cmd(f'revert {mid}')}"
    return line
