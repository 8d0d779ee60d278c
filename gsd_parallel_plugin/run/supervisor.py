"""The supervisor: one per project, it keeps the workers of the active run going.

Each tick it reads every worker's new NDJSON output (cost and offset stored in one
transaction), checks liveness by pid + create time (never by output silence), applies
queued commands, decides what an exited worker means (DESIGN.md §5), restarts crashes
with backoff, fills free slots with the next eligible milestones, and writes GSD's
status files. It exits when nothing runs and nothing can start.

Workers run in their own sessions: if the supervisor dies they live on, and the next
supervisor adopts them from the store without restarting them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GsdParallelError, PluginError, WorkerLaunchError
from ..models import Milestone, Project, WorkerHandle, WorkerSpec, WorkerState
from ..plugins import Hooks, create_plugin_manager
from ..preferences import ParallelPreferences, Preferences, load_preferences
from ..project.eligibility import analyse
from ..store import NANOS_PER_USD, Store, WorkerRow, to_ms
from ..workspace.layout import branch_name
from ..workspace.locks import PidLock, read_holder
from . import workers as procs
from .budget import BUDGET_REASON

TICK_SECONDS = 0.1
RESTART_BACKOFF = (0.5, 2.0, 5.0, 10.0, 30.0)
LIVE_STATES = {"starting", "running", "pausing", "stopping"}
"""States in which a process is (or should be) alive."""
HELD_STATES = {"paused", "stopped", "failed", "blocked", "complete"}
"""States that keep a milestone from being started again by backfill in this run."""
LOCK_NAME = "supervisor.lock"

Notify = Callable[[str, str], None]


# --------------------------------------------------------------------------- lock


class SupervisorLock(PidLock):
    """``.gsd/parallel/supervisor.lock``: one supervisor per project (see :mod:`.locks`)."""

    def __init__(self, parallel_dir: Path) -> None:
        super().__init__(parallel_dir / LOCK_NAME)

    def acquire(self, timeout: float = 2.0, *, yield_to_holder: bool = True) -> bool:
        """Give up at once for a live supervisor; retry a brief contention for a moment."""
        return super().acquire(timeout, yield_to_holder=yield_to_holder)

    @staticmethod
    def holder(parallel_dir: Path) -> dict[str, Any] | None:  # type: ignore[override]
        """The live supervisor of the project whose ``.gsd/parallel`` is ``parallel_dir``."""
        return read_holder(parallel_dir / LOCK_NAME)


def supervisor_running(parallel_dir: Path) -> bool:
    return SupervisorLock.holder(parallel_dir) is not None


def spawn_background(project_root: Path, parallel_dir: Path) -> int:
    """Start a detached supervisor process for ``project_root``; return its pid."""
    import subprocess

    parallel_dir.mkdir(parents=True, exist_ok=True)
    with open(parallel_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gsd_parallel_plugin.run.supervisor", str(project_root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


# --------------------------------------------------------------------------- helpers


def find_unrecorded_worker(mid: str, checkout: Path) -> WorkerHandle | None:
    """A live worker process for ``mid`` in ``checkout`` (by its environment and directory),
    oldest first; None when there is none."""
    import psutil

    want = str(checkout.resolve()) if checkout.exists() else str(checkout)
    found: list[tuple[float, int]] = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.cwd() != want:
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("GSD_PARALLEL_WORKER") == "1" and env.get("GSD_MILESTONE_LOCK") == mid:
            if proc.ppid() and _same_worker_parent(proc.ppid(), mid, want):
                continue  # a child of the worker (its git, or a fork before exec)
            found.append((proc.info["create_time"], proc.info["pid"]))
    if not found:
        return None
    created, pid = min(found)
    return WorkerHandle(pid, created)


def _same_worker_parent(ppid: int, mid: str, cwd: str) -> bool:
    import psutil

    try:
        parent = psutil.Process(ppid)
        env = parent.environ()
        return env.get("GSD_MILESTONE_LOCK") == mid and parent.cwd() == cwd
    except (psutil.Error, OSError):
        return False



def milestone_complete_in(gsd_dir: Path, milestone_id: str) -> bool:
    """True when ``gsd_dir`` holds a terminal ``<MID>-SUMMARY.md`` for the milestone."""
    from ..project import is_terminal_summary

    milestones = gsd_dir / "milestones"
    try:
        candidates = [d for d in milestones.iterdir() if d.name.startswith(milestone_id)]
    except OSError:
        return False
    want = f"{milestone_id}-summary.md".lower()
    for directory in candidates:
        rest = directory.name[len(milestone_id) :]
        if rest and not rest.startswith("-"):
            continue  # M0012 is not M001
        try:
            files = [f for f in directory.iterdir() if f.name.lower() == want]
        except OSError:
            continue
        for f in files:
            try:
                if is_terminal_summary(f.read_text(encoding="utf-8", errors="replace")):
                    return True
            except OSError:
                continue
    return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class Tracked:
    """A worker process this supervisor watches."""

    handle: WorkerHandle
    launched_here: bool
    requested: str | None = None
    """What we asked of it: ``pause``, ``stop``, ``budget``, or one of :data:`BLOCKING_STOPS`
    (we stopped it because it cannot go on); decides how an exit reads."""
    stop_deadline: float | None = None
    term_at: float | None = None
    """When a graceful stop turns into SIGTERM (the worker did not end its unit by then)."""
    frozen: bool = False
    checkout: Path | None = None
    launched_at: float = field(default_factory=time.time)
    log_start: int = 0
    """Size of the stdout log at launch: notices before it belong to earlier runs."""
    model_seen: bool = False
    """The model answered at least once since launch (adopted workers count as seen)."""
    provider_failed_at: float | None = None
    provider_error: str | None = None
    block_reason: str | None = None
    """Why we stopped it, when ``requested`` is one of :data:`BLOCKING_STOPS`."""


BLOCKING_STOPS = {"provider": WorkerState.BLOCKED, "startup": WorkerState.BLOCKED,
                  "isolation": WorkerState.FAILED}  # fmt: skip
"""Stops we make because a worker cannot go on, and the state each leaves it in."""
GUARD_SECONDS = 1.0


@dataclass
class Outcome:
    state: WorkerState
    reason: str | None = None


@dataclass
class Supervisor:
    """The scheduling loop for one project. ``run()`` until nothing is left to do."""

    root: Path
    notify: Notify = field(default=lambda message, level: None)
    hooks: Hooks | None = None
    tick_seconds: float = TICK_SECONDS
    on_tick: Callable[[Supervisor], None] | None = None

    def __post_init__(self) -> None:
        self.root = self.root.resolve() if not (self.root / ".gsd").is_symlink() else self.root
        self.gsd_dir = (self.root / ".gsd").resolve()
        self.parallel_dir = self.gsd_dir / "parallel"
        self.preferences: Preferences = load_preferences(self.root / ".gsd")
        self.preferences.require_worker_command()  # it launches workers: a bad one stops it here
        if self.hooks is None:
            self.hooks = Hooks(create_plugin_manager(self.root).pm)
        self.store = self._open_store()
        self._store_at = 0.0
        self.tracked: dict[str, Tracked] = {}
        self.restart_at: dict[str, float] = {}
        self.started: set[str] = set()
        self._project: Project | None = None
        self._project_dirty = True
        self._replan = True
        self._default_branch: str | None = None
        self._status_written: dict[str, tuple[Any, ...]] = {}
        self.unplanned: dict[str, str] = {}
        """Milestones the last plan held back: their planning files are not committed."""
        self._stop_requested = False
        self._halted = False
        """``stop`` (all) came: nothing new starts in this session (``start`` or ``resume`` go on)."""
        self.run_id = 0
        from .automerge import AutoMerger
        from .budget import BudgetGuard

        self.budget = BudgetGuard(self)
        self.merger = AutoMerger(self)
        from ..gsd.checkout import gsd_program
        from .isolation import IsolationGuard

        self.gsd_program = gsd_program(self.prefs.worker_command)
        """The GSD program of the worker command; None for a worker that is not GSD."""
        self.guard = IsolationGuard(self.root)
        self._guard_at = 0.0
        # --- overlap radar and drift guard (issue 12): run/radar.py, run/drift.py
        from .drift import DriftGuard
        from .radar import RadarWatch

        self.radar = RadarWatch(self)
        self.drift = DriftGuard(self)

    # ------------------------------------------------------------------ setup
    @property
    def prefs(self) -> ParallelPreferences:
        return self.preferences.parallel

    def project(self) -> Project:
        """The project as the root's ``.gsd`` says, re-read only after something changed it."""
        if self._project is None or self._project_dirty:
            from ..project import read_project

            if self._default_branch is None:
                from ..workspace.git import default_branch

                self._default_branch = default_branch(self.root)
            self._project = read_project(
                self.root,
                default_branch=self._default_branch,
                git_main_branch=self.preferences.git_main_branch,
            )
            self._project_dirty = False
        return self._project

    def _open_run(self) -> None:
        run = self.store.active_run() or self.budget.reopen_run()
        if run is None:
            run = self.store.create_run(self.prefs.budget_ceiling)
        elif self.prefs.budget_ceiling != run.budget_ceiling:
            self.store.update_run(run.id, budget_ceiling=self.prefs.budget_ceiling)
        self.run_id = run.id
        me = os.getpid()
        self.store.update_run(run.id, supervisor_pid=me, supervisor_create_time=procs.process_create_time(me))

    def adopt(self) -> None:
        """Take over workers a previous supervisor left running; settle the ones that died."""
        for row in self.store.workers(self.run_id):
            recorded = (
                WorkerHandle(row.pid, row.create_time)
                if row.pid is not None and row.create_time is not None
                else None
            )
            if row.state in LIVE_STATES | {"crashed"} and (
                recorded is None or not procs.is_alive(recorded)
            ):
                # Killed between spawning a worker and storing its pid, the last supervisor
                # left one nobody knows about: adopt it, never start a second one.
                orphan = find_unrecorded_worker(row.milestone_id, Path(row.worktree))
                if orphan is not None:
                    self.store.update_worker(row.milestone_id, self.run_id, pid=orphan.pid,
                                             create_time=orphan.create_time)  # fmt: skip
                    if row.state == "crashed":
                        self.store.set_state(row.milestone_id, self.run_id, "running",
                                             "adopted a worker whose start was not recorded")  # fmt: skip
                    row = self.store.worker(row.milestone_id, self.run_id) or row
            if row.state not in LIVE_STATES or row.pid is None or row.create_time is None:
                if row.state == "crashed":
                    self.restart_at.setdefault(row.milestone_id, time.time())
                continue
            handle = WorkerHandle(row.pid, row.create_time)
            tracked = Tracked(handle, launched_here=False, checkout=Path(row.worktree),
                              model_seen=True)  # fmt: skip
            if row.state == "pausing":
                tracked.requested = "pause"
            elif row.state == "stopping":
                # A budget stop stays one (raising the ceiling continues it): the reason says so.
                budget = row.state_reason == BUDGET_REASON
                tracked.requested = "budget" if budget else "stop"
                grace = self.prefs.stop_grace_seconds
                tracked.term_at = time.time() + (0 if budget else grace)
                tracked.stop_deadline = time.time() + (grace if budget else 2 * grace)
            self.tracked[row.milestone_id] = tracked
            if procs.is_alive(handle):
                self.store.add_event(
                    "adopt", f"adopted {row.milestone_id} (pid {row.pid})", row.milestone_id,
                    run_id=self.run_id,
                )  # fmt: skip

    def _open_store(self) -> Store:
        """The store; rebuilt from the workers' logs first when it was deleted under a run."""
        from ..store.rebuild import file_id, rebuild_from_logs, store_missing

        path = self.parallel_dir / "coordinator.db"
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

        path = self.parallel_dir / "coordinator.db"
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

    # ------------------------------------------------------------------ state changes
    def _set_state(self, mid: str, state: WorkerState | str, reason: str | None = None) -> None:
        old = self.store.set_state(mid, self.run_id, state, reason)
        new = str(state)
        if old != new:
            assert self.hooks is not None
            self.hooks.on_worker_state_change(mid, old, new, reason)
            if new in {"failed", "crashed", "blocked"}:
                self.notify(f"{mid}: {new}" + (f" — {reason}" if reason else ""), "warning")

    # ------------------------------------------------------------------ launching
    def launch(self, mid: str, *, restart: bool = False) -> bool:
        """Create/reuse the worktree and spawn the worker; False (and a stored reason) if not."""
        from ..workspace.worktrees import ensure_worktree

        assert self.hooks is not None
        self.started.add(mid)
        self._replan = True  # whatever happens next changes the plan
        project = self.project()
        milestone = project.get(mid)
        title = milestone.title if milestone else mid
        branch_target = (milestone.integration_branch if milestone else None) or (project.integration_branch)
        row = self.store.worker(mid, self.run_id)
        try:
            wt = ensure_worktree(self.root, mid, branch_target)
        except GsdParallelError as exc:
            if row is None:
                row = self.store.add_worker(self.run_id, mid, title, self.root, branch_name(mid))
            self.store.update_worker(mid, self.run_id, last_error=f"worktree: {exc}")
            self._set_state(mid, WorkerState.FAILED, f"worktree could not be created: {exc}")
            return False
        stdout_log = self.parallel_dir / f"{mid}.stdout.log"
        stderr_log = self.parallel_dir / f"{mid}.stderr.log"
        if row is None:
            # Logs are appended across runs: a new run's row starts where the old output ends,
            # so nothing an earlier run already counted is counted again.
            row = self.store.add_worker(
                self.run_id, mid, title, wt.path, wt.branch,
                stdout_offset=_size(stdout_log), stderr_offset=_size(stderr_log),
            )  # fmt: skip
        procs.clear_signal(self.signal_dir(mid), mid)
        env = self.worker_env(mid)
        if self.gsd_program is not None:
            from ..gsd.checkout import prepare_checkout

            try:
                prepare_checkout(wt.path, mid, self.gsd_program, env)
            except GsdParallelError as exc:
                self.store.update_worker(mid, self.run_id, last_error=str(exc))
                self._set_state(mid, WorkerState.FAILED, str(exc))
                return False
        spec = WorkerSpec(
            milestone_id=mid,
            title=title,
            project_root=self.root,
            worktree=wt.path,
            branch=wt.branch,
            command=self.prefs.worker_command,
            env=env,
            stdout_log=stdout_log,
            stderr_log=stderr_log,
        )
        try:
            handle = self.hooks.spawn_worker(spec)
            if handle is None:
                raise WorkerLaunchError("no plugin launched the worker (spawn_worker returned None)")
        except GsdParallelError as exc:
            self.store.update_worker(mid, self.run_id, last_error=str(exc))
            self._set_state(mid, WorkerState.FAILED, str(exc))
            return False
        fields: dict[str, Any] = {
            "pid": handle.pid,
            "create_time": handle.create_time,
            "worktree": str(wt.path),
            "branch": wt.branch,
            "started_at": time.time(),
            "state_reason": None,
        }
        if restart:
            fields["restarts"] = row.restarts + 1
        self.store.update_worker(mid, self.run_id, **fields)
        # Its branch starts at the integration branch as it is now: refs as they are now are
        # the baseline, so a merge that moved it just before cannot read as this worker's doing.
        self.guard.rebase()
        self.tracked[mid] = Tracked(
            handle, launched_here=True, checkout=wt.path, log_start=_size(stdout_log)
        )
        self._set_state(mid, WorkerState.RUNNING, "restarted" if restart else None)
        return True

    def worker_env(self, mid: str) -> dict[str, str]:
        """What we add to a worker's environment. Both lock variables, or GSD goes on to other
        milestones; no GSD_PROJECT_ROOT: the checkout is a GSD project of its own."""
        env = {"GSD_MILESTONE_LOCK": mid, "GSD_PARALLEL_WORKER": "1"}
        if self.prefs.worker_model:
            env["GSD_WORKER_MODEL"] = self.prefs.worker_model
        return env

    def signal_dir(self, mid: str) -> Path:
        """Where the worker reads its signal file: its checkout's own ``.gsd/parallel``."""
        from ..workspace.layout import checkout_path

        row = self.store.worker(mid, self.run_id)
        checkout = Path(row.worktree) if row and row.worktree else checkout_path(self.root, mid)
        return checkout / ".gsd" / "parallel"

    # ------------------------------------------------------------------ output
    def _note_provider(self, tracked: Tracked, progress: procs.Progress) -> None:
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
                tail = procs.read_stderr_tail(self.parallel_dir / f"{mid}.stderr.log", 1)
                said = procs.read_progress(self.parallel_dir / f"{mid}.stdout.log", tracked.log_start)
                last = _first_line(said.last_notify) or (tail[-1] if tail else None)
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
        path = self.parallel_dir / f"{mid}.stdout.log"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size == row.stdout_offset:
            return
        chunk = procs.read_new_events(path, row.stdout_offset)
        if chunk.new_offset == row.stdout_offset and not chunk.events:
            return
        progress = procs.summarize(chunk.events)
        tracked = self.tracked.get(mid)
        if tracked is not None:
            self._note_provider(tracked, progress)
        updated = self.store.record_output(
            self.run_id,
            mid,
            expected_offset=row.stdout_offset,
            new_offset=chunk.new_offset,
            cost_nanos=progress.cost_nanos,
            tokens=progress.tokens,
            units_delta=progress.units_finished,
            current_unit=progress.current_unit if progress.unit_known else row.current_unit,
            activity_at=time.time() if chunk.events else row.last_activity_at,
        )
        if updated is not None and progress.cost_nanos:
            assert self.hooks is not None
            total = self.store.run_total_cost(self.run_id)
            self.hooks.on_cost_update(
                mid, progress.cost_nanos / NANOS_PER_USD, updated.cost, total,
                self.prefs.budget_ceiling,
            )  # fmt: skip

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

    # ------------------------------------------------------------------ exits
    def _exit_code(self, mid: str, tracked: Tracked) -> tuple[bool, int | None]:
        """(exited, code): code None when the process was not ours to reap."""
        if tracked.launched_here:
            code = procs.exit_status(tracked.handle)
            if code is not None:
                return True, code
            if procs.is_alive(tracked.handle):
                return False, None
            # is_alive may have reaped it just now: its exit code is there to ask for again.
            return True, procs.exit_status(tracked.handle)
        return (not procs.is_alive(tracked.handle)), None

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

    def decide(self, mid: str, tracked: Tracked, code: int | None) -> Outcome:
        """What an exit means (DESIGN.md §5), in GSD's own words where it gave any."""
        row = self.store.worker(mid, self.run_id)
        complete = self.is_complete(mid, row)
        log = self.parallel_dir / f"{mid}.stdout.log"
        said = procs.read_progress(log, tracked.log_start)
        notice = _first_line(said.last_notify)
        if tracked.requested == "isolation":  # whatever it finished, it is not merged blindly
            return Outcome(WorkerState.FAILED, tracked.block_reason)
        if complete:
            return Outcome(WorkerState.COMPLETE)
        if tracked.requested in BLOCKING_STOPS:
            return Outcome(BLOCKING_STOPS[tracked.requested], tracked.block_reason)
        paused = Outcome(WorkerState.PAUSED, _pause_reason(row))
        if code is None:  # adopted: infer from the log
            hint = procs.infer_outcome(log, False, since_offset=tracked.log_start)
            code = procs.OUTCOME_EXIT_CODES.get(hint)
            if code is None and tracked.requested in {"pause", "stop", "budget"}:
                code = 11  # ended by the SIGTERM we sent it (an interrupting pause, a stop)
            if code is None:
                return Outcome(WorkerState.CRASHED, "worker vanished (exit status unknown)")
        if code == 0:
            if tracked.requested == "budget":
                return Outcome(WorkerState.STOPPED, BUDGET_REASON)
            if tracked.requested == "stop":
                return Outcome(WorkerState.STOPPED, None)
            return Outcome(
                WorkerState.STOPPED,
                "GSD exited without completing the milestone" + (f": {notice}" if notice else ""),
            )
        if code == 10:
            if tracked.requested == "pause":
                return paused
            # Paused for a provider error, blocked, the uncommitted-changes guard: GSD says which.
            return Outcome(WorkerState.BLOCKED, notice or "GSD reported the milestone blocked (exit 10)")
        if tracked.requested == "pause" and (code == 11 or code < 0):
            return paused  # interrupted on purpose (budget guard); resumable like any pause
        if tracked.requested in {"stop", "budget"}:
            return Outcome(WorkerState.STOPPED, BUDGET_REASON if tracked.requested == "budget" else None)
        tail = procs.read_stderr_tail(self.parallel_dir / f"{mid}.stderr.log")
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return Outcome(WorkerState.CRASHED, f"{how}" + (f": {tail[-1]}" if tail else ""))

    def settle(self, mid: str, tracked: Tracked, code: int | None) -> None:
        assert self.hooks is not None
        self.read_output(mid)  # the last lines count too
        outcome = self.decide(mid, tracked, code)
        del self.tracked[mid]
        procs.forget(tracked.handle)
        procs.clear_signal(self.signal_dir(mid), mid)
        self._project_dirty = self._replan = True
        row = self.store.worker(mid, self.run_id)
        if outcome.state == WorkerState.CRASHED:
            tail = procs.read_stderr_tail(self.parallel_dir / f"{mid}.stderr.log")
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
            {"running", "starting", "pausing"}
            if interrupt or args.get("now")
            else {"running", "starting"}
        )
        if command == "pause" and tracked is not None and row.state in pausable:
            if args.get("now"):
                if procs.send_signal_group(tracked.handle, signal.SIGSTOP):
                    tracked.frozen = True
                    self._set_state(mid, WorkerState.PAUSED, "frozen (pause --now)")
            else:
                procs.write_signal(self.signal_dir(mid), mid, "pause")
                tracked.requested = "pause"
                if interrupt:
                    procs.send_signal_group(tracked.handle, signal.SIGTERM)
                    tracked.stop_deadline = time.time() + self.prefs.stop_grace_seconds
                self._set_state(mid, WorkerState.PAUSING, args.get("reason") or "pause requested")
        elif command == "resume":
            if "budget" in args:
                self.store.update_worker(mid, self.run_id, milestone_budget=float(args["budget"]))
            if tracked is not None and tracked.frozen:
                procs.send_signal_group(tracked.handle, signal.SIGCONT)
                tracked.frozen = False
                if tracked.requested == "pause" and not tracked.stop_deadline:
                    # a graceful pause that ``pause --now`` escalated: resume cancels it too
                    procs.clear_signal(self.signal_dir(mid), mid)
                    tracked.requested = None
                self._set_state(mid, WorkerState.RUNNING, "resumed")
            elif tracked is not None and tracked.requested == "pause" and not tracked.stop_deadline:
                procs.clear_signal(self.signal_dir(mid), mid)
                tracked.requested = None
                self._set_state(mid, WorkerState.RUNNING, "pause cancelled")
            elif tracked is None and row.state in {"paused", "blocked", "stopped", "failed"} and (
                not self.budget.blocks_new_work()
            ):
                self.restart_at.pop(mid, None)
                self.launch(mid)
        elif command == "stop" and tracked is not None:
            self.stop(mid, tracked, "stop")
        elif command == "stop" and row.state == "crashed":
            self.restart_at.pop(mid, None)
            self._set_state(mid, WorkerState.STOPPED, "stopped while waiting to restart")
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
        procs.write_signal(self.signal_dir(mid), mid, "stop")
        if tracked.frozen:
            procs.send_signal_group(tracked.handle, signal.SIGCONT)
            tracked.frozen = False
        grace = self.prefs.stop_grace_seconds
        if why == "stop":
            tracked.term_at = time.time() + grace
            tracked.stop_deadline = time.time() + 2 * grace
        else:
            procs.send_signal_group(tracked.handle, signal.SIGTERM)
            tracked.stop_deadline = time.time() + grace
        self._set_state(mid, WorkerState.STOPPING, BUDGET_REASON if why == "budget" else None)

    def enforce_deadlines(self) -> None:
        now = time.time()
        for mid, tracked in self.tracked.items():
            if tracked.term_at is not None and now >= tracked.term_at:
                procs.send_signal_group(tracked.handle, signal.SIGTERM)
                tracked.term_at = None
            if tracked.stop_deadline is not None and now >= tracked.stop_deadline:
                procs.kill_tree(tracked.handle)
                tracked.stop_deadline = None
                self.store.add_event(
                    "kill", f"{mid}: SIGKILL after {self.prefs.stop_grace_seconds:g}s grace", mid,
                    run_id=self.run_id,
                )  # fmt: skip

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

    def prepare_side_by_side(self, mids: list[str]) -> None:
        """Import several milestones' plans into their checkouts at once, before launching.

        ``gsd headless recover`` takes seconds (Node's start-up): one after another, the last
        of four workers would start many seconds after the first. Only an optimisation:
        :meth:`launch` prepares (a no-op once imported) and reports any failure itself.
        """
        if self.gsd_program is None or len(mids) < 2:
            return
        from concurrent.futures import ThreadPoolExecutor

        from ..gsd.checkout import prepare_checkout
        from ..workspace.worktrees import ensure_worktree

        project = self.project()
        checkouts: dict[str, Path] = {}
        for mid in mids:  # git first, one at a time
            milestone = project.get(mid)
            target = (milestone.integration_branch if milestone else None) or project.integration_branch
            try:
                checkouts[mid] = ensure_worktree(self.root, mid, target).path
            except GsdParallelError:
                continue  # launch() says why
        program = self.gsd_program

        def prepare(item: tuple[str, Path]) -> None:
            mid, checkout = item
            with suppress(GsdParallelError):  # launch() tries again and reports it
                prepare_checkout(checkout, mid, program, self.worker_env(mid))

        items = list(checkouts.items())
        if not items:
            return
        # The first GSD start in a fresh GSD home installs GSD's bundled extensions there;
        # several doing it at once break each other ("… parsers-legacy.js"). One goes first.
        prepare(items[0])
        with ThreadPoolExecutor(max_workers=max(len(items) - 1, 1)) as pool:
            list(pool.map(prepare, items[1:]))

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
            procs.write_status_file(
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
            return 3
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self._open_run()
            self.adopt()
            self.recover_merges()
            self.store.add_event("supervisor", f"supervisor {os.getpid()} started", run_id=self.run_id)
            while self.tick():
                time.sleep(self.tick_seconds)
            self.radar.tick(wait=True)  # overlap radar (issue 12): the last picture is written
            self.finish()
        finally:
            signal.signal(signal.SIGTERM, previous)
            lock.release()
        return 0 if self.all_started_complete() else 1

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def all_started_complete(self) -> bool:
        rows = {w.milestone_id: w for w in self.store.workers(self.run_id)}
        return all(rows[m].state == "complete" for m in self.started if m in rows)

    def finish(self) -> None:
        """Close the run when nothing in it is left undone; keep it open otherwise."""
        if self._stop_requested:
            return
        rows = self.store.workers(self.run_id)
        unfinished = [w for w in rows if w.state not in {"complete"}]
        # A milestone complete but not merged keeps the run open: what waits for its merge
        # stays listed as waiting, `start` continues this run (its cost stays in `status`).
        unmerged = sorted(self.awaiting_merge() & {w.milestone_id for w in rows})
        startable = self.plan()
        # So does a milestone held back until its plan is committed (then `start` runs it).
        uncommitted = sorted(self.unplanned)
        if not unfinished and not unmerged and not uncommitted and not startable:
            self.store.finish_run(self.run_id)
        why = (
            f"waiting for {', '.join(unmerged)} to be merged"
            if unmerged
            else f"waiting for the plans of {', '.join(uncommitted)} to be committed"
            if uncommitted
            else "nothing left to run"
        )
        self.store.add_event("supervisor", f"supervisor exited: {why}", run_id=self.run_id)


def _first_line(text: str | None) -> str | None:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else None


def _pause_reason(row: WorkerRow | None) -> str | None:
    """Why a pausing worker was paused, when not by the user (budget guard reasons)."""
    if row is None or row.state_reason in (None, "pause requested"):
        return None
    return row.state_reason


def worker_summary(row: WorkerRow) -> str:
    return f"{row.milestone_id} {row.state} ${row.cost:.2f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m gsd_parallel_plugin.run.supervisor ROOT``: the background supervisor."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path.cwd()

    def notify(message: str, level: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {level}: {message}", flush=True)

    try:
        sup = Supervisor(root, notify=notify)
        return sup.run()
    except GsdParallelError as exc:
        print(f"supervisor: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
