"""Making sure a supervisor is there when workers need one (adoption after a crash)."""

from __future__ import annotations

import time

from ..errors import GsdParallelError
from ..invocation import Loaded
from ..models import LIVE_STATES, CommandContext
from ..views.runstate import RunView
from ..workspace import layout

SPAWN_WAIT_SECONDS = 5.0


def ensure_supervisor(ctx: CommandContext, loaded: Loaded, view: RunView, *, force: bool = False) -> bool:
    """Start a background supervisor when the run has workers and none is watching them.

    Returns True when one was started. ``force`` starts one even with no live worker
    (a queued command needs applying).
    """
    if view.run is None or not view.active:
        return False
    from .supervisor_lock import spawn_background, supervisor_running

    if supervisor_running(loaded.parallel_dir):
        return False
    adopt = any(w.state in LIVE_STATES or w.state == "crashed" for w in view.workers)
    why = None if force or adopt else work_left(loaded, view)
    if not (force or adopt or why):
        return False
    wait_until_supervising(loaded, spawn_background(loaded.root, loaded.parallel_dir, run_id=view.run.id))
    if adopt and not force:
        ctx.host.notify("supervisor was not running; started a new one to adopt the workers")
    elif why and not force:
        ctx.host.notify(f"supervisor was not running; started a new one: {why}")
    return True


def work_left(loaded: Loaded, view: RunView) -> str | None:
    """What an active run with no live worker still has for a supervisor to do, if anything.

    A supervisor killed during a merge (or between a merge and the start of what it unblocks)
    leaves no worker to adopt: without this the run could never finish by itself.
    """
    from ..merge.steps import MergeLock
    from ..views.runstate import open_store
    from .decisions import RunFacts, exit_decision

    store = open_store(loaded)
    if store is None:
        return None
    with store:
        unfinished = store.unfinished_merges()
        merges = {mid: store.merges(mid) for mid in view.awaiting_merge}
    if MergeLock(loaded.parallel_dir).holder() is None:
        if unfinished:
            return f"finishing the interrupted merge of {unfinished[-1].milestone_id}"
        if any((loaded.parallel_dir / layout.MERGING_DIRNAME).glob("*")):
            return "removing the temporary worktree of an interrupted merge"
    if view.stopped:
        return None  # the user stopped it: only their `resume` or `start` goes on
    # The rule the supervisor closes the run by; a run with no worker is not worth a new one.
    if view.workers and exit_decision(RunFacts.of(
        (w.state for w in view.workers), awaiting_merge=view.awaiting_merge
    )).done:  # fmt: skip
        return "closing the run: every milestone in it is complete and merged"
    if loaded.preferences.parallel.auto_merge == "auto":
        for mid, rows in merges.items():
            # One that conflicted or failed waits for the user (`merge`), not for a retry loop.
            if not rows or rows[-1].outcome in {None, "aborted"}:
                return f"merging {mid}"
    if view.budget(loaded)["state"] == "exceeded":
        return None
    try:
        from ..project.eligibility import analyse

        report = analyse(
            loaded.project,
            max_workers=loaded.preferences.parallel.max_workers,
            overlap_policy=loaded.preferences.parallel.overlap,
            running=view.live,
            awaiting_merge=view.awaiting_merge,
            held=view.held,
        )
    except GsdParallelError:
        return None
    if report.plan.start:
        return f"starting {', '.join(report.plan.start)}"
    return None


def wait_until_supervising(loaded: Loaded, pid: int) -> None:
    """Wait briefly until the supervisor just spawned holds the lock (or is already gone,
    having found nothing to do), so what the command prints next says it runs."""
    import psutil

    from .supervisor_lock import supervisor_running

    deadline = time.monotonic() + SPAWN_WAIT_SECONDS
    while not supervisor_running(loaded.parallel_dir) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
