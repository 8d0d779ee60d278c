"""The supervisor: one per project, it keeps the workers of the active run going.

Each tick it reads every worker's new NDJSON output (cost and offset stored in one
transaction), checks liveness by pid + create time (never by output silence), applies
queued commands, decides what an exited worker means (GSD's completion record, never exit 0), restarts crashes
with backoff, fills free slots with the next eligible milestones, and writes GSD's
status files. It exits when nothing runs and nothing can start.

Workers run in their own sessions: if the supervisor dies they live on, and the next
supervisor adopts them from the store without restarting them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import processes
from ..errors import GsdParallelError, PluginError
from ..exitcodes import ExitCode
from ..gsd import status_files
from ..models import HELD_STATES, Milestone
from ..plugins import Hooks, create_plugin_manager
from ..preferences import load_preferences
from ..project.eligibility import analyse
from ..store import Store, WorkerRow, to_ms
from ..workspace import layout
from .core import GUARD_SECONDS, Confirm, Notify
from .decisions import RunFacts, exit_decision
from .supervisor_lock import SupervisorLock
from .worker_control import WorkerControl

TICK_SECONDS = 0.1


@dataclass
class Supervisor(WorkerControl):
    """The scheduling loop for one project. ``run()`` until nothing is left to do.

    ``confirm`` asks the user about a merge (``auto_merge: confirm``); without it nobody is
    there to ask and the milestone awaits ``merge``.
    """

    root: Path
    notify: Notify = field(default=lambda message, level: None)
    hooks: Hooks | None = None
    tick_seconds: float = TICK_SECONDS
    on_tick: Callable[[Supervisor], None] | None = None
    confirm: Confirm | None = None
    continue_run: int | None = None
    """The run this supervisor was started to go on with: it opens no other (see
    :func:`.supervisor_lock.spawn_background`)."""

    def __post_init__(self) -> None:
        self.root = self.root.resolve() if not (self.root / ".gsd").is_symlink() else self.root
        self.gsd_dir = (self.root / ".gsd").resolve()
        self.parallel_dir = layout.parallel_dir(self.gsd_dir)
        self.preferences = load_preferences(self.root / ".gsd")
        self.preferences.require_worker_command()  # it launches workers: a bad one stops it here
        if self.hooks is None:
            self.hooks = Hooks(create_plugin_manager(self.root).pm)
        self.store = self._open_store()
        self._store_at = 0.0
        self.tracked = {}
        self.restart_at = {}
        self.started = set()
        self._project = None
        self._project_dirty = True
        self._replan = True
        self._default_branch = None
        self._status_written = {}
        self.unplanned = {}
        self._stop_requested = False
        self._halted = False
        self.run_id = 0
        from .automerge import AutoMerger
        from .budget import BudgetGuard

        self.budget = BudgetGuard(self)
        self.merger = AutoMerger(self)
        from ..gsd.checkout import gsd_program
        from .isolation import IsolationGuard

        self.gsd_program = gsd_program(self.prefs.worker_command)
        self.guard = IsolationGuard(self.root)
        self._guard_at = 0.0
        # --- overlap radar and drift guard (issue 12): run/radar.py, run/drift.py
        from .drift import DriftGuard
        from .preview_watch import PreviewWatch
        from .radar import RadarWatch

        self.radar = RadarWatch(self)
        self.drift = DriftGuard(self)
        self.preview = PreviewWatch(self)  # parallel.preview_minutes: run/preview_watch.py

    # ------------------------------------------------------------------ setup
    def _open_run(self) -> bool:
        """Open (or go on with) the run; False when the run it was started for has ended."""
        active = self.store.active_run()
        if self.continue_run is not None:  # checked before reopen_run, which writes
            current = active or self.store.latest_run()
            if current is None or current.id != self.continue_run or current.state == "finished":
                return False
        run = active or self.budget.reopen_run()
        if run is None:
            run = self.store.create_run(self.prefs.budget_ceiling)
        elif self.prefs.budget_ceiling != run.budget_ceiling:
            self.store.update_run(run.id, budget_ceiling=self.prefs.budget_ceiling)
        self.run_id = run.id
        me = os.getpid()
        created = processes.process_create_time(me)
        self.store.update_run(run.id, supervisor_pid=me, supervisor_create_time=created)
        return True

    def _open_store(self) -> Store:
        """The store; rebuilt from the workers' logs first when it was deleted under a run."""
        from ..store.rebuild import file_id, rebuild_from_logs, store_missing

        path = layout.store_path(self.parallel_dir)
        if store_missing(self.parallel_dir):
            lines = rebuild_from_logs(self.root, self.parallel_dir, self._integration_branch())
            self.notify("the coordination store was missing: rebuilt it from the workers' logs: "
                        + "; ".join(lines), "warning")  # fmt: skip
        store = Store(path)
        self._store_id = file_id(path)
        return store

    def _integration_branch(self) -> str:
        from ..workspace.git import current_branch

        try:
            return self.preferences.git_main_branch or current_branch(self.root) or "main"
        except GsdParallelError:
            return "main"

    def check_store(self) -> None:
        """Once a second: the store file is still the one we opened. Deleted or replaced, what
        our connection still reads is written back; emptied, it is rebuilt from the logs."""
        now = time.monotonic()
        if now - self._store_at < GUARD_SECONDS:
            return
        self._store_at = now
        from ..store.rebuild import restore_from_connection, same_file

        path = layout.store_path(self.parallel_dir)
        if same_file(path, self._store_id):
            return
        old = self.store
        restored = restore_from_connection(old._conn, path)
        old.close()
        if restored:
            self.store = self._open_store()
            how = "written back from the supervisor's open copy: nothing was lost"
        else:
            self.store = self._open_store()  # rebuilt from the logs
            run = self.store.active_run()
            self.run_id = run.id if run is not None else self.store.create_run(self.prefs.budget_ceiling).id
            self.tracked.clear()
            self.restart_at.clear()
            self.adopt()
            how = "rebuilt from the workers' logs (every cost they reported is kept)"
        message = f"the coordination store {path} was deleted or damaged under the run; {how}"
        self.notify(message, "warning")
        self.store.add_event("store", message, run_id=self.run_id)

    def recover_merges(self) -> None:
        """Finish what a supervisor killed during a merge left: the journal row is closed (a
        merge that landed is recorded merged, one that did not is aborted and, with
        ``auto_merge: auto``, merged again by the next tick), its temporary worktree goes,
        and a landed milestone's worktree and branch are cleaned up as the merge would have.
        Skipped while someone else's merge holds the lock (that merge cleans up itself)."""
        from ..merge.recovery import finish_landed_cleanups, recover

        try:
            lines = recover(self.root, self.store, fix=True)
            if not any(line.startswith("a merge is running now") for line in lines):
                lines += finish_landed_cleanups(self.root, self.store, set(self.tracked))
        except GsdParallelError as exc:
            lines = [f"could not recover interrupted merges: {exc}"]
        for line in lines:
            self.store.add_event("merge", f"recovered: {line}", run_id=self.run_id)
            self.notify(line, "info")
        if lines:
            self._project_dirty = True

    # ------------------------------------------------------------------ scheduling
    def held(self) -> set[str]:
        return {
            w.milestone_id
            for w in self.store.workers(self.run_id)
            if w.state in HELD_STATES or w.milestone_id in self.restart_at
        }

    def awaiting_merge(self) -> set[str]:
        completed = set(self.store.completed_milestones())
        return completed - set(self.store.merged_milestones())

    def plan(self) -> list[str]:
        """Milestones to start now, in queue order, within the free slots."""
        assert self.hooks is not None
        project = self.project()
        prefs_json = self.prefs.to_json()
        held = self.held()
        from ..workspace.worktrees import uncommitted_plans

        started = {w.milestone_id for w in self.store.workers(self.run_id)}
        unplanned = {
            mid: why for mid, why in uncommitted_plans(self.root, project).items() if mid not in started
        }  # a checkout started from the integration branch would lack these plans
        self.unplanned = unplanned

        def veto(m: Milestone) -> list[str]:
            own = [unplanned[m.id]] if m.id in unplanned else []
            return [*own, *self.hooks.check_eligibility(m, project, prefs_json)]  # type: ignore[union-attr]

        try:
            report = analyse(
                project,
                max_workers=self.prefs.max_workers,
                overlap_policy=self.prefs.overlap,
                veto=veto,
                running=[*self.tracked, *self.restart_at],
                awaiting_merge=self.awaiting_merge(),
                held=held,
                actual_changes=self.radar.actual_files(),  # overlap radar (issue 12)
            )
        except PluginError as exc:
            # A broken eligibility plugin must not take the running workers' supervisor down:
            # start nothing new, keep supervising, say why.
            self.notify(f"not starting new milestones: {exc}", "error")
            self.store.add_event("plugin", str(exc), run_id=self.run_id)
            return []
        return list(report.plan.start)

    def backfill(self) -> None:
        if self.budget.blocks_new_work() or self._halted:
            return
        now = time.time()
        for mid, when in sorted(self.restart_at.items(), key=lambda kv: kv[1]):
            if when <= now and mid not in self.tracked:
                del self.restart_at[mid]
                self.launch(mid, restart=True)
        # Each pass launches or marks held (a failed launch) at least one milestone,
        # so this ends; it re-plans at once when a launch failed and a slot is still free.
        if not (self._replan or self._project_dirty):
            return
        self._replan = False
        for _attempt in range(len(self.project().milestones) + 1):
            if len(self.tracked) + len(self.restart_at) >= self.prefs.max_workers:
                return
            plan = self.plan()
            if not plan:
                return
            self.prepare_side_by_side(plan)
            for mid in plan:
                self.launch(mid)

    def drain_session_events(self) -> None:
        """The user's own GSD session, as hooks; a milestone it completed re-plans the run."""
        from ..workspace.git import current_branch
        from . import session_events

        assert self.hooks is not None
        events = session_events.drain(
            self.root, self.hooks,
            branch=lambda: current_branch(self.root) or self.preferences.git_main_branch or "",
            run_total_usd=lambda: self.store.run_total_cost(self.run_id),
            budget_ceiling=self.prefs.budget_ceiling,
        )  # fmt: skip
        if any(e.kind == "milestone_complete" for e in events):
            self._project_dirty = True
            self._replan = True

    # ------------------------------------------------------------------ status files
    def write_status_files(self) -> None:
        """GSD's status files, rewritten when something changed or as a 5 s heartbeat."""
        now = time.time()
        for row in self.store.workers(self.run_id):
            tracked = row.milestone_id in self.tracked
            key = (row.state, row.current_unit, row.units_done, row.cost_nanos, row.pid,
                   int(now / 5) if tracked else 0)  # fmt: skip
            if self._status_written.get(row.milestone_id) == key:
                continue
            self._status_written[row.milestone_id] = key
            status_files.write_status_file(
                self.parallel_dir,
                row.milestone_id,
                pid=row.pid,
                state=row.state,
                current_unit=row.current_unit,
                completed_units=row.units_done,
                cost=row.cost,
                last_heartbeat_ms=to_ms(now) if tracked else to_ms(row.updated_at),
                started_at_ms=to_ms(row.started_at),
                worktree=row.worktree,
            )

    # ------------------------------------------------------------------ loop
    def tick(self) -> bool:
        """One pass; False when the run has nothing left to do."""
        self.check_store()
        for mid in list(self.tracked):
            self.read_output(mid)
        self.budget.check()
        self.watch_workers()
        self.check_isolation()
        for mid, tracked in list(self.tracked.items()):
            exited, code = self._exit_code(mid, tracked)
            if exited:
                self.settle(mid, tracked, code)
        self.apply_commands()
        self.drain_session_events()
        self.merger.tick()
        self.radar.tick()  # overlap radar (issue 12): after a unit or a commit
        self.drift.tick(self.radar.refs())  # drift guard (issue 12): the integration branch moved
        self.preview.tick()  # integration preview (issue 12): every preview_minutes, when tips moved
        self.enforce_deadlines()
        self.backfill()
        self.write_status_files()
        if self.on_tick is not None:
            self.on_tick(self)
        busy = bool(self.tracked or self.restart_at or self.budget.relaunching
                    or self.store.pending_commands())  # fmt: skip
        return busy and not self._stop_requested

    def run(self) -> int:
        """Run until done. 0 when every milestone started in this session completed."""
        lock = SupervisorLock(self.parallel_dir)
        if not lock.acquire():
            return ExitCode.ANOTHER_SUPERVISOR
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            # What a killed supervisor left of its throwaway objects and preview checkout.
            shutil.rmtree(layout.scratch_dir(self.parallel_dir), ignore_errors=True)
            if not self._open_run():
                self.notify(f"run {self.continue_run} has ended: nothing to supervise", "info")
                return ExitCode.OK
            self.adopt()
            self.recover_merges()
            self.store.add_event("supervisor", f"supervisor {os.getpid()} started", run_id=self.run_id)
            while self.tick():
                time.sleep(self.tick_seconds)
            self.radar.tick(wait=True)  # overlap radar (issue 12): the last picture is written
            self.finish()
        finally:
            self.preview.close()
            self.radar.close()
            signal.signal(signal.SIGTERM, previous)
            lock.release()
        return ExitCode.OK if self.all_started_complete() else ExitCode.FAILED

    def request_stop(self) -> None:
        """End the loop after this tick; the run stays open (SIGTERM, Ctrl-C in the foreground)."""
        self._stop_requested = True

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.request_stop()

    def all_started_complete(self) -> bool:
        rows = {w.milestone_id: w for w in self.store.workers(self.run_id)}
        return all(rows[m].state == "complete" for m in self.started if m in rows)

    def finish(self) -> None:
        """Close the run when nothing in it is left undone (:func:`.decisions.exit_decision`);
        keep it open otherwise."""
        if self._stop_requested:
            return
        rows = self.store.workers(self.run_id)
        unmerged = self.awaiting_merge() & {w.milestone_id for w in rows}
        startable = self.plan()  # also sets what waits for its plan to be committed
        facts = RunFacts.of((w.state for w in rows), unmerged, self.unplanned, startable)
        decision = exit_decision(facts)
        if decision.done:
            self.store.finish_run(self.run_id)
        self.store.add_event("supervisor", f"supervisor exited: {decision.why}", run_id=self.run_id)


def worker_summary(row: WorkerRow) -> str:
    return f"{row.milestone_id} {row.state} ${row.cost:.2f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m gsd_parallel_plugin.run.supervisor ROOT [--run ID]``: the background
    supervisor (``--run``: only to go on with that run, see ``spawn_background``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    continue_run = None
    if "--run" in args:
        at = args.index("--run")
        continue_run = int(args[at + 1])
        del args[at : at + 2]
    root = Path(args[0]) if args else Path.cwd()

    def notify(message: str, level: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {level}: {message}", flush=True)

    try:
        sup = Supervisor(root, notify=notify, continue_run=continue_run)
        return sup.run()
    except GsdParallelError as exc:
        print(f"supervisor: {exc}", file=sys.stderr, flush=True)
        return ExitCode.USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
