"""The files GSD workers share with the coordinator: signal files and status files.

A worker reads ``.gsd/parallel/<MID>.signal.json`` (``pause``/``resume``/``stop``) after each
unit and deletes it; we write ``.gsd/parallel/workers/<MID>.status.json`` in the format of
GSD's ``session-status-io``. Both are written atomically.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import suppress
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ..milestone_ids import validate_milestone_id
from ..workspace import layout

Signal = Literal["pause", "resume", "stop"]
SIGNALS: frozenset[str] = frozenset({"pause", "resume", "stop"})


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
