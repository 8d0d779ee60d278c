"""A coordination store deleted or truncated under a run: notice it, say it, rebuild it.

The store is one file; a user's ``rm -rf .gsd/parallel/coordinator.db`` (or a tool that
truncates it) must not leave commands saying "No parallel orchestration is currently
active" while workers keep spending, nor lose the cost without a word. What can be
rebuilt is rebuilt:

- **The supervisor still has it open** (the file was deleted or replaced): its connection
  reads the old file to the end, so :func:`restore_from_connection` writes a complete copy
  back with SQLite's backup API. Nothing is lost.
- **Nothing holds it** (``doctor --fix``, or a truncated file): :func:`rebuild_from_logs`
  makes a new run from what is on disk. Every worker's NDJSON log holds every cost it
  reported, its status file names its process, and the integration branch's squash
  commits (``GSD-Milestone:`` trailers) say what was merged. The run's history (events,
  the merge journal, the state of earlier runs) is gone; the cost is not.

``status`` imports this module for :func:`store_missing` on every call: what only a rebuild
needs (worker processes, the NDJSON reader, git) is imported inside the functions.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from pathlib import Path

from ..errors import GsdParallelError
from ..workspace import layout


def store_missing(parallel_dir: Path) -> bool:
    """The store is gone (or empty) although workers wrote logs here: a run existed."""
    db = layout.store_path(parallel_dir)
    try:
        empty = db.stat().st_size == 0
    except FileNotFoundError:
        empty = True
    return empty and any(parallel_dir.glob(f"*{layout.STDOUT_LOG_SUFFIX}"))


def missing_message(parallel_dir: Path) -> str:
    return (
        f"the coordination store {layout.store_path(parallel_dir)} is missing or empty, but workers "
        "logged here: the run's state and cost are not lost, its logs hold them: run "
        "`doctor --fix` to rebuild the store"
    )


def same_file(path: Path, inode: tuple[int, int] | None) -> bool:
    """True while ``path`` is still the file (device, inode) that was opened, and not empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return inode is None or ((st.st_dev, st.st_ino) == inode and st.st_size > 0)


def file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def restore_from_connection(conn: sqlite3.Connection, path: Path) -> bool:
    """Write what ``conn`` (still open on the deleted file) holds to ``path``; False when the
    open copy is unreadable too (a truncated file)."""
    try:
        conn.execute("SELECT count(*) FROM runs").fetchone()
    except sqlite3.DatabaseError:
        return False
    tmp = path.with_name(path.name + ".rebuild")
    for leftover in (tmp, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if not path.exists():
            leftover.unlink(missing_ok=True)
    target = sqlite3.connect(tmp)
    try:
        conn.backup(target)
    finally:
        target.close()
    os.replace(tmp, path)
    return True


def _merged_on(root: Path, branch: str) -> dict[str, str]:
    """Milestone -> squash commit, from the ``GSD-Milestone:`` trailers on ``branch``."""
    from ..workspace.git import Git, GitCommandError

    try:
        out = Git(root).run("log", "--format=%H%x1f%B%x00", branch)
    except GitCommandError:
        return {}
    merged: dict[str, str] = {}
    for entry in out.split("\0"):
        sha, _, body = entry.strip().partition("\x1f")
        lines = body.splitlines()
        if any(line.startswith("GSD-Slice:") for line in lines):
            continue  # part of a milestone: its dependents still wait
        for line in lines:
            if line.startswith("GSD-Milestone:"):
                merged.setdefault(line.split(":", 1)[1].strip(), sha)
    return merged


def _complete_in(checkout: Path, mid: str) -> bool:
    from ..gsd.checkout import gsd_says_complete
    from ..project.summary import milestone_complete_in

    if not checkout.is_dir():
        return False
    return milestone_complete_in(checkout / ".gsd", mid) or gsd_says_complete(checkout, mid)


def rebuild_from_logs(root: Path, parallel_dir: Path, integration_branch: str) -> list[str]:
    """A new store with one run rebuilt from the workers' logs and status files; one line
    per milestone saying what was recovered."""
    from .. import processes
    from ..gsd.output import read_new_events, summarize
    from ..gsd.status_files import read_status_file
    from ..models import WorkerHandle
    from ..project import is_valid_milestone_id
    from ..workspace.layout import branch_name, checkout_path
    from . import Store

    db = layout.store_path(parallel_dir)
    if db.exists() and db.stat().st_size == 0:
        db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # they belonged to the old file
    lines: list[str] = []
    merged = _merged_on(root, integration_branch)
    with Store(db) as store:
        run = store.create_run(None)
        any_live = False
        for log in sorted(parallel_dir.glob(f"*{layout.STDOUT_LOG_SUFFIX}")):
            mid = log.name.removesuffix(layout.STDOUT_LOG_SUFFIX)
            if not is_valid_milestone_id(mid):
                continue
            chunk = read_new_events(log, 0)
            progress = summarize(chunk.events)
            status = read_status_file(parallel_dir, mid) or {}
            worktree = Path(status.get("worktreePath") or checkout_path(root, mid))
            stderr = layout.stderr_log(parallel_dir, mid)
            store.add_worker(
                run.id, mid, mid, worktree, branch_name(mid),
                stdout_offset=chunk.new_offset,
                stderr_offset=stderr.stat().st_size if stderr.exists() else 0,
            )  # fmt: skip
            store.add_cost(run.id, mid, progress.cost_nanos, progress.tokens)
            raw_pid = status.get("pid")
            pid = raw_pid if isinstance(raw_pid, int) and raw_pid > 0 else None
            create_time = processes.process_create_time(pid) if pid is not None else None
            alive = (
                pid is not None
                and create_time is not None
                and processes.is_alive(WorkerHandle(pid, create_time))
            )
            if alive:
                any_live = True
                store.update_worker(mid, run.id, pid=pid, create_time=create_time)
                state, what = "running", f"worker pid {pid} still runs: adopted"
            elif mid in merged:
                store.mark_completed(mid)
                store.mark_merged(mid, merged[mid])
                state, what = "complete", "merged"
            elif _complete_in(worktree, mid):
                from ..gsd.checkout import finish_checkout

                with suppress(GsdParallelError):  # what the supervisor does when one completes
                    finish_checkout(worktree, mid, branch_name(mid))
                store.mark_completed(mid)  # a worker started on it would wait for ever
                state, what = "complete", "complete in its checkout, awaiting merge"
            else:
                state, what = "crashed", "no worker runs: it restarts from its checkout"
            store.set_state(mid, run.id, state, "store rebuilt from the logs")
            lines.append(f"{mid}: ${progress.cost_nanos / 1e9:.2f} from its log; {what}")
        if not any_live and all(line.endswith("; merged") for line in lines):
            store.finish_run(run.id)
        store.add_event("store", "store rebuilt from the workers' logs: " + "; ".join(lines),
                        run_id=run.id)  # fmt: skip
    return lines
