"""Reading a worker's NDJSON stdout log: new events since an offset, and what they mean.

Why one module: it is one protocol, GSD's NDJSON stream, read (offsets, partial lines) and
interpreted (cost, units, notices, outcome) in one place, so a change in GSD's events is a change
here only.

Everything here is pure (no writes, no globals): the supervisor stores the new byte offset
together with the cost it produced in one transaction, so a line is never counted twice and
never lost, whatever crashes in between.

Offsets. A stored offset normally points just after a ``\\n`` (or at 0). The only exception is
the middle of an enormous line we gave up on (see :func:`read_new_events`); that case is
recognised from the file itself (the byte before the offset is not ``\\n``), so no state other
than the offset is ever needed.

Events that matter (GSD-2's ``headless-events.ts`` and
``stop-notice.ts``):

- ``message_end`` with ``message.usage.cost.total`` (USD) and token counts;
- ``extension_ui_request`` ``notify`` messages. GSD's headless host treats a notice starting with
  ``auto-mode paused`` / ``step-mode paused`` as a pause, ``auto-mode blocked`` (or one containing
  ``blocked:``) as blocked, and ``auto-mode stopped``, ``step-mode stopped``,
  ``auto-mode complete``, ``auto-mode idle``, ``no active milestone`` as the end of the run
  (all compared lower-cased). A finished milestone reads ``Auto-mode stopped — milestone M002
  complete``.
- units: GSD has no single "unit started" event, so we recognise the fake worker's
  ``Starting <type> <id>`` / ``Finished <type> <id>`` notices, GSD's ``Unit complete: <type> <id>``,
  and GSD's lifecycle tools (``gsd_task_complete``/``gsd_complete_task``, the slice and milestone
  equivalents) whose args carry ``milestoneId``/``sliceId``/``taskId``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ..exitcodes import GsdExit
from ..money import NANOS_PER_USD, cost_to_nanos

TOKEN_KEYS = ("input", "output", "cacheRead", "cacheWrite")

Announcement = Literal["paused", "blocked", "stopped", "complete"]
InferredOutcome = Literal["complete", "paused", "blocked", "stopped", "crashed"]
"""How a worker ended, as its log and files tell it (:func:`infer_outcome`, no exit code)."""

OUTCOME_EXIT_CODES: Mapping[str, int] = {
    "complete": GsdExit.DONE,
    "stopped": GsdExit.DONE,
    "paused": GsdExit.PAUSED_OR_BLOCKED,
    "blocked": GsdExit.PAUSED_OR_BLOCKED,
}
"""The GSD exit code an inferred outcome stands for (``crashed`` has none)."""

_PAUSED_PREFIXES = ("auto-mode paused", "step-mode paused")
_BLOCKED_PREFIXES = ("auto-mode blocked", "step-mode blocked")
_TERMINAL_PREFIXES = (
    "auto-mode stopped",
    "step-mode stopped",
    "auto-mode complete",
    "auto-mode idle",
    "no active milestone",
)
_MANUAL_RESOLUTION = (
    "resolve manually and re-run /gsd auto",
    "resolve conflicts manually and run /gsd auto to resume",
    "resolve and run /gsd auto to resume",
)
_COMPLETE_RE = re.compile(
    r"^auto-mode complete|\bmilestone\s+m\d+(?:-[a-z0-9]{6})?\s+(?:is\s+)?(?:already\s+)?complete\b"
    r"|^auto-mode stopped — all milestones complete"
)
_UNIT = r"([a-z][\w/-]*)\s+(M\d+(?:-[a-z0-9]{6})?(?:/[\w.-]+)*)"
_START_RE = re.compile(rf"^Starting\s+{_UNIT}\s*$")
_FINISH_RE = re.compile(rf"^(?:Finished|Unit complete:)\s+{_UNIT}\s*$")
_LIFECYCLE_TOOLS = {
    "gsd_task_complete": "execute-task",
    "gsd_complete_task": "execute-task",
    "gsd_slice_complete": "complete-slice",
    "gsd_complete_slice": "complete-slice",
    "gsd_milestone_complete": "complete-milestone",
    "gsd_complete_milestone": "complete-milestone",
}
_MCP_PREFIX_RE = re.compile(r"^mcp__.+?__")


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogChunk:
    """What one :func:`read_new_events` call found."""

    events: list[dict[str, Any]]
    """Parsed JSON objects, in file order."""
    new_offset: int
    """Where the next call starts; store it with whatever ``events`` produced."""
    skipped_lines: int
    """Blank, non-JSON, non-object and over-long lines (each counted once)."""
    start_offset: int = 0
    """Where this read began: the given offset, or 0 after a restart."""
    restarted: bool = False
    """The file was shorter than the offset (truncated or replaced): read again from 0."""


def read_new_events(
    path: Path, offset: int, *, max_bytes: int = 4 << 20, max_line: int = 1 << 20
) -> LogChunk:
    """Parse the complete lines of ``path`` from ``offset``, reading at most ~``max_bytes``.

    - A trailing line without its ``\\n`` is left for the next call (``new_offset`` stops
      before it), unless it is already longer than ``max_line``.
    - A line longer than ``max_line`` is skipped without being held in memory: if its end is
      not there yet, ``new_offset`` moves past what is there, into the middle of the line. The
      next call sees that the byte before its offset is not ``\\n`` and discards everything up
      to the next ``\\n`` *without parsing it*. That matters: the tail of a garbage line can
      itself be valid JSON (``...noise {"type": "message_end", ...}``) and must not be counted.
      The skipped line is counted once, when its ``\\n`` is found.
    - Blank, non-JSON (including invalid UTF-8) and non-object lines are skipped and counted.
    - A file shorter than ``offset`` was truncated or rotated: reading restarts at 0 and
      ``restarted`` is set. (A file replaced by a *longer* one cannot be told apart from growth.)
    - A missing file reads as empty (offset 0, ``restarted`` if the offset was > 0).

    Memory is bounded by ``max(max_bytes, max_line + 1)`` plus one line. ``new_offset`` never
    decreases unless ``restarted``. Nothing is written anywhere.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if max_line < 1 or max_bytes < 1:
        raise ValueError("max_bytes and max_line must be positive")
    read_size = max(max_bytes, max_line + 1)  # a line that fits is always seen whole
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            restarted = offset > size
            if restarted:
                offset = 0
            mid_line = False
            if offset > 0:
                fh.seek(offset - 1)
                mid_line = fh.read(1) != b"\n"
            buf = fh.read(read_size)
    except FileNotFoundError:
        return LogChunk([], 0, 0, 0, restarted=offset > 0)
    return _parse_buffer(buf, offset, mid_line, max_line, restarted)


def _parse_buffer(buf: bytes, offset: int, mid_line: bool, max_line: int, restarted: bool) -> LogChunk:
    events: list[dict[str, Any]] = []
    skipped = 0
    pos, n = 0, len(buf)
    if mid_line:
        nl = buf.find(b"\n")
        if nl < 0:  # still inside the enormous line: drop what is there, parse nothing
            return LogChunk([], offset + n, 0, offset, restarted)
        pos, skipped = nl + 1, 1
    while pos < n:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            break
        if nl - pos > max_line:
            skipped += 1
        else:
            event = _parse_line(buf[pos:nl])
            if event is None:
                skipped += 1
            else:
                events.append(event)
        pos = nl + 1
    tail = n - pos
    new_offset = offset + (n if tail > max_line else pos)
    return LogChunk(events, new_offset, skipped, offset, restarted)


def _parse_line(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


# --- meaning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What a run of events says: per batch from :func:`summarize`, folded with :meth:`then`."""

    cost_nanos: int = 0
    """Sum of ``message_end`` ``usage.cost.total``, in nano-USD (exact integer sums)."""
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KEYS, 0))
    messages: int = 0
    """``message_end`` events seen."""
    current_unit: str | None = None
    """``"execute-task M002/S01/T03"`` while a unit runs; meaningful only if ``unit_known``."""
    unit_known: bool = False
    """True when these events started or ended a unit (so ``current_unit`` None means idle)."""
    last_notify: str | None = None
    units_finished: int = 0
    finished_units: tuple[str, ...] = ()
    """The named units that finished, in order (GSD's lifecycle tool and a ``Finished`` notice
    both end one: :meth:`units_finished_after` counts it once across batches too)."""
    paused_announced: bool = False
    stopped_announced: bool = False
    """A terminal notice (``Auto-mode stopped``, ``auto-mode complete``, …), completion included."""
    completed_announced: bool = False
    blocked_announced: bool = False
    announcement: Announcement | None = None
    """The last of the notices above (after the last ``extensions_ready``)."""
    run_started: bool = False
    """An ``extensions_ready`` (a worker process started) was seen: the announcement flags only
    cover events after the last one."""
    last_event_type: str | None = None
    events: int = 0
    model_events: int = 0
    """Assistant ``message_start``/``message_update``/``message_end`` events: the model answered."""
    provider_failure: str | None = None
    """GSD's ``finalError`` when its last provider retry round failed and nothing came since."""
    provider_touched: bool = False
    """These events said something about the provider (a retry end, an answer, a new unit)."""

    def repeats(self, last_finished: str | None) -> int:
        """1 when these events begin by finishing again the unit an earlier batch ended with
        (the batch boundary fell between its two end events), else 0."""
        return int(last_finished is not None and self.finished_units[:1] == (last_finished,))

    def units_finished_after(self, last_finished: str | None) -> int:
        """Units these events finished, each counted once across batches."""
        return self.units_finished - self.repeats(last_finished)

    @property
    def last_finished(self) -> str | None:
        return self.finished_units[-1] if self.finished_units else None

    def then(self, later: Progress) -> Progress:
        """This progress followed by ``later`` (sums add; the later unit and notices win)."""
        tokens = {k: self.tokens.get(k, 0) + later.tokens.get(k, 0) for k in TOKEN_KEYS}
        flags = later if later.run_started else _merge_flags(self, later)
        again = later.repeats(self.last_finished)
        return Progress(
            cost_nanos=self.cost_nanos + later.cost_nanos,
            tokens=tokens,
            messages=self.messages + later.messages,
            current_unit=later.current_unit if later.unit_known else self.current_unit,
            unit_known=self.unit_known or later.unit_known,
            last_notify=later.last_notify if later.last_notify is not None else self.last_notify,
            units_finished=self.units_finished + later.units_finished - again,
            finished_units=self.finished_units + later.finished_units[again:],
            paused_announced=flags.paused_announced,
            stopped_announced=flags.stopped_announced,
            completed_announced=flags.completed_announced,
            blocked_announced=flags.blocked_announced,
            announcement=flags.announcement,
            run_started=self.run_started or later.run_started,
            last_event_type=later.last_event_type or self.last_event_type,
            events=self.events + later.events,
            model_events=self.model_events + later.model_events,
            provider_failure=(later.provider_failure if later.provider_touched else self.provider_failure),
            provider_touched=self.provider_touched or later.provider_touched,
        )

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_nanos) / NANOS_PER_USD


def _merge_flags(a: Progress, b: Progress) -> Progress:
    return replace(
        b,
        paused_announced=a.paused_announced or b.paused_announced,
        stopped_announced=a.stopped_announced or b.stopped_announced,
        completed_announced=a.completed_announced or b.completed_announced,
        blocked_announced=a.blocked_announced or b.blocked_announced,
        announcement=b.announcement or a.announcement,
    )


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def classify_notice(message: str) -> Announcement | None:
    """GSD's reading of a notify message: paused, blocked, stopped, complete, or None."""
    text = message.strip().lower()
    if text.startswith(_PAUSED_PREFIXES):
        return "paused"
    if text.startswith(_BLOCKED_PREFIXES) or "blocked:" in text:
        return "blocked"
    if any(m in text for m in _MANUAL_RESOLUTION):
        return "blocked"
    if _COMPLETE_RE.search(text) and not text.startswith(_PAUSED_PREFIXES):
        return "complete"
    if text.startswith(_TERMINAL_PREFIXES):
        return "stopped"
    return None


def _tool_unit(event: Mapping[str, Any]) -> str | None:
    unit_type = _LIFECYCLE_TOOLS.get(_MCP_PREFIX_RE.sub("", str(event.get("toolName") or "")))
    args = event.get("args")
    if unit_type is None or not isinstance(args, dict):
        return None
    parts = [str(args[k]) for k in ("milestoneId", "sliceId", "taskId") if args.get(k)]
    return f"{unit_type} {'/'.join(parts)}" if parts else None


class _Acc:
    """Mutable accumulator behind :func:`summarize` (kept private so Progress stays frozen)."""

    def __init__(self) -> None:
        self.cost = 0
        self.tokens = dict.fromkeys(TOKEN_KEYS, 0)
        self.messages = 0
        self.unit: str | None = None
        self.unit_known = False
        self.last_notify: str | None = None
        self.finished: dict[str, None] = {}  # ordered, each once
        self.anonymous_finished = 0
        self.flags: dict[str, bool] = {}
        self.announcement: Announcement | None = None
        self.run_started = False
        self.last_type: str | None = None
        self.events = 0
        self.tool_units: dict[str, str] = {}
        self.model_events = 0
        self.provider_failure: str | None = None
        self.provider_touched = False

    def provider(self, failure: str | None) -> None:
        self.provider_failure, self.provider_touched = failure, True

    def finish(self, unit: str | None) -> None:
        if unit is None:
            self.anonymous_finished += 1
        else:
            self.finished[unit] = None
        if unit is None or self.unit in (None, unit):
            self.unit = None
        self.unit_known = True

    def message_end(self, event: Mapping[str, Any]) -> None:
        self.messages += 1
        message = event.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            return
        cost = usage.get("cost")
        nanos = cost_to_nanos(cost.get("total")) if isinstance(cost, dict) else None
        self.cost += nanos or 0
        for key in TOKEN_KEYS:
            self.tokens[key] += _count(usage.get(key))

    def notify(self, message: str) -> None:
        self.last_notify = message
        if m := _START_RE.match(message):
            self.unit, self.unit_known = f"{m.group(1)} {m.group(2)}", True
            return
        if m := _FINISH_RE.match(message):
            self.finish(f"{m.group(1)} {m.group(2)}")
            return
        kind = classify_notice(message)
        if kind is None:
            return
        self.announcement = kind
        self.flags[kind] = True
        if kind == "complete":
            self.flags["stopped"] = True
        self.unit, self.unit_known = None, True

    def tool(self, event: Mapping[str, Any], started: bool) -> None:
        """GSD's lifecycle tools: the start names the unit, a successful end finishes it."""
        name = _MCP_PREFIX_RE.sub("", str(event.get("toolName") or ""))
        if name not in _LIFECYCLE_TOOLS:
            return
        call_id = str(event.get("toolCallId") or "")
        unit = _tool_unit(event)
        if started:
            if unit is not None:
                self.unit, self.unit_known = unit, True
                if call_id:
                    self.tool_units[call_id] = unit
            return
        # End events rarely repeat the args: the unit its start named (this batch or before).
        unit = self.tool_units.pop(call_id, None) or unit or self.unit
        if event.get("isError") is not True:
            self.finish(unit)

    def add(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        kind = event.get("type")
        self.last_type = kind if isinstance(kind, str) else self.last_type
        if kind in _MODEL_EVENTS and _role(event) == "assistant" and not _failed_answer(event):
            self.model_events += 1
            self.provider(None)
        if kind == "message_end":
            self.message_end(event)
        elif kind == _RUN_START:
            self.run_started = True
            self.flags.clear()
            self.announcement = None
            self.provider(None)
        elif kind == "agent_start":
            self.provider(None)  # a new unit's session: GSD is going on
        elif kind == "auto_retry_end":
            if event.get("success") is False:
                error = event.get("finalError")
                self.provider(str(error).strip() if error else "the provider kept failing")
            else:
                self.provider(None)
        elif kind == "extension_ui_request" and event.get("method") == "notify":
            message = event.get("message")
            if isinstance(message, str):
                self.notify(message)
        elif kind in ("tool_execution_start", "tool_execution_end"):
            self.tool(event, started=kind == "tool_execution_start")

    def result(self) -> Progress:
        return Progress(
            cost_nanos=self.cost,
            tokens=dict(self.tokens),
            messages=self.messages,
            current_unit=self.unit,
            unit_known=self.unit_known,
            last_notify=self.last_notify,
            units_finished=len(self.finished) + self.anonymous_finished,
            finished_units=tuple(self.finished),
            paused_announced=self.flags.get("paused", False),
            stopped_announced=self.flags.get("stopped", False),
            completed_announced=self.flags.get("complete", False),
            blocked_announced=self.flags.get("blocked", False),
            announcement=self.announcement,
            run_started=self.run_started,
            last_event_type=self.last_type,
            events=self.events,
            model_events=self.model_events,
            provider_failure=self.provider_failure,
            provider_touched=self.provider_touched,
        )


_RUN_START = "extensions_ready"
"""Once per worker process: GSD starts a new agent session (``agent_start``) for every unit."""
_MODEL_EVENTS = frozenset({"message_start", "message_update", "message_end"})


def _failed_answer(event: Mapping[str, Any]) -> bool:
    """An assistant message that only reports a provider error (it proves no working model)."""
    message = event.get("message")
    return isinstance(message, dict) and (
        message.get("stopReason") == "error" or bool(message.get("errorMessage"))
    )


def _role(event: Mapping[str, Any]) -> str | None:
    message = event.get("message")
    role = message.get("role") if isinstance(message, dict) else None
    return role if isinstance(role, str) else None


def summarize(events: Iterable[Mapping[str, Any]], *, current_unit: str | None = None) -> Progress:
    """Cost, tokens, units and announcements of a batch of events (pure).

    Costs that are not finite numbers >= 0 are ignored. A unit finished twice in one batch
    (a ``Unit complete`` notice and a lifecycle tool, say) counts once. An ``extensions_ready``
    clears the announcement flags: the log is appended across launches, and only what the
    latest run said about itself matters. ``current_unit``: the unit running when the batch
    begins (what the previous batch said), so a lifecycle tool's end read apart from its
    start still names the unit it ends.
    """
    acc = _Acc()
    acc.unit = current_unit
    for event in events:
        acc.add(event)
    return acc.result()


# --- outcome of a worker we could not reap ------------------------------------------------


def read_progress(
    path: Path, since_offset: int = 0, *, tail_bytes: int = 256 << 10, max_line: int = 1 << 20
) -> Progress:
    """Summarize the last ``tail_bytes`` of a log, never before ``since_offset``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Progress()
    offset = min(max(since_offset, size - tail_bytes, 0), size)
    progress = Progress()
    while True:
        chunk = read_new_events(path, offset, max_bytes=tail_bytes, max_line=max_line)
        if chunk.restarted or chunk.new_offset <= offset:
            return progress
        progress = progress.then(summarize(chunk.events))
        offset = chunk.new_offset


def infer_outcome(
    stdout_log: Path,
    summary_terminal: bool,
    *,
    since_offset: int = 0,
    tail_bytes: int = 256 << 10,
) -> InferredOutcome:
    """How a worker whose exit code we cannot know (adopted after a restart) ended.

    ``complete`` when the milestone's SUMMARY is terminal (the disk is the truth, whatever the
    log says). Otherwise the last announcement of the latest run in the log tail decides:
    ``paused`` (GSD would have exited 10), ``blocked`` (10), ``stopped`` for a stop or
    completion notice without a terminal SUMMARY (0), and ``crashed`` when the run ended
    without a word (killed, SIGTERM, crash). Pass ``since_offset`` = the log size at launch so
    a previous run's notices in the same (appended) log cannot speak for this one.
    :data:`OUTCOME_EXIT_CODES` maps the result back to GSD's exit code.
    """
    if summary_terminal:
        return "complete"
    progress = read_progress(stdout_log, since_offset, tail_bytes=tail_bytes)
    kind = progress.announcement
    if kind == "paused":
        return "paused"
    if kind == "blocked":
        return "blocked"
    if kind in ("stopped", "complete"):
        return "stopped"
    return "crashed"
