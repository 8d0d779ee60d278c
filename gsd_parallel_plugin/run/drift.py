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

Only another milestone's commits count: a milestone's own squash commits (``merge_strategy:
per-slice`` lands its slices while it runs; ``GSD-Milestone: <MID>`` trailer) are its own work
already, so they never pause it. A pause asked for while a worker pauses for an update (the
user's ``pause``/``pause --now``, the budget guard's stall pause) wins over the relaunch: the
checkout is still updated, the worker stays paused with that reason; one that reached its
milestone budget meanwhile stays paused too.

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
from ..gsd.checkout import other_planning
from ..gsd.status_files import write_signal
from ..models import StateReason, WorkerState
from ..workspace.git import Git, GitCommandError, ScratchObjects, merge_tree, skip_worktree, split_z
from ..workspace.layout import checkout_display
from .decisions import pause_reason
from .radar import snapshot

if TYPE_CHECKING:
    from .supervisor import Supervisor

SYNC_REASON = "updating from {integ} after its unit"
MILESTONE_TRAILER = "GSD-Milestone"


def is_sync_pause(reason: str | None) -> bool:
    """The ``state_reason`` of a worker the drift guard is pausing (for ``pause``'s check)."""
    return bool(reason) and reason.startswith("updating from ") and reason.endswith(" after its unit")  # type: ignore[union-attr]


def foreign_commits(g: Git, mid: str, integ_tip: str, branch_tip: str) -> bool:
    """Whether the integration branch has commits the milestone branch lacks other than the
    milestone's own squash commits (its per-slice merges, which hold its own work)."""
    out = g.run("log", f"--format=%(trailers:key={MILESTONE_TRAILER},valueonly,separator=%x2C)%x00",
                integ_tip, f"^{branch_tip}")  # fmt: skip
    return any(entry.strip() != mid for entry in out.split("\0")[:-1])


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
    hidden = _skip_worktree(g)  # e.g. the worker's PREFERENCES.md: read-tree would drop the bit
    g.run("read-tree", committed)  # the index: the merge; uncommitted work stays unstaged
    # Siblings' planning files the update brought: the real GSD renders every milestone from
    # its own DB, imported before the sibling landed, and would write them back as they were,
    # then refuse to complete (``uncommitted changes remain after the pre-completion
    # commit``). Hidden, the branch keeps the integration branch's versions (the final squash
    # changes nothing of the sibling's) and GSD's stale copies stay out of its commits.
    hidden += other_planning(g, branch.rsplit("/", 1)[-1], head, commit)
    skip_worktree(g, hidden)
    g.ok("update-index", "-q", "--refresh")
    g.run("update-ref", "-m", f"gsd-parallel: update from {integration}", f"refs/heads/{branch}",
          commit, head)  # fmt: skip
    return SyncResult("updated", commit=commit)


def _skip_worktree(g: Git) -> list[str]:
    return [e[2:] for e in split_z(g.run("ls-files", "-v", "-z")) if e[:2] == "S "]


class DriftGuard:
    """The supervisor's side: who is due, the pause, the update after it, the relaunch."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.syncing: dict[str, str] = {}
        """Milestones asked to pause for an update -> their integration branch."""
        self._checked: dict[str, tuple[str | None, str | None]] = {}
        self.held: dict[str, str] = {}
        """Milestones paused for an update that something else (the user, the budget guard)
        asked to pause too -> that pause's reason: not relaunched after the update."""
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
                if tracked.requested != "pause":  # resumed by the user before the unit ended
                    del self.syncing[mid]
                    self.held.pop(mid, None)
                    self._checked.pop(mid, None)  # still behind: asked again at the next look
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
                g = Git(sup.root)
                behind = not g.is_ancestor(pair[0], pair[1]) and foreign_commits(g, mid, *pair)  # type: ignore[arg-type]
            except GsdParallelError:
                continue
            if behind:
                self.syncing[mid] = integ
                write_signal(sup.signal_dir(mid), mid, "pause")
                tracked.requested = "pause"
                sup.set_state(mid, WorkerState.PAUSING, SYNC_REASON.format(integ=integ))

    def hold(self, mid: str, reason: str) -> bool:
        """Another pause is asked for ``mid``: when it is pausing for an update, keep it paused
        after the update (True) instead of launching it again."""
        if mid not in self.syncing:
            return False
        self.held[mid] = reason
        return True

    def settled(self, mid: str, state: WorkerState) -> None:
        """The worker exited: when we paused it for an update, update and launch it again."""
        integ = self.syncing.pop(mid, None)
        held = self.held.pop(mid, None)
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
            if held is not None:  # the user's (or the budget guard's) pause came during ours
                sup.set_state(mid, WorkerState.PAUSED, pause_reason(held))
                return
            if self._over_envelope(mid):
                return
            sup.launch(mid)
            return
        self.conflicts += result.outcome == "conflict"
        if held is not None:
            sup.store.add_event("pause", f"{mid}: paused ({held}) while updating from {integ}", mid,
                                run_id=sup.run_id)  # fmt: skip
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

    def _over_envelope(self, mid: str) -> bool:
        """A worker that reached its milestone budget during the unit we waited for stays
        paused (the budget guard does not pause a worker we are already pausing)."""
        from .budget import envelope_of

        sup = self.sup
        row = sup.store.worker(mid, sup.run_id)
        limit = envelope_of(row, sup.prefs.milestone_budget) if row is not None else None
        if row is None or limit is None or row.cost_nanos < limit:
            return False
        sup.set_state(mid, WorkerState.PAUSED, StateReason.ENVELOPE)
        message = (
            f"{mid}: {StateReason.ENVELOPE} (${row.cost:.2f}); updated and paused."
            f" Resume with `resume {mid} --budget USD`."
        )
        sup.store.add_event("budget", message, mid, data={"kind": "envelope", "spent": row.cost},
                            run_id=sup.run_id)  # fmt: skip
        sup.notify(message, "warning")
        return True
