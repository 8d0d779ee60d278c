"""One supervisor per project: its lock, whether one runs, and starting one detached.

The detached supervisor runs as ``python -m gsd_parallel_plugin.run.supervisor ROOT``: tools
and tests recognise its processes by that text in their command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..workspace import layout
from ..workspace.locks import PidLock, read_holder


class SupervisorLock(PidLock):
    """``.gsd/parallel/supervisor.lock``: one supervisor per project (see :mod:`..workspace.locks`)."""

    def __init__(self, parallel_dir: Path) -> None:
        super().__init__(parallel_dir / layout.SUPERVISOR_LOCK_NAME)

    def acquire(self, timeout: float = 2.0, *, yield_to_holder: bool = True) -> bool:
        """Give up at once for a live supervisor; retry a brief contention for a moment."""
        return super().acquire(timeout, yield_to_holder=yield_to_holder)

    @staticmethod
    def holder(parallel_dir: Path) -> dict[str, Any] | None:  # type: ignore[override]
        """The live supervisor of the project whose ``.gsd/parallel`` is ``parallel_dir``."""
        return read_holder(parallel_dir / layout.SUPERVISOR_LOCK_NAME)


def supervisor_running(parallel_dir: Path) -> bool:
    return SupervisorLock.holder(parallel_dir) is not None


def spawn_background(project_root: Path, parallel_dir: Path, *, run_id: int | None = None) -> int:
    """Start a detached supervisor process for ``project_root``; return its pid.

    ``run_id``: the run it is started to go on with (adopting workers, a session's event).
    That supervisor never opens a run of its own: the run may have ended between the read
    that asked for it and now, and a new, empty run would hide the one that ended. Only
    ``start`` spawns one without it.
    """
    import subprocess

    argv = [sys.executable, "-m", "gsd_parallel_plugin.run.supervisor", str(project_root)]
    if run_id is not None:
        argv += ["--run", str(run_id)]
    parallel_dir.mkdir(parents=True, exist_ok=True)
    with open(parallel_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid
