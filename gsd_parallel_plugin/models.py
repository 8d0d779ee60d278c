"""Frozen records passed between the host, the plugin and third-party hooks.

Everything a hook receives is immutable, so a plugin cannot change the
coordinator's view of the world behind its back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .exitcodes import ExitCode

if TYPE_CHECKING:
    from .host import HostSession
    from .records import (  # loaded on first use: see __getattr__ at the end
        EligibilityReport,
        MergeResult,
        Overlap,
        Plan,
        Verdict,
        Waiting,
        WorkerHandle,
        WorkerSpec,
    )

MilestoneStatus = Literal["complete", "parked", "pending", "ghost"]


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    done: bool
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slice:
    id: str
    title: str
    done: bool
    depends: tuple[str, ...] = ()
    tasks: tuple[Task, ...] = ()
    has_plan: bool = False
    """True when ``slices/<SID>/<SID>-PLAN.md`` exists and was read."""


@dataclass(frozen=True)
class Milestone:
    id: str
    title: str
    path: Path
    """The milestone's directory under ``.gsd/milestones``."""
    status: MilestoneStatus
    depends_on: tuple[str, ...] = ()
    slices: tuple[Slice, ...] = ()
    files: frozenset[str] = frozenset()
    """Files the plans say this milestone touches (paths as written, ``./`` stripped)."""
    has_file_plan: bool = False
    """False when no slice plan lists a file: overlap is unknown, not absent."""
    integration_branch: str | None = None
    """From ``<MID>-META.json``; None means the project default."""
    problems: tuple[str, ...] = ()
    """Malformed files, each naming the file (and line when known)."""
    draft_only: bool = False
    """Only a CONTEXT-DRAFT exists: the milestone is still being discussed."""
    all_slices_done: bool = False

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(t for s in self.slices for t in s.tasks)

    @property
    def tasks_left(self) -> int:
        return sum(1 for t in self.tasks if not t.done)


@dataclass(frozen=True)
class Project:
    root: Path
    """The directory holding ``.gsd`` (the git work tree root in practice)."""
    gsd_dir: Path
    """``root / ".gsd"`` with symlinks resolved."""
    milestones: tuple[Milestone, ...]
    """In queue order (``QUEUE-ORDER.json`` first, then numeric)."""
    integration_branch: str
    problems: tuple[str, ...] = ()
    """Project-level problems (duplicate IDs, bad queue file)."""

    def get(self, milestone_id: str) -> Milestone | None:
        for m in self.milestones:
            if m.id == milestone_id:
                return m
        return None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.milestones)


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

_IN_RECORDS = frozenset(__all__).difference(globals())
"""The public names defined in :mod:`gsd_parallel_plugin.records` (not here)."""


def __getattr__(name: str) -> object:
    """The records of :mod:`gsd_parallel_plugin.records`, loaded on first use (PEP 562):
    ``from gsd_parallel_plugin.models import WorkerSpec`` works as ever, and a command that
    uses none of them (``status``) does not build their classes."""
    if name not in _IN_RECORDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import records

    value = getattr(records, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_IN_RECORDS})
