"""Exceptions that become one clear line for the user.

``UserError`` (exit 2) is for things the user can fix: bad preferences, an unknown
milestone, a dirty checkout. ``OperationFailed`` (exit 1) is for an operation that
ran and did not succeed. Anything else escaping a command is a bug.
"""

from __future__ import annotations

from .exitcodes import ExitCode


class GsdParallelError(Exception):
    """Base class; ``str(exc)`` is the one line shown to the user."""

    exit_code: int = ExitCode.USER_ERROR


class UserError(GsdParallelError):
    """Something the user can fix; exit code 2."""

    exit_code: int = ExitCode.USER_ERROR


class OperationFailed(GsdParallelError):
    """The operation ran and failed; exit code 1."""

    exit_code: int = ExitCode.FAILED


class PreferencesError(UserError):
    """An invalid preference value: names file, key, value and what is allowed."""


class ProjectError(UserError):
    """Not a GSD project, not a git repository, unknown milestone ID."""


class StoreError(UserError):
    """The coordination store is corrupt, foreign or from a newer version."""


class GitError(UserError):
    """A git state we refuse to work in (unborn repo, detached HEAD, branch in use)."""


class WorkerLaunchError(UserError):
    """The worker command cannot be started (e.g. binary not found)."""


class PluginError(GsdParallelError):
    """A plugin failed in a decision or veto hook; the message names the plugin."""

    exit_code: int = ExitCode.FAILED
