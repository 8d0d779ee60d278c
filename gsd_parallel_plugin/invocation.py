"""What every subcommand needs: argument parsing that raises instead of exiting,
loading project and preferences, and checking milestone IDs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import hints
from .errors import ProjectError, UserError
from .milestone_ids import validate_milestone_id
from .models import CommandContext
from .preferences import Preferences, load_preferences
from .workspace import layout

if TYPE_CHECKING:
    from .models import Project

NOT_ENABLED = "Parallel mode is not enabled. Set `parallel.enabled: true` in your preferences."
IN_WORKER = "Cannot start parallel from within a parallel worker"


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter at a fixed width. ``add_argument`` builds one to check each
    metavar, and the default width asks ``shutil`` for the terminal size (``shutil`` imports
    the compression modules). No parser here prints argparse help:
    ``--help`` is the CLI's own text."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=80)


class ArgParser(argparse.ArgumentParser):
    """argparse that reports problems as a UserError (exit 2) instead of exiting."""

    def __init__(self, name: str, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(prog=hints.bare(name), add_help=False, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def parse(parser: ArgParser, ctx: CommandContext) -> argparse.Namespace:
    return parser.parse_args(list(ctx.args))


@dataclass(frozen=True)
class Loaded:
    root: Path
    project: Project
    preferences: Preferences

    @property
    def parallel_dir(self) -> Path:
        return layout.parallel_dir(self.project.gsd_dir)


def load(ctx: CommandContext, *, warn: bool = True, strict: bool = True) -> Loaded:
    """Find the project, read preferences and the plan files (tolerantly).

    ``strict=False`` is for commands that stop or inspect a run: a broken preference is a
    warning naming the file there, not a refusal (the workers keep spending meanwhile).
    Its warnings are shown even with ``warn=False``: they say why a setting is not applied.
    """
    root, preferences = locate(ctx, warn=warn, strict=strict)
    return read_plans(ctx, root, preferences, warn=warn)


def locate(ctx: CommandContext, *, warn: bool = True, strict: bool = True) -> tuple[Path, Preferences]:
    """The first half of :func:`load`: the project's root and its preferences, no plan read."""
    from .preferences import LENIENT_SUFFIX
    from .project import find_project_root

    root = find_project_root(ctx.host.project_dir)
    preferences = load_preferences(root / ".gsd", strict=strict)
    for warning in preferences.warnings:
        if warn or warning.endswith(LENIENT_SUFFIX):
            ctx.host.notify(warning, "warning")
    return root, preferences


def read_plans(ctx: CommandContext, root: Path, preferences: Preferences, *, warn: bool = True) -> Loaded:
    """The second half of :func:`load`: every milestone's plan files, after :func:`locate`."""
    from .project import read_project

    main_branch = preferences.git_main_branch  # named there, git need not be asked
    project = read_project(
        root, default_branch=None if main_branch else _default_branch(root), git_main_branch=main_branch
    )
    if warn:
        show_project_problems(ctx, project.problems)
    return Loaded(root, project, preferences)


def show_project_problems(ctx: CommandContext, problems: Iterable[str]) -> None:
    """Project-wide problems (a broken QUEUE-ORDER.json, two directories for one ID) belong
    to no milestone's verdict: without these lines nobody would ever see them."""
    for problem in problems:
        ctx.host.notify(problem, "warning")


def _default_branch(root: Path) -> str | None:
    if layout.has_loose_branch(root, "main"):  # what git.default_branch answers first
        return "main"
    from .workspace import git

    try:
        return git.default_branch(root)
    except Exception:
        return None  # not a git repository: commands that need git say so themselves


def require_enabled(loaded: Loaded) -> None:
    if os.environ.get("GSD_PARALLEL_WORKER"):
        raise UserError(IN_WORKER)
    if not loaded.preferences.parallel.enabled:
        raise UserError(NOT_ENABLED)


def milestone_arg(loaded: Loaded, value: str) -> str:
    """A milestone ID the user typed: well-formed and present in the project."""
    validate_milestone_id(value)
    if loaded.project.get(value) is None:
        known = ", ".join(loaded.project.ids[:8]) + (" …" if len(loaded.project.ids) > 8 else "")
        raise ProjectError(f"unknown milestone {value}" + (f" (known: {known})" if known else ""))
    return value


def veto_for(ctx: CommandContext, loaded: Loaded):  # type: ignore[no-untyped-def]
    """Adapter from the check_eligibility hook to eligibility.analyse's veto callback."""
    prefs = loaded.preferences.parallel.to_json()

    def veto(milestone):  # type: ignore[no-untyped-def]
        return ctx.host.hooks.check_eligibility(milestone, loaded.project, prefs)

    return veto


def not_implemented(name: str) -> NoReturn:
    raise UserError(f"{hints.bare(name)} is not implemented yet")
