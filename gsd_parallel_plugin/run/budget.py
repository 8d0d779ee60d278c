"""Budget enforcement: the run ceiling, per-milestone envelopes, burn without progress.

The supervisor calls :meth:`BudgetGuard.check` every tick, right after it read every
worker's new output (so the store holds the cost of everything read so far):

- **Run ceiling** (``parallel.budget_ceiling``, USD, all workers of the run, restarts
  included). At 80 % the host is warned once (``host.notify`` and a ``budget`` event). At
  100 % (``>=``, compared in integer nano-USD) the run becomes ``budget_exceeded``,
  ``on_budget_exceeded`` fires once, every worker is stopped (stop signal + SIGTERM to its
  process group, SIGKILL after ``stop_grace_seconds``), restarts waiting for a crashed
  worker are cancelled, and nothing starts or restarts again in that run. ``start`` and
  ``resume`` refuse with :func:`budget_message`. Raising or removing the ceiling lets the
  next supervisor reopen the same run (:meth:`BudgetGuard.reopen_run`): its total keeps
  counting and the workers the ceiling stopped are launched again.
- **Overshoot bound.** Spending is seen when it is read, so the final total can exceed
  the ceiling by (a) what all workers spend between two checks (one tick,
  ``run.supervisor.TICK_SECONDS``, plus the time to read their logs) and (b) what they spend
  after the SIGTERM until they exit, at most ``stop_grace_seconds`` (then SIGKILL). So
  ``overshoot <= sum over workers of spend rate x (tick + grace)``; a worker that stops
  promptly on SIGTERM (GSD does, exit 11) leaves only (a) plus an unit it was committing.
  ``bench/bench_budget.py`` measures it.
- **Envelopes** (``parallel.milestone_budget``, raised per milestone by
  ``resume MID --budget USD``, which sets that milestone's new total): a worker whose own
  cost reaches its envelope is paused after its current unit, state ``paused``, reason
  ``milestone budget reached``.
- **Burn without progress** (``parallel.stall_minutes``, 0 disables): a worker whose cost
  rose in both halves of the last ``stall_minutes`` while no unit completed and its branch
  got no commit is paused at once (pause signal + SIGTERM; it resumes from disk), reason
  ``spending without progress for N min``, and the host is told. A quiet worker (no cost:
  a long test run) is never stalled, nor one that spent once and then went quiet.

- **Forecast** (:mod:`.forecast`): spent + average cost per completed unit x units left;
  the host is warned once when the projection crosses a ceiling not reached yet.

Warnings are given once per run and ceiling (``budget`` events remember them across
supervisor restarts). Cost a host tracks itself (its agents write no NDJSON cost) is
reported with :func:`report_cost`, which records the delta in the store and then fires
``on_cost_update``::

    from gsd_parallel_plugin.run.budget import report_cost
    report_cost(project_root, "M002", 0.0123, hooks=session.hooks)

The hook is a notification only: a plugin implementing it is never asked to record cost,
so the supervisor's own calls and a host's reports cannot be counted twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import GsdParallelError, UserError
from ..models import StateReason
from ..money import NANOS_PER_USD, usd_to_nanos
from ..store import RunRow, Store, WorkerRow
from ..workspace import layout
from .core import RunPort
from .forecast import forecast, worker_milestones

if TYPE_CHECKING:
    from ..plugins import Hooks
    from .core import Tracked

STALL_PREFIX = "spending without progress for "
WARN_PERCENT = 80


def usd(nanos: int) -> float:
    return nanos / NANOS_PER_USD


def budget_message(ceiling: float, spent: float) -> str:
    """What ``start``/``resume`` say once the run's total reached the ceiling (GSD's text)."""
    return (
        f"Budget ceiling (${ceiling:.2f}) reached — ${spent:.2f} spent. "
        "Raise parallel.budget_ceiling or remove it to continue."
    )


def stall_reason(minutes: float) -> str:
    return f"{STALL_PREFIX}{minutes:g} min"


def envelope_of(row: WorkerRow, default_usd: float | None) -> int | None:
    """A worker's envelope in nano-USD: its own (``resume --budget``) or the preference."""
    if row.milestone_budget_nanos is not None:
        return row.milestone_budget_nanos
    return None if default_usd is None else usd_to_nanos(default_usd)


# --------------------------------------------------------------------------- host-reported cost


@dataclass(frozen=True)
class CostReport:
    """What :func:`report_cost` recorded; the totals include the delta."""

    milestone_id: str
    delta_usd: float
    worker_total_usd: float
    run_total_usd: float
    budget_ceiling: float | None

    @property
    def ceiling_reached(self) -> bool:
        return self.budget_ceiling is not None and usd_to_nanos(self.run_total_usd) >= usd_to_nanos(
            self.budget_ceiling
        )


def report_cost(
    project_root: Path | str,
    milestone_id: str,
    delta_usd: float | Decimal | str | int,
    *,
    tokens: Mapping[str, int] | None = None,
    hooks: Hooks | None = None,
) -> CostReport:
    """Record cost a host tracked itself for a worker of the current run, then fire
    ``on_cost_update`` (with ``hooks``, e.g. the host session's; default: a plugin manager
    for the project). The supervisor enforces the budget on it at its next tick.

    Raises :class:`UserError` when there is no current run or the milestone has no
    worker in it, ``ValueError`` for a negative or non-finite delta.
    """
    from ..milestone_ids import validate_milestone_id

    validate_milestone_id(milestone_id)
    delta = Decimal(repr(delta_usd)) if isinstance(delta_usd, float) else Decimal(delta_usd)
    if not delta.is_finite() or delta < 0:
        raise ValueError(f"cost delta must be a finite number >= 0, got {delta_usd!r}")
    root = Path(project_root)
    db = layout.store_path(layout.parallel_dir((root / ".gsd").resolve()))
    store = Store.open_readonly(db)
    if store is None:
        raise UserError(f"no parallel run in {root}: nothing to report cost to")
    store.close()
    with Store(db) as store:
        run = store.active_run() or store.latest_run()
        if run is None or run.state == "finished":
            raise UserError(f"no parallel run is active in {root}: cost not recorded")
        nanos = usd_to_nanos(delta)
        try:
            row, total = store.add_cost(run.id, milestone_id, nanos, tokens)
        except KeyError:
            raise UserError(f"{milestone_id} has no worker in the current run") from None
    report = CostReport(milestone_id, usd(nanos), row.cost, usd(total), run.budget_ceiling)
    if nanos:
        if hooks is None:
            from ..plugins import Hooks, create_plugin_manager

            hooks = Hooks(create_plugin_manager(root).pm)
        hooks.on_cost_update(
            milestone_id, report.delta_usd, report.worker_total_usd, report.run_total_usd,
            report.budget_ceiling,
        )  # fmt: skip
    return report


# --------------------------------------------------------------------------- stall detection


@dataclass
class StallWatch:
    """Burn-without-progress bookkeeping for one worker process (times in epoch seconds).

    Progress is a finished unit (or, checked by the caller when a stall is suspected, a new
    commit on the branch). "Cost keeps rising" means it rose in both halves of the window:
    one LLM call followed by a long, quiet test run is not a stall.
    """

    window: float
    pid: int | None
    progress_at: float
    units: int
    cost_nanos: int
    head: str | None = None
    spends: deque[float] = field(default_factory=deque)

    def observe(self, now: float, units: int, cost_nanos: int) -> bool:
        """Take the worker's current counters; True when a unit finished since last time."""
        progressed = units != self.units
        if progressed:
            self.progress(now)
        elif cost_nanos > self.cost_nanos:
            self.spends.append(now)
        self.units, self.cost_nanos = units, cost_nanos
        while self.spends and self.spends[0] < now - self.window:
            self.spends.popleft()
        return progressed

    def progress(self, now: float) -> None:
        self.progress_at = now
        self.spends.clear()

    def suspect(self, now: float) -> bool:
        """No progress for a whole window, and cost rose in both of its halves."""
        if self.window <= 0 or now - self.progress_at < self.window or not self.spends:
            return False
        middle = now - self.window / 2
        return self.spends[0] <= middle < self.spends[-1]


# --------------------------------------------------------------------------- the guard


class BudgetHost(RunPort, Protocol):
    """What the guard needs of the supervisor (and all it may touch)."""

    @property
    def tracked(self) -> Mapping[str, Tracked]:
        """The workers running now, by milestone (read only)."""

    def slots_full(self) -> bool: ...
    def launch(self, mid: str) -> bool: ...
    def stop(self, mid: str, tracked: Tracked, why: str) -> None: ...
    def apply(self, command: str, mid: str, args: dict[str, Any]) -> None:
        """Apply a queued-command-like request (the guard pauses with it)."""

    def cancel_restarts(self, reason: str) -> list[str]: ...


class BudgetGuard:
    """Called by the supervisor every tick after cost was read."""

    def __init__(self, supervisor: BudgetHost) -> None:
        self.sup = supervisor
        self.exceeded = False
        self._said: set[str] | None = None
        self._watches: dict[str, StallWatch] = {}
        self._relaunch: list[str] = []
        self._units_seen = -1
        self._last_total = 0

    # ------------------------------------------------------------------ run lifecycle
    def reopen_run(self) -> RunRow | None:
        """The run that ended at the ceiling, when the next supervisor must keep it.

        Still over the (current) ceiling: it stays ``budget_exceeded`` and this supervisor
        only settles its leftover workers; a new run would start spending from zero.
        Ceiling raised or removed: it becomes active again and the workers the ceiling
        stopped are launched again. None when the latest run did not end at the ceiling.
        """
        store = self.sup.store
        latest = store.latest_run()
        if latest is None or latest.state != "budget_exceeded":
            return None
        ceiling = self.sup.prefs.budget_ceiling
        spent = store.run_total_nanos(latest.id)
        if ceiling is not None and spent >= usd_to_nanos(ceiling):
            self.exceeded = True
            return latest
        store.set_run_state(latest.id, "active")
        # "stopping" too: a supervisor killed while the guard stopped them leaves them there
        # (adopted, they settle as budget stops, and then continue like the others).
        self._relaunch = [
            w.milestone_id
            for w in store.workers(latest.id)
            if w.state in {"stopped", "stopping"} and w.state_reason == StateReason.BUDGET
        ]
        limit = "removed" if ceiling is None else f"raised to ${ceiling:.2f}"
        store.add_event(
            "budget", f"budget ceiling {limit}; the run continues at ${usd(spent):.2f} spent",
            data={"kind": "reopened", "ceiling": ceiling, "spent": usd(spent)}, run_id=latest.id,
        )  # fmt: skip
        return store.run(latest.id)

    @property
    def relaunching(self) -> bool:
        """Workers the ceiling stopped are still to be launched again (keeps the loop going)."""
        return bool(self._relaunch)

    def blocks_new_work(self) -> bool:
        """True when no worker may start or restart."""
        return self.exceeded

    # ------------------------------------------------------------------ every tick
    def check(self) -> None:
        """Stop or pause workers whose spending must end; warn about what is coming."""
        sup, store = self.sup, self.sup.store
        run = store.run(sup.run_id)
        if run is None:
            return
        rows = {w.milestone_id: w for w in store.workers(run.id)}
        spent = sum(w.cost_nanos for w in rows.values())
        ceiling = run.budget_ceiling_nanos
        if run.state == "budget_exceeded" or (ceiling is not None and spent >= ceiling):
            self._exceed(run, spent, ceiling)
            return
        self._relaunch_stopped(rows)
        if ceiling is not None:
            self._warn(run, spent, ceiling, rows)
        now = time.time()
        for mid, tracked in list(sup.tracked.items()):
            row = rows.get(mid)
            if row is not None and row.pid == tracked.handle.pid:
                self._envelope(mid, tracked, row)
                self._stall(mid, tracked, row, now)
        self._last_total = spent

    def _exceed(self, run: RunRow, spent: int, ceiling: int | None) -> None:
        sup = self.sup
        first = run.state != "budget_exceeded"
        if first:
            sup.store.set_run_state(run.id, "budget_exceeded")
        self.exceeded = True
        self._relaunch.clear()
        for mid, tracked in list(sup.tracked.items()):
            sup.stop(mid, tracked, "budget")
        sup.cancel_restarts(StateReason.BUDGET)
        if first and ceiling is not None:
            message = budget_message(usd(ceiling), usd(spent))
            data = {"kind": "exceeded", "spent": usd(spent), "ceiling": usd(ceiling),
                    "previous_check": usd(self._last_total), "stopped": sorted(sup.tracked)}  # fmt: skip
            sup.store.add_event("budget", message, data=data, run_id=run.id)
            sup.notify(message, "error")
            assert sup.hooks is not None
            sup.hooks.on_budget_exceeded(usd(spent), usd(ceiling))

    def _relaunch_stopped(self, rows: Mapping[str, WorkerRow]) -> None:
        """After a raised ceiling: launch again what the ceiling stopped, as slots allow."""
        sup = self.sup
        waiting: list[str] = []
        for mid in self._relaunch:
            full = sup.slots_full()
            if mid in sup.tracked or full:
                waiting.append(mid)  # still stopping (adopted), or no slot yet
                continue
            row = rows.get(mid)
            if row is not None and row.state == "stopped" and row.state_reason == StateReason.BUDGET:
                sup.launch(mid)
        self._relaunch = waiting

    def _said_before(self, run: RunRow) -> set[str]:
        """Warnings already given in this run (a restarted supervisor does not repeat them)."""
        if self._said is None:
            self._said = set()
            for event in self.sup.store.events_of_kind("budget", run.id):
                data = event.data if isinstance(event.data, dict) else {}
                self._said.add(f"{data.get('kind')}@{data.get('ceiling')}")
        return self._said

    def _say(self, run: RunRow, kind: str, message: str, data: dict[str, Any]) -> None:
        ceiling = usd(run.budget_ceiling_nanos or 0)
        self._said_before(run).add(f"{kind}@{ceiling}")
        self.sup.store.add_event(
            "budget", message, data={"kind": kind, "ceiling": ceiling, **data}, run_id=run.id
        )
        self.sup.notify(message, "warning")

    def _warn(self, run: RunRow, spent: int, ceiling: int, rows: Mapping[str, WorkerRow]) -> None:
        said = self._said_before(run)
        if spent * 100 >= ceiling * WARN_PERCENT and f"warning@{usd(ceiling)}" not in said:
            percent = spent * 100 // ceiling
            self._say(run, "warning",
                      f"Budget warning: ${usd(spent):.2f} of the ${usd(ceiling):.2f} budget ceiling"
                      f" spent ({percent}%); workers stop when it is reached.",
                      {"spent": usd(spent), "percent": percent})  # fmt: skip
        units = sum(w.units_done for w in rows.values())
        if units == self._units_seen or f"forecast@{usd(ceiling)}" in said:
            return
        self._units_seen = units
        milestones = worker_milestones(rows.values(), self.sup.project())
        fc = forecast(rows.values(), milestones, usd(ceiling))
        if fc.over_ceiling:
            self._say(run, "forecast",
                      f"Budget forecast: about ${fc.total:.2f} to finish the started milestones,"
                      f" over the ${usd(ceiling):.2f} budget ceiling (${usd(spent):.2f} spent).",
                      {"spent": usd(spent), "projected": fc.total})  # fmt: skip

    def _envelope(self, mid: str, tracked: Tracked, row: WorkerRow) -> None:
        limit = envelope_of(row, self.sup.prefs.milestone_budget)
        if limit is None or row.cost_nanos < limit:
            return
        if tracked.requested is not None or tracked.frozen or row.state not in {"running", "starting"}:
            return
        self.sup.apply("pause", mid, {"reason": StateReason.ENVELOPE})
        message = (
            f"{mid}: {StateReason.ENVELOPE} (${row.cost:.2f} of ${usd(limit):.2f}); it pauses"
            f" after its current unit. Resume with `resume {mid} --budget USD`."
        )
        self.sup.store.add_event(
            "budget", message, mid,
            data={"kind": "envelope", "spent": row.cost, "envelope": usd(limit)},
            run_id=self.sup.run_id,
        )  # fmt: skip
        self.sup.notify(message, "warning")

    def _stall(self, mid: str, tracked: Tracked, row: WorkerRow, now: float) -> None:
        sup = self.sup
        minutes = sup.prefs.stall_minutes
        if minutes <= 0 or tracked.frozen or tracked.stop_deadline is not None:
            return
        if row.state not in {"running", "starting", "pausing"}:
            return
        watch = self._watches.get(mid)
        if watch is None or watch.pid != row.pid:
            start = max(row.started_at, row.last_progress_at or 0.0)
            watch = StallWatch(minutes * 60, row.pid, start, row.units_done, row.cost_nanos,
                               head=self._head(row))  # fmt: skip
            self._watches[mid] = watch
            return
        if watch.observe(now, row.units_done, row.cost_nanos):
            watch.head = self._head(row)  # the unit's commit is not news later
            sup.store.update_worker(mid, sup.run_id, last_progress_at=now)
        if not watch.suspect(now):
            return
        head = self._head(row)
        if head != watch.head:  # committed without finishing a unit: that is progress too
            watch.head = head
            watch.progress(now)
            sup.store.update_worker(mid, sup.run_id, last_progress_at=now)
            return
        reason = stall_reason(minutes)
        del self._watches[mid]
        sup.apply("pause", mid, {"reason": reason, "interrupt": True})
        message = (
            f"{mid}: {reason} (${row.cost:.2f} spent) — paused; it resumes from disk with `resume {mid}`."
        )
        sup.store.add_event(
            "stall", message, mid, data={"spent": row.cost, "minutes": minutes}, run_id=sup.run_id
        )
        sup.notify(message, "warning")

    def _head(self, row: WorkerRow) -> str | None:
        from ..workspace.git import rev_parse

        try:
            return rev_parse(self.sup.root, f"refs/heads/{row.branch}")
        except GsdParallelError:
            return None
