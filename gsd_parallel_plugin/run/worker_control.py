"""Watching the workers: their output, the ones that cannot go on, exits, commands, stops."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from .. import processes
from ..gsd import output, status_files
from ..models import StateReason, WorkerState
from ..money import NANOS_PER_USD
from ..project.summary import milestone_complete_in
from ..store import WorkerRow
from ..workspace import layout
from . import workers as procs
from .core import GUARD_SECONDS, Tracked
from .decisions import BLOCKING_STOPS, ExitFacts, SettledState, decide_exit, first_line
from .spawning import Spawning

RESTART_BACKOFF = (0.5, 2.0, 5.0, 10.0, 30.0)


class WorkerControl(Spawning):
    """What the supervisor does with the workers it tracks, each tick."""

    # ------------------------------------------------------------------ output
    def _note_provider(self, tracked: Tracked, progress: output.Progress) -> None:
        """Remember whether the model answers, and since when GSD has given up on it."""
        if progress.model_events:
            tracked.model_seen = True
        if progress.provider_touched:
            if progress.provider_failure is None:
                tracked.provider_failed_at = tracked.provider_error = None
            elif tracked.provider_failed_at is None:
                tracked.provider_failed_at = time.time()
                tracked.provider_error = progress.provider_failure
                self.store.add_event(
                    "provider", f"GSD gave up on the provider: {progress.provider_failure}",
                    None, run_id=self.run_id,
                )  # fmt: skip

    def watch_workers(self) -> None:
        """Stop workers that cannot go on by themselves (GSD would leave them silent for ever).

        Output silence alone never counts: a worker running one long test is fine. What counts
        is GSD's own word that the provider failed (``auto_retry_end`` with ``success: false``
        and nothing since) for ``provider_grace_seconds``, or no model answer at all within
        ``startup_grace_seconds`` of the launch (an unimported plan, a hung start).
        """
        now = time.time()
        for mid, tracked in list(self.tracked.items()):
            if tracked.requested is not None or tracked.frozen:
                continue
            grace = self.prefs.provider_grace_seconds
            failed_at = tracked.provider_failed_at
            if grace > 0 and failed_at is not None and now - failed_at >= grace:
                self.block(mid, tracked, "provider", f"provider failed: {tracked.provider_error}")
                continue
            startup = self.prefs.startup_grace_seconds
            if startup > 0 and not tracked.model_seen and now - tracked.launched_at >= startup:
                tail = procs.read_stderr_tail(layout.stderr_log(self.parallel_dir, mid), 1)
                said = output.read_progress(layout.stdout_log(self.parallel_dir, mid), tracked.log_start)
                last = first_line(said.last_notify) or (tail[-1] if tail else None)
                reason = f"no model call within {startup:g}s of the start" + (
                    f"; GSD last said: {last}" if last else ""
                )
                self.block(mid, tracked, "startup", reason)

    def block(self, mid: str, tracked: Tracked, why: str, reason: str) -> None:
        """Stop a worker that cannot go on; it ends in the state :data:`BLOCKING_STOPS` names."""
        self.notify(f"{mid}: stopping the worker — {reason}", "error" if why == "isolation" else "warning")
        self.store.add_event(why, f"{mid}: {reason}", mid, run_id=self.run_id)
        self.stop(mid, tracked, why)
        tracked.block_reason = reason

    def check_isolation(self) -> None:
        """Once a second: a worker outside its checkout or branch is stopped, loudly."""
        now = time.time()
        if now - self._guard_at < GUARD_SECONDS:
            return
        self._guard_at = now
        from .isolation import WatchedWorker

        watched = [
            WatchedWorker(mid, t.checkout, t.handle)
            for mid, t in self.tracked.items()
            if t.checkout is not None and t.requested != "isolation"
        ]
        if not watched:
            self.guard.refs = None  # nothing to attribute to: start afresh next time
            return
        for breach in self.guard.check(watched):
            reason = f"isolation breach: the worker {breach.what}; inspect the repository before resuming"
            self.block(breach.mid, self.tracked[breach.mid], "isolation", reason)

    def read_output(self, mid: str) -> None:
        row = self.store.worker(mid, self.run_id)
        if row is None:
            return
        path = layout.stdout_log(self.parallel_dir, mid)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size == row.stdout_offset:
            return
        chunk = output.read_new_events(path, row.stdout_offset)
        if chunk.new_offset == row.stdout_offset and not chunk.events:
            return
        progress = output.summarize(chunk.events, current_unit=row.current_unit)
        tracked = self.tracked.get(mid)
        units = progress.units_finished_after(tracked.last_finished_unit if tracked else None)
        if tracked is not None:
            self._note_provider(tracked, progress)
        updated = self.store.record_output(
            self.run_id,
            mid,
            expected_offset=row.stdout_offset,
            new_offset=chunk.new_offset,
            cost_nanos=progress.cost_nanos,
            tokens=progress.tokens,
            units_delta=units,
            current_unit=progress.current_unit if progress.unit_known else row.current_unit,
            activity_at=time.time() if chunk.events else row.last_activity_at,
        )
        if updated is not None and tracked is not None and progress.last_finished is not None:
            tracked.last_finished_unit = progress.last_finished
        if updated is not None and progress.cost_nanos:
            assert self.hooks is not None
            total = self.store.run_total_cost(self.run_id)
            self.hooks.on_cost_update(
                mid, progress.cost_nanos / NANOS_PER_USD, updated.cost, total,
                self.prefs.budget_ceiling,
            )  # fmt: skip

    # ------------------------------------------------------------------ exits
    def _exit_code(self, mid: str, tracked: Tracked) -> tuple[bool, int | None]:
        """(exited, code): code None when the process was not ours to reap."""
        if tracked.launched_here:
            code = processes.exit_status(tracked.handle)
            if code is not None:
                return True, code
            if processes.is_alive(tracked.handle):
                return False, None
            # is_alive may have reaped it just now: its exit code is there to ask for again.
            return True, processes.exit_status(tracked.handle)
        return (not processes.is_alive(tracked.handle)), None

    def is_complete(self, mid: str, row: WorkerRow | None) -> bool:
        """Complete as GSD itself says: its DB in the checkout (a GSD worker), else the SUMMARY.

        Exit 0 alone never means complete: GSD exits 0 after a stop signal too. A milestone the
        project's own ``.gsd`` already records as complete (done in a GSD session) is complete.
        """
        checkout = Path(row.worktree) if row else None
        if milestone_complete_in(self.gsd_dir, mid):
            return True
        if checkout is None:
            return False
        if self.gsd_program is not None:
            from ..gsd.checkout import gsd_says_complete

            return gsd_says_complete(checkout, mid)
        return milestone_complete_in(checkout / ".gsd", mid)

    def decide(self, mid: str, tracked: Tracked, code: int | None) -> SettledState:
        """What an exit means: the facts from the store and the logs, the rule in
        :func:`.decisions.decide_exit`."""
        row = self.store.worker(mid, self.run_id)
        log = layout.stdout_log(self.parallel_dir, mid)
        said = output.read_progress(log, tracked.log_start)
        log_code = None
        if code is None:  # adopted: what the log says of its end
            hint = output.infer_outcome(log, False, since_offset=tracked.log_start)
            log_code = output.OUTCOME_EXIT_CODES.get(hint)
        tail = procs.read_stderr_tail(layout.stderr_log(self.parallel_dir, mid))
        return decide_exit(ExitFacts(
            code=code,
            requested=tracked.requested,
            complete=self.is_complete(mid, row),
            notice=first_line(said.last_notify),
            state_reason=row.state_reason if row is not None else None,
            block_reason=tracked.block_reason,
            log_code=log_code,
            stderr_last=tail[-1] if tail else None,
        ))  # fmt: skip

    def settle(self, mid: str, tracked: Tracked, code: int | None) -> None:
        assert self.hooks is not None
        self.read_output(mid)  # the last lines count too
        outcome = self.decide(mid, tracked, code)
        del self.tracked[mid]
        processes.forget(tracked.handle)
        status_files.clear_signal(self.signal_dir(mid), mid)
        self._project_dirty = self._replan = True
        row = self.store.worker(mid, self.run_id)
        if outcome.state == WorkerState.CRASHED:
            tail = procs.read_stderr_tail(layout.stderr_log(self.parallel_dir, mid))
            error = outcome.reason or "crashed"
            if tail:
                error += "\n" + "\n".join(tail)
            self.store.update_worker(mid, self.run_id, last_error=error)
            restarts = row.restarts if row else 0
            if restarts < self.prefs.max_restarts:
                self._set_state(mid, WorkerState.CRASHED, outcome.reason)
                delay = RESTART_BACKOFF[min(restarts, len(RESTART_BACKOFF) - 1)]
                self.restart_at[mid] = time.time() + delay
            else:
                self._set_state(
                    mid, WorkerState.FAILED,
                    f"{outcome.reason} (after {restarts} restart(s))",
                )  # fmt: skip
            return
        if outcome.state == WorkerState.COMPLETE and row is not None and self.gsd_program:
            from ..gsd.checkout import finish_checkout

            finish_checkout(Path(row.worktree), mid, row.branch)
        self._set_state(mid, outcome.state, outcome.reason)
        self.drift.settled(mid, outcome.state)  # drift guard (issue 12): paused to update
        if outcome.state in BLOCKING_STOPS.values() and outcome.reason:
            self.store.update_worker(mid, self.run_id, last_error=outcome.reason)
        if outcome.state == WorkerState.COMPLETE and row is not None:
            self.hooks.on_milestone_complete(mid, row.branch, Path(row.worktree))
            self.after_complete(mid)

    def after_complete(self, mid: str) -> None:
        self.merger.milestone_completed(mid)

    # ------------------------------------------------------------------ commands
    def apply_commands(self) -> None:
        if not self.store.pending_commands():
            return  # a read: no write transaction on idle ticks
        for command in self.store.claim_commands():
            if command.command == "stop" and not command.milestone_id:
                self._halted = True  # stop all: the freed slots must not start the next one
                self.restart_at.clear()
            elif command.command == "resume" and not command.milestone_id:
                self._halted = False  # resume all: the run goes on, the next ones too
            targets = (
                [command.milestone_id]
                if command.milestone_id
                else [w.milestone_id for w in self.store.workers(self.run_id)]
            )
            for mid in targets:
                self.apply(command.command, mid, dict(command.args))

    def apply(self, command: str, mid: str, args: dict[str, Any]) -> None:
        tracked = self.tracked.get(mid)
        row = self.store.worker(mid, self.run_id)
        if row is None:
            return
        interrupt = bool(args.get("interrupt"))  # budget guard: do not wait for the unit to end
        # --now escalates a graceful pause still waiting for its unit (freezes it at once)
        pausable = (
            {"running", "starting", "pausing"} if interrupt or args.get("now") else {"running", "starting"}
        )
        reason = args.get("reason") or StateReason.PAUSE_REQUESTED
        held = command == "pause" and tracked is not None and self.drift.hold(mid, reason)
        if held and not (interrupt or args.get("now")):
            # pausing for an update already (the drift guard): this pause wins over the relaunch
            self._set_state(mid, WorkerState.PAUSING, reason)
            return
        if command == "pause" and tracked is not None and row.state in pausable:
            if args.get("now"):
                if processes.send_signal_group(tracked.handle, signal.SIGSTOP):
                    tracked.frozen = True
                    self._set_state(mid, WorkerState.PAUSED, StateReason.FROZEN)
            else:
                status_files.write_signal(self.signal_dir(mid), mid, "pause")
                tracked.requested = "pause"
                if interrupt:
                    processes.send_signal_group(tracked.handle, signal.SIGTERM)
                    tracked.stop_deadline = time.time() + self.prefs.stop_grace_seconds
                self._set_state(mid, WorkerState.PAUSING, reason)
        elif command == "resume":
            if "budget" in args:
                self.store.update_worker(mid, self.run_id, milestone_budget=float(args["budget"]))
            if tracked is not None and tracked.frozen:
                processes.send_signal_group(tracked.handle, signal.SIGCONT)
                tracked.frozen = False
                if tracked.requested == "pause" and not tracked.stop_deadline:
                    # a graceful pause that ``pause --now`` escalated: resume cancels it too
                    status_files.clear_signal(self.signal_dir(mid), mid)
                    tracked.requested = None
                self._set_state(mid, WorkerState.RUNNING, StateReason.RESUMED)
            elif tracked is not None and tracked.requested == "pause" and not tracked.stop_deadline:
                status_files.clear_signal(self.signal_dir(mid), mid)
                tracked.requested = None
                self._set_state(mid, WorkerState.RUNNING, StateReason.PAUSE_CANCELLED)
            elif (
                tracked is None
                and row.state in {"paused", "blocked", "stopped", "failed"}
                and (not self.budget.blocks_new_work())
            ):
                self.restart_at.pop(mid, None)
                self.launch(mid)
        elif command == "stop" and tracked is not None:
            self.stop(mid, tracked, "stop")
        elif command == "stop" and row.state == "crashed":
            self.restart_at.pop(mid, None)
            self._set_state(mid, WorkerState.STOPPED, StateReason.STOPPED_WHILE_WAITING)
        elif command == "stop" and row.state in {"paused", "blocked"}:
            # No process to signal: the worktree and branch stay, the milestone is just stopped.
            self._set_state(mid, WorkerState.STOPPED, f"stopped while {row.state}")

    def stop(self, mid: str, tracked: Tracked, why: str) -> None:
        """Stop a worker: the stop signal, then SIGTERM to its group, SIGKILL after the grace.

        A user's ``stop`` is graceful: GSD reads the signal after its current unit and exits 0
        with that unit's cost reported; only a worker still running ``stop_grace_seconds`` later
        gets SIGTERM (a SIGTERM'd GSD does not report the model call it was in). Every other
        stop (budget, a worker that cannot go on) sends SIGTERM at once.
        """
        if tracked.requested in {"stop", "budget"}:
            return
        tracked.requested = why
        status_files.write_signal(self.signal_dir(mid), mid, "stop")
        if tracked.frozen:
            processes.send_signal_group(tracked.handle, signal.SIGCONT)
            tracked.frozen = False
        grace = self.prefs.stop_grace_seconds
        if why == "stop":
            tracked.term_at = time.time() + grace
            tracked.stop_deadline = time.time() + 2 * grace
        else:
            processes.send_signal_group(tracked.handle, signal.SIGTERM)
            tracked.stop_deadline = time.time() + grace
        self._set_state(mid, WorkerState.STOPPING, StateReason.BUDGET if why == "budget" else None)

    def enforce_deadlines(self) -> None:
        now = time.time()
        for mid, tracked in self.tracked.items():
            if tracked.term_at is not None and now >= tracked.term_at:
                processes.send_signal_group(tracked.handle, signal.SIGTERM)
                tracked.term_at = None
            if tracked.stop_deadline is not None and now >= tracked.stop_deadline:
                processes.kill_tree(tracked.handle)
                tracked.stop_deadline = None
                self.store.add_event(
                    "kill", f"{mid}: SIGKILL after {self.prefs.stop_grace_seconds:g}s grace", mid,
                    run_id=self.run_id,
                )  # fmt: skip

    def cancel_restarts(self, reason: str) -> list[str]:
        """Crashed workers waiting to restart do not: each is stopped with ``reason``."""
        cancelled = list(self.restart_at)
        for mid in cancelled:
            del self.restart_at[mid]
            self._set_state(mid, WorkerState.STOPPED, reason)
        return cancelled

    def slots_full(self) -> bool:
        """Every worker slot is taken (running, or waiting to restart)."""
        return len(self.tracked) + len(self.restart_at) >= self.prefs.max_workers
