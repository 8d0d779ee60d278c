"""Worker processes: launching, liveness, signals, and the files GSD workers share with us.

A worker is identified by ``WorkerHandle(pid, create_time)``: the pid alone can be reused by an
unrelated process after the worker dies, the pair cannot. Liveness is always "that pid exists,
was created at that time, and is not a zombie" — never output silence, so a worker that runs
one long test for ten minutes is not declared dead.

Workers run in their own session (``start_new_session``), so they are process-group leaders
(pgid == pid): the coordinator can exit and come back while they keep running, and a signal
to the group reaches the worker and the tools it started, but not the coordinator.

Reading the NDJSON stdout log lives in :mod:`.ndjson`; its public names are re-exported here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import psutil

from ..errors import WorkerLaunchError
from ..gsd.output import (
    OUTCOME_EXIT_CODES,
    InferredOutcome,
    LogChunk,
    Progress,
    classify_notice,
    infer_outcome,
    read_new_events,
    read_progress,
    summarize,
)
from ..milestone_ids import validate_milestone_id
from ..models import WorkerHandle, WorkerSpec
from ..workspace import layout

__all__ = [
    "OUTCOME_EXIT_CODES",
    "InferredOutcome",
    "LogChunk",
    "Progress",
    "classify_notice",
    "clear_signal",
    "exit_status",
    "forget",
    "infer_outcome",
    "is_alive",
    "is_stopped",
    "kill_tree",
    "launch",
    "process_create_time",
    "read_new_events",
    "read_progress",
    "read_signal",
    "read_status_file",
    "read_stderr_tail",
    "send_signal_group",
    "summarize",
    "wait_exit",
    "write_signal",
    "write_status_file",
]

Signal = Literal["pause", "resume", "stop"]
SIGNALS: frozenset[str] = frozenset({"pause", "resume", "stop"})

CREATE_TIME_TOLERANCE = 0.01
"""Seconds. psutil reports the same float in every process; the slack only absorbs rounding."""

_LAUNCHED: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
"""Workers this process launched, by pid: the Popen object is the only way to get an exit code."""


# --- launching ----------------------------------------------------------------------------


def _not_found(prog: str) -> WorkerLaunchError:
    return WorkerLaunchError(
        f"worker command not found: {prog} — install GSD or set GSD_PARALLEL_WORKER_COMMAND"
    )


def _not_executable(path: str) -> WorkerLaunchError:
    return WorkerLaunchError(
        f"worker command is not executable: {path} — fix its permissions or set "
        "GSD_PARALLEL_WORKER_COMMAND"
    )


def resolve_program(prog: str, env: Mapping[str, str], cwd: Path) -> str:
    """The absolute path that will run for ``prog``, found the way the worker's env would.

    A name without ``/`` is looked up on the *merged* environment's ``PATH`` (what the worker
    sees, which may differ from ours); a relative path is relative to the worktree (the
    worker's cwd). Raises :class:`WorkerLaunchError` with one actionable line.
    """
    if not prog:
        raise WorkerLaunchError(
            "worker command is empty — set parallel.worker_command or GSD_PARALLEL_WORKER_COMMAND"
        )
    if "/" in prog:
        candidate = Path(prog) if os.path.isabs(prog) else cwd / prog
        if not candidate.exists():
            raise _not_found(prog)
        if candidate.is_dir() or not os.access(candidate, os.X_OK):
            raise _not_executable(str(candidate))
        return str(candidate.absolute())
    search = env.get("PATH", os.defpath)
    found = shutil.which(prog, path=search)
    if found:
        return os.path.abspath(found)
    for directory in search.split(os.pathsep):
        candidate = Path(directory or ".") / prog
        if candidate.is_file():  # on PATH but which() refused it: not executable
            raise _not_executable(str(candidate))
    raise _not_found(prog)


def _open_log(path: Path) -> Any:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # handed to the child; launch() closes our copy
    except OSError as exc:
        raise WorkerLaunchError(f"cannot open worker log {path}: {exc.strerror or exc}") from None


def launch(spec: WorkerSpec) -> WorkerHandle:
    """Start ``spec.command`` detached; the builtin ``spawn_worker``.

    cwd is ``spec.worktree``; env is ``os.environ`` overlaid with ``spec.env``; stdin is
    /dev/null; stdout and stderr are *appended* to ``spec.stdout_log`` / ``spec.stderr_log``
    (parents created), so the log of a restarted worker continues where the last one stopped
    and stored offsets stay valid. The worker gets its own session and process group, so it
    outlives this process and group signals reach its children. The Popen object is kept in a
    module registry so :func:`exit_status` can report the exit code to this process.
    """
    if not spec.command:
        raise WorkerLaunchError(
            "worker command is empty — set parallel.worker_command or GSD_PARALLEL_WORKER_COMMAND"
        )
    if not spec.worktree.is_dir():
        raise WorkerLaunchError(f"worker directory does not exist: {spec.worktree}")
    env = {**os.environ, **spec.env}
    program = resolve_program(spec.command[0], env, spec.worktree)
    out = _open_log(spec.stdout_log)
    try:
        err = _open_log(spec.stderr_log)
        try:
            proc = subprocess.Popen(
                [program, *spec.command[1:]],
                cwd=spec.worktree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise WorkerLaunchError(
                f"cannot start worker command {spec.command[0]}: {exc.strerror or exc}"
            ) from None
        finally:
            err.close()
    finally:
        out.close()
    created = process_create_time(proc.pid)
    if created is None:  # cannot happen for an unreaped child; be loud if it does
        proc.kill()
        proc.wait()
        raise WorkerLaunchError(f"worker {spec.command[0]} vanished right after starting")
    _LAUNCHED[proc.pid] = (proc, created)
    return WorkerHandle(pid=proc.pid, create_time=created)


# --- liveness -----------------------------------------------------------------------------


def process_create_time(pid: int) -> float | None:
    """psutil's start time of ``pid`` (epoch seconds), or None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _ours(handle: WorkerHandle) -> subprocess.Popen[bytes] | None:
    entry = _LAUNCHED.get(handle.pid)
    if entry is None or abs(entry[1] - handle.create_time) > CREATE_TIME_TOLERANCE:
        return None
    return entry[0]


def exit_status(handle: WorkerHandle) -> int | None:
    """The exit code of a worker *this process* launched (reaping it); None while it runs.

    Negative means killed by that signal (``-9``). For a worker we did not launch (adopted
    after a coordinator restart) the code is unknowable: None always — use :func:`is_alive`
    to see that it is gone and :func:`infer_outcome` to judge how it ended.
    """
    proc = _ours(handle)
    return None if proc is None else proc.poll()


def forget(handle: WorkerHandle) -> None:
    """Drop a launched worker from the registry (after its exit has been settled)."""
    if _ours(handle) is not None:
        del _LAUNCHED[handle.pid]


def _process(handle: WorkerHandle) -> psutil.Process | None:
    """The live process behind ``handle``: same pid, same start time, not a zombie."""
    proc = _ours(handle)
    if proc is not None:
        proc.poll()  # reap our own child so it cannot linger as a zombie
    try:
        p = psutil.Process(handle.pid)
        if abs(p.create_time() - handle.create_time) > CREATE_TIME_TOLERANCE:
            return None  # the pid now belongs to someone else
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_alive(handle: WorkerHandle) -> bool:
    """True while the worker runs (stopped by SIGSTOP counts as alive; a zombie does not)."""
    return _process(handle) is not None


def is_stopped(handle: WorkerHandle) -> bool:
    """True when the worker is frozen by SIGSTOP (``pause --now``)."""
    p = _process(handle)
    if p is None:
        return False
    try:
        return p.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def wait_exit(handle: WorkerHandle, timeout: float, interval: float = 0.02) -> bool:
    """Poll until the worker is gone; True if it went within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(handle):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# --- signals ------------------------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group, never our own (a worker that joined it would take us down)."""
    try:
        if pgid == os.getpgrp():
            return False
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def send_signal_group(handle: WorkerHandle, sig: int) -> bool:
    """Send ``sig`` to the worker's process group; False (nothing sent) if the worker is gone.

    Used for SIGTERM on stop and SIGSTOP/SIGCONT for ``pause --now``. If the worker left its
    own group, the worker alone is signalled. The pid-reuse check happens just before the
    signal; the window in between is microseconds.
    """
    p = _process(handle)
    if p is None:
        return False
    try:
        pgid = os.getpgid(p.pid)
    except ProcessLookupError:
        return False
    if pgid == p.pid:
        return _signal_group(pgid, sig)
    try:
        p.send_signal(sig)  # psutil re-checks the pid is still this process
        return True
    except psutil.Error:
        return False


def kill_tree(handle: WorkerHandle) -> bool:
    """SIGKILL the worker, its process group, and every descendant psutil can find.

    Descendants are collected *before* anything dies (afterwards they are reparented and
    untraceable); that catches children that made their own session or group, which a group
    signal misses. When the worker itself is already gone, its group is still killed, unless
    its pid now belongs to an unrelated process. Orphans of an earlier death that left the
    group are out of reach. True if any signal was delivered.
    """
    p = _process(handle)
    victims: list[psutil.Process] = []
    if p is not None:
        with suppress(psutil.Error):
            victims = p.children(recursive=True)
    sent = False
    reused = p is None and process_create_time(handle.pid) is not None
    if not reused:  # a group can outlive its leader; its id cannot be handed out meanwhile
        sent = _signal_group(handle.pid, signal.SIGKILL)
    if p is not None:
        with suppress(psutil.Error):
            p.kill()
            sent = True
    for child in victims:
        with suppress(psutil.Error):
            child.kill()
            sent = True
    ours = _ours(handle)
    if ours is not None:
        ours.poll()
    return sent


# --- files shared with GSD ----------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers see the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def signal_path(parallel_dir: Path, milestone_id: str) -> Path:
    validate_milestone_id(milestone_id)
    return parallel_dir / f"{milestone_id}.signal.json"


def status_dir(parallel_dir: Path) -> Path:
    """``.gsd/parallel/workers``: our status files, in GSD's format but out of its reach.

    GSD's built-in parallel mode adopts every ``.gsd/parallel/*.status.json``: it SIGTERMs
    and SIGKILLs the pid in it on ``/gsd parallel stop`` and when its session ends, and
    deletes files whose heartbeat is 30 s old. One folder down, it never sees ours.
    """
    return parallel_dir / layout.WORKER_STATUS_DIRNAME


def status_path(parallel_dir: Path, milestone_id: str) -> Path:
    validate_milestone_id(milestone_id)
    return status_dir(parallel_dir) / f"{milestone_id}.status.json"


def write_signal(parallel_dir: Path, milestone_id: str, signal: Signal) -> Path:
    """Leave ``pause``/``resume``/``stop`` for the worker (GSD reads and deletes it per unit)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown worker signal {signal!r}")
    path = signal_path(parallel_dir, milestone_id)
    write_json_atomic(path, {"signal": signal, "sentAt": _now_ms(), "from": "coordinator"})
    return path


def read_signal(parallel_dir: Path, milestone_id: str) -> dict[str, Any] | None:
    """The pending signal file's content, or None (none, or unreadable)."""
    return _read_json_object(signal_path(parallel_dir, milestone_id))


def clear_signal(parallel_dir: Path, milestone_id: str) -> None:
    """Remove a pending signal (before a relaunch, so an old ``stop`` cannot end the new run)."""
    with suppress(FileNotFoundError):
        signal_path(parallel_dir, milestone_id).unlink()


_UNIT_RE = re.compile(r"^(\S+)\s+(\S+)$")


def write_status_file(
    parallel_dir: Path,
    milestone_id: str,
    *,
    pid: int | None,
    state: str,
    current_unit: str | None,
    completed_units: int,
    cost: float | Decimal | int,
    last_heartbeat_ms: int | None,
    started_at_ms: int | None,
    worktree: str | Path | None,
    current_unit_started_ms: int | None = None,
) -> None:
    """Write ``workers/<MID>.status.json`` the way GSD's ``session-status-io`` does (atomically).

    ``currentUnit`` takes GSD's current shape ``{"type", "id", "startedAt"}`` (from
    ``"execute-task M002/S01/T03"``; ``startedAt`` is null unless given); ``completedUnits``
    is kept from GSD's older shape. ``state`` is ours (GSD itself writes running, paused,
    stopped, error). ``cost`` is USD; times are epoch ms; a missing pid is written as 0.
    """
    unit: dict[str, Any] | None = None
    if current_unit:
        m = _UNIT_RE.match(current_unit.strip())
        unit_type, unit_id = (m.group(1), m.group(2)) if m else ("unit", current_unit.strip())
        unit = {"type": unit_type, "id": unit_id, "startedAt": current_unit_started_ms}
    data = {
        "milestoneId": milestone_id,
        "pid": pid or 0,
        "state": str(state),
        "currentUnit": unit,
        "completedUnits": int(completed_units),
        "cost": float(cost),
        "lastHeartbeat": last_heartbeat_ms,
        "startedAt": started_at_ms,
        "worktreePath": str(worktree) if worktree is not None else None,
    }
    write_json_atomic(status_path(parallel_dir, milestone_id), data)


def read_status_file(parallel_dir: Path, milestone_id: str) -> dict[str, Any] | None:
    """A status file's content, or None when missing or not a JSON object (GSD's rule)."""
    data = _read_json_object(status_path(parallel_dir, milestone_id))
    if data is None or "milestoneId" not in data or "pid" not in data:
        return None
    return data


def remove_status_file(parallel_dir: Path, milestone_id: str) -> None:
    with suppress(FileNotFoundError):
        status_path(parallel_dir, milestone_id).unlink()


_CONTROL_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def read_stderr_tail(path: Path, lines: int = 5, max_bytes: int = 64 << 10) -> list[str]:
    """The last non-blank lines of a stderr log (ANSI colours stripped), for a failed status.

    Reads at most ``max_bytes`` from the end; a first line cut by that window is dropped.
    """
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = max(size - max_bytes - 1, 0)  # one byte more: was the window cut mid-line?
            fh.seek(start)
            data = fh.read(max_bytes + 1)
    except OSError:
        return []
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    parts = data.decode("utf-8", errors="replace").splitlines()
    cleaned = [_CONTROL_RE.sub("", p).rstrip() for p in parts]
    return [p for p in cleaned if p.strip()][-lines:]
