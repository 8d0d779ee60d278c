"""One read of everything ``watch`` shows, from the store opened read-only.

Why one module: it is one read model, built for the one-second ``watch`` loop; the caching reader,
the frozen views it returns and the estimates drawn from them share the same rows and would only be
imported together.

:class:`SnapshotReader` is built once and asked for a :class:`Snapshot` every second, so
it keeps what is expensive to get: the store connection (reopened when the file is
replaced, dropped when it disappears), the project (re-read when the event log moves or
every few seconds), each worker's plan as its worktree shows it (re-read when the
worker's unit count changes), and the run's state events (tailed by id, for ETAs).
It never writes, never takes the supervisor's lock and never starts anything.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import hints
from ..errors import GsdParallelError
from ..models import HELD_STATES, LIVE_STATES, WAITING_KINDS, Milestone, Project
from ..preferences import Preferences
from ..run.preview_watch import PreviewPicture, read_preview
from ..run.radar import PairOverlap, read_picture
from ..store import EventRow, MergeRow, RunRow, Store, WorkerRow
from ..workspace import layout
from .eta import (
    Queued,
    active_seconds,
    eta_for,
    remaining_units,
    run_eta,
    seconds_per_unit,
    task_progress,
)

STOPPED_NOT_STARTED = "not started: the run is stopped"


def run_is_stopped(run_state: str | None, supervisor: object, worker_states: Iterable[str]) -> bool:
    """An open run the user stopped: nothing runs and nothing starts by itself (``stop``, all).

    No supervisor, no worker that is live or crashed (the next command restarts those), and
    at least one the user stopped (a run only waiting for a merge is not "stopped"):
    ``status`` and ``watch`` say so instead of promising work that will not start.
    """
    if run_state != "active" or supervisor is not None:
        return False
    states = set(worker_states)
    return "stopped" in states and not states & (LIVE_STATES | {"crashed"})


PROJECT_REFRESH_SECONDS = 10.0
EVENT_PAGE = 500
EVENT_WINDOW = 100
KEPT_FAILURES = 3


def no_store_notice() -> str:
    """What watch says before any run, naming ``start`` the way the user calls us."""
    return f"No run yet (no coordination store). Start one with {hints.cmd('start')}."


NO_STORE = no_store_notice()


def supervisor_status(parallel_dir: Path) -> dict[str, Any] | None:
    """The live supervisor's ``{"pid", "create_time"}``, or None when none runs."""
    from ..workspace.locks import read_holder

    return read_holder(parallel_dir / layout.SUPERVISOR_LOCK_NAME)


@dataclass(frozen=True)
class WorkerView:
    """One row of the dashboard."""

    id: str
    title: str
    state: str
    merged: bool
    unit: str | None
    tasks_done: int
    tasks_planned: int | None
    units_done: int
    units_left: int
    cost: float
    last_activity_at: float | None
    restarts: int
    eta: float | None
    reason: str | None
    last_error: str | None

    @property
    def label(self) -> str:
        if self.state == "complete":
            return "merged" if self.merged else "complete"
        return self.state

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["label"] = self.label
        return out


@dataclass(frozen=True)
class MergeView:
    merged: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    conflicted: tuple[tuple[str, str], ...] = ()
    """(milestone, what went wrong: ``CONFLICT (2 files)``, ``failed: …``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "merged": list(self.merged),
            "pending": list(self.pending),
            "running": list(self.running),
            "conflicted": [{"id": m, "detail": d} for m, d in self.conflicted],
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything one dashboard frame shows."""

    taken_at: float
    notice: str | None = None
    run: RunRow | None = None
    supervisor: dict[str, Any] | None = None
    workers: tuple[WorkerView, ...] = ()
    total_cost: float = 0.0
    ceiling: float | None = None
    run_eta: float | None = None
    waiting: tuple[tuple[str, str], ...] = ()
    merges: MergeView = field(default_factory=MergeView)
    events: tuple[EventRow, ...] = ()
    overlaps: tuple[PairOverlap, ...] = ()
    """The overlap radar's pairs (``run/radar.py``): files two milestones both changed."""
    preview: PreviewPicture = field(default_factory=PreviewPicture)
    """The periodic integration preview's last verdicts (``run/preview_watch.py``)."""

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.state == "active"

    @property
    def stopped(self) -> bool:
        """Open, but nothing runs and nothing starts by itself (see :func:`run_is_stopped`)."""
        return run_is_stopped(
            self.run.state if self.run else None, self.supervisor, (w.state for w in self.workers)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "notice": self.notice,
            "run": self.run.to_json() if self.run else None,
            "active": self.active and not self.stopped,
            "stopped": self.stopped,
            "supervisor": self.supervisor,
            "workers": [w.to_json() for w in self.workers],
            "total_cost": round(self.total_cost, 9),
            "budget_ceiling": self.ceiling,
            "run_eta_seconds": self.run_eta,
            "waiting": [{"id": m, "reason": r} for m, r in self.waiting],
            "merges": self.merges.to_json(),
            "events": [e.to_json() for e in self.events],
            "overlaps": [o.to_json() for o in self.overlaps],
            "preview": self.preview.to_json(),
        }


def merge_view(rows: list[MergeRow], completed: set[str], merged: set[str]) -> MergeView:
    """Merged, waiting to merge, merging now, and stopped by a conflict or failed gate."""
    latest: dict[str, MergeRow] = {}
    for row in rows:
        latest[row.milestone_id] = row
    running, conflicted = [], []
    for mid, row in latest.items():
        if mid in merged:
            continue
        if row.outcome is None:
            running.append(mid)
        elif row.outcome == "conflict":
            conflicted.append((mid, f"CONFLICT ({len(row.files)} file(s))"))
        elif row.outcome in {"failed", "aborted"}:
            first = (row.error or row.outcome).strip().splitlines()
            conflicted.append((mid, f"{row.outcome}: {first[0] if first else ''}".rstrip(": ")))
    stuck = set(running) | {m for m, _ in conflicted}
    pending = sorted(m for m in completed - merged if m not in stuck)
    return MergeView(tuple(sorted(merged)), tuple(pending), tuple(running), tuple(conflicted))


class SnapshotReader:
    """Reads snapshots of one project's run; see the module docstring for what it caches."""

    def __init__(
        self,
        root: Path,
        preferences: Preferences,
        *,
        gsd_dir: Path | None = None,
        read_project: Callable[[Path], Project] | None = None,
        events: int = 6,
    ) -> None:
        self.root = root
        self.gsd_dir = gsd_dir or (root / ".gsd").resolve()
        self.parallel_dir = layout.parallel_dir(self.gsd_dir)
        self.store_path = layout.store_path(self.parallel_dir)
        self.preferences = preferences
        self.event_count = events
        self._read_project = read_project or _project_reader(preferences)
        self._store: Store | None = None
        self._store_id: tuple[int, int] | None = None
        self._project: Project | None = None
        self._project_key: tuple[int, float] = (-1, 0.0)
        self._plans: dict[str, tuple[tuple[Any, ...], Milestone | None]] = {}
        self._state_events: list[EventRow] = []
        self._events_run: int | None = None
        self._events_after = 0
        self._last: Snapshot | None = None

    # ------------------------------------------------------------------ store
    def _open(self) -> Store | None:
        try:
            st = os.stat(self.store_path)
        except FileNotFoundError:
            self.close()
            return None
        ident = (st.st_dev, st.st_ino)
        if self._store is not None and ident != self._store_id:
            self.close()  # replaced underneath us (moved aside, recreated): start over
        if self._store is None:
            self._store = Store.open_readonly(self.store_path)
            self._store_id = ident if self._store is not None else None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store, self._store_id = None, None
        self._state_events, self._events_run, self._events_after = [], None, 0

    # ------------------------------------------------------------------ project
    def project(self, event_id: int, now: float) -> Project | None:
        """The root project, re-read when the event log moved or it is getting old."""
        last_id, read_at = self._project_key
        if self._project is None or event_id != last_id or now - read_at > PROJECT_REFRESH_SECONDS:
            try:
                self._project = self._read_project(self.root)
            except GsdParallelError:
                self._project = None
            self._project_key = (event_id, now)
        return self._project

    def plan_of(self, w: WorkerRow, project: Project | None) -> Milestone | None:
        """The milestone as its worker's worktree shows it (the root lags until merge)."""
        key = (w.units_done, w.state, w.current_unit, str(w.worktree))
        cached = self._plans.get(w.milestone_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        milestone = worktree_milestone(w.worktree, w.milestone_id, self.root, self._read_project)
        if milestone is None and project is not None:
            milestone = project.get(w.milestone_id)
        self._plans[w.milestone_id] = (key, milestone)
        return milestone

    def _tail_state_events(self, store: Store, run_id: int) -> None:
        if run_id != self._events_run:
            self._state_events, self._events_run, self._events_after = [], run_id, 0
        while True:
            page = store.events(limit=EVENT_PAGE, after_id=self._events_after, run_id=run_id)
            self._state_events += [e for e in page if e.kind == "state"]
            if page:
                self._events_after = page[-1].id
            if len(page) < EVENT_PAGE:
                return

    # ------------------------------------------------------------------ snapshot
    def read(self, now: float | None = None) -> Snapshot:
        """A fresh snapshot; on a store error, the previous one with the error as notice."""
        now = time.time() if now is None else now
        try:
            snap = self._read(now)
        except (GsdParallelError, sqlite3.Error) as exc:
            self.close()
            message = f"coordination store unreadable: {exc}"
            if self._last is None:
                return Snapshot(taken_at=now, notice=message)
            return _with_notice(self._last, message, now)
        self._last = snap
        return snap

    def _read(self, now: float) -> Snapshot:
        supervisor = supervisor_status(self.parallel_dir)
        ceiling = self.preferences.parallel.budget_ceiling
        store = self._open()
        if store is None:
            return Snapshot(taken_at=now, notice=no_store_notice(), supervisor=supervisor, ceiling=ceiling)
        run = store.active_run() or store.latest_run()
        events = _pick_events(store.events(limit=EVENT_WINDOW), self.event_count)
        project = self.project(events[-1].id if events else 0, now)
        if run is None:
            return Snapshot(taken_at=now, supervisor=supervisor, ceiling=ceiling, events=events)
        if run.budget_ceiling is not None:
            ceiling = run.budget_ceiling
        rows = store.workers(run.id)
        merged_all = set(store.merged_milestones())
        completed_all = set(store.completed_milestones())
        self._tail_state_events(store, run.id)
        active = active_seconds(self._state_events, now)
        views = [self._worker_view(w, project, merged_all, now, active) for w in rows]
        events = tuple(_with_error_lines(events, {w.milestone_id: w for w in rows}))
        in_run = {w.milestone_id for w in rows}
        merge_rows = [m for m in store.merges() if m.milestone_id in in_run or m.started_at >= run.started_at]
        merges = merge_view(
            merge_rows,
            completed_all & (in_run | {m.milestone_id for m in merge_rows}),
            merged_all & (in_run | {m.milestone_id for m in merge_rows}),
        )
        waiting: list[tuple[str, str]] = []
        eta = None
        if run.state == "active" and project is not None:
            waiting = self._waiting(project, rows, completed_all - merged_all)
            if run_is_stopped(run.state, supervisor, (w.state for w in rows)):
                # nothing starts by itself: no "starting next", no ETA for work that won't run
                waiting = [(m, STOPPED_NOT_STARTED if r == "starting next" else r) for m, r in waiting]
            else:
                eta = self._run_eta(views, rows, active, project, waiting)
        return Snapshot(
            taken_at=now,
            run=run,
            supervisor=supervisor,
            workers=tuple(views),
            total_cost=store.run_total_cost(run.id),
            ceiling=ceiling,
            run_eta=eta,
            waiting=tuple(waiting),
            merges=merges,
            events=events,
            overlaps=read_picture(self.parallel_dir, run.id).overlaps,
            preview=read_preview(self.parallel_dir, run.id),
        )

    def _worker_view(
        self,
        w: WorkerRow,
        project: Project | None,
        merged: set[str],
        now: float,
        active: dict[str, float],
    ) -> WorkerView:
        milestone = self.plan_of(w, project)
        done, planned = task_progress(milestone) if milestone else (0, None)
        left = remaining_units(milestone) if milestone else 0
        if w.state == "complete":
            left = 0
        eta = eta_for(w, now, left, active=active.get(w.milestone_id)) if milestone else None
        error = w.last_error.strip().splitlines()[-1] if w.last_error and w.last_error.strip() else None
        return WorkerView(
            id=w.milestone_id,
            title=w.title,
            state=w.state,
            merged=w.milestone_id in merged,
            unit=w.current_unit if w.state in LIVE_STATES else None,
            tasks_done=done,
            tasks_planned=planned,
            units_done=w.units_done,
            units_left=left,
            cost=w.cost,
            last_activity_at=w.last_activity_at,
            restarts=w.restarts,
            eta=eta,
            reason=w.state_reason,
            last_error=error,
        )

    def _waiting(
        self, project: Project, rows: list[WorkerRow], awaiting_merge: set[str]
    ) -> list[tuple[str, str]]:
        """Milestones not running, with what they wait for (as ``status`` says it)."""
        from ..project.eligibility import analyse

        prefs = self.preferences.parallel
        report = analyse(
            project,
            max_workers=prefs.max_workers,
            overlap_policy=prefs.overlap,
            running=[w.milestone_id for w in rows if w.state in LIVE_STATES],
            awaiting_merge=awaiting_merge,
            held=[w.milestone_id for w in rows if w.state in HELD_STATES],
        )
        has_row = {w.milestone_id for w in rows}
        waiting = [(w.id, w.reason) for w in report.plan.waiting]
        waiting += [
            (v.id, "starting next")
            for v in report.eligible
            if v.id in report.plan.start and v.id not in has_row
        ]
        waiting += [
            (v.id, v.reason) for v in report.ineligible if v.kind in WAITING_KINDS and v.id not in has_row
        ]
        return waiting

    def _run_eta(
        self,
        views: list[WorkerView],
        rows: list[WorkerRow],
        active: dict[str, float],
        project: Project,
        waiting: list[tuple[str, str]],
    ) -> float | None:
        units = sum(w.units_done for w in rows)
        seconds = sum(active.get(w.milestone_id, 0.0) for w in rows if w.units_done)
        pace = seconds_per_unit(units, seconds)
        running = {
            v.id: v.eta if v.eta is not None else _guess(v, pace) for v in views if v.state in LIVE_STATES
        }
        queued = []
        for mid, _reason in waiting:
            m = project.get(mid)
            if m is not None:
                queued.append(Queued(mid, remaining_units(m), m.depends_on))
        return run_eta(running, queued, max_workers=self.preferences.parallel.max_workers, pace=pace)


def worktree_milestone(
    worktree: Path, milestone_id: str, root: Path, read: Callable[[Path], Project] | None = None
) -> Milestone | None:
    """The milestone as the plan files in its worktree show it (None without a worktree).

    The worker checks tasks off there; the project root sees them only after the merge.
    """
    try:
        if not (worktree / ".gsd").is_dir() or worktree.resolve() == root.resolve():
            return None
        if read is None:
            from ..project import read_project

            return read_project(worktree).get(milestone_id)
        return read(worktree).get(milestone_id)
    except (GsdParallelError, OSError):
        return None


def _is_failure(e: EventRow) -> bool:
    new = e.data.get("new") if isinstance(e.data, dict) else None
    return e.kind == "error" or new in {"crashed", "failed", "blocked"}


def _pick_events(window: list[EventRow], count: int) -> tuple[EventRow, ...]:
    """The newest ``count`` events, plus up to :data:`KEPT_FAILURES` recent failures that
    newer events would push out (a crash stays on screen while the others carry on)."""
    newest = window[-count:] if count > 0 else []
    shown = {e.id for e in newest}
    failures = [e for e in window if _is_failure(e) and e.id not in shown][-KEPT_FAILURES:]
    return tuple(sorted([*failures, *newest], key=lambda e: e.id))


def _guess(view: WorkerView, pace: float | None) -> float | None:
    return None if pace is None else view.units_left * pace


def _with_notice(snap: Snapshot, notice: str, now: float) -> Snapshot:
    from dataclasses import replace

    return replace(snap, notice=notice, taken_at=now)


def _with_error_lines(events: tuple[EventRow, ...], rows: dict[str, WorkerRow]) -> list[EventRow]:
    """Crash and failure events get the worker's last stderr line as ``data["last_stderr"]``."""
    from dataclasses import replace

    out = []
    for e in events:
        row = rows.get(e.milestone_id or "")
        if e.kind == "state" and _is_failure(e) and row and row.last_error:
            last = row.last_error.strip().splitlines()[-1].strip()
            if last:
                e = replace(e, data={**e.data, "last_stderr": last})
        out.append(e)
    return out


def _project_reader(preferences: Preferences) -> Callable[[Path], Project]:
    """read_project with the integration branch worked out once (git is slow to ask)."""
    from ..project import read_project

    branch: dict[str, str | None] = {}

    def read(root: Path) -> Project:
        if "b" not in branch:
            try:
                from ..workspace.git import default_branch

                branch["b"] = default_branch(root)
            except Exception:
                branch["b"] = None
        return read_project(root, default_branch=branch["b"], git_main_branch=preferences.git_main_branch)

    return read


@dataclass(frozen=True)
class Estimate:
    """ETAs in seconds: per milestone of the current run (0 when complete, None when it
    cannot be told), and for the whole run (None when unknown)."""

    workers: dict[str, float | None]
    run: float | None


def estimate(
    root: Path, preferences: Preferences, *, gsd_dir: Path | None = None, now: float | None = None
) -> Estimate:
    """ETAs for ``status``: one read-only pass over the store and the workers' plans."""
    reader = SnapshotReader(root, preferences, gsd_dir=gsd_dir, events=0)
    try:
        snap = reader.read(now)
    finally:
        reader.close()
    return Estimate({w.id: w.eta for w in snap.workers}, snap.run_eta)
