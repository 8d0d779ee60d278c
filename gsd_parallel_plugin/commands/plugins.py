"""``/gsd parallel plugins``: each loaded plugin with its distribution, version and hooks.

Third-party plugins come first (they are asked first), then the builtins. Plugins that
failed to load and names blocked by ``GSD_PARALLEL_DISABLED_PLUGINS`` are listed too, so
"why is my plugin not running?" has an answer in one command.
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import HOOK_KINDS
from ..invocation import ArgParser, parse
from ..models import CommandContext, CommandResult
from ..plugins import BUILTIN_PREFIX, ENV_DISABLED, PluginInfo


def _is_builtin(info: PluginInfo) -> bool:
    return info.source == "builtin" and info.name.startswith(BUILTIN_PREFIX)


def _origin(info: PluginInfo) -> str:
    origin = info.source
    if info.distribution:
        origin += f", {info.distribution} {info.version or ''}".rstrip()
    elif info.module and info.module != info.name:
        origin += f", {info.module}"
    return origin


def run(name: str, ctx: CommandContext) -> CommandResult:
    parse(ArgParser(name), ctx)
    loaded = ctx.host.plugins
    infos = sorted(loaded.info(), key=_is_builtin)  # stable: third parties first
    blocked = loaded.blocked()
    lines = [f"# Plugins ({len(infos)})", ""]
    for info in infos:
        lines.append(f"- **{info.name}** ({_origin(info)})")
        hooks = [f"{hook} ({HOOK_KINDS.get(hook, '?')})" for hook in info.hooks]
        lines.append("  hooks: " + (", ".join(hooks) or "none"))
    if blocked:
        lines += ["", f"## Blocked ({len(blocked)})", ""]
        lines += [f"- {b} (by {ENV_DISABLED})" for b in blocked]
    if loaded.warnings:
        lines += ["", f"## Not loaded ({len(loaded.warnings)})", ""]
        lines += [f"- {w}" for w in loaded.warnings]
    data: dict[str, Any] = {
        "plugins": [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "source": i.source,
                "module": i.module,
                "builtin": _is_builtin(i),
                "hooks": i.hooks,
            }
            for i in infos
        ],
        "blocked": blocked,
        "warnings": list(loaded.warnings),
    }
    return CommandResult("\n".join(lines) + "\n", data)
