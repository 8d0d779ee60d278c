"""``/gsd parallel status``."""

from __future__ import annotations

from ..models import CommandContext, CommandResult
from .common import ArgParser, load, parse

NO_RUN = "No parallel orchestration is currently active."


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    parse(parser, ctx)
    loaded = load(ctx)
    if not (loaded.parallel_dir / "coordinator.db").exists():
        return CommandResult(
            NO_RUN, {"active": False, "workers": [], "waiting": [], "total_cost": 0.0}
        )
    return CommandResult(NO_RUN, {"active": False, "workers": [], "waiting": [], "total_cost": 0.0})
