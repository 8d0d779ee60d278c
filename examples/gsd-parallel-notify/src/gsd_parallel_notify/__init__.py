"""gsd-parallel-notify: one JSON line per run event, to a file and optionally to a command.

Events: ``worker_state_change``, ``milestone_complete``, ``merge_complete`` and
``budget_exceeded`` (the broadcast hooks of the same names). Configured by environment
variables, because these events fire in the supervisor process (often in the background,
with no project at hand in the hook's arguments) and the environment is what it inherits
from ``gsd-parallel start``:

``GSD_PARALLEL_NOTIFY_FILE``
    Append one JSON object per line to this file (created with its directories).
``GSD_PARALLEL_NOTIFY_COMMAND``
    A JSON array, the argv of a program to run per event with the JSON line on stdin,
    e.g. ``["notify-send-json"]``. Never run through a shell. ``GSD_EVENT`` is set to the
    event name in its environment.
``GSD_PARALLEL_NOTIFY_EVENTS``
    Comma list restricting the events (default: all four).
``GSD_PARALLEL_NOTIFY_TIMEOUT``
    Seconds the command may take (default 10).

A failing command (missing, non-zero exit, timeout) raises; gsd-parallel then names this
plugin in a warning and the run carries on. The line is written to the file first.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gsd_parallel_plugin import hookimpl

__version__ = "0.1.0"

ENV_FILE = "GSD_PARALLEL_NOTIFY_FILE"
ENV_COMMAND = "GSD_PARALLEL_NOTIFY_COMMAND"
ENV_EVENTS = "GSD_PARALLEL_NOTIFY_EVENTS"
ENV_TIMEOUT = "GSD_PARALLEL_NOTIFY_TIMEOUT"
EVENTS = ("worker_state_change", "milestone_complete", "merge_complete", "budget_exceeded")


class NotifyError(RuntimeError):
    """Bad configuration, or the notification command failed."""


@dataclass(frozen=True)
class NotifyConfig:
    file: Path | None = None
    command: tuple[str, ...] | None = None
    events: frozenset[str] = frozenset(EVENTS)
    timeout: float = 10.0


def load_config(environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read the ``GSD_PARALLEL_NOTIFY_*`` variables (raises :class:`NotifyError` when wrong)."""
    env = os.environ if environ is None else environ
    file = Path(env[ENV_FILE]).expanduser() if env.get(ENV_FILE) else None
    command: tuple[str, ...] | None = None
    if env.get(ENV_COMMAND):
        try:
            argv = json.loads(env[ENV_COMMAND])
        except ValueError:
            argv = None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise NotifyError(
                f'{ENV_COMMAND} must be a JSON array of strings, e.g. ["my-notifier", "--json"]'
            )
        command = tuple(argv)
    events = frozenset(EVENTS)
    if env.get(ENV_EVENTS):
        events = frozenset(e.strip() for e in env[ENV_EVENTS].split(",") if e.strip())
        unknown = sorted(events - set(EVENTS))
        if unknown:
            raise NotifyError(
                f"{ENV_EVENTS}: unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}"
            )
    try:
        timeout = float(env.get(ENV_TIMEOUT) or 10.0)
    except ValueError:
        raise NotifyError(f"{ENV_TIMEOUT} must be a number of seconds") from None
    if timeout <= 0:
        raise NotifyError(f"{ENV_TIMEOUT} must be a number of seconds") from None
    return NotifyConfig(file, command, events, timeout)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` with one ``write`` on an ``O_APPEND`` descriptor.

    Readers (``tail -f``) never see half a line from us, and events written by two
    processes (a foreground ``start --wait`` and a ``merge``) do not interleave.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def run_command(argv: tuple[str, ...], line: str, event: str, timeout: float) -> None:
    try:
        done = subprocess.run(
            list(argv),
            input=line + "\n",
            text=True,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "GSD_EVENT": event},
            check=False,
        )
    except FileNotFoundError:
        raise NotifyError(f"notify command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise NotifyError(f"notify command {argv[0]} took longer than {timeout:g}s") from None
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()
        raise NotifyError(
            f"notify command {argv[0]} exited {done.returncode}" + (f": {tail[-1]}" if tail else "")
        )


def emit(event: str, fields: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """Write (and send) one event, if configured and wanted."""
    config = load_config(environ)
    if event not in config.events or (config.file is None and config.command is None):
        return
    record = {
        "event": event,
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **fields,
    }
    line = json.dumps(record, default=str, ensure_ascii=False)
    if config.file is not None:
        append_line(config.file, line)
    if config.command is not None:
        run_command(config.command, line, event, config.timeout)


# --------------------------------------------------------------------------- hooks


@hookimpl
def on_worker_state_change(
    milestone_id: str, old_state: str | None, new_state: str, reason: str | None
) -> None:
    emit(
        "worker_state_change",
        {"milestone_id": milestone_id, "old_state": old_state, "new_state": new_state, "reason": reason},
    )


@hookimpl
def on_milestone_complete(milestone_id: str, branch: str, worktree: Path) -> None:
    emit("milestone_complete", {"milestone_id": milestone_id, "branch": branch, "worktree": str(worktree)})


@hookimpl
def on_merge_complete(milestone_id: str, commit: str, branch: str) -> None:
    emit("merge_complete", {"milestone_id": milestone_id, "commit": commit, "branch": branch})


@hookimpl
def on_budget_exceeded(run_total_usd: float, budget_ceiling: float) -> None:
    emit("budget_exceeded", {"run_total_usd": run_total_usd, "budget_ceiling": budget_ceiling})
