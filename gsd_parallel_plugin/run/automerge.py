"""Automatic merging inside the supervisor: ``parallel.auto_merge`` and ``merge_strategy``.

- ``auto``: a milestone merges as soon as its worker completed it; ``confirm``: only when
  the host's ``confirm`` (the foreground ``start --wait`` on a terminal) says yes, otherwise
  it stays ``complete — awaiting merge`` with a notice; ``manual``: never by itself.
- ``per-slice``: while a worker runs, each slice merges as soon as its roadmap line turns
  ``[x]`` on the milestone branch (see :func:`..merge.plan.next_slice_merge`).
- A merge that lands re-plans the run, so dependents start from the integration branch that
  now holds their dependencies' code; so does a merge the user ran with ``merge``.

A merge that does not land is reported once and not retried in a loop: the user fixes it
and runs ``gsd-parallel merge <MID>``. Merges run inside the tick (workers keep running;
their output is read on the next tick, nothing is lost).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .. import hints
from ..models import MergeResult
from ..workspace.layout import branch_name, checkout_display
from .core import RunPort

if TYPE_CHECKING:
    from ..merge.attempt import MergeEnv, SliceMerge
    from .core import Confirm

LOCK_WAIT_SECONDS = 30.0
SLICE_CHECK_SECONDS = 0.5
"""How often running milestones' branches are looked at for finished slices (git calls)."""


class MergeHost(RunPort, Protocol):
    """What the auto-merger needs of the supervisor (and all it may touch)."""

    @property
    def parallel_dir(self) -> Path: ...
    @property
    def confirm(self) -> Confirm | None:
        """Asks the user (``auto_merge: confirm``); None when nobody is there to answer."""

    @property
    def tracked(self) -> Iterable[str]:
        """The milestones whose workers run now."""

    def project_changed(self) -> None:
        """A merge landed: dependents may start now."""


class AutoMerger:
    """Called by the supervisor when a milestone completes, and every tick."""

    def __init__(self, supervisor: MergeHost) -> None:
        self.sup = supervisor
        self.attempted: set[str] = set()
        """Milestones this supervisor already tried (or asked about): never twice."""
        self.unlanded: set[str] = set()
        """Milestones whose merge conflicted or failed here (and has not landed since)."""
        self.pending: list[str] = []
        """Approved merges waiting for the merge lock (the user is merging right now)."""
        self._merged_count = -1
        self._seen_tips: dict[str, str] = {}
        self._told_untracked: set[str] = set()
        self._asked: set[tuple[str, tuple[str, ...]]] = set()
        self._next_slice_check = 0.0

    # ------------------------------------------------------------------ plumbing
    @property
    def mode(self) -> str:
        return str(self.sup.prefs.auto_merge)

    def env(self) -> MergeEnv:
        from ..merge.attempt import MergeEnv

        assert self.sup.hooks is not None
        return MergeEnv(
            self.sup.root, self.sup.project(), self.sup.store, self.sup.hooks, self.sup.prefs,
            notify=self.sup.notify, lock_timeout=LOCK_WAIT_SECONDS,
        )  # fmt: skip

    def _lock_busy(self) -> bool:
        from ..merge.steps import MergeLock

        return MergeLock(self.sup.parallel_dir).holder() is not None

    def _title(self, mid: str) -> str:
        milestone = self.sup.project().get(mid)
        return milestone.title if milestone else mid

    def _ask(self, question: str) -> bool | None:
        confirm = self.sup.confirm
        return confirm(question) if confirm is not None else None

    # ------------------------------------------------------------------ completion
    def milestone_completed(self, milestone_id: str) -> None:
        """A worker finished its milestone (``parallel.auto_merge`` decides what happens)."""
        mid = milestone_id
        self.attempted.add(mid)
        if self.mode == "manual":
            self._awaiting(mid, "auto_merge is manual")
            return
        if self.mode == "confirm":
            integ = self.env().integration_branch(mid)
            answer = self._ask(f"Merge {mid} ({self._title(mid)}) into {integ}?")
            if answer is None:
                self._awaiting(mid, "auto_merge is confirm and nobody is here to confirm")
                return
            if not answer:
                self._awaiting(mid, "merge declined")
                return
        self._merge_or_queue(mid)

    def _awaiting(self, mid: str, why: str) -> None:
        self.sup.notify(
            f"{mid} complete — awaiting merge ({why}). Run {hints.cmd(f'merge {mid}')} to merge it.",
            "info",
        )

    def _merge_or_queue(self, mid: str) -> None:
        if self._lock_busy():
            if mid not in self.pending:
                self.pending.append(mid)
            return
        self._merge(mid)

    def _merge(self, mid: str, slices: SliceMerge | None = None) -> MergeResult:
        from ..merge.attempt import merge_milestone

        result = merge_milestone(self.env(), mid, slices)
        label = f"{mid}/{','.join(slices.slices)}" if slices else mid
        if result.outcome in {"conflict", "failed"}:
            self.unlanded.add(mid)
        if result.outcome == "merged" or mid in self.sup.store.merged_milestones():
            self.unlanded.discard(mid)
            self.sup.project_changed()  # dependents may start now
        elif result.outcome == "conflict":
            self.sup.notify(
                f"{label}: merge CONFLICT in {len(result.files)} file(s): "
                f"{', '.join(result.files)}. Resolve in {checkout_display(mid)} (merge "
                f"{self.env().integration_branch(mid)} there) and run {hints.cmd(f'merge {mid}')}.",
                "warning",
            )
        elif result.outcome == "failed":
            first = (result.error or "").splitlines()[0] if result.error else ""
            self.sup.notify(f"{label}: merge failed: {first}", "warning")
        return result

    # ------------------------------------------------------------------ every tick
    def tick(self) -> None:
        """Notice merges made elsewhere, retry merges that waited for the lock, catch up on
        milestones completed before this supervisor started, and merge finished slices."""
        merged = len(self.sup.store.merged_milestones())
        if merged != self._merged_count:
            if self._merged_count >= 0:
                self.sup.project_changed()
            self._merged_count = merged
        if self.pending and not self._lock_busy():
            self._merge(self.pending.pop(0))
        if self.mode == "auto":
            self._catch_up()
        if (
            self.sup.prefs.merge_strategy == "per-slice"
            and self.mode != "manual"
            and time.monotonic() >= self._next_slice_check
        ):
            self._next_slice_check = time.monotonic() + SLICE_CHECK_SECONDS
            for mid in list(self.sup.tracked):
                self._slices(mid)

    def _catch_up(self) -> None:
        merged = self.sup.store.merged_milestones()
        for row in self.sup.store.workers(self.sup.run_id):
            mid = row.milestone_id
            if row.state == "complete" and mid not in merged and mid not in self.attempted:
                self.attempted.add(mid)
                self._merge_or_queue(mid)

    def _slices(self, mid: str) -> None:
        from ..merge.plan import next_slice_merge
        from ..workspace.git import Git

        g = Git(self.sup.root)
        tip = g.branch_sha(branch_name(mid))
        if tip is None or self._seen_tips.get(mid) == tip:
            return
        if self._lock_busy():
            return  # look again next tick
        self._seen_tips[mid] = tip
        integ = self.env().integration_branch(mid)
        plan = next_slice_merge(g, mid, integ)
        if plan is None:
            if not g.ok("cat-file", "-e", f"{tip}:.gsd") and mid not in self._told_untracked:
                self._told_untracked.add(mid)
                self.sup.notify(
                    f"{mid}: per-slice merging needs .gsd tracked in git; "
                    "it merges when the milestone completes",
                    "info",
                )
            return
        if self.mode == "confirm":
            if (mid, plan.slices) in self._asked:
                return
            self._asked.add((mid, plan.slices))
            question = f"Merge {mid} {', '.join(plan.slices)} ({self._title(mid)}) into {integ}?"
            if not self._ask(question):
                return
        self._merge(mid, plan)
