"""Merge reconciliation: land a completed milestone on its integration branch.

Every merge is built away from the user's checkout, in a temporary worktree detached at the
integration branch tip (``.gsd/parallel/merging/<MID>-<n>``): squash-merge ``gsd-parallel/<MID>``;
``.gsd/**`` and generated junk take the milestone's side; any other conflict goes to the
``resolve_merge_conflict`` hook, else the attempt stops and reports the files. The squash
commit (``feat: <title>``, trailers ``GSD-Milestone``/``Branch``) then passes the
``before_merge`` gate and ``parallel.merge_check``, run in that worktree. Only then does the
integration branch move: a fast-forward of the checkout that has it (when the paths involved
are clean there; the user's other uncommitted work is never touched, never stashed) or
``update-ref`` with the expected old value. A failed attempt leaves the integration branch,
the user's HEAD, index and working tree exactly as they were.

One merge at a time per repository (an flock on ``.gsd/parallel/merge.lock``); every attempt
is a journal row whose steps and SHAs let ``doctor --fix`` (:func:`recover_interrupted_merges`)
finish or clean up a merge cut short by ``kill -9``.

Per-slice merges land a prefix of the milestone branch. The last branch commit that landed is
kept in ``refs/gsd-parallel/merged/<MID>`` and is the merge base of the next merge of that
milestone, so what already landed never comes back as a conflict, and the worker's branch
and worktree are never touched while it runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import hints
from ..errors import GsdParallelError
from ..milestone_ids import validate_milestone_id
from ..models import MergeResult, Milestone, Project
from ..workspace import layout
from ..workspace.git import Git, GitCommandError, split_z
from ..workspace.layout import branch_name, checkout_display
from .steps import (
    FALLBACK_IDENT,
    NO_HOOKS,
    MergeLock,
    Notify,
    auto_resolvable,
    cleanup_after_landing,
    commit_message,
    land_on_branch,
    quiet,
    remove_temp_worktree,
    run_merge_check,
    set_slice_point,
    short,
    slice_point,
    take_milestone_side,
    unfinished_checkout_merge,
    unmerged_paths,
)

if TYPE_CHECKING:
    from ..plugins import Hooks
    from ..preferences import ParallelPreferences
    from ..store import Store

__all__ = ["MergeEnv", "SliceMerge", "merge_all", "merge_milestone", "recover_interrupted_merges"]


# --------------------------------------------------------------------------- context


@dataclass
class MergeEnv:
    """Everything a merge needs; the ``merge`` command and the supervisor each build one."""

    root: Path
    project: Project
    store: Store
    hooks: Hooks
    preferences: ParallelPreferences
    notify: Notify = quiet
    lock_timeout: float = 300.0

    @property
    def parallel_dir(self) -> Path:
        return layout.parallel_dir(self.project.gsd_dir)

    def integration_branch(self, mid: str) -> str:
        milestone = self.project.get(mid)
        return (milestone.integration_branch if milestone else None) or (self.project.integration_branch)


@dataclass(frozen=True)
class SliceMerge:
    """Land the milestone branch up to ``target`` (the commit that finished ``slices``)."""

    target: str
    slices: tuple[str, ...]


def add_merge_event(store: Store, message: str, mid: str, data: Any = None) -> None:
    run = store.active_run()
    store.add_event("merge", message, mid, data=data, run_id=run.id if run else None)


# --------------------------------------------------------------------------- entry point


def merge_milestone(env: MergeEnv, mid: str, slices: SliceMerge | None = None) -> MergeResult:
    """Merge ``gsd-parallel/<MID>`` (or, with ``slices``, a finished prefix of it); never raises
    for a merge that fails: the result says what happened."""
    validate_milestone_id(mid)
    lock = MergeLock(env.parallel_dir)
    if not lock.acquire(env.lock_timeout):
        who = lock.holder() or {}
        pid = f" (pid {who['pid']})" if who.get("pid") else ""
        return MergeResult(mid, "failed", error=f"another merge is running{pid}; try again when it is done")
    try:
        return _Merge(env, mid, slices).run()
    finally:
        lock.release()


def merge_all(
    env: MergeEnv, order: Sequence[str], on_result: Callable[[MergeResult], None] | None = None
) -> list[MergeResult]:
    """Merge ``order`` one by one; stop at the first that does not land (the rest are
    reported ``skipped``), because later merges may build on it."""
    results: list[MergeResult] = []
    stopped: str | None = None
    for mid in order:
        if stopped is not None:
            result = MergeResult(mid, "skipped", error=f"not attempted: {stopped} did not merge")
        else:
            result = merge_milestone(env, mid)
            if result.outcome in {"conflict", "failed"}:
                stopped = mid
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# --------------------------------------------------------------------------- one merge


class _Merge:
    """One attempt, journaled step by step: started, worktree, merging, committed,
    checking, landing; then an outcome."""

    def __init__(self, env: MergeEnv, mid: str, slices: SliceMerge | None) -> None:
        self.env, self.mid, self.slices = env, mid, slices
        self.store = env.store
        self.g = Git(env.root)
        self.integ = env.integration_branch(mid)
        self.branch = branch_name(mid)
        self.tmp: Path | None = None
        self.tmp_registered: bool | None = None
        self.merge_id = 0
        self.base: str = ""
        self.target: str = ""
        self.point: str | None = None

    # -- outline
    def run(self) -> MergeResult:
        base = self.g.branch_sha(self.integ)
        tip = self.g.branch_sha(self.branch)
        target = self.slices.target if self.slices else tip
        self.merge_id = self.store.begin_merge(self.mid, self.branch, self.integ, base, target)
        if base is None:
            return self._finish("failed", error=f"integration branch {self.integ} does not exist")
        if tip is None or target is None:
            return self._finish("failed", error=f"branch {self.branch} does not exist")
        self.base, self.target = base, target
        self.point = slice_point(self.g, self.mid, target)
        try:
            return self._attempt()
        except GsdParallelError as exc:
            return self._finish("failed", error=str(exc))
        except BaseException as exc:  # a bug or ^C: record it, clean up, let it propagate
            with suppress(Exception):
                self._finish("failed", error=f"interrupted: {type(exc).__name__}: {exc}")
            raise
        finally:
            if self.tmp is not None:
                remove_temp_worktree(self.g, self.tmp, self.env.parallel_dir, registered=self.tmp_registered)

    def _attempt(self) -> MergeResult:
        unfinished = unfinished_checkout_merge(self.env.root, self.mid)
        if unfinished is not None:
            return self._finish("failed", error=unfinished)
        if self.g.is_ancestor(self.target, self.base):
            return self._nothing_ahead()
        tmp = self._make_tmp()
        tg = Git(tmp)
        self.store.update_merge(self.merge_id, step="merging")
        unresolved = self._squash(tg)
        if unresolved:
            return self._finish(
                "conflict",
                files=unresolved,
                error=(
                    f"{len(unresolved)} conflicting file(s); merge {self.integ} into "
                    f"{self.branch} in {checkout_display(self.mid)}, resolve and commit there, "
                    f"then run {hints.cmd(f'merge {self.mid}')}"
                ),
            )
        from ..workspace.worktrees import planning_mode

        if planning_mode(self.env.root) in {"untracked", "symlink"}:
            # The project keeps .gsd out of git: the milestone's planning files come back by
            # copy (after landing), never as tracked files on the integration branch.
            tg.run("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", ".gsd")
        if not tg.run("diff", "--cached", "--name-only", "-z", "HEAD"):
            return self._already_there()
        commit = self._commit(tg)
        changed = split_z(self.g.run("diff", "--name-only", "--no-renames", "-z", self.base, commit))
        self.store.update_merge(self.merge_id, step="checking")
        vetoes = self.env.hooks.before_merge(self.mid, tmp, changed, commit)
        if vetoes:
            return self._finish("failed", error="refused by before_merge: " + "; ".join(vetoes))
        check = self.env.preferences.merge_check
        if check:
            failure = run_merge_check(check, tmp, self.mid)
            if failure is not None:
                return self._finish("failed", error=failure)
        self.store.update_merge(self.merge_id, step="landing")
        blocked, error = self._land(commit, changed)
        if error is not None:
            return self._finish("failed", files=blocked, error=error)
        if self.slices is not None:
            set_slice_point(self.g, self.mid, self.target)
        self._finish("merged", commit_sha=commit)
        self._after_landing(commit)
        return MergeResult(self.mid, "merged", commit=commit)

    # -- journal
    def _finish(
        self,
        outcome: str,
        *,
        files: Sequence[str] = (),
        error: str | None = None,
        commit_sha: str | None = None,
    ) -> MergeResult:
        fields: dict[str, Any] = {"files": list(files), "error": error}
        if commit_sha is not None:
            fields["commit_sha"] = commit_sha
        self.store.finish_merge(self.merge_id, outcome, mark_milestone=self.slices is None, **fields)
        what = self._label()
        if outcome == "conflict":
            add_merge_event(
                self.store, f"{what}: merge CONFLICT in {len(files)} file(s): {', '.join(files)}",
                self.mid, {"files": list(files)},
            )  # fmt: skip
        elif outcome in {"failed", "skipped"}:
            first = (error or "").splitlines()[0] if error else ""
            add_merge_event(self.store, f"{what}: merge {outcome}: {first}", self.mid)
        return MergeResult(self.mid, outcome, tuple(files), commit_sha, error)  # type: ignore[arg-type]

    def _label(self) -> str:
        return f"{self.mid}/{','.join(self.slices.slices)}" if self.slices else self.mid

    # -- nothing to do
    def _nothing_ahead(self) -> MergeResult:
        if self.slices is not None:
            return self._finish("skipped", error="nothing new to merge")
        from ..workspace.worktrees import worktree_path

        wt = worktree_path(self.env.root, self.mid)
        dirty: list[str] = []
        if wt.is_dir():
            with suppress(GsdParallelError):
                dirty = [
                    p
                    for xy, p in Git(wt).status_porcelain(untracked="all")
                    if not (xy == "??" and (p == ".gsd" or p.startswith(".gsd/")))
                ]
        if dirty:
            return self._finish(
                "skipped",
                error=(
                    f"{self.branch} has no commits beyond {self.integ}, but its worktree has "
                    f"uncommitted changes in {len(dirty)} file(s) ({', '.join(dirty[:5])}): "
                    f"commit them in {checkout_display(self.mid)}, then run "
                    f"{hints.cmd(f'merge {self.mid}')}"
                ),
            )
        return self._landed_already(f"{self.branch} has no commits beyond {self.integ}")

    def _already_there(self) -> MergeResult:
        return self._landed_already(f"the changes of {self.branch} are already on {self.integ}")

    def _landed_already(self, why: str) -> MergeResult:
        """Nothing to commit, yet the milestone's work is on the integration branch."""
        result = self._finish("skipped", error=f"{why}: nothing to merge")
        if self.slices is None:
            self.store.mark_merged(self.mid, self.base)
            for note in cleanup_after_landing(self.env.root, self.mid, self.target):
                self.env.notify(note, "warning")
        return result

    # -- building
    def _make_tmp(self) -> Path:
        from ..workspace.worktrees import ensure_excludes

        ensure_excludes(self.env.root)
        path = self.env.parallel_dir / layout.MERGING_DIRNAME / f"{self.mid}-{self.merge_id}"
        if os.path.lexists(path):  # a leftover (merge ids are never reused, so rare)
            remove_temp_worktree(self.g, path, self.env.parallel_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Journal first: a crash during `worktree add` still leaves a row naming the path.
        self.store.update_merge(self.merge_id, step="worktree", worktree=path)
        self.tmp = path
        self.tmp_registered = None  # unknown until `worktree add` returns
        self.g.run(*NO_HOOKS, "worktree", "add", "--quiet", "--detach", str(path), self.base)
        self.tmp_registered = True
        return path

    def _squash(self, tg: Git) -> list[str]:
        """Squash the branch into the temporary worktree; the code conflicts left unresolved."""
        if self.point is not None:
            args: tuple[str, ...] = ("merge-recursive", self.point, "--", "HEAD", self.target)
        else:
            args = ("merge", "--squash", "--quiet", self.target)
        try:
            tg.run(*NO_HOOKS, *args)
        except GitCommandError:
            if not unmerged_paths(tg):
                raise  # not a conflict: a real failure
        conflicts = unmerged_paths(tg)
        if not conflicts:
            return []
        take_milestone_side(tg, [p for p in conflicts if auto_resolvable(p)])
        code = [p for p in conflicts if not auto_resolvable(p)]
        if not code:
            return []
        assert self.tmp is not None
        if self.env.hooks.resolve_merge_conflict(self.mid, code, self.tmp):
            left = unmerged_paths(tg)
            if not left:
                self.env.notify(f"{self.mid}: a plugin resolved {len(code)} conflict(s)", "info")
            return left
        return code

    def _commit(self, tg: Git) -> str:
        milestone = self._milestone_view()
        message = commit_message(self.mid, milestone, self.slices.slices if self.slices else None)
        ident: tuple[str, ...] = ()
        if not (tg.ok("var", "GIT_AUTHOR_IDENT") and tg.ok("var", "GIT_COMMITTER_IDENT")):
            ident = FALLBACK_IDENT
        tg.run(*ident, *NO_HOOKS, "commit", "--no-verify", "-q", "--cleanup=whitespace",
               "-m", message)  # fmt: skip
        commit = tg.rev_parse("HEAD")
        assert commit is not None
        self.store.update_merge(self.merge_id, step="committed", commit_sha=commit)
        return commit

    def _milestone_view(self) -> Milestone | None:
        """The milestone as its own branch sees it (done slices and tasks), for the message."""
        from ..project import read_project
        from ..workspace.worktrees import worktree_path

        for where in (self.tmp, worktree_path(self.env.root, self.mid)):
            if where is None or not (where / ".gsd" / "milestones").is_dir():
                continue
            try:
                found = read_project(where).get(self.mid)
            except GsdParallelError:
                continue
            if found is not None and found.slices:
                return found
        return self.env.project.get(self.mid)

    # -- landing
    def _land(self, commit: str, changed: Sequence[str]) -> tuple[list[str], str | None]:
        """Move the integration branch to ``commit``; (blocking files, error) when it cannot."""
        return land_on_branch(
            self.g, self.integ, self.base, commit, changed,
            reflog=f"gsd-parallel: merge {self._label()}", retry=f"merge {self.mid}",
        )  # fmt: skip

    def _after_landing(self, commit: str) -> None:
        self.env.hooks.on_merge_complete(self.mid, commit, self.integ)
        add_merge_event(
            self.store, f"{self._label()} merged into {self.integ} as {short(commit)}", self.mid,
            {"commit": commit, "slices": list(self.slices.slices) if self.slices else None},
        )  # fmt: skip
        if self.slices is None:
            for note in cleanup_after_landing(self.env.root, self.mid, self.target):
                self.env.notify(note, "warning")


def recover_interrupted_merges(project_root: Path, store: Store, fix: bool) -> list[str]:
    """``doctor``: describe (and with ``fix``, finish or clean up) merges cut short."""
    from .recovery import recover

    return recover(Path(project_root), store, fix)
