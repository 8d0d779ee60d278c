"""A plugin that appends one JSON line per session hook call to ``$SESSION_HOOK_LOG``.

Load it by name (``GSD_PARALLEL_PLUGINS=gsd_parallel_plugin.testing.session_hook_log``) to
see, from any process (the CLI, a supervisor, the GSD extension's drain), what the user's own
GSD session delivered: ``{"hook": "start" | "cost" | "complete" | "end", "pid": ..., ...}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import hookimpl

LOG_VARIABLE = "SESSION_HOOK_LOG"
MODULE = __name__


def _log(hook: str, **fields: Any) -> None:
    with open(os.environ[LOG_VARIABLE], "a") as fh:
        fh.write(json.dumps({"hook": hook, "pid": os.getpid(), **fields}, default=str) + "\n")


@hookimpl
def on_cost_update(
    milestone_id: str,
    delta_usd: float,
    worker_total_usd: float,
    run_total_usd: float,
    source: str,
) -> None:
    _log("cost", mid=milestone_id, delta=delta_usd, total=worker_total_usd,
         run=run_total_usd, source=source)  # fmt: skip


@hookimpl
def on_milestone_complete(milestone_id: str, branch: str, worktree: Path) -> None:
    _log("complete", mid=milestone_id, branch=branch, worktree=worktree)


@hookimpl
def on_gsd_session_start(session_id: str, cwd: Path) -> None:
    _log("start", session=session_id, cwd=cwd)


@hookimpl
def on_gsd_session_end(session_id: str, cwd: Path, cost_usd: float) -> None:
    _log("end", session=session_id, cost=cost_usd)
