"""``/gsd parallel plugins``: each loaded plugin with its distribution, version and hooks."""

from __future__ import annotations

from ..models import CommandContext, CommandResult
from .common import ArgParser, parse


def run(name: str, ctx: CommandContext) -> CommandResult:
    parse(ArgParser(name), ctx)
    infos = ctx.host.plugins.info()
    lines = [f"# Plugins ({len(infos)})", ""]
    for info in infos:
        origin = info.source
        if info.distribution:
            origin += f", {info.distribution} {info.version or ''}".rstrip()
        lines.append(f"- **{info.name}** ({origin})")
        lines.append("  hooks: " + (", ".join(info.hooks) or "none"))
    data = {
        "plugins": [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "source": i.source,
                "hooks": i.hooks,
            }
            for i in infos
        ]
    }
    return CommandResult("\n".join(lines) + "\n", data)
