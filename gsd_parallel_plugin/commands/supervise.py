"""Making sure a supervisor is there when workers need one (adoption after a crash)."""

from __future__ import annotations

import time

from ..models import CommandContext
from .common import Loaded
from .runstate import LIVE_STATES, RunView

SPAWN_WAIT_SECONDS = 5.0


def ensure_supervisor(
    ctx: CommandContext, loaded: Loaded, view: RunView, *, force: bool = False
) -> bool:
    """Start a background supervisor when the run has workers and none is watching them.

    Returns True when one was started. ``force`` starts one even with no live worker
    (a queued command needs applying).
    """
    from ..supervisor import spawn_background, supervisor_running

    if not view.active or supervisor_running(loaded.parallel_dir):
        return False
    needs = force or any(w.state in LIVE_STATES or w.state == "crashed" for w in view.workers)
    if not needs:
        return False
    wait_until_supervising(loaded, spawn_background(loaded.root, loaded.parallel_dir))
    if not force:
        ctx.host.notify("supervisor was not running; started a new one to adopt the workers")
    return True


def wait_until_supervising(loaded: Loaded, pid: int) -> None:
    """Wait briefly until the supervisor just spawned holds the lock (or is already gone,
    having found nothing to do), so what the command prints next says it runs."""
    import psutil

    from ..supervisor import supervisor_running

    deadline = time.monotonic() + SPAWN_WAIT_SECONDS
    while not supervisor_running(loaded.parallel_dir) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
