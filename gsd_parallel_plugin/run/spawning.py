"""Launching workers and adopting the ones a previous supervisor left running."""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .. import processes
from ..errors import GsdParallelError, WorkerLaunchError
from ..gsd import status_files
from ..models import LIVE_STATES, StateReason, WorkerHandle, WorkerSpec, WorkerState
from ..workspace import layout
from ..workspace.layout import branch_name
from .core import SupervisorCore, Tracked


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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Spawning(SupervisorCore):
    """Starting worker processes (worktree, GSD's import of the plan, the spawn hook)."""

    def adopt(self) -> None:
        """Take over workers a previous supervisor left running; settle the ones that died."""
        for row in self.store.workers(self.run_id):
            recorded = (
                WorkerHandle(row.pid, row.create_time)
                if row.pid is not None and row.create_time is not None
                else None
            )
            if row.state in LIVE_STATES | {"crashed"} and (
                recorded is None or not processes.is_alive(recorded)
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
                budget = row.state_reason == StateReason.BUDGET
                tracked.requested = "budget" if budget else "stop"
                grace = self.prefs.stop_grace_seconds
                tracked.term_at = time.time() + (0 if budget else grace)
                tracked.stop_deadline = time.time() + (grace if budget else 2 * grace)
            self.tracked[row.milestone_id] = tracked
            if processes.is_alive(handle):
                self.store.add_event(
                    "adopt", f"adopted {row.milestone_id} (pid {row.pid})", row.milestone_id,
                    run_id=self.run_id,
                )  # fmt: skip

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
        stdout_log = layout.stdout_log(self.parallel_dir, mid)
        stderr_log = layout.stderr_log(self.parallel_dir, mid)
        if row is None:
            # Logs are appended across runs: a new run's row starts where the old output ends,
            # so nothing an earlier run already counted is counted again.
            row = self.store.add_worker(
                self.run_id, mid, title, wt.path, wt.branch,
                stdout_offset=_size(stdout_log), stderr_offset=_size(stderr_log),
            )  # fmt: skip
        status_files.clear_signal(self.signal_dir(mid), mid)
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
        self.tracked[mid] = Tracked(handle, launched_here=True, checkout=wt.path, log_start=_size(stdout_log))
        self._set_state(mid, WorkerState.RUNNING, StateReason.RESTARTED if restart else None)
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
        return layout.parallel_dir(checkout / ".gsd")

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
