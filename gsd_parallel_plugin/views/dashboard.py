"""Drawing a :class:`~.snapshot.Snapshot` with rich: the ``watch`` screen.

Laid out for 80 columns; narrower terminals lose the least useful columns first
(restarts, ETA, last activity, then the task bar) instead of wrapping rows.
"""

from __future__ import annotations

import time
from io import StringIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .. import hints
from ..models import LIVE_STATES
from .eta import format_duration
from .snapshot import Snapshot, WorkerView

STATE_STYLES = {
    "starting": "cyan",
    "running": "bold green",
    "pausing": "yellow",
    "paused": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "complete": "bold blue",
    "merged": "blue",
    "crashed": "bold red",
    "failed": "bold red",
    "blocked": "magenta",
}
UNIT_TYPES = {
    "execute-task": "task",
    "plan-slice": "plan",
    "plan-milestone": "plan",
    "complete-slice": "close",
    "complete-milestone": "close",
}
EVENT_KINDS = {"state", "adopt", "kill", "budget", "merge", "stall", "supervisor", "error",
               "overlap", "sync", "preview"}  # fmt: skip


def bar(done: float, total: float, width: int) -> str:
    """``█████░░░░░``: ``done`` of ``total`` in ``width`` cells."""
    if width <= 0:
        return ""
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "█" * filled + "░" * (width - filled)


def short_unit(unit: str | None) -> str:
    """``execute-task M002/S01/T03`` -> ``task M002/S01/T03`` (fits the column)."""
    if not unit:
        return ""
    kind, _, ident = unit.partition(" ")
    return f"{UNIT_TYPES.get(kind, kind)} {ident}".strip()


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    s = max(0, int(now - ts))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def header(snap: Snapshot, width: int = 80) -> Text:
    text = Text("gsd-parallel watch", style="bold")
    if snap.run is not None:
        state = "stopped" if snap.stopped else "active" if snap.active else snap.run.state.replace("_", " ")
        text.append(f" · run {snap.run.id} {state}")
    if snap.supervisor is not None:
        text.append(f" · supervisor pid {snap.supervisor.get('pid')}", style="green")
    elif snap.active and not snap.stopped:
        text.append(" · supervisor not running", style="bold yellow")
    text.append(time.strftime(" · %H:%M:%S", time.localtime(snap.taken_at)), style="dim")
    text.truncate(width, overflow="ellipsis")
    return text


def worker_table(snap: Snapshot, width: int) -> Table:
    show_restarts = width >= 76 and any(w.restarts for w in snap.workers)
    show_eta = width >= 70
    show_seen = width >= 62
    bar_width = 10 if width >= 72 else 6 if width >= 50 else 0
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False, show_edge=False)
    id_width = max([4, *(len(w.id) for w in snap.workers)])
    table.add_column("MID", no_wrap=True, min_width=id_width, max_width=id_width)
    table.add_column("STATE", no_wrap=True, min_width=8, max_width=9)
    table.add_column("UNIT", no_wrap=True, overflow="ellipsis", ratio=1, min_width=6)
    table.add_column("TASKS", no_wrap=True, max_width=bar_width + 8 if bar_width else 7)
    table.add_column("COST", no_wrap=True, justify="right", max_width=9)
    if show_seen:
        table.add_column("SEEN", no_wrap=True, justify="right", max_width=4)
    if show_eta:
        table.add_column("ETA", no_wrap=True, justify="right", max_width=6)
    if show_restarts:
        table.add_column("R", no_wrap=True, justify="right", max_width=2)
    for w in snap.workers:
        row: list[RenderableType] = [
            w.id,
            Text(w.label, style=STATE_STYLES.get(w.label, "")),
            _unit_cell(w),
            _tasks_cell(w, bar_width),
            f"${w.cost:.2f}",
        ]
        if show_seen:
            row.append(ago(w.last_activity_at, snap.taken_at))
        if show_eta:
            idle = w.state == "complete" or snap.stopped  # a stopped run has no ETA to give
            row.append("-" if idle else format_duration(w.eta))
        if show_restarts:
            row.append(str(w.restarts) if w.restarts else "")
        table.add_row(*row)
    return table


def _unit_cell(w: WorkerView) -> Text:
    if w.unit:
        return Text(short_unit(w.unit))
    if w.state in {"crashed", "failed"} and w.last_error:
        return Text(w.last_error, style="red")
    if w.reason and w.state not in {"running", "complete"}:
        return Text(w.reason, style="dim")
    return Text("")


def _tasks_cell(w: WorkerView, width: int) -> Text:
    if w.tasks_planned is None:
        return Text(f"{'·' * width} {w.tasks_done}/?".lstrip(), style="dim")
    done, total = w.tasks_done, w.tasks_planned
    text = Text(bar(done, total, width), style="green" if done == total else "cyan")
    text.append(f" {done}/{total}" if width else f"{done}/{total}")
    return text


def budget_line(snap: Snapshot, width: int) -> Text:
    text = Text("Cost ", style="bold")
    eta = format_duration(snap.run_eta) if snap.active and not snap.stopped else ""
    tail = f"  run ETA {eta}" if eta and eta != "-" else ""
    if snap.ceiling:
        share = snap.total_cost / snap.ceiling
        numbers = f" ${snap.total_cost:.2f} / ${snap.ceiling:.2f} ({share:.0%})"
        room = max(0, width - len(text) - len(numbers) - len(tail) - 1)
        style = "red" if share >= 1 else "yellow" if share >= 0.8 else "green"
        text.append(bar(snap.total_cost, snap.ceiling, min(30, room)), style=style)
        text.append(numbers)
    else:
        text.append(f"${snap.total_cost:.2f} (no budget ceiling)")
    text.append(tail)
    return text


def _line(label: str, body: str, width: int, style: str = "") -> Text:
    text = Text(label, style="bold")
    text.append(body, style=style)
    text.truncate(width, overflow="ellipsis")
    return text


def stopped_line() -> str:
    """What a stopped run says (watch and status alike)."""
    return (
        "Run stopped: no worker runs and nothing starts by itself; continue with "
        f"{hints.cmd('resume')} (all) or {hints.cmd('resume <MID>')}."
    )


def render(snap: Snapshot, width: int = 80, *, footer: bool = True) -> RenderableType:
    """The whole frame as one rich renderable, at most ``width`` columns wide."""
    parts: list[RenderableType] = [header(snap, width)]
    if snap.notice:
        parts.append(Text(snap.notice, style="yellow"))  # wraps: a notice is read whole
    if snap.run is None and not snap.notice:
        parts.append(Text("No parallel run yet.", style="dim"))
    if snap.stopped:
        parts.append(_line("", stopped_line(), width, "yellow"))
    if snap.active and snap.supervisor is None and any(w.state in LIVE_STATES for w in snap.workers):
        parts.append(
            _line(
                "",
                f"Workers keep running; {hints.cmd('status')} starts a supervisor.",
                width,
                "yellow",
            )
        )
    if snap.workers:
        parts += [Text(""), worker_table(snap, width)]
    if snap.run is not None:
        parts += [Text(""), budget_line(snap, width)]
    if snap.waiting:
        parts.append(Text(f"\nWaiting ({len(snap.waiting)})", style="bold"))
        for mid, reason in snap.waiting[:5]:
            parts.append(_line(f"  {mid} ", reason, width, "dim"))
        if len(snap.waiting) > 5:
            parts.append(Text(f"  … and {len(snap.waiting) - 5} more", style="dim"))
    if snap.overlaps:
        parts.append(Text(f"\nOverlaps ({len(snap.overlaps)})", style="bold"))
        for o in snap.overlaps[:5]:
            parts.append(_line("  ", o.summary(), width, "bold red" if o.conflict else "yellow"))
        if len(snap.overlaps) > 5:
            parts.append(Text(f"  … and {len(snap.overlaps) - 5} more", style="dim"))
    if snap.preview.updated_at is not None:
        bad = any(r.bad for r in snap.preview.results)
        parts.append(_line("\nPreview: ", snap.preview.compact(), width, "bold red" if bad else "green"))
    merges = _merge_text(snap, width)
    if merges is not None:
        parts.append(merges)
    events = [e for e in snap.events if e.kind in EVENT_KINDS]
    if events:
        parts.append(Text("\nEvents", style="bold"))
        for e in events:
            stamp = time.strftime("%H:%M:%S ", time.localtime(e.at))
            bad = e.kind == "error" or (
                isinstance(e.data, dict) and e.data.get("new") in {"crashed", "failed"}
            )
            parts.append(_line(f"  {stamp}", e.message, width, "red" if bad else ""))
            last = e.data.get("last_stderr") if isinstance(e.data, dict) else None
            if last and last not in e.message:
                parts.append(_line(" " * 11 + "↳ ", str(last), width, "red"))
    if footer:
        parts.append(Text("\nq quit · refreshes every second", style="dim"))
    return Group(*parts)


def _merge_text(snap: Snapshot, width: int) -> Text | None:
    m = snap.merges
    if not (m.merged or m.pending or m.running or m.conflicted):
        return None
    text = Text("\nMerges ", style="bold")
    pieces: list[tuple[str, str]] = []
    if m.merged:
        pieces.append((f"merged {', '.join(m.merged)}", "blue"))
    if m.running:
        pieces.append((f"merging {', '.join(m.running)}", "cyan"))
    if m.pending:
        pieces.append((f"to merge {', '.join(m.pending)}", "yellow"))
    for mid, detail in m.conflicted:
        pieces.append((f"{mid} {detail}", "bold red"))
    for i, (body, style) in enumerate(pieces):
        if i:
            text.append(" · ", style="dim")
        text.append(body, style=style)
    text.truncate(width + 1, overflow="ellipsis")  # +1: the leading newline
    return text


def render_text(snap: Snapshot, width: int = 80, *, color: bool = False) -> str:
    """The frame as plain text (``watch --once``), no wider than ``width``."""
    buf = StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    console.print(render(snap, width, footer=False))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
