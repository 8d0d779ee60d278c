"""Estimated time to finish, per worker and for the run (pure functions).

The estimate is "observed seconds per unit x units remaining". A *unit* is one step of
GSD's auto mode (plan a slice, execute a task, complete a slice, complete the milestone),
the same thing the supervisor counts in ``WorkerRow.units_done``; units remaining come
from the milestone's plan as the worker's worktree shows it (:func:`remaining_units`).

Time observed is the time the worker spent in a live state, taken from the store's
``state`` events when they are at hand (:func:`active_seconds`), else the time since
its latest launch. Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..models import LIVE_STATES, Milestone

DEFAULT_TASKS_PER_SLICE = 2
"""Tasks assumed for a slice that has no plan yet (GSD plans two or more)."""
PROGRESS_STATES = frozenset({"running", "pausing"})
"""States in which a worker makes progress (time spent in them is "active")."""


class WorkerLike(Protocol):
    """What :func:`eta_for` needs from a worker (``store.WorkerRow`` has it)."""

    @property
    def state(self) -> str: ...
    @property
    def units_done(self) -> int: ...
    @property
    def started_at(self) -> float: ...


class EventLike(Protocol):
    """What :func:`active_seconds` needs from an event (``store.EventRow`` has it)."""

    @property
    def at(self) -> float: ...
    @property
    def milestone_id(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def data(self) -> Any: ...


def remaining_units(milestone: Milestone) -> int:
    """Units GSD still has to run for ``milestone``, as its plan files say now.

    Per undone slice: ``plan-slice`` when it has no plan (then
    :data:`DEFAULT_TASKS_PER_SLICE` tasks are assumed), one ``execute-task`` per undone
    task, ``complete-slice``; then ``complete-milestone``. No slices at all adds
    ``plan-milestone`` and one assumed slice. A complete milestone has none left.
    """
    if milestone.complete:
        return 0
    if not milestone.slices:
        return 1 + (1 + DEFAULT_TASKS_PER_SLICE + 1) + 1
    units = 1  # complete-milestone
    for s in milestone.slices:
        if s.done:
            continue
        if s.has_plan:
            units += sum(1 for t in s.tasks if not t.done)
        else:
            units += 1 + DEFAULT_TASKS_PER_SLICE
        units += 1  # complete-slice
    return units


def task_progress(milestone: Milestone) -> tuple[int, int | None]:
    """(tasks done, tasks planned); planned is None while some slice has no plan yet."""
    tasks = milestone.tasks
    done = sum(1 for t in tasks if t.done)
    if milestone.complete:
        return len(tasks), len(tasks)
    unplanned = not milestone.slices or any(not s.has_plan and not s.done for s in milestone.slices)
    return done, None if unplanned else len(tasks)


def active_seconds(events: Iterable[EventLike], now: float) -> dict[str, float]:
    """Seconds each milestone spent in a progress state, from ``state`` events in order.

    A ``state`` event's ``data`` is ``{"old": ..., "new": ...}``. An interval still open
    at the end runs until ``now``. Milestones without state events are absent.
    """
    since: dict[str, float] = {}
    total: dict[str, float] = {}
    for event in events:
        if event.kind != "state" or not event.milestone_id or not isinstance(event.data, dict):
            continue
        mid, new = event.milestone_id, str(event.data.get("new"))
        total.setdefault(mid, 0.0)
        if new in PROGRESS_STATES:
            since.setdefault(mid, event.at)
        elif mid in since:
            total[mid] += max(0.0, event.at - since.pop(mid))
    for mid, start in since.items():
        total[mid] += max(0.0, now - start)
    return total


def seconds_per_unit(units_done: int, seconds: float | None) -> float | None:
    """Observed pace; None until at least one unit finished in a measurable time."""
    if units_done <= 0 or seconds is None or seconds <= 0:
        return None
    return seconds / units_done


def eta_for(
    worker: WorkerLike,
    now: float,
    remaining: int,
    *,
    active: float | None = None,
) -> float | None:
    """Seconds until ``worker`` finishes its milestone, or None when it cannot be told.

    0 when it is complete or nothing remains; None when it is not making progress
    (paused, stopped, failed, …) or has not finished a unit yet. ``active`` is the time
    it spent working (see :func:`active_seconds`); default: since its latest launch.
    """
    if worker.state == "complete" or remaining <= 0:
        return 0.0
    if worker.state not in LIVE_STATES:
        return None
    seconds = active if active is not None else now - worker.started_at
    pace = seconds_per_unit(worker.units_done, seconds)
    return None if pace is None else remaining * pace


@dataclass(frozen=True)
class Queued:
    """A milestone that has not started yet, for :func:`run_eta`."""

    id: str
    units: int
    depends_on: Sequence[str] = ()


def run_eta(
    running: Mapping[str, float | None],
    queued: Sequence[Queued],
    *,
    max_workers: int,
    pace: float | None,
) -> float | None:
    """Seconds until the whole run is done: running workers finish at their ETA, queued
    milestones take the next free slot (after their dependencies), at ``pace`` s/unit.

    None when a running worker's ETA is unknown and no pace is known, or when something
    is queued and no pace is known. A list-scheduling estimate, not a promise.
    """
    if any(eta is None for eta in running.values()) and pace is None:
        return None
    if queued and pace is None:
        return None
    finish: dict[str, float] = {}
    slots: list[float] = []
    for mid, eta in running.items():
        finish[mid] = eta if eta is not None else 0.0
        slots.append(finish[mid])
    slots += [0.0] * max(0, max_workers - len(slots))
    heapq.heapify(slots)
    for item in queued:
        free_at = heapq.heappop(slots) if slots else 0.0
        start = max([free_at, *(finish.get(d, 0.0) for d in item.depends_on)])
        finish[item.id] = start + item.units * (pace or 0.0)
        heapq.heappush(slots, finish[item.id])
    return max(finish.values(), default=0.0)


def format_duration(seconds: float | None) -> str:
    """``~45s``, ``~12m``, ``~2h05m``; ``?`` when unknown, ``-`` when done."""
    if seconds is None:
        return "?"
    if seconds <= 0:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"~{s}s"
    minutes = max(1, round(s / 60))
    if minutes < 60:
        return f"~{minutes}m"
    return f"~{minutes // 60}h{minutes % 60:02d}m"
