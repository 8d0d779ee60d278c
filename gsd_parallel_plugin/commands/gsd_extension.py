"""``gsd-parallel gsd-extension install|uninstall|status [--project]``: ``/parallel`` inside GSD.

The extension (``gsd_parallel_plugin/gsd_extension/``: ``package.json`` and a plain ES module
``index.js``) is copied to ``~/.pi/agent/extensions/gsd-parallel/`` (``--project``:
``<project>/.gsd/extensions/gsd-parallel/``) with a ``config.json`` beside it that records the
absolute command of this ``gsd-parallel`` and the subcommand table (plugin commands included).
Never into ``~/.gsd/agent/extensions/``: GSD deletes folders there that it did not ship.
Installing again updates in place.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .. import __version__, hints
from ..errors import UserError
from ..invocation import ArgParser, parse
from ..models import CommandContext, CommandResult

NAME = "gsd-parallel"
SHIPPED = ("package.json", "index.js")
CONFIG = "config.json"
ACTIONS = ("install", "uninstall", "status")


def source_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "gsd_extension"


def global_dir() -> Path:
    return Path.home() / ".pi" / "agent" / "extensions" / NAME


def project_dir(ctx: CommandContext, directory: str | None = None) -> Path:
    """``<project>/.gsd/extensions/gsd-parallel``: *directory* (``--project DIR``), else the
    project ``--project``/the current directory is in."""
    from ..project import find_project_root

    start = Path(directory) if directory else ctx.host.project_dir
    return find_project_root(start) / ".gsd" / "extensions" / NAME


def gsd_parallel_command() -> list[str]:
    """The absolute command the extension runs: this installation's ``gsd-parallel``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == NAME and argv0.exists():
        return [str(argv0.resolve())]
    found = shutil.which(NAME)
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "gsd_parallel_plugin"]


def _subcommands(ctx: CommandContext) -> list[dict[str, str]]:
    table = [
        {"name": c.name, "usage": c.usage, "summary": c.summary} for c in ctx.host.subcommands("parallel")
    ]
    return table


def _read_config(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((target / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(scope: str, target: Path) -> dict[str, Any]:
    config = _read_config(target)
    installed = (target / "index.js").is_file() and config is not None
    command = list(config.get("command") or []) if config else []
    exists = bool(command) and Path(command[0]).exists()
    current = installed and all(
        (target / name).read_bytes() == (source_dir() / name).read_bytes() for name in SHIPPED
    )
    return {
        "scope": scope,
        "path": str(target),
        "installed": installed,
        "command": command,
        "command_exists": exists,
        "version": config.get("version") if config else None,
        "current": current,
    }


def install(ctx: CommandContext, target: Path, scope: str) -> CommandResult:
    if target.resolve().is_relative_to((Path.home() / ".gsd" / "agent").resolve()):
        raise UserError(f"refusing to install into {target}: GSD deletes extensions it did not ship")
    existed = (target / CONFIG).exists()
    target.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copyfile(source_dir() / name, target / name)
    command = gsd_parallel_command()
    config = {"version": __version__, "command": command, "subcommands": _subcommands(ctx)}
    (target / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    verb = "Updated" if existed else "Installed"
    text = (
        f"{verb} the GSD extension in {target} ({scope}); it runs {' '.join(command)}. "
        "Start a new GSD session and type /parallel status."
    )
    return CommandResult(text, {"action": "install", "updated": existed, **_describe(scope, target)})


def uninstall(target: Path, scope: str) -> CommandResult:
    if not target.exists():
        return CommandResult(
            f"The GSD extension is not installed in {target} ({scope}).",
            {"action": "uninstall", "removed": False, "scope": scope, "path": str(target)},
        )
    shutil.rmtree(target)
    return CommandResult(
        f"Removed the GSD extension from {target} ({scope}).",
        {"action": "uninstall", "removed": True, "scope": scope, "path": str(target)},
    )


def status(ctx: CommandContext) -> CommandResult:
    places = [_describe("global", global_dir())]
    with contextlib.suppress(Exception):  # not in a project: only the global place
        places.append(_describe("project", project_dir(ctx)))
    lines = []
    for p in places:
        if not p["installed"]:
            lines.append(f"{p['scope']}: not installed ({p['path']})")
            continue
        again = hints.cmd("gsd-extension install" + (" --project" if p["scope"] == "project" else ""))
        state = "exists" if p["command_exists"] else f"MISSING: run {again} again"
        lines.append(
            f"{p['scope']}: installed in {p['path']} (version {p['version']}); "
            f"runs {' '.join(p['command'])} ({state})"
        )
        if not p["current"]:
            lines.append(f"  older than this gsd-parallel's extension: run `{again}` to update it")
    return CommandResult("\n".join(lines) + "\n", {"places": places})


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("action", choices=ACTIONS)
    # ``--project`` alone: the project we are in; ``--project DIR``: that one
    parser.add_argument("--project", dest="in_project", nargs="?", const="", default=None)
    args = parse(parser, ctx)
    if args.action == "status":
        return status(ctx)
    scope = "project" if args.in_project is not None else "global"
    target = project_dir(ctx, args.in_project) if args.in_project is not None else global_dir()
    if args.action == "install":
        return install(ctx, target, scope)
    return uninstall(target, scope)
