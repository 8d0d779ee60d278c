"""``gsd-parallel doctor [--fix]``: find what a crash left behind, and clean what is provably dead.

Checks: a stale supervisor lock; workers recorded as live whose process is gone; stale
status and signal files; orphan worktrees and ``gsd-parallel/*`` branches; merges
interrupted mid-way. ``--fix`` only removes what cannot hold work: never a worktree with
uncommitted changes, never a branch with commits that did not land.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hints
from ..errors import GsdParallelError
from ..exitcodes import ExitCode
from ..invocation import ArgParser, Loaded, load, parse
from ..models import LIVE_STATES, CommandContext, CommandResult, WorkerHandle
from ..views.runstate import open_store
from ..workspace import layout
from ..workspace.layout import branch_name


@dataclass
class Finding:
    kind: str
    message: str
    milestone: str | None = None
    fixed: bool = False
    fixable: bool = True
    fix: Callable[[], str | None] | None = None
    """Does the repair; returns a replacement message, or None to keep ``message``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.milestone,
            "message": self.message,
            "fixed": self.fixed,
            "fixable": self.fixable,
        }


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("--fix", action="store_true")
    args = parse(parser, ctx)
    loaded = load(ctx, strict=False)  # doctor is where you go when things are broken
    findings = diagnose(loaded)
    if args.fix:
        for f in findings:
            if f.fix is None or not f.fixable:
                continue
            try:
                replacement = f.fix()
            except GsdParallelError as exc:
                f.message += f" (not fixed: {exc})"
                continue
            f.fixed = True
            if replacement:
                f.message = replacement
    remaining = [f for f in findings if not f.fixed]
    lines = ["# Parallel Doctor", ""]
    if not findings:
        lines.append("No problems found.")
    for f in findings:
        mark = "fixed" if f.fixed else ("fixable" if f.fixable and f.fix else "needs you")
        lines.append(f"- [{mark}] {f.message}")
    if remaining and not args.fix and any(f.fix and f.fixable for f in remaining):
        lines += ["", f"Run {hints.cmd('doctor --fix')} to clean what is marked fixable."]
    data = {"problems": [f.to_json() for f in findings], "fixed": args.fix}
    code = ExitCode.FAILED if remaining else ExitCode.OK
    return CommandResult("\n".join(lines) + "\n", data, exit_code=code)


def diagnose(loaded: Loaded) -> list[Finding]:
    from ..store.rebuild import missing_message, store_missing

    if store_missing(loaded.parallel_dir):
        # Everything else reads the store: rebuild it first, then run doctor again.
        def rebuild() -> str:
            from ..store.rebuild import rebuild_from_logs

            lines = rebuild_from_logs(loaded.root, loaded.parallel_dir, loaded.project.integration_branch)
            return "rebuilt the coordination store from the workers' logs: " + "; ".join(lines)

        return [Finding("store-missing", missing_message(loaded.parallel_dir), fix=rebuild)]
    findings: list[Finding] = []
    findings += _lock_findings(loaded)
    findings += _worker_findings(loaded)
    findings += _worktree_findings(loaded)
    findings += _merge_findings(loaded)
    return findings


# --------------------------------------------------------------------------- supervisor lock


def _lock_findings(loaded: Loaded) -> list[Finding]:
    from ..run.supervisor_lock import SupervisorLock

    path = loaded.parallel_dir / layout.SUPERVISOR_LOCK_NAME
    if SupervisorLock.holder(loaded.parallel_dir) is not None or not path.exists():
        return []
    try:
        content = path.read_text().strip()
    except OSError:
        return []
    if not content:
        return []  # released cleanly: an empty lock file is harmless

    def fix() -> None:
        if SupervisorLock.holder(loaded.parallel_dir) is None:
            path.write_text("")

    return [Finding("stale-lock", f"stale supervisor lock {path} (its process is gone: {content})", fix=fix)]


# --------------------------------------------------------------------------- workers and files


def _worker_findings(loaded: Loaded) -> list[Finding]:
    from .. import processes
    from ..gsd import status_files
    from ..run.supervisor_lock import supervisor_running

    findings: list[Finding] = []
    store = open_store(loaded)
    supervised = supervisor_running(loaded.parallel_dir)
    run = None
    rows = []
    last_rows = []
    if store is not None:
        with store:
            run = store.active_run()
            rows = store.workers(run.id) if run else []
            # A finished run's status files record how it ended: they are not stale.
            latest = None if run else store.latest_run()
            last_rows = store.workers(latest.id) if latest else []
    live_pids: set[str] = set()
    for row in rows:
        handle = WorkerHandle(row.pid, row.create_time) if row.pid and row.create_time is not None else None
        alive = handle is not None and processes.is_alive(handle)
        if alive:
            live_pids.add(row.milestone_id)
        if row.state in LIVE_STATES and not alive and not supervised and run is not None:
            run_id, mid = run.id, row.milestone_id

            def fix(run_id: int = run_id, mid: str = mid) -> None:
                s = open_store(loaded)
                assert s is not None
                with s:
                    s.set_state(mid, run_id, "crashed", "process gone (found by doctor)")

            findings.append(
                Finding(
                    "dead-worker",
                    f"{mid} is recorded as {row.state} but its process (pid {row.pid}) is gone; "
                    "mark it crashed so the next start restarts it",
                    mid,
                    fix=fix,
                )
            )
    known = {row.milestone_id: row for row in rows or last_rows}
    for status_file in sorted(status_files.status_dir(loaded.parallel_dir).glob("*.status.json")):
        mid = status_file.name.removesuffix(".status.json")
        data = status_files.read_status_file(loaded.parallel_dir, mid) if _valid(mid) else None
        state = (data or {}).get("state")
        if mid in live_pids or (mid in known and state == known[mid].state):
            continue
        # Stale means it claims a worker that is not there (or cannot be read). A finished
        # milestone's file (complete, stopped, failed, from this run or an earlier one) is
        # how it ended, which status and GSD read: ordinary, not a problem.
        if data is None or (state in LIVE_STATES and not _file_pid_alive(data)):

            def remove(path: Path = status_file) -> None:
                path.unlink(missing_ok=True)

            findings.append(
                Finding(
                    "stale-status", f"stale status file {status_file.name} (state {state})", mid, fix=remove
                )
            )
    for signal_file in sorted(loaded.parallel_dir.glob("*.signal.json")):
        mid = signal_file.name.removesuffix(".signal.json")
        if mid in live_pids:
            continue

        def remove_signal(path: Path = signal_file) -> None:
            path.unlink(missing_ok=True)

        findings.append(
            Finding(
                "stale-signal", f"signal file {signal_file.name} with no live worker", mid, fix=remove_signal
            )
        )
    return findings


def _file_pid_alive(data: dict[str, Any]) -> bool:
    """The status file's own worker still runs (a run being adopted has no row for it yet)."""
    import psutil

    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        started_ms = data.get("startedAt")
        if isinstance(started_ms, (int, float)) and proc.create_time() * 1000 > started_ms + 5000:
            return False  # the pid was reused by a process born after the worker started
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _valid(mid: str) -> bool:
    from ..project import is_valid_milestone_id

    return is_valid_milestone_id(mid)


# --------------------------------------------------------------------------- worktrees and branches


def _worktree_findings(loaded: Loaded) -> list[Finding]:
    from ..workspace.git import Git, repo_root
    from ..workspace.worktrees import list_milestone_worktrees, remove_worktree

    try:
        repo_root(loaded.root)
        entries = list_milestone_worktrees(loaded.root)
    except GsdParallelError:
        return []
    store = open_store(loaded)
    merged: dict[str, str] = {}
    live: set[str] = set()
    if store is not None:
        with store:
            merged = store.merged_milestones()
            run = store.active_run()
            live = {
                w.milestone_id
                for w in (store.workers(run.id) if run else [])
                if w.state in LIVE_STATES | {"paused", "pausing", "crashed"}
            }
    g = Git(loaded.root)
    integration = loaded.project.integration_branch
    findings: list[Finding] = []
    for entry in entries:
        mid = entry.name
        if mid in live:
            continue
        known = loaded.project.get(mid) is not None
        ahead = 0
        if entry.branch_exists and g.branch_exists(integration):
            try:
                ahead = g.commits_ahead(integration, entry.branch)
            except GsdParallelError:
                ahead = -1
        landed = mid in merged or ahead == 0
        if entry.registered and not entry.dir_exists:

            def prune() -> None:
                g.run("worktree", "prune")

            findings.append(
                Finding("stale-worktree", f"registered worktree {entry.path} is missing", mid, fix=prune)
            )
            continue
        orphan = not known or landed
        if not orphan:
            for problem in entry.problems:
                if "has no worktree" not in problem:
                    findings.append(Finding("worktree", problem, mid, fixable=False))
            continue
        why = (
            "its milestone no longer exists"
            if not known
            else ("its work is merged" if mid in merged else "it has no commits beyond " + integration)
        )
        if entry.registered or entry.branch_exists:
            delete_branch = entry.branch_exists and landed

            def remove(
                mid: str = mid, delete_branch: bool = delete_branch, registered: bool = entry.registered
            ) -> str | None:
                if registered:
                    remove_worktree(loaded.root, mid, delete_branch=delete_branch, force_branch=delete_branch)
                elif delete_branch:
                    g.run("branch", "-D", branch_name(mid))
                return None

            what = "worktree " + str(entry.path) if entry.registered else f"branch {entry.branch}"
            unmerged = entry.branch_exists and not landed
            message = f"orphan {what}: {why}" + (
                f" (branch {entry.branch} has {ahead} unmerged commit(s): kept)" if unmerged else ""
            )
            findings.append(
                Finding("orphan", message, mid, fix=remove, fixable=entry.registered or delete_branch)
            )
    return findings


# --------------------------------------------------------------------------- merges


def _merge_findings(loaded: Loaded) -> list[Finding]:
    """Merges cut short (journal rows without an outcome) and stray temporary worktrees."""
    from ..merge.attempt import recover_interrupted_merges

    store = open_store(loaded)
    if store is None:
        return []
    with store:
        lines = recover_interrupted_merges(loaded.root, store, fix=False)
    if not lines:
        return []
    done: list[str] = []

    def fix() -> str | None:
        if done:
            return None  # one recovery pass repairs every line; its report is on the first
        s = open_store(loaded)
        assert s is not None
        with s:
            done.extend(recover_interrupted_merges(loaded.root, s, fix=True))
        return "; ".join(done)

    busy = any(line.startswith("a merge is running now") for line in lines)
    return [Finding("interrupted-merge", line, None, fix=fix, fixable=not busy) for line in lines]
