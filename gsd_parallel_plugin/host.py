"""The reference host: loads plugins, builds the ``/gsd`` command table, dispatches lines.

GSD itself is a host; so is our ``gsd-parallel`` CLI, which is a thin wrapper over
:meth:`HostSession.dispatch`. Because both go through the same handlers,
``gsd-parallel status`` and ``/gsd parallel status`` cannot differ.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from . import hints
from .errors import GsdParallelError, UserError
from .exitcodes import ExitCode
from .models import CommandContext, CommandResult, SlashCommand
from .plugins import Hooks, LoadedPlugins, create_plugin_manager

USAGE_SUBCOMMANDS = "[start|status|stop|pause|resume|merge|watch]"


def usage() -> str:
    """GSD's usage line, naming the command the way the user typed it."""
    return f"Usage: {hints.bare(USAGE_SUBCOMMANDS)}"


class DuplicateCommandError(UserError):
    """Two plugins claim the same ``/gsd <group> <name>``."""


class HostSession:
    """One session of a host: its plugins, its command table and how it talks to the user."""

    def __init__(
        self,
        project_dir: Path | None = None,
        *,
        plugins: LoadedPlugins | None = None,
        environ: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        confirm_fn: Callable[[str], bool] | None = None,
        invoked_as: str = "gsd-parallel",
    ) -> None:
        self.project_dir = project_dir
        #: how the user reached us (``gsd-parallel`` or ``/parallel``): hints name it so
        self.invoked_as = invoked_as
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.interactive = (
            interactive
            if interactive is not None
            else bool(getattr(sys.stdin, "isatty", lambda: False)() and self.out.isatty())
        )
        self._confirm_fn = confirm_fn
        self.plugins = plugins or create_plugin_manager(self._plugin_root(), environ=environ)
        self.hooks = Hooks(self.plugins.pm, warn=lambda message: self.notify(message, "warning"))
        self.notices: list[tuple[str, str]] = []
        for warning in self.plugins.warnings:
            self.notify(warning, "warning")
        self._commands: dict[tuple[str, str], tuple[str, SlashCommand]] | None = None
        self.hooks.on_session_start(self)

    def _plugin_root(self) -> Path | None:
        """The project directory whose ``pyproject.toml`` may list plugins (best effort)."""
        from .project import find_project_root

        try:
            return find_project_root(self.project_dir)
        except GsdParallelError:
            return None

    # ------------------------------------------------------------------ talking to the user
    def notify(self, message: str, level: str = "info") -> None:
        """Tell the user something without interrupting (stderr for the CLI host)."""
        self.notices.append((level, message))
        prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
        print(f"{prefix}{message}", file=self.err, flush=True)

    def confirm(self, question: str) -> bool | None:
        """Ask a yes/no question; None when no one can answer (non-interactive host)."""
        if self._confirm_fn is not None:
            return self._confirm_fn(question)
        if not self.interactive:
            return None
        try:
            answer = input(f"{question} [y/N] ")
        except EOFError:
            return None
        return answer.strip().lower() in {"y", "yes"}

    # ------------------------------------------------------------------ commands
    @property
    def commands(self) -> dict[tuple[str, str], tuple[str, SlashCommand]]:
        """``(group, name) -> (plugin name, command)``; built once, duplicates refused."""
        if self._commands is None:
            table: dict[tuple[str, str], tuple[str, SlashCommand]] = {}
            for plugin_name, command in self.hooks.register_slash_commands(self):
                key = (command.group, command.name)
                if key in table:
                    other = table[key][0]
                    raise DuplicateCommandError(
                        f"/gsd {command.group} {command.name} is claimed by two plugins: "
                        f"'{other}' and '{plugin_name}'; disable one with "
                        "GSD_PARALLEL_DISABLED_PLUGINS"
                    )
                table[key] = (plugin_name, command)
            self._commands = table
        return self._commands

    def subcommands(self, group: str = "parallel") -> list[SlashCommand]:
        return [c for (g, _n), (_p, c) in self.commands.items() if g == group]

    def _unknown(self, group: str, name: str) -> str:
        """GSD's message, a guess at the typo, and the subcommands GSD's usage line leaves out."""
        import difflib

        known = [n for (g, n) in self.commands if g == group]
        message = f'Unknown {group} subcommand "{name}".'
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            message += f' Did you mean "{close[0]}"?'
        message += f" {usage()}"
        listed = USAGE_SUBCOMMANDS.strip("[]").split("|")
        extra = [n for n in known if n not in listed]
        if extra:
            message += f" (also: {', '.join(extra)})"
        return message

    def dispatch(self, line: str | Sequence[str], *, json: bool = False) -> CommandResult:
        """Run ``/gsd parallel status M002`` (a line or its words) and return the result.

        User errors come back as a result with exit code 2 and the one-line message,
        never as an exception. Hints inside name the command as :attr:`invoked_as`.
        """
        with hints.invoked_as(self.invoked_as):
            return self._dispatch(line, json=json)

    def _dispatch(self, line: str | Sequence[str], *, json: bool) -> CommandResult:
        words = shlex.split(line) if isinstance(line, str) else list(line)
        if words and words[0] in {"/gsd", "gsd"}:
            words = words[1:]
        if "--json" in words:
            json = True
            words = [w for w in words if w != "--json"]
        group = words[0] if words else "parallel"
        rest = words[1:]
        if not rest:
            return CommandResult(usage(), {"error": usage()}, exit_code=ExitCode.USER_ERROR)
        name, args = rest[0], tuple(rest[1:])
        try:
            entry = self.commands.get((group, name))
            if entry is None:
                message = self._unknown(group, name)
                return CommandResult(message, {"error": message}, exit_code=ExitCode.USER_ERROR)
            return entry[1].handler(CommandContext(host=self, args=args, json=json))
        except GsdParallelError as exc:
            return CommandResult(str(exc), {"error": str(exc)}, exit_code=exc.exit_code)
