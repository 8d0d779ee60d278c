"""``/gsd parallel`` subcommands.

Each subcommand lives in its own module with a ``run(ctx) -> CommandResult`` function;
:data:`SUBCOMMANDS` maps names to ``(module, summary)`` so the command table and
``--help`` need no heavy import: a handler's module is imported when it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # --help must stay cheap: no dataclass module at import time
    from ..models import CommandContext, CommandResult, Handler

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, usage, summary)
    "start": ("start", "[--dry-run] [--wait] [--json]", "Check eligibility and start workers."),
    "status": ("status", "[MID] [--json]", "Show workers, waiting milestones and cost."),
    "stop": ("control", "[MID]", "Stop one worker or all (graceful, then SIGTERM/SIGKILL)."),
    "pause": ("control", "[MID] [--now]", "Pause after the current unit (--now: freeze)."),
    "resume": ("control", "[MID] [--budget USD]", "Resume paused workers."),
    "merge": ("merge", "[MID] [--dry-run | --preview] [--json]", "Merge completed milestones back."),
    "revert": (
        "revert",
        "MID [--dry-run] [--with-dependents] [--json]",
        "Take a merged milestone back off the integration branch.",
    ),
    "watch": ("watch", "[--once] [--width N] [--interval S]", "Live dashboard of the run."),
    "graph": ("graph", "[--format tree|mermaid|dot] [--direction TD|LR]", "The milestone dependency graph."),
    "logs": ("logs", "MID [-f] [-n N]", "A worker's activity log."),
    "doctor": ("doctor", "[--fix]", "Find (and fix) dead workers, stale locks, orphans."),
    "plugins": ("plugins", "[--json]", "List loaded plugins and their hooks."),
    "demo": (
        "demo",
        "[DIR] [--real]",
        "Generate a sample project and run it (fake worker; --real: real GSD, scripted model).",
    ),
    "gsd-extension": (
        "gsd_extension",
        "install|uninstall|status [--project [DIR]]",
        "Install /parallel into GSD.",
    ),
    "session-events": ("session_events", "", "Deliver the GSD session's spooled events to plugins."),
}


def lazy_handler(name: str) -> Handler:
    """A handler that imports its module only when the command runs."""
    module_name = SUBCOMMANDS[name][0]

    def handler(ctx: CommandContext) -> CommandResult:
        module = importlib.import_module(f"{__name__}.{module_name}")
        result: CommandResult = module.run(name, ctx)
        return result

    handler.__name__ = f"{name}_handler"
    return handler
