"""``/gsd parallel start``: the eligibility report, the plan, and (unless --dry-run) workers."""

from __future__ import annotations

from ..eligibility import analyse, render_report, report_json
from ..models import CommandContext, CommandResult
from .common import ArgParser, load, not_implemented, parse, require_enabled, veto_for


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--wait", action="store_true")
    args = parse(parser, ctx)
    loaded = load(ctx)
    require_enabled(loaded)
    prefs = loaded.preferences.parallel
    report = analyse(
        loaded.project,
        max_workers=prefs.max_workers,
        overlap_policy=prefs.overlap,
        veto=veto_for(ctx, loaded),
    )
    if args.dry_run:
        data = report_json(report)
        data["preferences"] = prefs.to_json()
        return CommandResult(render_report(report, loaded.project), data)
    not_implemented(name)
