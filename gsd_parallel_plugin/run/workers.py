"""Worker processes: launching them, and reading what they left on stderr.

A worker is identified by ``WorkerHandle(pid, create_time)``; its liveness, exit code and
signals are :mod:`..processes`, the signal and status files it shares with us are
:mod:`..gsd.status_files`. Workers run in their own session (``start_new_session``), so
they are process-group leaders (pgid == pid): the coordinator can exit and come back while
they keep running.

Workers run in their own session (``start_new_session``), so they are process-group leaders
(pgid == pid): the coordinator can exit and come back while they keep running, and a signal
to the group reaches the worker and the tools it started, but not the coordinator.

Reading the NDJSON stdout log lives in :mod:`..gsd.output`; its public names are re-exported here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import WorkerLaunchError
from ..models import WorkerHandle, WorkerSpec
from ..processes import process_create_time, remember_child

__all__ = ["launch", "read_stderr_tail", "resolve_program"]

# --- launching ----------------------------------------------------------------------------


def _not_found(prog: str) -> WorkerLaunchError:
    return WorkerLaunchError(
        f"worker command not found: {prog} — install GSD or set GSD_PARALLEL_WORKER_COMMAND"
    )


def _not_executable(path: str) -> WorkerLaunchError:
    return WorkerLaunchError(
        f"worker command is not executable: {path} — fix its permissions or set GSD_PARALLEL_WORKER_COMMAND"
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
    registry so :func:`..processes.exit_status` can report the exit code to this process.
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
    remember_child(proc, created)
    return WorkerHandle(pid=proc.pid, create_time=created)


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
