"""The drift guard: when the integration branch moves (a sibling merged), every other running
worker is brought up to date at its next unit boundary, so branches do not drift apart
until they meet as a conflict at the final merge, after the money is spent.

How (``parallel.sync_with_integration: unit``, the default):

1. The integration branch's tip is no longer on a running milestone's branch: the worker
   gets GSD's ``pause`` signal, which GSD reads after its current unit and exits (10).
2. With the worker stopped, the integration branch is merged into the milestone branch in
   its checkout. GSD keeps a milestone's work uncommitted until its pre-completion commit, so
   the merge must keep that work as it is: :func:`sync_checkout` merges the committed
   branch (the merge commit a ``git merge --no-edit`` would make) and, separately, the
   working tree (a snapshot of it against the integration tip); both through
   ``git merge-tree``, so a conflict is known before anything in the checkout changes. The
   uncommitted work stays uncommitted, on top of the merge. No stash is used (``refs/stash``
   is shared by every worktree). The working tree's snapshot and its merge are written to a
   throwaway object directory (only the merge commit stays in the repository).
3. Clean: an event says so and the worker is launched again (GSD resumes its paused session).
   Conflicting: nothing in the checkout changed; only that worker stays paused, with the
   files and what to do (merge in the checkout, resolve, commit, ``resume MID``).

Cost is read from the worker's log as always (the paused and the resumed run append to it),
the final squash merge of a branch that already holds the integration branch is the
milestone's own changes only.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import hints
from ..errors import GsdParallelError
from ..gsd.status_files import write_signal
from ..models import WorkerState
from ..workspace.git import Git, GitCommandError, ScratchObjects, merge_tree
from ..workspace.layout import checkout_display
from .radar import snapshot

if TYPE_CHECKING:
    from .supervisor import Supervisor

SYNC_REASON = "updating from {integ} after its unit"
FALLBACK_IDENT = {
    "GIT_AUTHOR_NAME": "gsd-parallel",
    "GIT_AUTHOR_EMAIL": "gsd-parallel@localhost",
    "GIT_COMMITTER_NAME": "gsd-parallel",
    "GIT_COMMITTER_EMAIL": "gsd-parallel@localhost",
}


@dataclass(frozen=True)
class SyncResult:
    outcome: Literal["updated", "current", "conflict", "failed"]
    files: tuple[str, ...] = ()
    commit: str | None = None
    error: str | None = None


def _identity(g: Git) -> dict[str, str]:
    if g.ok("var", "GIT_AUTHOR_IDENT") and g.ok("var", "GIT_COMMITTER_IDENT"):
        return {}
    return FALLBACK_IDENT


def sync_checkout(checkout: Path, branch: str, integration: str) -> SyncResult:
    """Merge ``integration`` into ``branch`` checked out at ``checkout``, keeping the
    checkout's uncommitted work uncommitted. Changes nothing on a conflict or a failure."""
    g = Git(checkout)
    head = g.rev_parse("HEAD^{commit}")
    integ = g.branch_sha(integration)
    if head is None or integ is None:
        return SyncResult("failed", error=f"{branch} or {integration} has no commit")
    if g.current_branch() != branch:
        return SyncResult("failed", error=f"{checkout} is not on {branch}")
    if g.is_ancestor(integ, head):
        return SyncResult("current", commit=head)
    if g.ok("rev-parse", "-q", "--verify", "MERGE_HEAD"):
        return SyncResult("failed", error=f"{checkout} is in the middle of a merge")
    with ScratchObjects(g, prefix="gsd-parallel-sync-objects-") as objects:
        return _sync(g, checkout, branch, integration, head, integ, objects)


def _sync(
    g: Git, checkout: Path, branch: str, integration: str, head: str, integ: str, objects: ScratchObjects
) -> SyncResult:
    """:func:`sync_checkout` once it is known to be needed; the working tree's snapshot and
    its merge live in ``objects`` (the committed merge lands, so it is the repository's)."""
    work, _head = snapshot(checkout, everything=True, objects=objects)
    committed, conflicts = merge_tree(g, head, integ)
    merged_work, more = merge_tree(g.with_env(objects.env), work, integ)
    files = tuple(dict.fromkeys([*conflicts, *more]))
    if files:
        return SyncResult("conflict", files)
    ident = _identity(g)
    message = f"Merge branch '{integration}' into {branch}\n\nGSD-Parallel: updated from {integration}\n"
    gc = Git(checkout, env=ident)
    commit = gc.run("commit-tree", committed, "-p", head, "-p", integ, input=message)
    scratch = Path(tempfile.mkdtemp(prefix="gsd-parallel-sync-"))
    try:
        # The working tree: from the snapshot's tree to the merged one (a scratch index that
        # matches the files exactly; read-tree refuses, changing nothing, if something is in
        # the way, e.g. an ignored file where the integration branch adds one).
        gi = Git(checkout, env={**objects.env, "GIT_INDEX_FILE": str(scratch / "index")})
        gi.run("read-tree", f"{work}^{{tree}}")
        gi.run("update-index", "-q", "--refresh")
        gi.run("read-tree", "-m", "-u", f"{work}^{{tree}}", merged_work)
    except GitCommandError as exc:
        return SyncResult("failed", error=str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    g.run("read-tree", committed)  # the index: the merge; uncommitted work stays unstaged
    g.ok("update-index", "-q", "--refresh")
    g.run("update-ref", "-m", f"gsd-parallel: update from {integration}", f"refs/heads/{branch}",
          commit, head)  # fmt: skip
    return SyncResult("updated", commit=commit)


class DriftGuard:
    """The supervisor's side: who is due, the pause, the update after it, the relaunch."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.syncing: dict[str, str] = {}
        """Milestones asked to pause for an update -> their integration branch."""
        self._checked: dict[str, tuple[str | None, str | None]] = {}
        self._merged = -1
        self.updates = 0
        self.conflicts = 0

    @property
    def enabled(self) -> bool:
        return self.sup.prefs.sync_with_integration == "unit"

    def _integration(self, mid: str) -> str:
        project = self.sup.project()
        milestone = project.get(mid)
        return (milestone.integration_branch if milestone else None) or project.integration_branch

    def tick(self, refs: dict[str, str]) -> None:
        """Ask each running worker whose branch lacks the integration tip to pause after its
        unit. ``refs``: branch -> tip (read once a second by the radar); cached per pair."""
        if not self.enabled:
            return
        sup = self.sup
        merged = len(sup.store.merged_milestones())
        if merged != self._merged:  # a merge landed: look at the tips now, not in a second
            if self._merged >= 0:
                refs = sup.radar.refs(fresh=True)
            self._merged = merged
        for mid, tracked in list(sup.tracked.items()):
            if mid in self.syncing:
                if tracked.requested != "pause":
                    del self.syncing[mid]  # resumed by the user before the unit ended
                continue
            if tracked.requested is not None or tracked.frozen:
                continue
            row = sup.store.worker(mid, sup.run_id)
            if row is None or row.state != "running":
                continue
            integ = self._integration(mid)
            pair = (refs.get(integ), refs.get(row.branch))
            if None in pair or self._checked.get(mid) == pair:
                continue
            self._checked[mid] = pair
            try:
                behind = not Git(sup.root).is_ancestor(pair[0], pair[1])  # type: ignore[arg-type]
            except GsdParallelError:
                continue
            if behind:
                self.syncing[mid] = integ
                write_signal(sup.signal_dir(mid), mid, "pause")
                tracked.requested = "pause"
                sup.set_state(mid, WorkerState.PAUSING, SYNC_REASON.format(integ=integ))

    def settled(self, mid: str, state: WorkerState) -> None:
        """The worker exited: when we paused it for an update, update and launch it again."""
        integ = self.syncing.pop(mid, None)
        if integ is None or state != WorkerState.PAUSED:
            return
        sup = self.sup
        row = sup.store.worker(mid, sup.run_id)
        if row is None:
            return
        try:
            result = sync_checkout(Path(row.worktree), row.branch, integ)
        except GsdParallelError as exc:
            result = SyncResult("failed", error=str(exc))
        self._checked.pop(mid, None)
        sup.radar.refs(fresh=True)  # the branch moved: never judge it by its old tip
        if result.outcome in {"updated", "current"}:
            if result.outcome == "updated":
                self.updates += 1
                what = f"{mid}: merged {integ} into {row.branch} ({(result.commit or '')[:7]}); resuming"
                sup.store.add_event("sync", what, mid, {"outcome": result.outcome, "commit": result.commit},
                                    run_id=sup.run_id)  # fmt: skip
            if sup.budget.blocks_new_work() or sup.halted:
                sup.set_state(mid, WorkerState.PAUSED, f"updated from {integ}; not resumed (run stopped)")
                return
            sup.launch(mid)
            return
        self.conflicts += result.outcome == "conflict"
        resume = hints.cmd(f"resume {mid}")
        where = checkout_display(mid)
        if result.outcome == "conflict":
            more = len(result.files) - 5
            shown = ", ".join(result.files[:5]) + (f" +{more} more" if more > 0 else "")
            reason = (
                f"updating from {integ} conflicts in {shown}: in {where} commit the work, "
                f"run `git merge {integ}`, resolve, commit, then {resume}"
            )
        else:
            reason = f"could not update from {integ}: {result.error}; fix it in {where}, then {resume}"
        sup.store.add_event("sync", f"{mid}: {reason}", mid,
                            {"outcome": result.outcome, "files": list(result.files)},
                            run_id=sup.run_id)  # fmt: skip
        sup.store.update_worker(mid, sup.run_id, last_error=reason)
        sup.set_state(mid, WorkerState.PAUSED, reason)
        sup.notify(f"{mid} paused: {reason}", "warning")
