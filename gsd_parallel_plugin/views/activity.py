"""A worker's NDJSON log as activity people can read (``logs``).

Events are read with :func:`~gsd_parallel_plugin.gsd.output.read_new_events` (garbage and
partial lines skipped, offsets safe to follow) and interpreted with
:func:`~gsd_parallel_plugin.gsd.output.summarize`, so a unit or a cost shown here is exactly
what the supervisor counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gsd.output import NANOS_PER_USD, read_new_events, summarize

ARG_KEYS = ("path", "file_path", "filePath", "command", "pattern", "url", "query")
TEXT_LIMIT = 160


@dataclass(frozen=True)
class Entry:
    """One readable line of activity."""

    kind: str
    """``start`` (worker run began), ``unit-start``, ``unit-end``, ``tool``, ``tool-error``,
    ``notify``, ``cost`` or ``stderr``."""
    text: str
    unit: str | None = None
    cost: float | None = None
    total_cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def render(self) -> str:
        mark = {
            "start": "──",
            "unit-start": "▶",
            "unit-end": "✔",
            "tool": "  ·",
            "tool-error": "  ✖",
            "notify": "•",
            "cost": "  ",
            "stderr": "stderr│",
        }.get(self.kind, " ")
        return f"{mark} {self.text}"


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_target(args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    for key in ARG_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _error_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        for key in ("error", "message", "stderr"):
            if isinstance(result.get(key), str):
                return str(result[key])
        content = result.get("content")
        if isinstance(content, list):
            texts = [c.get("text") for c in content if isinstance(c, dict) and c.get("text")]
            if texts:
                return str(texts[0])
    return ""


@dataclass
class Interpreter:
    """Turns events into entries, keeping what spans events (running cost, open tools)."""

    total_nanos: int = 0
    tokens: int = 0
    units_finished: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    events: int = 0
    _tool_units: dict[str, str] = field(default_factory=dict)
    _finished: set[str] = field(default_factory=set)

    def _newly_finished(self, unit: str | None, count: int) -> bool:
        """Count a finished unit once, however many events say so (GSD's lifecycle tool and
        a ``Finished`` notice both end it); False for a unit already counted."""
        if unit is not None:
            if unit in self._finished:
                return False
            self._finished.add(unit)
        self.units_finished += count
        return True

    def feed(self, event: Mapping[str, Any]) -> list[Entry]:
        self.events += 1
        kind = event.get("type")
        p = summarize([event])
        out: list[Entry] = []
        if kind == "extensions_ready":  # once per worker process (agent_start is once per unit)
            out.append(Entry("start", "worker run started"))
        elif kind == "extension_ui_request" and event.get("method") == "notify":
            message = str(event.get("message") or "")
            if p.units_finished:
                if self._newly_finished(_unit_of(message), p.units_finished):
                    out.append(Entry("unit-end", _clip(message), unit=_unit_of(message)))
            elif p.unit_known and p.current_unit:
                out.append(Entry("unit-start", _clip(message), unit=p.current_unit))
            else:
                level = str(event.get("notifyType") or "info")
                prefix = "" if level == "info" else f"{level}: "
                out.append(Entry("notify", _clip(prefix + message)))
        elif kind == "tool_execution_start":
            self.tool_calls += 1
            name = str(event.get("toolName") or "tool")
            target = _tool_target(event.get("args"))
            out.append(Entry("tool", _clip(f"{name} {target}".strip())))
            if p.unit_known and p.current_unit:
                self._tool_units[str(event.get("toolCallId") or "")] = p.current_unit
        elif kind == "tool_execution_end":
            unit = self._tool_units.pop(str(event.get("toolCallId") or ""), None)
            name = str(event.get("toolName") or "tool")
            if event.get("isError") is True:
                self.tool_errors += 1
                detail = _error_text(event.get("result"))
                out.append(Entry("tool-error", _clip(f"{name} failed" + (f": {detail}" if detail else ""))))
            elif p.units_finished and self._newly_finished(unit, p.units_finished):
                out.append(Entry("unit-end", f"{unit or name} complete", unit=unit))
        elif kind == "message_end" and p.messages:
            self.total_nanos += p.cost_nanos
            tokens = sum(p.tokens.values())
            self.tokens += tokens
            if p.cost_nanos or tokens:
                cost = p.cost_nanos / NANOS_PER_USD
                total = self.total_nanos / NANOS_PER_USD
                out.append(
                    Entry("cost", f"cost +${cost:.4f} (total ${total:.4f}) · {tokens:,} tokens",
                          cost=cost, total_cost=total)
                )  # fmt: skip
        return out

    def summary(self) -> str:
        return (
            f"{self.units_finished} unit(s) finished · {self.tool_calls} tool call(s)"
            + (f" ({self.tool_errors} failed)" if self.tool_errors else "")
            + f" · cost ${self.total_nanos / NANOS_PER_USD:.4f} · {self.tokens:,} tokens"
        )

    def summary_json(self) -> dict[str, Any]:
        return {
            "units_finished": self.units_finished,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "cost": self.total_nanos / NANOS_PER_USD,
            "tokens": self.tokens,
            "events": self.events,
        }


def _unit_of(message: str) -> str | None:
    words = message.split()
    return " ".join(words[-2:]) if len(words) >= 3 else None


@dataclass
class LogFollower:
    """Reads a worker's stdout (NDJSON) and stderr logs incrementally, from byte offsets.

    A log that shrinks (truncated, replaced) is read again from the start; a missing
    log reads as empty until it appears.
    """

    stdout_path: Path
    stderr_path: Path
    interpreter: Interpreter = field(default_factory=Interpreter)
    stdout_offset: int = 0
    stderr_offset: int = 0
    skipped_lines: int = 0

    def read_stdout(self) -> Iterator[Entry]:
        while True:
            chunk = read_new_events(self.stdout_path, self.stdout_offset)
            self.skipped_lines += chunk.skipped_lines
            advanced = chunk.new_offset != self.stdout_offset or chunk.restarted
            self.stdout_offset = chunk.new_offset
            for event in chunk.events:
                yield from self.interpreter.feed(event)
            if not advanced:
                return

    def read_stderr(self, *, max_bytes: int = 1 << 20) -> list[Entry]:
        """Complete new stderr lines (a partial last line waits for its newline)."""
        try:
            with open(self.stderr_path, "rb") as fh:
                size = fh.seek(0, 2)
                if size < self.stderr_offset:
                    self.stderr_offset = 0
                fh.seek(self.stderr_offset)
                data = fh.read(max_bytes)
        except FileNotFoundError:
            self.stderr_offset = 0
            return []
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < max_bytes:
                return []
            end = len(data) - 1  # one enormous line: show what we have, move on
        self.stderr_offset += end + 1
        lines = data[: end + 1].decode("utf-8", errors="replace").splitlines()
        return [Entry("stderr", _clip(line, 400)) for line in lines if line.strip()]

    def read_all(self) -> tuple[list[Entry], list[Entry]]:
        """Everything written so far: (stdout activity, stderr lines)."""
        stdout = list(self.read_stdout())
        stderr: list[Entry] = []
        while True:
            before = self.stderr_offset
            stderr += self.read_stderr()
            if self.stderr_offset <= before:
                return stdout, stderr
