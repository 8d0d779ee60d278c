"""The frozen records only a run, the eligibility check or a merge passes around.

Importable from :mod:`gsd_parallel_plugin.models` like every other record (that is where
plugins import them); they live apart so that a read-only command, which uses none of them,
does not pay for building their classes (each dataclass costs about a millisecond at import:
``bench/bench_startup.py``). ``models`` loads this module on first use of one of its names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: this module must not import models (models loads it)
    from .models import VerdictKind, WaitKind

__all__ = [
    "EligibilityReport",
    "MergeResult",
    "Overlap",
    "Plan",
    "Verdict",
    "Waiting",
    "WorkerHandle",
    "WorkerSpec",
]


@dataclass(frozen=True)
class Verdict:
    """One milestone's eligibility, with GSD's reason text."""

    id: str
    title: str
    eligible: bool
    reason: str
    kind: VerdictKind | None = field(default=None, compare=False)
    """Set by :func:`~gsd_parallel_plugin.project.eligibility.analyse`."""


@dataclass(frozen=True)
class Overlap:
    milestones: tuple[str, str]
    files: tuple[str, ...]


@dataclass(frozen=True)
class Waiting:
    id: str
    reason: str
    kind: WaitKind | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Plan:
    start: tuple[str, ...]
    waiting: tuple[Waiting, ...]


@dataclass(frozen=True)
class EligibilityReport:
    eligible: tuple[Verdict, ...]
    ineligible: tuple[Verdict, ...]
    overlaps: tuple[Overlap, ...]
    plan: Plan
    cycles: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to launch one worker; passed to ``spawn_worker``."""

    milestone_id: str
    title: str
    project_root: Path
    worktree: Path
    branch: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    """Only the variables gsd-parallel adds; the launcher merges them over os.environ."""
    stdout_log: Path
    stderr_log: Path


@dataclass(frozen=True)
class WorkerHandle:
    """A launched worker. ``create_time`` (psutil) makes the pid unambiguous."""

    pid: int
    create_time: float


@dataclass(frozen=True)
class MergeResult:
    id: str
    outcome: Literal["merged", "conflict", "failed", "skipped"]
    files: tuple[str, ...] = ()
    commit: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "files": list(self.files),
            "commit": self.commit,
            "error": self.error,
        }
