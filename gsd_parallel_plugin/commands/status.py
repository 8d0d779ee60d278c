"""``gsd-parallel status [MID]``.

Read-only and asked often. Where no run ever started, it reads the preferences and the
milestone directories but no plan, and imports none of the run machinery
(``tests/commands/test_import_hygiene.py``; ``bench/bench_startup.py`` measures it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hints
from ..errors import UserError
from ..invocation import ArgParser, locate, milestone_arg, parse, read_plans, show_project_problems
from ..models import CommandContext, CommandResult
from ..views import NO_RUN
from ..workspace import layout

if TYPE_CHECKING:
    from ..invocation import Loaded
    from ..views.runstate import RunView


def _no_run() -> CommandResult:
    """A fresh result each time: a caller may extend its lists."""
    return CommandResult(NO_RUN, {"active": False, "workers": [], "waiting": [], "total_cost": 0.0})


def run(name: str, ctx: CommandContext) -> CommandResult:
    asked = _milestone_asked(name, ctx)
    root, preferences = locate(ctx, strict=False)  # a typo in PREFERENCES.md must not hide a spending run
    gsd_dir = (root / ".gsd").resolve()
    if asked is None and layout.nothing_ran(layout.parallel_dir(gsd_dir)):
        from ..project.milestone_dirs import scan_milestone_dirs

        # The answer needs no plan; the project-wide problems are still shown, as ever.
        show_project_problems(ctx, scan_milestone_dirs(gsd_dir).problems)
        return _no_run()
    from ..views.runstate import RunView

    loaded = read_plans(ctx, root, preferences)
    mid = milestone_arg(loaded, asked) if asked else None
    view = RunView.read(loaded)
    if view.run is None:
        return _no_run()
    from ..run.ensure import ensure_supervisor  # a run exists: it may need a supervisor

    if ensure_supervisor(ctx, loaded, view):
        view = RunView.read(loaded)
    if mid is not None:
        if view.worker(mid) is None:
            return _not_in_run(loaded, view, mid)
        view.workers = [w for w in view.workers if w.milestone_id == mid]
    return CommandResult(view.render_status(loaded), view.status_json(loaded))


def _milestone_asked(name: str, ctx: CommandContext) -> str | None:
    """The ``MID`` of ``status MID``. A bare ``status`` has nothing to parse, and building
    an argparse parser is not free (its texts go through gettext, which imports locale)."""
    if not ctx.args:
        return None
    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    milestone: str | None = parse(parser, ctx).milestone
    return milestone


def _not_in_run(loaded: Loaded, view: RunView, mid: str) -> CommandResult:
    """A milestone with no worker: say what it waits for (a valid question, not an error)."""
    waiting = [w for w in (view.waiting(loaded) if view.active else []) if w["id"] == mid]
    if not waiting:
        from ..project.eligibility import analyse

        report = analyse(loaded.project, max_workers=loaded.preferences.parallel.max_workers)
        why = next((v.reason for v in report.ineligible if v.id == mid), None)
        if why is None:
            why = f"it is eligible and not started yet; run {hints.cmd('start')}"
        raise UserError(f"{mid} has no worker in the current run: {why}")
    reason = waiting[0]["reason"]
    data = {"active": view.active, "workers": [], "waiting": waiting}
    return CommandResult(f"- **{mid}** — waiting: {reason}\n", data)
