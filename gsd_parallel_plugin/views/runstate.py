"""A read of the coordination store that commands share: status text, JSON, waiting list.

``status`` with no run reads nothing but the project: the store, budget and forecast
modules are imported by the methods that need them, so that answer stays quick.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import hints
from ..errors import UserError
from ..invocation import Loaded
from ..models import HELD_STATES, LIVE_STATES, WAITING_KINDS, StateReason
from ..workspace import layout
from . import NO_RUN

if TYPE_CHECKING:
    from ..run.forecast import Forecast
    from ..run.preview_watch import PreviewPicture
    from ..run.radar import Picture
    from ..store import MergeRow, RunRow, Store, WorkerRow

READY_NO_SUPERVISOR = "can start now; no supervisor is running to start it (run `start`)"
__all__ = ["RunView", "open_store", "refuse_if_budget_exhausted"]


def open_store(loaded: Loaded, *, create: bool = False) -> Store | None:
    """The project's store; None before anything ran. A store deleted or emptied under a
    run (its workers' logs are there) is an error naming ``doctor --fix``: opening it would
    create a new, empty one and hide the run and its cost."""
    path = layout.store_path(loaded.parallel_dir)
    if not create and layout.nothing_ran(loaded.parallel_dir):
        return None  # not missing either: no need to import the store
    from ..store import Store
    from ..store.rebuild import missing_message, store_missing

    if store_missing(loaded.parallel_dir):
        raise UserError(missing_message(loaded.parallel_dir))
    if not create and not path.exists():
        return None
    return Store(path)


def refuse_if_budget_exhausted(loaded: Loaded) -> None:
    """``start``/``resume`` refuse once the run's total reached the ceiling."""
    from ..run.budget import budget_message
    from ..store import NANOS_PER_USD, usd_to_nanos

    ceiling = loaded.preferences.parallel.budget_ceiling
    store = open_store(loaded)
    if store is None or ceiling is None:
        return
    with store:
        run = store.active_run() or store.latest_run()
        if run is None or run.state == "finished":
            return
        spent = store.run_total_nanos(run.id)
    if spent >= usd_to_nanos(ceiling):
        raise UserError(budget_message(ceiling, spent / NANOS_PER_USD))


def held_for_plans(loaded: Loaded, *, started: Collection[str] = ()) -> dict[str, str]:
    """Milestones whose planning files are not committed, with why (their checkout would
    start without them): ``analyse(uncommitted=...)``. Those this run started keep theirs."""
    from ..workspace.worktrees import uncommitted_plans

    return {
        mid: why for mid, why in uncommitted_plans(loaded.root, loaded.project).items() if mid not in started
    }


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int(time.time() - ts))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


@dataclass
class RunView:
    run: RunRow | None = None
    workers: list[WorkerRow] = field(default_factory=list)
    total_cost: float = 0.0
    merged: dict[str, str] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    supervisor: dict[str, Any] | None = None
    last_merge: dict[str, MergeRow] = field(default_factory=dict)
    """Each milestone's latest finished merge attempt (a conflict or a failed check shows)."""
    radar: Picture | None = None
    """The overlap radar's last picture (files the milestones actually changed, pairs)."""
    preview: PreviewPicture | None = None
    """The periodic integration preview's last verdicts (``parallel.preview_minutes``)."""
    _forecast: tuple[Forecast | None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def read(cls, loaded: Loaded) -> RunView:
        store = open_store(loaded)
        if store is None:
            return cls()
        from ..run.supervisor_lock import SupervisorLock

        with store:
            run = store.active_run() or store.latest_run()
            workers = store.workers(run.id) if run else []
            total = store.run_total_cost(run.id) if run else 0.0
            merged = store.merged_milestones()
            completed = store.completed_milestones()
            last_merge = {m.milestone_id: m for m in store.merges() if m.outcome is not None}
        return cls(
            run,
            workers,
            total,
            merged,
            completed,
            SupervisorLock.holder(loaded.parallel_dir),
            last_merge,
            _radar_picture(loaded, run.id) if run else None,
            _preview_picture(loaded, run.id) if run else None,
        )

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.state != "finished"

    @property
    def stopped(self) -> bool:
        """Open, but nothing runs and nothing starts by itself (after ``stop``, all)."""
        from .snapshot import run_is_stopped

        return run_is_stopped(
            self.run.state if self.run else None, self.supervisor, (w.state for w in self.workers)
        )

    @property
    def live(self) -> list[str]:
        return [w.milestone_id for w in self.workers if w.state in LIVE_STATES] if self.active else []

    @property
    def held(self) -> list[str]:
        """Milestones this run will not start again (what the ceiling stopped continues
        once it is raised: ``start`` refuses while it is not)."""

        if not self.active:
            return []
        over = self.run is not None and self.run.state == "budget_exceeded"
        return [
            w.milestone_id
            for w in self.workers
            if w.state in HELD_STATES and not (over and w.state_reason == StateReason.BUDGET)
        ]

    # ------------------------------------------------------------------ budget
    def budget(self, loaded: Loaded) -> dict[str, Any]:
        """Spent / ceiling, percent and state (``ok``, ``warning`` from 80 %, ``exceeded``)."""
        from ..run.budget import WARN_PERCENT, budget_message
        from ..store import NANOS_PER_USD, usd_to_nanos

        ceiling = loaded.preferences.parallel.budget_ceiling
        spent = sum(w.cost_nanos for w in self.workers)
        state, percent, message = "ok", None, None
        if ceiling is not None:
            limit = usd_to_nanos(ceiling)
            percent = spent * 100 // limit
            if spent >= limit:
                state, message = "exceeded", budget_message(ceiling, spent / NANOS_PER_USD)
            elif percent >= WARN_PERCENT:
                state = "warning"
        return {
            "spent": spent / NANOS_PER_USD,
            "ceiling": ceiling,
            "percent": percent,
            "state": state,
            "message": message,
            "run_state": self.run.state if self.run else None,
        }

    def forecast(self, loaded: Loaded) -> Forecast | None:
        """Projected cost to finish, while some worker of the run is unfinished."""
        from ..run.forecast import forecast, worker_milestones

        if self._forecast is None:
            unfinished = [w for w in self.workers if w.state not in {"complete", "failed"}]
            self._forecast = (
                forecast(
                    self.workers,
                    worker_milestones(unfinished, loaded.project),
                    loaded.preferences.parallel.budget_ceiling,
                )
                if unfinished
                else None,
            )
        return self._forecast[0]

    @property
    def awaiting_merge(self) -> list[str]:
        return [mid for mid in self.completed if mid not in self.merged]

    def worker(self, mid: str) -> WorkerRow | None:
        return next((w for w in self.workers if w.milestone_id == mid), None)

    def merge_problem(self, mid: str) -> MergeRow | None:
        """The last merge attempt of an unmerged milestone when it did not land."""
        row = self.last_merge.get(mid)
        if mid in self.merged or row is None or row.outcome not in {"conflict", "failed"}:
            return None
        return row

    def state_label(self, w: WorkerRow) -> str:
        if w.state == "complete":
            if w.milestone_id in self.merged:
                return "complete — merged"
            problem = self.merge_problem(w.milestone_id)
            if problem is not None and problem.outcome == "conflict":
                files = ", ".join(problem.files[:3]) + (" …" if len(problem.files) > 3 else "")
                return f"complete — merge CONFLICT ({len(problem.files)} file(s): {files})"
            if problem is not None:
                first = (problem.error or "").splitlines()[0] if problem.error else "unknown"
                return f"complete — merge failed: {first}"
            return "complete — awaiting merge"
        if w.state in {"paused", "stopped", "blocked"} and w.state_reason:
            return f"{w.state} — {w.state_reason}"
        return w.state

    def waiting(self, loaded: Loaded) -> list[dict[str, str]]:
        """Milestones not running, with what they wait for."""
        return self._waiting(loaded)[0]

    def _waiting(self, loaded: Loaded) -> tuple[list[dict[str, str]], set[str]]:
        """:meth:`waiting`, and the milestones in it that wait for something else
        (dependencies, a cycle, a merge, a commit): those stay as they are in a stopped run."""
        from ..project.eligibility import analyse

        prefs = loaded.preferences.parallel
        project = loaded.project
        if self.awaiting_merge:
            # Complete in its worktree, not yet on the integration branch (which is what
            # the root's .gsd shows): its dependents wait for the merge, and say so.
            done = set(self.awaiting_merge)
            project = replace(project, milestones=tuple(
                replace(m, status="complete") if m.id in done else m for m in project.milestones
            ))  # fmt: skip
        report = analyse(
            project,
            max_workers=prefs.max_workers,
            overlap_policy=prefs.overlap,
            uncommitted=held_for_plans(loaded, started=[w.milestone_id for w in self.workers]),
            running=self.live,
            awaiting_merge=self.awaiting_merge,
            held=self.held,
            actual_changes=self.radar.changes if self.radar else None,
        )
        waiting = [{"id": w.id, "reason": w.reason} for w in report.plan.waiting]
        if self.active and self.supervisor is None:
            # Nothing starts these by itself (a merge just unblocked them): say so.
            waiting = [{"id": mid, "reason": READY_NO_SUPERVISOR} for mid in report.plan.start] + waiting
        if self.budget(loaded)["state"] == "exceeded":
            queued = list(dict.fromkeys([*report.plan.start, *(w["id"] for w in waiting)]))
            reason = f"not started: {StateReason.BUDGET}"
            waiting = [{"id": m, "reason": reason} for m in queued if self.worker(m) is None]
        on_others = [v for v in report.ineligible if v.kind in WAITING_KINDS and self.worker(v.id) is None]
        waiting += [{"id": v.id, "reason": v.reason} for v in on_others]
        return waiting, {v.id for v in on_others}

    def status_json(self, loaded: Loaded) -> dict[str, Any]:
        fc = self.forecast(loaded)
        return {
            "active": self.active and not self.stopped,
            "stopped": self.stopped,
            "run": self.run.to_json() if self.run else None,
            "supervisor": self.supervisor,
            "workers": [
                {
                    "id": w.milestone_id,
                    "title": w.title,
                    "state": w.state,
                    "state_reason": w.state_reason,
                    "pid": w.pid,
                    "cost": w.cost,
                    "tokens": w.tokens_total,
                    "completed_units": w.units_done,
                    "current_unit": w.current_unit,
                    "restarts": w.restarts,
                    "branch": w.branch,
                    "worktree": str(w.worktree),
                    "last_error": w.last_error,
                    "last_activity": w.last_activity_at,
                    "last_progress": w.last_progress_at,
                    "merged": w.milestone_id in self.merged,
                    "merge": self._merge_json(w.milestone_id),
                    **self._worker_budget_json(loaded, w),
                }
                for w in self.workers
            ],
            "waiting": self.waiting(loaded) if self.active else [],
            "total_cost": round(self.total_cost, 9),
            "budget_ceiling": loaded.preferences.parallel.budget_ceiling,
            "auto_merge": loaded.preferences.parallel.auto_merge,
            "budget": {**self.budget(loaded), "forecast": fc.to_json() if fc else None},
            "overlaps": [o.to_json() for o in self.radar.overlaps] if self.radar else [],
            "preview": self.preview.to_json() if self.preview else None,
        }

    def _merge_json(self, mid: str) -> dict[str, Any] | None:
        row = self.merge_problem(mid)
        if row is None:
            return None
        return {"outcome": row.outcome, "files": list(row.files), "error": row.error}

    def _worker_budget_json(self, loaded: Loaded, w: WorkerRow) -> dict[str, Any]:
        from ..run.budget import envelope_of
        from ..store import NANOS_PER_USD

        envelope = envelope_of(w, loaded.preferences.parallel.milestone_budget)
        fc = self.forecast(loaded)
        wf = fc.worker(w.milestone_id) if fc else None
        return {
            "milestone_budget": None if envelope is None else envelope / NANOS_PER_USD,
            "units_left": wf.units_left if wf else None,
            "forecast_remaining": wf.remaining if wf else None,
        }

    def render_status(self, loaded: Loaded) -> str:

        if not self.workers or self.run is None:
            return NO_RUN + "\n"
        lines = []
        if not self.active:
            lines += [NO_RUN, "", "Last run:"]
        lines.append("# Parallel Workers\n")
        for w in self.workers:
            lines.append(f"- **{w.milestone_id}** ({w.title}) — {self.state_label(w)} — ${w.cost:.2f}")
            detail = [f"units {w.units_done}"]
            if w.current_unit and w.state in LIVE_STATES:
                detail.append(f"now {w.current_unit}")
            detail.append(f"last activity {_ago(w.last_activity_at)}")
            if w.restarts:
                detail.append(f"restarts {w.restarts}")
            if w.state_reason and w.state not in LIVE_STATES | {"paused", "stopped", "blocked"}:
                detail.append(w.state_reason)
            detail += self._worker_budget_text(loaded, w)
            lines.append("  " + " · ".join(detail))
            if w.last_error and w.state in {"failed", "crashed"}:
                # The reason is on the detail line already; show what it does not say.
                said = w.state_reason or ""
                extra = [
                    line
                    for line in w.last_error.splitlines()
                    if line.strip() and line.removeprefix("worktree: ") not in said
                ]
                if extra:
                    lines += ["  last error:"] + [f"    {line}" for line in extra[-5:]]
            problem = self.merge_problem(w.milestone_id) if w.state == "complete" else None
            if problem is not None and problem.error:
                # What the merge said: where to resolve the conflict, what the check printed.
                lines += ["  last merge attempt:"] + [
                    f"    {line}" for line in problem.error.splitlines()[-5:] if line.strip()
                ]
            if (
                self.active
                and w.state in {"failed", "stopped", "blocked"}
                and (w.state_reason != StateReason.BUDGET)
            ):
                verb = "retry" if w.state == "failed" else "continue"
                lines.append(f"  {verb} with {hints.cmd(f'resume {w.milestone_id}')}")
        if self.radar and self.radar.overlaps:
            from ..run.radar import overlap_lines

            lines.append(f"\n## Overlaps ({len(self.radar.overlaps)})\n")
            lines += overlap_lines(self.radar)
        if self.preview and self.preview.updated_at is not None:
            from ..run.preview_watch import preview_lines

            gate = "merge_check after each" if self.preview.merge_check else "no merge_check configured"
            lines.append(f"\n## Preview ({_ago(self.preview.updated_at)}; in merge order, {gate})\n")
            lines += preview_lines(self.preview) or ["- nothing in flight"]
        waiting, on_others = self._waiting(loaded) if self.active else ([], set())
        if self.stopped:
            from .dashboard import stopped_line
            from .snapshot import STOPPED_NOT_STARTED

            lines.append(f"\n{stopped_line()}")
            waiting = [
                {**w, "reason": STOPPED_NOT_STARTED}
                if self.worker(w["id"]) is None and w["id"] not in on_others
                else w
                for w in waiting
            ]
        if waiting:
            lines.append("\n## Waiting\n")
            lines += [f"- **{w['id']}** — {w['reason']}" for w in waiting]
        lines += self._budget_text(loaded)
        if self.active and self.supervisor is None and any(w.state in LIVE_STATES for w in self.workers):
            lines.append("Supervisor: not running (the next command adopts the workers)")
        return "\n".join(lines) + "\n"

    def _worker_budget_text(self, loaded: Loaded, w: WorkerRow) -> list[str]:
        from ..run.budget import envelope_of
        from ..store import NANOS_PER_USD

        out = []
        envelope = envelope_of(w, loaded.preferences.parallel.milestone_budget)
        if envelope is not None:
            out.append(f"budget ${w.cost:.2f} of ${envelope / NANOS_PER_USD:.2f}")
        fc = self.forecast(loaded)
        wf = fc.worker(w.milestone_id) if fc else None
        if wf is not None and wf.remaining is not None and wf.units_left:
            left = f"{wf.units_left} unit{'s' if wf.units_left != 1 else ''} left"
            out.append(f"forecast +${wf.remaining:.2f} ({left})")
        return out

    def _budget_text(self, loaded: Loaded) -> list[str]:
        budget = self.budget(loaded)
        total = f"\nTotal cost: ${budget['spent']:.2f}"
        if budget["ceiling"] is not None:
            total += f" of ${budget['ceiling']:.2f} budget ceiling ({budget['percent']}%)"
        lines = [total]
        if budget["state"] == "exceeded":
            lines.append(budget["message"])
        elif budget["state"] == "warning":
            lines.append(
                f"Warning: {budget['percent']}% of the budget ceiling is spent;"
                " workers stop when it is reached."
            )
        fc = self.forecast(loaded)
        if fc is not None and fc.remaining and budget["state"] != "exceeded":
            line = f"Forecast: about ${fc.total:.2f} to finish the started milestones"
            if fc.partial:
                line += " (some have no estimate yet)"
            if fc.over_ceiling:
                line += f" — over the ${budget['ceiling']:.2f} budget ceiling"
            lines.append(line)
        return lines


def _radar_picture(loaded: Loaded, run_id: int) -> Picture:
    """The overlap radar's last picture for ``run_id`` (imported only once a run exists)."""
    from ..run.radar import read_picture

    return read_picture(loaded.parallel_dir, run_id)


def _preview_picture(loaded: Loaded, run_id: int) -> PreviewPicture:
    """The periodic integration preview's last verdicts for ``run_id`` (once a run exists)."""
    from ..run.preview_watch import read_preview

    return read_preview(loaded.parallel_dir, run_id)
