"""The plan as frozen records: a project's milestones, their slices and tasks.

Importable from :mod:`gsd_parallel_plugin.models` like every other record (that is where
plugins import them); they live in the project room, which builds them, and load on first
use, so that ``status`` with no run, which reads no plan, does not pay for their classes
(each dataclass costs about a millisecond at import: ``bench/bench_startup.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Milestone", "MilestoneStatus", "Project", "Slice", "Task"]

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
