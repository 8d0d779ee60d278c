"""``gsd-parallel session-events``: deliver what the user's GSD session spooled to plugins.

The GSD extension runs this without waiting after it spools an event. While a supervisor
runs, it drains the spool itself (a milestone the session completed re-plans the run), so
this leaves the spool to it; otherwise the hooks fire here, and a milestone completed in
the session brings a supervisor back when the run has work waiting for it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GsdParallelError
from ..invocation import ArgParser, parse
from ..models import CommandContext, CommandResult
from ..workspace import layout


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..preferences import load_preferences
    from ..project import find_project_root
    from ..run import session_events
    from ..run.supervisor_lock import spawn_background, supervisor_running
    from ..store import Store
    from ..workspace.git import current_branch

    parse(ArgParser(name), ctx)
    root = find_project_root(ctx.host.project_dir)
    parallel_dir = layout.parallel_dir((root / ".gsd").resolve())
    if supervisor_running(parallel_dir):
        return CommandResult(
            "The supervisor delivers the session's events.", {"delivered": 0, "by": "supervisor"}
        )
    try:
        ceiling = load_preferences(root / ".gsd").parallel.budget_ceiling
    except GsdParallelError:
        ceiling = None  # a typo in PREFERENCES.md must not lose the session's events
    db = layout.store_path(parallel_dir)
    store = Store.open_readonly(db) if db.is_file() else None
    try:
        run_row = store.active_run() if store is not None else None
        run_total = store.run_total_cost(run_row.id) if store is not None and run_row else 0.0
    finally:
        if store is not None:
            store.close()
    events = session_events.drain(
        root, ctx.host.hooks,
        branch=lambda: current_branch(root) or "",
        run_total_usd=lambda: run_total,
        budget_ceiling=ceiling,
    )  # fmt: skip
    restarted = False
    if run_row is not None and any(e.kind == "milestone_complete" for e in events):
        # The run re-plans: dependents may start.
        spawn_background(Path(root), parallel_dir, run_id=run_row.id)
        restarted = True
    return CommandResult(
        f"Delivered {len(events)} session event(s).",
        {"delivered": len(events), "by": "cli", "supervisor_started": restarted},
    )
