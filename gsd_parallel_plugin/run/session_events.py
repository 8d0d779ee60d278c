"""The user's own GSD session, as hooks: the GSD extension spools events, this drains them.

GSD awaits extension event handlers one at a time, so the extension
(``gsd_extension/index.js``) never waits on a child process there: it appends one JSON
line per event to ``.gsd/parallel/session-events.jsonl`` and, without waiting, asks
``gsd-parallel session-events`` to drain. The supervisor drains too, once a tick, so a
milestone completed in the session re-plans the run at once (its dependents start).

Each line is delivered once: the reader takes an exclusive ``flock`` on the spool,
advances the saved offset, releases, and only then fires the hooks (a crash in between
loses that batch's hooks, never doubles them).

Lines the extension writes (``ts`` in epoch ms)::

    {"event": "session_start", "session": "<id>", "cwd": "/p", "ts": 1}
    {"event": "cost", "session": "<id>", "cost_usd": 0.0123, "model": "m", "ts": 2}
    {"event": "milestone_complete", "session": "<id>", "milestone": "M001", "ts": 3}
    {"event": "session_end", "session": "<id>", "cwd": "/p", "ts": 4}

The session's spend is reported through ``on_cost_update`` with ``source="session"`` and
``milestone_id="session:<id>"``; it does not count against ``parallel.budget_ceiling``
(GSD's own ``budget_ceiling`` governs the session; ours governs the workers we start).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..milestone_ids import is_valid_milestone_id
from ..money import nanos_to_usd, usd_to_nanos
from ..workspace import layout

if TYPE_CHECKING:
    from ..plugins import Hooks

KINDS = frozenset({"session_start", "session_end", "cost", "milestone_complete"})
#: a spool longer than this, fully drained, is truncated so it never grows without end
TRUNCATE_AFTER_BYTES = 1 << 20


@dataclass(frozen=True)
class SessionEvent:
    """One event of the user's GSD session, as the extension spooled it."""

    kind: str
    session_id: str
    cwd: str = ""
    cost_nanos: int = 0
    milestone_id: str | None = None

    @classmethod
    def parse(cls, line: bytes) -> SessionEvent | None:
        """The event on *line*, or None for anything else (a torn or foreign line)."""
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("event") not in KINDS:
            return None
        session = str(data.get("session") or "unknown")
        milestone = data.get("milestone")
        if data["event"] == "milestone_complete" and not (
            isinstance(milestone, str) and is_valid_milestone_id(milestone)
        ):
            return None
        try:
            cost = usd_to_nanos(Decimal(str(data.get("cost_usd") or 0)))
        except (ArithmeticError, ValueError):
            return None
        return cls(
            data["event"], session, str(data.get("cwd") or ""), max(cost, 0),
            milestone if isinstance(milestone, str) else None,
        )  # fmt: skip


def spool_path(parallel_dir: Path) -> Path:
    return parallel_dir / layout.SESSION_EVENTS_SPOOL


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"offset": 0, "totals": {}}
    if not isinstance(data, dict):
        return {"offset": 0, "totals": {}}
    totals = data.get("totals")
    offset = data.get("offset")
    return {
        "offset": max(offset, 0) if isinstance(offset, int) else 0,
        "totals": totals if isinstance(totals, dict) else {},
    }


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Batch:
    """What one drain took off the spool, and each session's spend before it."""

    events: list[SessionEvent]
    spent_before_nanos: dict[str, int]


def take(parallel_dir: Path) -> Batch:
    """Take the complete lines spooled since the last take (a torn last line waits)."""
    spool = spool_path(parallel_dir)
    if not spool.is_file():
        return Batch([], {})
    state_path = parallel_dir / layout.SESSION_EVENTS_STATE
    with open(spool, "rb+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            state = _read_state(state_path)
            size = os.fstat(fh.fileno()).st_size
            offset = state["offset"] if state["offset"] <= size else 0  # truncated by hand
            fh.seek(offset)
            data = fh.read(size - offset)
            end = data.rfind(b"\n") + 1
            events = [e for e in map(SessionEvent.parse, data[:end].splitlines()) if e]
            before: dict[str, int] = {k: int(v) for k, v in state["totals"].items()}
            totals = dict(before)
            for event in events:
                if event.kind == "cost":
                    totals[event.session_id] = totals.get(event.session_id, 0) + event.cost_nanos
            offset += end
            if offset == size and size > TRUNCATE_AFTER_BYTES:
                fh.truncate(0)
                offset = 0
            ended = {e.session_id for e in events if e.kind == "session_end"}
            kept = {k: v for k, v in totals.items() if k not in ended}
            _write_state(state_path, {"offset": offset, "totals": kept})
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return Batch(events, before)


def deliver(
    batch: Batch,
    hooks: Hooks,
    *,
    project_root: Path,
    branch: str,
    run_total_usd: float,
    budget_ceiling: float | None,
) -> None:
    """Fire the hooks for *batch*, in spool order (each session's total as of each event)."""
    spent = dict(batch.spent_before_nanos)
    for event in batch.events:
        sid = event.session_id
        if event.kind == "cost" and event.cost_nanos:
            spent[sid] = spent.get(sid, 0) + event.cost_nanos
            hooks.on_cost_update(
                f"session:{sid}", nanos_to_usd(event.cost_nanos) or 0.0,
                nanos_to_usd(spent[sid]) or 0.0, run_total_usd, budget_ceiling, source="session",
            )  # fmt: skip
        elif event.kind == "milestone_complete" and event.milestone_id:
            hooks.on_milestone_complete(event.milestone_id, branch, project_root)
        elif event.kind == "session_start":
            hooks.on_gsd_session_start(sid, Path(event.cwd or project_root))
        elif event.kind == "session_end":
            total = nanos_to_usd(spent.get(sid, 0)) or 0.0
            hooks.on_gsd_session_end(sid, Path(event.cwd or project_root), total)


def drain(
    project_root: Path,
    hooks: Hooks,
    *,
    branch: Callable[[], str],
    run_total_usd: Callable[[], float],
    budget_ceiling: float | None,
) -> list[SessionEvent]:
    """Take what the session spooled and fire its hooks; the events, for the caller to act on."""
    batch = take(layout.parallel_dir(project_root / ".gsd"))
    if batch.events:
        deliver(
            batch, hooks, project_root=project_root, branch=branch(),
            run_total_usd=run_total_usd(), budget_ceiling=budget_ceiling,
        )  # fmt: skip
    return batch.events
