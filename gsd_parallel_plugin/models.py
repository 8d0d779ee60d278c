"""Frozen records passed between the host, the plugin and third-party hooks.

Everything a hook receives is immutable, so a plugin cannot change the
coordinator's view of the world behind its back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from .exitcodes import ExitCode

if TYPE_CHECKING:
    from .host import HostSession

    # loaded on first use: see __getattr__ at the end
    from .project.records import Milestone, MilestoneStatus, Project, Slice, Task
    from .records import (
        EligibilityReport,
        MergeResult,
        Overlap,
        Plan,
        Verdict,
        Waiting,
        WorkerHandle,
        WorkerSpec,
    )


class VerdictKind(str, Enum):
    """Why a milestone may or may not run, as a kind: code compares these, never the reason text."""

    ELIGIBLE = "eligible"
    PROBLEMS = "problems"
    """Its planning files are malformed."""
    GHOST = "ghost"
    COMPLETE = "complete"
    AWAITING_MERGE = "awaiting_merge"
    """Complete in its checkout, not yet on the integration branch."""
    PARKED = "parked"
    CYCLE = "cycle"
    """Part of a dependency cycle."""
    BLOCKED = "blocked"
    """A dependency is not complete (or unknown)."""
    WAITING_FOR_MERGE = "waiting_for_merge"
    """Every dependency is complete, some not merged yet."""
    UNCOMMITTED_PLANS = "uncommitted_plans"
    """Its planning files are not committed: its checkout would start without them."""
    VETOED = "vetoed"
    """A plugin's ``check_eligibility`` refused it."""

    def __str__(self) -> str:
        return self.value


WAITING_KINDS: frozenset[VerdictKind] = frozenset(
    {
        VerdictKind.CYCLE,
        VerdictKind.BLOCKED,
        VerdictKind.WAITING_FOR_MERGE,
        VerdictKind.UNCOMMITTED_PLANS,
    }
)
"""Ineligible only until something else happens (other milestones finish or merge, the
plans get committed): ``status`` and ``watch`` list these with the waiting milestones."""


class WaitKind(str, Enum):
    """Why an eligible milestone is not planned to start now."""

    OVERLAP = "overlap"
    """Its files overlap a milestone that runs, starts or waits for its merge (serialize)."""
    SLOT = "slot"
    """No free worker slot (``max_workers``)."""

    def __str__(self) -> str:
        return self.value


class WorkerState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETE = "complete"
    CRASHED = "crashed"
    FAILED = "failed"
    BLOCKED = "blocked"

    def __str__(self) -> str:
        return self.value


LIVE_STATES: frozenset[str] = frozenset(
    s.value for s in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.PAUSING, WorkerState.STOPPING)
)
"""A process is (or should be) running for the worker: it takes a slot, it may spend."""

HELD_STATES: frozenset[str] = frozenset(
    s.value
    for s in (
        WorkerState.PAUSED,
        WorkerState.STOPPED,
        WorkerState.FAILED,
        WorkerState.BLOCKED,
        WorkerState.COMPLETE,
    )
)
"""Settled, and not started again by this run on its own (the user resumes, or it is done)."""


class StateReason(str, Enum):
    """The fixed ``state_reason`` texts: what the code writes and reads back as a kind.

    Stored in SQLite as this very text (a store written before reads the same), shown to
    people as it is. Code compares with a member (``row.state_reason == StateReason.BUDGET``),
    never with the words, so rewording one changes the text everywhere at once.
    """

    BUDGET = "budget ceiling reached"
    """Stopped by the run's ceiling: launched again when the ceiling is raised."""
    ENVELOPE = "milestone budget reached"
    PAUSE_REQUESTED = "pause requested"
    """The user's ``pause`` (no reason of the budget guard): a paused worker keeps no reason."""
    FROZEN = "frozen (pause --now)"
    RESTARTED = "restarted"
    RESUMED = "resumed"
    PAUSE_CANCELLED = "pause cancelled"
    STOPPED_WHILE_WAITING = "stopped while waiting to restart"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CommandResult:
    """What a slash-command handler returns: text for people, data for ``--json``."""

    text: str
    data: Any = None
    exit_code: int = ExitCode.OK


@dataclass(frozen=True)
class CommandContext:
    """What a handler receives: the host, parsed arguments and output mode."""

    host: HostSession
    args: tuple[str, ...]
    json: bool = False


Handler = Callable[[CommandContext], CommandResult]


@dataclass(frozen=True)
class SlashCommand:
    """A ``/gsd <group> <name>`` subcommand contributed by a plugin."""

    name: str
    summary: str
    handler: Handler = field(compare=False)
    usage: str = ""
    group: str = "parallel"


__all__ = [
    "HELD_STATES",
    "LIVE_STATES",
    "WAITING_KINDS",
    "CommandContext",
    "CommandResult",
    "EligibilityReport",
    "Handler",
    "MergeResult",
    "Milestone",
    "MilestoneStatus",
    "Overlap",
    "Plan",
    "Project",
    "SlashCommand",
    "Slice",
    "StateReason",
    "Task",
    "Verdict",
    "VerdictKind",
    "WaitKind",
    "Waiting",
    "WorkerHandle",
    "WorkerSpec",
    "WorkerState",
]

_PLAN_RECORDS = frozenset({"Milestone", "MilestoneStatus", "Project", "Slice", "Task"})
"""The public names defined in :mod:`gsd_parallel_plugin.project.records`."""
_ELSEWHERE = frozenset(__all__).difference(globals())
"""The public names defined there or in :mod:`gsd_parallel_plugin.records` (not here)."""


def __getattr__(name: str) -> object:
    """The records of :mod:`.records` and :mod:`.project.records`, loaded on first use
    (PEP 562): ``from gsd_parallel_plugin.models import WorkerSpec`` works as ever, and a
    command that uses none of them (``status`` with no run) does not build their classes."""
    if name not in _ELSEWHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _PLAN_RECORDS:
        from .project import records as home
    else:
        from . import records as home  # type: ignore[no-redef]
    value = getattr(home, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ELSEWHERE})
