"""A read of the coordination store that commands share: status text, JSON, waiting list."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..budget import budget_message
from ..errors import UserError
from ..store import RunRow, Store, WorkerRow, usd_to_nanos
from .common import Loaded

NO_RUN = "No parallel orchestration is currently active."
__all__ = ["NO_RUN", "RunView", "budget_message", "open_store", "refuse_if_budget_exhausted"]
LIVE_STATES = {"starting", "running", "pausing", "stopping"}
HELD_STATES = {"paused", "stopped", "failed", "blocked", "complete"}


def open_store(loaded: Loaded, *, create: bool = False) -> Store | None:
    path = loaded.parallel_dir / "coordinator.db"
    if not create and not path.exists():
        return None
    return Store(path)


def refuse_if_budget_exhausted(loaded: Loaded) -> None:
    """``start``/``resume`` refuse once the run's total reached the ceiling."""
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
        raise UserError(budget_message(ceiling, spent / 1e9))


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

    @classmethod
    def read(cls, loaded: Loaded) -> RunView:
        from ..supervisor import SupervisorLock

        store = open_store(loaded)
        if store is None:
            return cls()
        with store:
            run = store.active_run() or store.latest_run()
            workers = store.workers(run.id) if run else []
            total = store.run_total_cost(run.id) if run else 0.0
            merged = store.merged_milestones()
            completed = store.completed_milestones()
        return cls(
            run, workers, total, merged, completed, SupervisorLock.holder(loaded.parallel_dir)
        )

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.state != "finished"

    @property
    def live(self) -> list[str]:
        return (
            [w.milestone_id for w in self.workers if w.state in LIVE_STATES] if self.active else []
        )

    @property
    def held(self) -> list[str]:
        return (
            [w.milestone_id for w in self.workers if w.state in HELD_STATES] if self.active else []
        )

    @property
    def awaiting_merge(self) -> list[str]:
        return [mid for mid in self.completed if mid not in self.merged]

    def worker(self, mid: str) -> WorkerRow | None:
        return next((w for w in self.workers if w.milestone_id == mid), None)

    def state_label(self, w: WorkerRow) -> str:
        if w.state == "complete":
            return (
                "complete — merged"
                if w.milestone_id in self.merged
                else "complete — awaiting merge"
            )
        return w.state

    def waiting(self, loaded: Loaded) -> list[dict[str, str]]:
        """Milestones not running, with what they wait for."""
        from ..eligibility import analyse

        prefs = loaded.preferences.parallel
        report = analyse(
            loaded.project,
            max_workers=prefs.max_workers,
            overlap_policy=prefs.overlap,
            running=self.live,
            awaiting_merge=self.awaiting_merge,
            held=self.held,
        )
        waiting = [{"id": w.id, "reason": w.reason} for w in report.plan.waiting]
        blocked = ("Blocked by", "Waiting for", "Dependency cycle")
        waiting += [
            {"id": v.id, "reason": v.reason}
            for v in report.ineligible
            if v.reason.startswith(blocked) and self.worker(v.id) is None
        ]
        return waiting

    def status_json(self, loaded: Loaded) -> dict[str, Any]:
        return {
            "active": self.active,
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
                    "merged": w.milestone_id in self.merged,
                }
                for w in self.workers
            ],
            "waiting": self.waiting(loaded) if self.active else [],
            "total_cost": round(self.total_cost, 9),
            "budget_ceiling": loaded.preferences.parallel.budget_ceiling,
        }

    def render_status(self, loaded: Loaded) -> str:
        if not self.workers or self.run is None:
            return NO_RUN + "\n"
        lines = []
        if not self.active:
            lines += [NO_RUN, "", "Last run:"]
        lines.append("# Parallel Workers\n")
        for w in self.workers:
            lines.append(
                f"- **{w.milestone_id}** ({w.title}) — {self.state_label(w)} — ${w.cost:.2f}"
            )
            detail = [f"units {w.units_done}"]
            if w.current_unit and w.state in LIVE_STATES:
                detail.append(f"now {w.current_unit}")
            detail.append(f"last activity {_ago(w.last_activity_at)}")
            if w.restarts:
                detail.append(f"restarts {w.restarts}")
            if w.state_reason and w.state not in LIVE_STATES:
                detail.append(w.state_reason)
            lines.append("  " + " · ".join(detail))
            if w.last_error and w.state in {"failed", "crashed"}:
                lines += ["  last error:"] + [
                    f"    {line}" for line in w.last_error.splitlines()[-5:]
                ]
        waiting = self.waiting(loaded) if self.active else []
        if waiting:
            lines.append("\n## Waiting\n")
            lines += [f"- **{w['id']}** — {w['reason']}" for w in waiting]
        ceiling = loaded.preferences.parallel.budget_ceiling
        total = f"\nTotal cost: ${self.total_cost:.2f}"
        if ceiling is not None:
            total += f" of ${ceiling:.2f} budget ceiling"
        lines.append(total)
        if (
            self.active
            and self.supervisor is None
            and any(w.state in LIVE_STATES for w in self.workers)
        ):
            lines.append("Supervisor: not running (the next command adopts the workers)")
        return "\n".join(lines) + "\n"
