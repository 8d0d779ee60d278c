"""Projected cost to finish a run, for status and the budget guard's early warning.

Per worker: the average cost of its completed units (the run's average while it has
none) times the units left in its plans, as its worktree shows them (the root's copy
lags until the merge). Units are GSD auto-mode units, counted like
``views.eta.remaining_units`` counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GsdParallelError
from ..models import Milestone, Project
from ..money import NANOS_PER_USD
from ..store import WorkerRow


@dataclass(frozen=True)
class WorkerForecast:
    milestone_id: str
    spent: float
    units_done: int
    units_left: int | None
    """None when the milestone's plan could not be read."""
    per_unit: float | None
    basis: str | None
    """``own`` (its average per completed unit), ``run`` (the run's average) or None."""

    @property
    def remaining(self) -> float | None:
        if self.units_left == 0:
            return 0.0
        if self.units_left is None or self.per_unit is None:
            return None
        return self.per_unit * self.units_left

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.milestone_id, "spent": self.spent, "units_done": self.units_done,
            "units_left": self.units_left, "per_unit": self.per_unit, "basis": self.basis,
            "remaining": self.remaining,
        }  # fmt: skip


@dataclass(frozen=True)
class Forecast:
    """Projected cost to finish: spent so far plus each unfinished worker's remaining."""

    workers: tuple[WorkerForecast, ...]
    spent: float
    ceiling: float | None

    @property
    def remaining(self) -> float:
        return sum(w.remaining or 0.0 for w in self.workers)

    @property
    def total(self) -> float:
        return self.spent + self.remaining

    @property
    def partial(self) -> bool:
        """Some worker has no estimate (no unit done anywhere yet, or no readable plan)."""
        return any(w.remaining is None for w in self.workers)

    @property
    def over_ceiling(self) -> bool:
        """The projected total crosses a ceiling that is not reached yet."""
        return self.ceiling is not None and self.spent < self.ceiling < self.total

    def worker(self, mid: str) -> WorkerForecast | None:
        return next((w for w in self.workers if w.milestone_id == mid), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "spent": self.spent, "remaining": self.remaining, "total": self.total,
            "partial": self.partial, "over_ceiling": self.over_ceiling,
            "workers": [w.to_json() for w in self.workers],
        }  # fmt: skip


FINISHED_STATES = frozenset({"complete", "failed"})


def forecast(
    workers: Iterable[WorkerRow],
    milestones: Mapping[str, Milestone | None],
    ceiling: float | None,
) -> Forecast:
    """Per worker: average cost per completed unit x units left in its plans (the run's
    average for a worker with no unit done yet). Pure; ``milestones`` as its worktree shows."""
    from ..views.eta import remaining_units

    rows = list(workers)
    spent_nanos = sum(w.cost_nanos for w in rows)
    units = sum(w.units_done for w in rows)
    run_avg = spent_nanos / NANOS_PER_USD / units if units else None
    out = []
    for w in rows:
        if w.state in FINISHED_STATES:
            continue
        m = milestones.get(w.milestone_id)
        left = None if m is None else remaining_units(m)
        per_unit: float | None = w.cost / w.units_done if w.units_done else run_avg
        basis: str | None = "own" if w.units_done else "run"
        if per_unit is None:
            basis = None
        out.append(WorkerForecast(w.milestone_id, w.cost, w.units_done, left, per_unit, basis))
    return Forecast(tuple(out), spent_nanos / NANOS_PER_USD, ceiling)


def worker_milestones(
    workers: Iterable[WorkerRow], fallback: Project | None = None
) -> dict[str, Milestone | None]:
    """Each worker's milestone as its worktree shows it (the root lags until the merge)."""
    from ..project import read_project

    out: dict[str, Milestone | None] = {}
    for w in workers:
        m = None
        wt = Path(w.worktree)
        if (wt / ".gsd").is_dir():
            try:
                m = read_project(wt, default_branch="main").get(w.milestone_id)
            except GsdParallelError:
                m = None
        if m is None and fallback is not None:
            m = fallback.get(w.milestone_id)
        out[w.milestone_id] = m
    return out
