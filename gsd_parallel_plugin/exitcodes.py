"""Exit codes, named once: ours (what ``gsd-parallel`` and the supervisor return) and GSD's
(what a headless GSD worker exits with, read by the supervisor to tell an exit's meaning).

The numbers are a contract (scripts, CI and GSD itself compare them), so they never change;
code compares these names, never the bare numbers.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``gsd-parallel`` command (or the background supervisor) exits with."""

    OK = 0
    FAILED = 1
    """The operation ran and did not succeed (a merge conflicted, a worker failed)."""
    USER_ERROR = 2
    """Something the user can fix: bad arguments, preferences, milestone ID."""
    ANOTHER_SUPERVISOR = 3
    """The background supervisor found another one holding the project's lock."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT), the shell's convention."""
    BROKEN_PIPE = 141
    """Output closed early (``| head``: 128 + SIGPIPE), the shell's convention."""

    def __str__(self) -> str:
        return str(self.value)  # "130", also on Python 3.10 (whose IntEnum says "ExitCode.…")


class GsdExit(IntEnum):
    """What a headless GSD worker exits with (``gsd headless``: 0 done or stopped, 1 error,
    10 blocked or paused, 11 cancelled)."""

    DONE = 0
    """Finished the milestone, or stopped after its current unit: the files tell which."""
    ERROR = 1
    PAUSED_OR_BLOCKED = 10
    """Paused (a pause we asked for, a provider error) or blocked: GSD's notice says which."""
    CANCELLED = 11
    """Ended by SIGTERM (an interrupting pause, a stop)."""

    def __str__(self) -> str:
        return str(self.value)
