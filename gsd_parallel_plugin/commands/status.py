"""``/gsd parallel status [MID]``."""

from __future__ import annotations

from ..errors import UserError
from ..models import CommandContext, CommandResult
from .common import ArgParser, load, milestone_arg, parse
from .runstate import NO_RUN, RunView
from .supervise import ensure_supervisor


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    args = parse(parser, ctx)
    loaded = load(ctx)
    mid = milestone_arg(loaded, args.milestone) if args.milestone else None
    view = RunView.read(loaded)
    if view.run is None:
        return CommandResult(NO_RUN, {"active": False, "workers": [], "waiting": [], "total_cost": 0.0})
    if ensure_supervisor(ctx, loaded, view):
        view = RunView.read(loaded)
    if mid is not None:
        if view.worker(mid) is None:
            raise UserError(f"{mid} has no worker in the current run")
        view.workers = [w for w in view.workers if w.milestone_id == mid]
    return CommandResult(view.render_status(loaded), view.status_json(loaded))
