"""A stand-in for the real GSD worker (``gsd headless --json auto``): the fake GSD worker.

Why one module: it is one program, started as its own process (``python -m``) on every launch of a
fake worker, and it shares no code with the package it stands in for except :mod:`..gsd.paths`: it
parses GSD's files itself, so a bug in ``project/`` cannot hide in both. Split up, it would still
be one program, importing all of its parts on every launch.

The real worker needs a model provider, so tests and the demo run this instead. It follows what
the real one (GSD-2 3.0.0, ``gsd-build/gsd-2`` at ``76568edc0``) was measured to do
(docs/ARCHITECTURE.md, *The GSD adapter*) wherever an orchestrator can tell: command line, files, git
history, events, signals, exit codes and texts. Texts marked *real* below are GSD's, verbatim.

Command line
------------

``python -m gsd_parallel_plugin.testing.fake_gsd headless [--json] auto|recover|query``. No
arguments at all means ``headless --json auto``; no command means ``auto``; GSD's other flags
(``--timeout N``, ``--model M``, …) are accepted and ignored. An unknown command: one stderr line,
exit 1. cwd is the checkout. Without ``<cwd>/.gsd/`` every command prints the *real* two lines
``[headless] Error: No .gsd/ directory found in current directory.`` /
``[headless] Run 'gsd' interactively first to initialize a project.`` and exits 1.

``headless recover``
    Imports the markdown plan of every ``.gsd/milestones/<ID>*/`` directory into
    ``<cwd>/.gsd/gsd.db`` (SQLite, created when missing) and prints the *real*
    ``gsd-recover: recovered <M>M/<S>S/<T>T hierarchy`` on stderr, exit 0. Tables, with GSD's
    column names (db-base-schema.ts, a subset): ``milestones (id TEXT PRIMARY KEY, title,
    status 'active'|'complete', depends_on (JSON list, from the CONTEXT frontmatter), created_at,
    completed_at, vision, sequence)``, ``slices (milestone_id, id, title, status
    'pending'|'complete', risk, depends, created_at, completed_at, sequence)``, ``tasks
    (milestone_id, slice_id, id, title, status, completed_at, files, estimate, sequence)``.
    ``title`` is the heading as GSD stores it (``M001: Core API``); a milestone is complete when
    its SUMMARY is terminal, a slice when ticked, a task when ticked or summarised. Idempotent: a
    row already complete stays complete with its timestamps; rows of vanished directories go.
    Timestamps are ISO-8601 UTC with milliseconds (``2026-12-01T20:04:45.512Z``).

``headless query``
    Prints one JSON document (exit 0), the shape of the *real* one:
    ``{"state": {activeMilestone, [lastCompletedMilestone], activeSlice, activeTask, phase,
    recentDecisions, blockers, nextAction, registry: [{id, title, status}], requirements,
    progress}, "next": {...}, "cost": {"workers": [], "total": 0}}``, read from the DB (never
    written) and, for the next unit, the disk. With both ``GSD_MILESTONE_LOCK`` and
    ``GSD_PARALLEL_WORKER`` set the registry holds only the locked milestone (as GSD's
    state.ts), else every row. ``phase``/``next``: no rows → ``pre-planning`` and ``{"action":
    "stop", "reason": "No milestones found. Run /gsd to create one."}``; all complete →
    ``complete`` and ``{"action": "stop", "reason": "All milestones complete."}``; else the
    active milestone's next unit → ``{"action": "dispatch", "unitType", "unitId"}`` with phase
    ``pre-planning`` (plan-milestone), ``planning`` (plan-slice), ``executing``, ``summarizing``
    (complete-slice), ``completing-milestone``; for complete-milestone with paths the
    pre-completion commit would leave behind, ``{"action": "stop", "reason": "Cannot complete
    milestone M001: uncommitted changes remain after the pre-completion commit. Commit or stash
    before closing."}`` (*real*).

``headless [--json] auto``
    Works on the milestone ``GSD_MILESTONE_LOCK`` names; ``GSD_PARALLEL_WORKER`` must be set
    too (the real worker goes on to other milestones without both: the fake refuses instead).
    Exit 1 with one stderr line (``[fake-gsd] error: …``) when the lock is missing or not an ID
    (``M001`` / ``M001-abc123``), ``GSD_PARALLEL_WORKER`` is unset, the milestone has no
    directory, a knob is invalid, cwd is not a git checkout, or cwd is under
    ``/.gsd/worktrees/`` (the real worker leaves such a checkout for the project root and works
    on ``main`` there, so no orchestrator may use that layout). ``GSD_PROJECT_ROOT`` is ignored,
    as it is by the real worker in this layout. Events go to stdout only with ``--json``
    (without it notifies go to stderr).

Run, step by step
-----------------

stderr starts with the *real* ``[headless] signal-handlers-ready``; stdout with
``{"type": "extensions_ready"}``. Then:

1. The DB must hold the plan: when ``.gsd/gsd.db`` is missing (it is then created, empty), has
   no row for the milestone, or its milestone/slice/task counts differ from the markdown's, the
   worker notifies (``notifyType: warning``) the *real* ``Markdown planning artifacts (2M/2S/2T)
   do not match the authoritative DB (0M/0S/0T). Runtime startup will not import markdown
   automatically; run explicit GSD recovery if markdown should repopulate the database.``, makes
   no model call and stays alive and silent until signalled.
2. A milestone whose DB row is already ``complete``: alive and silent until signalled, nothing
   emitted (the real worker does exactly this; check the DB or ``query`` before launching).
3. Notify ``Auto-mode started. Will loop until milestone complete.`` (*real*), or after a
   paused run (pause signal, provider 401, completion guard) ``Resuming paused session for
   M001.`` then ``Auto-mode resumed.`` (*real*).
4. Units, in order, each chosen from the disk (so a rerun resumes where the last run stopped,
   units done on disk are skipped):

   - ``plan-milestone`` ``M001``: only without a roadmap or with a roadmap without slices;
     writes ``M001-ROADMAP.md`` (``# M001: <title>``, one slice ``S01``) or adds ``S01``.
   - ``plan-slice`` ``M001/S01``: an undone slice without ``slices/S01/S01-PLAN.md``; writes a
     plan with tasks T01, T02 (``- Files:`` ``src/m001/s01_t01.txt`` / ``..._t02.txt``). A plan
     with no task lines is taken as is (zero tasks).
   - ``execute-task`` ``M001/S01/T01``: per undone task (neither ``[x]`` nor
     ``tasks/T01-SUMMARY.md``): appends the line ``M001/S01/T01`` to every ``- Files:`` entry
     (creating directories; never twice, so a retried task is idempotent; entries outside the
     checkout or under ``.git``/``.gsd`` are skipped with a stderr warning), writes
     ``T01-SUMMARY.md``, ticks the task.
   - ``complete-slice`` ``M001/S01``: ticks the roadmap slice, writes ``S01-SUMMARY.md``.
   - ``complete-milestone`` ``M001``: sets the DB row ``status='complete'`` with
     ``completed_at``, then writes ``M001-SUMMARY.md`` (``status: complete``).

   The DB follows every unit (new slices/tasks when planning, ``complete`` statuses). Only
   ``.gsd/milestones/<own dir>`` and the task files are written, plus ``.gsd/gsd.db``; except
   that at start (after step 2) a sibling's roadmap whose slices are ticked on disk but not in
   this DB (a merge brought them) is written back unticked, as the real worker re-renders
   every milestone from its DB (:func:`rerender_siblings`).
5. After each unit the signal file ``<cwd>/.gsd/parallel/<MID>.signal.json`` (the checkout's own
   ``.gsd``) is read. Like GSD's consumeSignal only a JSON object with ``signal`` and ``sentAt``
   counts: it is deleted, anything else is left alone and ignored. ``pause`` → notify
   ``Auto-mode paused (Escape). Type to interact, or /gsd auto to resume.`` (*real*), exit 10;
   ``stop`` → notify ``Auto-mode stopped.`` plus, once units ran, ``\\nSession: …`` (*real*
   format, see below), exit 0; other signals (``resume``, …) → carry on. Also after
   complete-milestone: a pause then still exits 10 although the DB says complete.
6. The milestone is complete when its DB row is: final notify (*real*)
   ``Auto-mode stopped — all milestones complete.\\nSession: $0.070 · 17.5k tokens · 7 units``,
   exit 0. The session line counts every unit finished in this checkout, across runs:
   cost as GSD's formatCost (4 decimals below $0.01, 3 below $1, else 2), tokens as
   formatTokenCount (``N``, ``N.Nk``, ``N.NNM``).

Exit 0 therefore does not mean complete (a stop): the DB row (or ``query``) is how an
orchestrator learns completion. stderr ends ``[headless] Status: complete|blocked`` (exit 0|10),
``[headless] Duration: N.Ns``, ``[headless] Events: N total, N tool calls``.

Git (``git.isolation: none``)
-----------------------------

No commit per unit: the work accumulates uncommitted in the checkout. Right before
complete-milestone (at its dispatch, before its session starts) the *real* pre-completion
commit: when ``git status --porcelain`` shows anything, ``git add -A -- ':!<path>'…`` (ignores
respected; GSD's runtime paths ``.gsd/gsd.db*``, ``.gsd/STATE.md``, ``.gsd/parallel/``, … —
:data:`RUNTIME_EXCLUSION_PATHS` — and the other milestones' ``.gsd/milestones/<dir>/`` never
staged) and, if anything is staged, one commit on the current branch with the *real* message
``chore: auto-commit after complete-milestone-preflight`` + blank line + ``GSD-Unit: M001``
(the project's git identity; ``GSD Fake Worker <gsd-fake@example.invalid>`` only where git has
none). ``M001-SUMMARY.md`` is written after that commit and left uncommitted. The guard (*real*):
when ``git status --porcelain`` still shows something after it (e.g. an unignored
``.gsd/gsd.db``), notify ``Auto-mode paused (Escape). Type to interact, or /gsd auto to
resume.`` and exit 10; the commit stays, complete-milestone does not run, and ``query`` names
the reason. A pause, stop, SIGTERM or failure leaves everything since the last commit
uncommitted; the next run resumes from it. So the checkout must ignore ``.gsd/gsd.db*`` (and
the rest of GSD's runtime list) or completion is refused, exactly as with GSD.

Events (stdout, one JSON object a line, flushed)
------------------------------------------------

Shapes copied from a real run. Every unit is a fresh agent session::

    notify "Starting <type> <id>"                     (fake only: GSD has no per-unit notify)
    agent_start {sessionId, turnId[, runId]}
    turn_start
    message_start / message_end {message: {role: "custom", customType: "gsd-auto",
                                  content: "…## UNIT: Execute Task T01 (\\"…\\") — …"}}   no usage
    message_start {role: assistant, content: [], zero usage}
    [cost_update {runId, turnCost, cumulativeCost, tokens}]          first unit of a run only
    message_end {role: assistant, content: [toolCall…], stopReason: toolUse, usage}
    per tool: tool_execution_start {toolCallId, toolName, args}
              tool_execution_end {toolCallId, toolName, result: {content, details}, isError: false}
              message_start / message_end {role: toolResult, …}              no usage
    turn_end {message, toolResults}
    turn_start, message_start, [cost_update], message_end {assistant, text, stopReason: stop,
    usage}, turn_end
    [execution_complete {runId, status: completed, stats}]            first unit of a run only
    agent_end {messages}
    notify "Finished <type> <id>"                     (fake only)

Tools: ``write`` (a new file: args ``{content, path}``) or ``edit`` (an existing one: args
``{path, oldText, newText}``) for task files, ``result.details.target`` ``{kind: file, action,
inputPath, resolvedPath}``; then GSD's lifecycle tool: ``gsd_plan_milestone``,
``gsd_plan_slice``, ``gsd_task_complete``, ``gsd_slice_complete`` or ``gsd_complete_milestone``,
args with ``milestoneId`` (+ ``sliceId``, ``taskId``), ``result.details`` ``{operation
(plan_milestone, plan_slice, complete_task, complete_slice, complete_milestone), milestoneId,
… , summaryPath|roadmapPath|planPath}`` (absolute paths).

Cost. A unit's two assistant ``message_end`` carry ``usage`` ``{input: 1000, output: 250,
cacheRead: 0, cacheWrite: 0, totalTokens: 1250, cost: {input, output, cacheRead, cacheWrite,
total}}`` with ``cost.total`` = half of ``GSD_FAKE_UNIT_COST`` each (halves add back exactly).
Count the assistant ``message_end`` usage only: never ``cost_update`` or ``execution_complete``
(first unit only, cumulative) nor custom/toolResult messages (no usage). A milestone whose
roadmap has S slices with plans of T tasks costs ``S*T + S + 1`` units; add 1 without a roadmap
(plan-milestone) and 1 per slice without a plan (whose written plan has 2 tasks): a milestone
with only a CONTEXT costs 6 units. A unit cut short (SIGTERM, FAIL_AT, HANG_AT) emits no cost
and is rerun in full, so interrupted-and-resumed runs add up to the same total. For exact float
sums use a binary-exact cost (``0.125``) or add with ``decimal.Decimal(str(x))``.

Provider failures (``GSD_FAKE_PROVIDER``, every model call fails, so the run's first one)
------------------------------------------------------------------------------------------

``error500`` (*real* sequence): the first unit's session with ``message_start``/``message_end``
assistant ``{content: [], stopReason: "error", errorMessage: "500 Internal Server Error", zero
usage}``, ``turn_end``, ``execution_complete``, ``agent_end``; then three times
``auto_retry_start {attempt: n, maxAttempts: 3, delayMs, errorMessage}`` followed by a retry
(``agent_start``, ``turn_start``, the failed assistant message, ``turn_end``, ``agent_end``),
``delayMs`` = ``GSD_FAKE_RETRY_SECONDS`` x 1, 2, 4 (GSD: 2000/4000/8000; the fake waits what it
says); then ``auto_retry_end {success: false, attempt: 3, finalError: "500 Internal Server
Error"}`` and alive and silent until signalled. ``error401``: the failed assistant message,
``turn_end``, notify (``warning``) ``Auto-mode paused due to provider error: 401 Unauthorized``
(*real* prefix), exit 10 (no ``agent_end``).

Signals, exit codes
-------------------

Exit codes: 0 complete or stopped; 1 error (see above, FAIL_AT, git failure); 10 paused (pause
signal, completion guard, provider 401); 11 SIGTERM or SIGINT, at any time (also while silent):
stderr gets the *real* ``\\n[headless] Interrupted, stopping child process...`` and nothing else.
File writes, DB updates, the events of a unit and the commit are finished first (git runs in its
own session, so a process-group signal does not cut a commit in half).

Knobs (environment)
-------------------

- ``GSD_FAKE_UNIT_SECONDS`` (0.05): the model's time per unit, before its writes.
- ``GSD_FAKE_UNIT_COST`` (0.01): total ``usage.cost.total`` of each unit's assistant messages.
- ``GSD_FAKE_FAIL_AT=<unit>`` with ``GSD_FAKE_FAIL_TIMES`` (1): at the start of that unit (after
  its ``Starting`` notify, before its session) emit an error notify and exit 1, that many times
  counted across restarts in ``<git-dir>/gsd-fake-state.json`` (the checkout's own git dir;
  never committed; it also keeps the paused flag and the session ledger).
- ``GSD_FAKE_HANG_AT=<unit>``: at the start of that unit print nothing and sleep until killed
  (for complete-milestone: after the pre-completion commit).
- ``GSD_FAKE_SPIN_AT=<unit>``: in that unit's session, an assistant ``message_end`` costing
  ``GSD_FAKE_UNIT_COST`` every ``GSD_FAKE_UNIT_SECONDS`` (at least 0.01 s) forever, never writing.
- ``GSD_FAKE_PROVIDER=error500|error401`` and ``GSD_FAKE_RETRY_SECONDS`` (0.02): see above.
- ``GSD_FAKE_EXTRA_FILES=<unit>=<file>[,<file>][;…]``: the execute-task units whose id is
  ``<unit>`` or starts with ``<unit>/`` (``M002`` means all of M002's tasks) also append their
  marker line to these files, which no plan names (an agent touching more than planned).

``<unit>`` is a unit id (``M001``, ``M001/S01``, ``M001/S01/T01``), matching every unit with that
id, or ``<type>:<id>`` to pick one of them: ``plan-slice:M001/S01``, ``complete-slice:M001/S01``,
``plan-milestone:M001``, ``complete-milestone:M001``.

Not emulated: GSD's validate-milestone unit, UAT/VALIDATION files, ``.gsd/`` runtime files other
than the DB, anything outside the checkout (``~/.gsd``), GSD's switch to the integration branch
when the checkout's branch is named ``milestone/…``, its stash of a dirty checkout.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from ..exitcodes import GsdExit
from ..gsd.paths import RUNTIME_EXCLUSION_PATHS  # git-service.ts: never staged by GSD

EXIT_OK, EXIT_ERROR = GsdExit.DONE, GsdExit.ERROR
EXIT_PAUSED, EXIT_CANCELLED = GsdExit.PAUSED_OR_BLOCKED, GsdExit.CANCELLED
FAKE_NAME, FAKE_EMAIL = "GSD Fake Worker", "gsd-fake@example.invalid"
STATE_FILE = "gsd-fake-state.json"
DB_REL = ".gsd/gsd.db"
TASKS_PER_PLAN = 2
TOKENS_IN, TOKENS_OUT = 1000, 250  # per assistant message
RETRY_ATTEMPTS = 3

# --- the real worker's words (GSD-2 3.0.0, gsd-build/gsd-2 @ 76568edc0), verbatim ------------

NO_GSD_DIR = (
    "[headless] Error: No .gsd/ directory found in current directory.",
    "[headless] Run 'gsd' interactively first to initialize a project.",
)
SIGNAL_HANDLERS_READY = "[headless] signal-handlers-ready"
INTERRUPTED = "[headless] Interrupted, stopping child process..."
AUTO_STARTED = "Auto-mode started. Will loop until milestone complete."
RESUMING = "Resuming paused session for {mid}."
AUTO_RESUMED = "Auto-mode resumed."
AUTO_PAUSED = "Auto-mode paused (Escape). Type to interact, or /gsd auto to resume."
AUTO_STOPPED = "Auto-mode stopped"
ALL_COMPLETE = "Auto-mode stopped — all milestones complete"
PROVIDER_PAUSED = "Auto-mode paused due to provider error: {error}"
DB_MISMATCH = (
    "Markdown planning artifacts ({m}M/{s}S/{t}T) do not match the authoritative DB "
    "({dm}M/{ds}S/{dt}T). Runtime startup will not import markdown automatically; run explicit "
    "GSD recovery if markdown should repopulate the database."
)
GUARD_REASON = (
    "Cannot complete milestone {mid}: uncommitted changes remain after the pre-completion "
    "commit. Commit or stash before closing."
)
PREFLIGHT_MESSAGE = "chore: auto-commit after complete-milestone-preflight\n\nGSD-Unit: {mid}"
RECOVERED = "gsd-recover: recovered {m}M/{s}S/{t}T hierarchy"
NO_MILESTONES = "No milestones found. Run /gsd to create one."
ALL_MILESTONES_COMPLETE = "All milestones complete."
ERROR_500 = "500 Internal Server Error"
ERROR_401 = "401 Unauthorized"


COMMANDS = ("auto", "recover", "query")
_VALUE_FLAGS = frozenset(
    {
        "--timeout",
        "--output-format",
        "--model",
        "--context",
        "--context-text",
        "--max-restarts",
        "--answers",
        "--events",
        "--response-timeout",
        "--resume",
    }
)
PROVIDERS = ("", "error500", "error401")

MID_RE = re.compile(r"^M\d{3}(-[a-z0-9]{6})?$")
_DIR_ID_RE = re.compile(r"^M\d+(?:-[a-z0-9]{6})?")
_SLICE_RE = re.compile(r"^[-*] \[([ xX])\] \*\*(S\d+):\s*(.*?)\*\*")
_TASK_RE = re.compile(r"^[-*] \[([ xX])\] \*\*(T\d+):\s*(.*?)\*\*")
_FILES_RE = re.compile(r"^\s*[-*]\s+Files:\s*(.*)$", re.IGNORECASE)
_HEADING_ID_RE = re.compile(r"^M\d+(?:-[a-z0-9]{6})?\s*[:—–-]\s*")
_RISK_RE = re.compile(r"`risk:([a-z]+)`")
_DEPENDS_RE = re.compile(r"`depends:\[([^\]]*)\]`")
_EST_RE = re.compile(r"`est:([^`]+)`")
_TERMINAL = frozenset({"complete", "done", "skipped", "closed"})
_NOT_TERMINAL = frozenset({"active", "pending", "blocked", "failed", "failure", "incomplete"})
_FAILED_BODY_RE = re.compile(
    r"^# BLOCKER|auto-mode recovery failed|verification failed"
    r"|(?:status|verdict|outcome|result)\s*[:=-]\s*not complete",
    re.IGNORECASE | re.MULTILINE,
)


class FakeError(Exception):
    """A failure reported as one stderr line and exit 1."""


class Finish(Exception):
    """End the run with this exit code (the notify that explains it is already out)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Cancelled(BaseException):
    """SIGTERM/SIGINT arrived; a BaseException so no ``except Exception`` swallows it."""


# --- signals: cancel promptly, but never in the middle of a write or a commit -----------------


class _Guard:
    depth = 0
    pending = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _Guard.depth:
        _Guard.pending = True
        return
    raise Cancelled


@contextmanager
def _critical() -> Iterator[None]:
    """Defer SIGTERM/SIGINT until the block is done, so a unit is all-or-nothing."""
    _Guard.depth += 1
    try:
        yield
    finally:
        _Guard.depth -= 1
    if not _Guard.depth and _Guard.pending:
        raise Cancelled


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)  # a signal handler raising Cancelled interrupts this


def _hang() -> NoReturn:
    """Alive and silent until a signal ends the process (what the real worker does too)."""
    while True:
        time.sleep(3600)


# --- output --------------------------------------------------------------------------------


def _stderr(line: str) -> None:
    with suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _say(message: str) -> None:
    _stderr(f"[fake-gsd] {message}")


def _ms() -> int:
    return int(time.time() * 1000)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Emitter:
    """Writes GSD-shaped NDJSON events to stdout, one flushed line each (``--json``)."""

    def __init__(self, out: Any, stream_json: bool = True) -> None:
        self._out = out
        self._json = stream_json
        self._broken = False
        self.count = 0
        self.tool_calls = 0

    def emit(self, event: dict[str, Any]) -> None:
        self.count += 1
        if event["type"] == "tool_execution_start":
            self.tool_calls += 1
        if not self._json or self._broken:
            return
        with _critical():  # never leave half a line behind
            try:
                self._out.write(json.dumps(event) + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                self._broken = True

    def notify(self, message: str, kind: str = "info") -> None:
        self.emit(
            {
                "type": "extension_ui_request",
                "id": str(uuid.uuid4()),
                "method": "notify",
                "message": message,
                "notifyType": kind,
            }
        )
        if not self._json:
            _stderr(message)


def _usage(cost: float, tokens: bool = True) -> dict[str, Any]:
    """Usage of one assistant message; its cost halves add back up to it exactly."""
    if not tokens:
        zero = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
        return {**zero, "totalTokens": 0, "cost": {**zero, "total": 0}}
    half = cost / 2
    return {
        "input": TOKENS_IN,
        "output": TOKENS_OUT,
        "cacheRead": 0,
        "cacheWrite": 0,
        "totalTokens": TOKENS_IN + TOKENS_OUT,
        "cost": {"input": half, "output": half, "cacheRead": 0, "cacheWrite": 0, "total": float(cost)},
    }


def _assistant(
    content: list[dict[str, Any]], usage: dict[str, Any], stop: str, error: str | None = None
) -> dict[str, Any]:
    msg = {
        "role": "assistant",
        "content": content,
        "api": "openai-completions",
        "provider": "fake",
        "model": "fake-model",
        "usage": usage,
        "stopReason": stop,
        "timestamp": _ms(),
    }
    if error is not None:
        msg["errorMessage"] = error
    return msg


@dataclass
class Run:
    """What one process run shares between its units."""

    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    first_unit: bool = True
    cost: float = 0.0  # cost_update's cumulativeCost (first unit only, like GSD)
    tokens: dict[str, int] = field(
        default_factory=lambda: {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
    )


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    execute: Callable[[], tuple[str, dict[str, Any]]]
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")

    def content(self) -> dict[str, Any]:
        return {"type": "toolCall", "id": self.call_id, "name": self.name, "arguments": self.args}


class AgentSession:
    """One unit = one fresh agent session (agent_start … agent_end), as GSD runs every unit."""

    def __init__(self, em: Emitter, run: Run) -> None:
        self.em, self.run = em, run
        self.with_run_id = run.first_unit
        self.session_id = str(uuid.uuid4())
        self.turn_id = ""
        self.messages: list[dict[str, Any]] = []
        self.cost = 0.0
        self.last_cost = 0.0
        self.tokens = 0
        self.assistant_messages = self.tool_results = 0

    def _ids(self) -> dict[str, str]:
        ids = {"sessionId": self.session_id, "turnId": self.turn_id}
        if self.with_run_id:
            ids["runId"] = self.run.run_id
        return ids

    def _emit(self, kind: str, **fields: Any) -> None:
        self.em.emit({"type": kind, **fields, **self._ids()})

    def agent_start(self, prompt: str | None) -> None:
        self.turn_id = str(uuid.uuid4())
        self._emit("agent_start")
        self._emit("turn_start")
        if prompt is not None:
            msg = {
                "role": "custom",
                "customType": "gsd-auto",
                "content": prompt,
                "display": False,
                "timestamp": _ms(),
            }
            self._emit("message_start", message=msg)
            self._emit("message_end", message=msg)
            self.messages.append(msg)

    def turn_start(self) -> None:
        self._emit("turn_start")

    def turn_end(self, msg: dict[str, Any], tool_results: list[dict[str, Any]]) -> None:
        self._emit("turn_end", message=msg, toolResults=tool_results)

    def assistant_open(self, stop: str = "stop", error: str | None = None) -> None:
        self._emit("message_start", message=_assistant([], _usage(0, tokens=False), stop, error))

    def assistant_close(
        self, content: list[dict[str, Any]], cost: float | None, stop: str, error: str | None = None
    ) -> dict[str, Any]:
        usage = _usage(cost or 0.0, tokens=cost is not None)
        msg = _assistant(content, usage, stop, error)
        if self.with_run_id:  # GSD reports cost_update only for the first unit of a run
            tok = self.run.tokens
            tok["input"] += usage["input"]
            tok["output"] += usage["output"]
            self.run.cost += usage["cost"]["total"]
            self.em.emit(
                {
                    "type": "cost_update",
                    "runId": self.run.run_id,
                    "turnCost": self.last_cost,
                    "cumulativeCost": self.run.cost,
                    "tokens": dict(tok),
                }
            )
        self._emit("message_end", message=msg)
        self.messages.append(msg)
        self.assistant_messages += 1
        self.cost += usage["cost"]["total"]
        self.last_cost = usage["cost"]["total"]
        self.tokens += usage["totalTokens"]
        return msg

    def tool(self, call: ToolCall) -> dict[str, Any]:
        base = {"toolCallId": call.call_id, "toolName": call.name}
        self._emit("tool_execution_start", **base, args=call.args)
        text, details = call.execute()
        content = [{"type": "text", "text": text}]
        self._emit(
            "tool_execution_end", **base, result={"content": content, "details": details}, isError=False
        )
        msg = {
            "role": "toolResult",
            **base,
            "content": content,
            "details": details,
            "isError": False,
            "timestamp": _ms(),
        }
        self._emit("message_start", message=msg)
        self._emit("message_end", message=msg)
        self.messages.append(msg)
        self.tool_results += 1
        return msg

    def agent_end(self) -> None:
        if self.with_run_id:
            tokens = {**self.run.tokens, "total": sum(self.run.tokens.values())}
            stats = {
                "sessionId": self.session_id,
                "userMessages": 0,
                "assistantMessages": self.assistant_messages,
                "toolCalls": self.tool_results,
                "toolResults": self.tool_results,
                "totalMessages": len(self.messages),
                "tokens": tokens,
                "cost": self.run.cost,
            }
            self.em.emit(
                {
                    "type": "execution_complete",
                    "runId": self.run.run_id,
                    "status": "completed",
                    "stats": stats,
                }
            )
        self._emit("agent_end", messages=self.messages)
        self.with_run_id = False
        self.run.first_unit = False


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One milestone in one checkout."""

    root: Path
    mid: str
    mdir: Path


@dataclass(frozen=True)
class Knobs:
    unit_seconds: float = 0.05
    unit_cost: float = 0.01
    fail_at: str = ""
    fail_times: int = 1
    hang_at: str = ""
    spin_at: str = ""
    provider: str = ""
    retry_seconds: float = 0.02
    extra_files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``GSD_FAKE_EXTRA_FILES``: (unit id or prefix, files) the tasks also edit."""

    def extra_for(self, unit: Unit) -> list[str]:
        """Files no plan names that this execute-task also edits (``GSD_FAKE_EXTRA_FILES``)."""
        out: list[str] = []
        for spec, files in self.extra_files:
            if unit.id == spec or unit.id.startswith(spec + "/"):
                out += [f for f in files if f not in out]
        return out


def parse_extra_files(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``M001=src/a.py,src/b.py;M002/S01/T02=src/a.py`` -> ((unit, files), ...)."""
    found = []
    for part in raw.split(";"):
        if not part.strip():
            continue
        spec, sep, files = part.partition("=")
        names = tuple(f.strip() for f in files.split(",") if f.strip())
        if not sep or not spec.strip() or not names:
            raise FakeError(f"GSD_FAKE_EXTRA_FILES entry {part.strip()!r} is not <unit>=<file>[,<file>]")
        found.append((spec.strip(), names))
    return tuple(found)


@dataclass(frozen=True)
class Config:
    site: Site
    knobs: Knobs
    signal_path: Path
    state_path: Path

    @property
    def root(self) -> Path:
        return self.site.root

    @property
    def mid(self) -> str:
        return self.site.mid


def _env_number(env: Mapping[str, str], name: str, default: float, kind: Callable[[str], float]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise FakeError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise FakeError(f"{name}={raw!r} must be a finite number >= 0")
    return value


def load_knobs(env: Mapping[str, str]) -> Knobs:
    provider = env.get("GSD_FAKE_PROVIDER", "").strip().lower()
    if provider not in PROVIDERS:
        raise FakeError(f"GSD_FAKE_PROVIDER={provider!r} is not one of error500, error401")
    return Knobs(
        unit_seconds=_env_number(env, "GSD_FAKE_UNIT_SECONDS", 0.05, float),
        unit_cost=float(_env_number(env, "GSD_FAKE_UNIT_COST", 0.01, float)),
        fail_at=env.get("GSD_FAKE_FAIL_AT", "").strip(),
        fail_times=_env_number(env, "GSD_FAKE_FAIL_TIMES", 1, int),
        hang_at=env.get("GSD_FAKE_HANG_AT", "").strip(),
        spin_at=env.get("GSD_FAKE_SPIN_AT", "").strip(),
        provider=provider,
        retry_seconds=_env_number(env, "GSD_FAKE_RETRY_SECONDS", 0.02, float),
        extra_files=parse_extra_files(env.get("GSD_FAKE_EXTRA_FILES", "")),
    )


def _git_run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git in its own session (a group SIGTERM must not cut a commit in half)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            start_new_session=True,
            check=False,
        )
    except OSError as exc:
        raise FakeError(f"cannot run git: {exc}") from None


def _git(root: Path, *args: str) -> str:
    proc = _git_run(root, *args)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit {proc.returncode}"
        raise FakeError(f"git {args[0]} failed in {root}: {detail}")
    return proc.stdout


def _milestone_dirs(root: Path) -> list[tuple[str, Path]]:
    """``(ID, directory)`` of every milestone directory, in name order."""
    base = root / ".gsd" / "milestones"
    if not base.is_dir():
        return []
    found = []
    for p in sorted(base.iterdir()):
        if p.is_dir() and (m := _DIR_ID_RE.match(p.name)):
            found.append((m.group(0), p))
    return found


def find_site(root: Path, mid: str) -> Site:
    hits = [p for ident, p in _milestone_dirs(root) if ident == mid]
    if not hits:
        raise FakeError(f"milestone {mid} not found in {root / '.gsd' / 'milestones'}")
    if len(hits) > 1:
        raise FakeError(f"milestone {mid} matches several directories: " + ", ".join(p.name for p in hits))
    return Site(root, mid, hits[0])


def load_config(root: Path, env: Mapping[str, str]) -> Config:
    """The locked milestone and the knobs; raise FakeError with one line."""
    mid = env.get("GSD_MILESTONE_LOCK", "").strip()
    if not mid:
        raise FakeError(
            "GSD_MILESTONE_LOCK is not set; it names the milestone to work on "
            "(the real worker would work through every milestone)"
        )
    if not MID_RE.match(mid):
        raise FakeError(f"GSD_MILESTONE_LOCK={mid!r} is not a milestone ID (M001 or M001-abc123)")
    if not env.get("GSD_PARALLEL_WORKER", "").strip():
        raise FakeError(
            "GSD_PARALLEL_WORKER is not set; without it the real worker does not "
            f"stay on {mid} (it goes on to other milestones)"
        )
    if "/.gsd/worktrees/" in f"{root.as_posix()}/":
        raise FakeError(
            f"{root} is under .gsd/worktrees/: the real worker leaves such a checkout "
            "for the project root (escapeStaleWorktree) and works on main there"
        )
    knobs = load_knobs(env)
    site = find_site(root, mid)
    git_dir = Path(_git(root, "rev-parse", "--git-dir").strip())
    return Config(
        site=site,
        knobs=knobs,
        signal_path=root / ".gsd" / "parallel" / f"{mid}.signal.json",
        state_path=(git_dir if git_dir.is_absolute() else root / git_dir) / STATE_FILE,
    )


# --- reading and writing the clean GSD format ----------------------------------------------


@dataclass(frozen=True)
class Task:
    tid: str
    title: str
    done: bool
    files: tuple[str, ...]
    estimate: str = ""


@dataclass(frozen=True)
class Slice:
    sid: str
    title: str
    done: bool
    risk: str = "medium"
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unit:
    type: str
    id: str
    title: str
    slice: str = ""
    task: Task | None = None

    def matches(self, spec: str) -> bool:
        return spec in (self.id, f"{self.type}:{self.id}")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _milestone_file(site: Site, suffix: str) -> Path | None:
    """``<ID>-SUFFIX.md`` (any case), else a legacy ``<ID>-<anything>-SUFFIX.md``."""
    files = sorted(p for p in site.mdir.iterdir() if p.is_file())
    exact, prefix, end = (
        f"{site.mid}-{suffix}.md".casefold(),
        f"{site.mid}-".casefold(),
        f"-{suffix}.md".casefold(),
    )
    for p in files:
        if p.name.casefold() == exact:
            return p
    for p in files:
        name = p.name.casefold()
        if name.startswith(prefix) and name.endswith(end):
            return p
    return None


def _heading(path: Path | None) -> str:
    if path is None:
        return ""
    for line in _read(path).splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def _strip_id(heading: str) -> str:
    return _HEADING_ID_RE.sub("", heading).strip()


def milestone_heading(site: Site) -> str:
    """The heading GSD stores as the DB title (``M001: Core API``)."""
    for suffix in ("ROADMAP", "CONTEXT", "CONTEXT-DRAFT"):
        if _strip_id(text := _heading(_milestone_file(site, suffix))):
            return text
    return site.mid


def milestone_title(site: Site) -> str:
    return _strip_id(milestone_heading(site)) or site.mid


def _frontmatter(text: str) -> tuple[dict[str, str], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            pairs = (ln.split(":", 1) for ln in lines[1:end] if ":" in ln)
            return ({k.strip(): v.strip() for k, v in pairs}, "\n".join(lines[end + 1 :]))
    return {}, text


def summary_is_terminal(path: Path | None) -> bool:
    """GSD's rule: frontmatter ``status`` decides; without one, failure markers in the body."""
    if path is None:
        return False
    meta, body = _frontmatter(_read(path))
    status = meta.get("status", "").strip("'\"").lower()
    if status in _TERMINAL:
        return True
    if status in _NOT_TERMINAL:
        return False
    return not _FAILED_BODY_RE.search(body)


def _id_list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("'\"") for p in raw.strip().strip("[]").split(",") if p.strip())


def _depends_on(site: Site) -> tuple[str, ...]:
    context = _milestone_file(site, "CONTEXT")
    if context is None:
        return ()
    return _id_list(_frontmatter(_read(context))[0].get("depends_on", ""))


def _is_slices_heading(line: str) -> bool:
    return line.startswith("## ") and line[3:].strip().lower().startswith("slice")


def parse_slices(text: str) -> list[Slice]:
    """Checkbox slice lines in the ``## Slices`` (or ``## Slice …``) section."""
    slices: list[Slice] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = _is_slices_heading(line)
        elif inside and (m := _SLICE_RE.match(line)):
            risk = r.group(1) if (r := _RISK_RE.search(line)) else "medium"
            deps = _id_list(d.group(1)) if (d := _DEPENDS_RE.search(line)) else ()
            slices.append(Slice(m.group(2), m.group(3).strip(), m.group(1) != " ", risk, deps))
    return slices


def _split_files(raw: str) -> list[str]:
    out = []
    for part in raw.split(","):
        entry = re.sub(r"\s*\([^)]*\)\s*$", "", part.strip().strip("`").strip()).strip("` ")
        entry = entry.removeprefix("./")
        if not entry or entry.endswith("/") or entry.startswith("("):
            continue  # directories and prose are not files to edit
        if " " in entry and "/" not in entry and "." not in entry:
            continue
        out.append(entry)
    return out


def parse_tasks(text: str) -> list[Task]:
    """Tasks ``- [ ] **T01: Title**`` with their ``- Files:`` sublines (until the next task)."""
    tasks: list[Task] = []
    current: tuple[str, str, bool, str] | None = None
    files: list[str] = []

    def flush() -> None:
        if current is not None:
            tasks.append(Task(current[0], current[1], current[2], tuple(files), current[3]))

    for line in text.splitlines():
        if m := _TASK_RE.match(line):
            flush()
            est = e.group(1) if (e := _EST_RE.search(line)) else ""
            current, files = (m.group(2), m.group(3).strip(), m.group(1) != " ", est), []
        elif line.lower().startswith("## files likely touched"):
            flush()
            current, files = None, []
        elif current is not None and (f := _FILES_RE.match(line)):
            files.extend(_split_files(f.group(1)))
    flush()
    return tasks


def _mark_done(path: Path, rx: re.Pattern[str], ident: str, in_slices: bool) -> None:
    lines = _read(path).splitlines(keepends=True)
    inside = not in_slices
    for i, line in enumerate(lines):
        if in_slices and line.startswith("## "):
            inside = _is_slices_heading(line)
        elif inside and (m := rx.match(line)) and m.group(2) == ident:
            lines[i] = line[:3] + "x" + line[4:]
            _write_atomic(path, "".join(lines))
            return


def _slice_dir(site: Site, sid: str) -> Path:
    return site.mdir / "slices" / sid


def _task_done(site: Site, sid: str, task: Task) -> bool:
    return task.done or (_slice_dir(site, sid) / "tasks" / f"{task.tid}-SUMMARY.md").exists()


@dataclass(frozen=True)
class Plan:
    """A milestone's hierarchy as its markdown says."""

    slices: list[tuple[Slice, list[Task] | None]]  # tasks None: the slice has no PLAN yet

    @property
    def task_count(self) -> int:
        return sum(len(tasks or []) for _, tasks in self.slices)


def read_plan(site: Site) -> Plan:
    roadmap = _milestone_file(site, "ROADMAP")
    out: list[tuple[Slice, list[Task] | None]] = []
    for sl in parse_slices(_read(roadmap)) if roadmap else []:
        plan = _slice_dir(site, sl.sid) / f"{sl.sid}-PLAN.md"
        out.append((sl, parse_tasks(_read(plan)) if plan.is_file() else None))
    return Plan(out)


def next_unit(site: Site) -> Unit:
    """The first unit the disk says is still to do."""
    plan = read_plan(site)
    if not plan.slices:
        return Unit("plan-milestone", site.mid, milestone_title(site))
    for sl, tasks in plan.slices:
        if sl.done:
            continue
        sid_path = f"{site.mid}/{sl.sid}"
        if tasks is None:
            return Unit("plan-slice", sid_path, sl.title, sl.sid)
        for task in tasks:
            if not _task_done(site, sl.sid, task):
                return Unit("execute-task", f"{sid_path}/{task.tid}", task.title, sl.sid, task)
        return Unit("complete-slice", sid_path, sl.title, sl.sid)
    return Unit("complete-milestone", site.mid, milestone_title(site))


# --- GSD's database (.gsd/gsd.db): a subset of db-base-schema.ts, same names -----------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS milestones (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'active',
  depends_on TEXT NOT NULL DEFAULT '[]',
  created_at TEXT NOT NULL DEFAULT '',
  completed_at TEXT DEFAULT NULL,
  vision TEXT NOT NULL DEFAULT '',
  sequence INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS slices (
  milestone_id TEXT NOT NULL,
  id TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'pending',
  risk TEXT NOT NULL DEFAULT 'medium',
  depends TEXT NOT NULL DEFAULT '[]',
  created_at TEXT NOT NULL DEFAULT '',
  completed_at TEXT DEFAULT NULL,
  sequence INTEGER DEFAULT 0,
  PRIMARY KEY (milestone_id, id),
  FOREIGN KEY (milestone_id) REFERENCES milestones(id)
);
CREATE TABLE IF NOT EXISTS tasks (
  milestone_id TEXT NOT NULL,
  slice_id TEXT NOT NULL,
  id TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'pending',
  completed_at TEXT DEFAULT NULL,
  files TEXT NOT NULL DEFAULT '[]',
  estimate TEXT NOT NULL DEFAULT '',
  sequence INTEGER DEFAULT 0,
  PRIMARY KEY (milestone_id, slice_id, id),
  FOREIGN KEY (milestone_id, slice_id) REFERENCES slices(milestone_id, id)
);
"""


def _db_path(root: Path) -> Path:
    return root / DB_REL


@contextmanager
def _db(root: Path) -> Iterator[sqlite3.Connection]:
    """The checkout's DB in one transaction, created (schema only) when missing."""
    try:
        with closing(sqlite3.connect(_db_path(root), timeout=10.0)) as conn:
            conn.executescript(SCHEMA)
            with conn:
                yield conn
    except sqlite3.Error as exc:
        raise FakeError(f"GSD database {_db_path(root)}: {exc}") from None


@dataclass(frozen=True)
class Counts:
    milestones: int = 0
    slices: int = 0
    tasks: int = 0


def markdown_counts(root: Path) -> Counts:
    """What GSD counts on disk (migration-auto-check.ts): dirs, roadmap slices, plan tasks."""
    dirs = _milestone_dirs(root)
    plans = [read_plan(Site(root, mid, mdir)) for mid, mdir in dirs]
    return Counts(len(dirs), sum(len(p.slices) for p in plans), sum(p.task_count for p in plans))


def db_counts(conn: sqlite3.Connection) -> Counts:
    n = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("milestones", "slices", "tasks")]
    return Counts(*n)


def _read_db(root: Path) -> tuple[list[sqlite3.Row], list[sqlite3.Row], list[sqlite3.Row]]:
    """Milestones, slices and tasks rows, read-only (none when there is no DB yet)."""
    path = _db_path(root)
    if not path.is_file():
        return [], [], []
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10.0)) as conn:
            conn.row_factory = sqlite3.Row
            return (
                conn.execute("SELECT * FROM milestones ORDER BY sequence, id").fetchall(),
                conn.execute("SELECT * FROM slices").fetchall(),
                conn.execute("SELECT * FROM tasks").fetchall(),
            )
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return [], [], []
        raise FakeError(f"GSD database {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise FakeError(f"GSD database {path}: {exc}") from None


def _milestone_row(conn: sqlite3.Connection, mid: str) -> sqlite3.Row | None:
    conn.row_factory = sqlite3.Row
    row: sqlite3.Row | None = conn.execute("SELECT * FROM milestones WHERE id = ?", (mid,)).fetchone()
    return row


def _import_slices(conn: sqlite3.Connection, site: Site, plan: Plan, now: str) -> None:
    """Replace the milestone's slices and tasks with what its markdown says; a row that was
    complete stays complete (with its timestamps)."""
    q = "SELECT {} FROM {} WHERE milestone_id = ?"
    old_slices = {
        r[0]: r[1:]
        for r in conn.execute(q.format("id, created_at, status, completed_at", "slices"), (site.mid,))
    }
    old_tasks = {
        (r[0], r[1]): r[2:]
        for r in conn.execute(q.format("slice_id, id, status, completed_at", "tasks"), (site.mid,))
    }
    conn.execute("DELETE FROM tasks WHERE milestone_id = ?", (site.mid,))
    conn.execute("DELETE FROM slices WHERE milestone_id = ?", (site.mid,))
    for seq, (sl, tasks) in enumerate(plan.slices, start=1):
        created, status, completed = old_slices.get(sl.sid, (now, "pending", None))
        done = sl.done or status == "complete"
        conn.execute(
            "INSERT INTO slices (milestone_id, id, title, status, risk, depends, created_at, "
            "completed_at, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                site.mid,
                sl.sid,
                sl.title,
                "complete" if done else "pending",
                sl.risk,
                json.dumps(list(sl.depends)),
                created,
                (completed or now) if done else None,
                seq,
            ),
        )
        for tseq, task in enumerate(tasks or []):
            status, completed = old_tasks.get((sl.sid, task.tid), ("pending", None))
            done = _task_done(site, sl.sid, task) or status == "complete"
            conn.execute(
                "INSERT INTO tasks (milestone_id, slice_id, id, title, status, completed_at, "
                "files, estimate, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    site.mid,
                    sl.sid,
                    task.tid,
                    task.title,
                    "complete" if done else "pending",
                    (completed or now) if done else None,
                    json.dumps(list(task.files)),
                    task.estimate,
                    tseq,
                ),
            )


def recover(root: Path) -> Counts:
    """``gsd headless recover``: import every milestone's markdown into the DB.

    Like GSD it rebuilds the hierarchy from markdown; unlike a plain re-import it never turns a
    row GSD already completed back to active (and keeps its timestamps).
    """
    dirs = _milestone_dirs(root)
    seen = [mid for mid, _ in dirs]
    if len(seen) != len(set(seen)):
        raise FakeError(
            "several milestone directories share an ID: "
            + ", ".join(sorted({m for m in seen if seen.count(m) > 1}))
        )
    now = _now()
    with _db(root) as conn:
        conn.row_factory = sqlite3.Row
        old = {r["id"]: r for r in conn.execute("SELECT * FROM milestones")}
        for gone in set(old) - set(seen):
            conn.execute("DELETE FROM tasks WHERE milestone_id = ?", (gone,))
            conn.execute("DELETE FROM slices WHERE milestone_id = ?", (gone,))
            conn.execute("DELETE FROM milestones WHERE id = ?", (gone,))
        for seq, (mid, mdir) in enumerate(dirs):
            site = Site(root, mid, mdir)
            prev = old.get(mid)
            done = (prev is not None and prev["status"] == "complete") or summary_is_terminal(
                _milestone_file(site, "SUMMARY")
            )
            completed = (
                (prev["completed_at"] if prev is not None and prev["completed_at"] else now) if done else None
            )
            conn.execute(
                "INSERT OR REPLACE INTO milestones (id, title, status, depends_on, created_at, "
                "completed_at, sequence) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    mid,
                    milestone_heading(site),
                    "complete" if done else "active",
                    json.dumps(list(_depends_on(site))),
                    prev["created_at"] if prev is not None else now,
                    completed,
                    seq,
                ),
            )
            _import_slices(conn, site, read_plan(site), now)
        return db_counts(conn)


def _db_planned(site: Site) -> None:
    """After a planning unit: the DB learns the new slices/tasks, as GSD's plan tools do."""
    with _db(site.root) as conn:
        _import_slices(conn, site, read_plan(site), _now())


def _db_set(root: Path, sql: str, *params: Any) -> None:
    with _db(root) as conn:
        conn.execute(sql, (_now(), *params))


# --- units ---------------------------------------------------------------------------------


def _rel(site: Site, path: Path) -> str:
    return path.relative_to(site.root).as_posix()


def _safe_target(site: Site, entry: str) -> Path | None:
    rel = Path(entry)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts or rel.parts[0] in (".git", ".gsd"):
        return None
    root = site.root.resolve()
    resolved = (site.root / rel).resolve()
    return site.root / rel if root in resolved.parents else None


def _summary(fields: dict[str, str], heading: str, body: str) -> str:
    front = [f"{k}: {v}" for k, v in fields.items()]
    return "\n".join(["---", *front, f"completed_at: {_now()}", "---", "", heading, "", body, ""])


def _code_call(site: Site, unit: Unit, entry: str, target: Path) -> ToolCall:
    """``write`` for a new file, ``edit`` for an existing one: append the unit's marker line."""
    marker = unit.id
    existing = target.read_text(encoding="utf-8", errors="replace") if target.exists() else None
    resolved = str(target.resolve())

    def execute() -> tuple[str, dict[str, Any]]:
        target.parent.mkdir(parents=True, exist_ok=True)
        text = target.read_text(encoding="utf-8", errors="replace") if target.exists() else ""
        if marker not in text.splitlines():  # a retried task: the edit already happened
            sep = "\n" if text and not text.endswith("\n") else ""
            with target.open("a", encoding="utf-8", newline="\n") as fh:
                fh.write(f"{sep}{marker}\n")
        action = "write" if existing is None else "edit"
        info = {"kind": "file", "action": action, "inputPath": entry, "resolvedPath": resolved}
        if existing is None:
            return f"Successfully wrote {len(marker) + 1} bytes to {entry}", {"target": info}
        return (f"Successfully replaced text in {entry}.", {"diff": f"+{marker}", "target": info})

    if existing is None:
        return ToolCall("write", {"content": f"{marker}\n", "path": entry}, execute)
    tail = existing.splitlines()[-1] if existing.strip() else ""
    return ToolCall("edit", {"path": entry, "oldText": tail, "newText": f"{tail}\n{marker}"}, execute)


def _plan_milestone(site: Site, unit: Unit) -> list[ToolCall]:
    roadmap = _milestone_file(site, "ROADMAP") or site.mdir / f"{site.mid}-ROADMAP.md"
    block = [
        f"- [ ] **S01: {unit.title}** `risk:low` `depends:[]`",
        f"  > After this: the fake work for {site.mid} is done.",
    ]

    def execute() -> tuple[str, dict[str, Any]]:
        if not roadmap.exists():
            text = "\n".join(
                [
                    f"# {site.mid}: {unit.title}",
                    "",
                    "**Vision:** planned by the fake GSD worker.",
                    "",
                    "## Slices",
                    "",
                    *block,
                    "",
                ]
            )
        else:
            lines = _read(roadmap).splitlines()
            at = next((i for i, ln in enumerate(lines) if _is_slices_heading(ln)), None)
            if at is None:
                lines += ["", "## Slices", "", *block]
            else:
                lines[at + 1 : at + 1] = ["", *block]
            text = "\n".join(lines) + "\n"
        _write_atomic(roadmap, text)
        _db_planned(site)
        return (
            f"Planned milestone {site.mid}",
            {"operation": "plan_milestone", "milestoneId": site.mid, "roadmapPath": str(roadmap.resolve())},
        )

    args = {
        "milestoneId": site.mid,
        "title": unit.title,
        "vision": "planned by the fake GSD worker.",
        "slices": [{"sliceId": "S01", "title": unit.title, "risk": "low", "depends": []}],
    }
    return [ToolCall("gsd_plan_milestone", args, execute)]


def _plan_slice(site: Site, unit: Unit) -> list[ToolCall]:
    sid = unit.slice
    files = [f"src/{site.mid.lower()}/{sid.lower()}_t{n:02d}.txt" for n in range(1, TASKS_PER_PLAN + 1)]
    plan = _slice_dir(site, sid) / f"{sid}-PLAN.md"

    def execute() -> tuple[str, dict[str, Any]]:
        lines = [
            f"# {sid}: {unit.title}",
            "",
            "**Goal:** planned by the fake GSD worker.",
            "",
            "## Tasks",
            "",
        ]
        for n, path in enumerate(files, start=1):
            lines += [
                f"- [ ] **T{n:02d}: Part {n} of {unit.title}** `est:5m`",
                "  Append the unit marker to its file.",
                f"  - Files: `{path}`",
                f"  - Verify: test -f {path}",
                "",
            ]
        lines += ["## Files Likely Touched", "", *(f"- {p}" for p in files), ""]
        _write_atomic(plan, "\n".join(lines))
        _db_planned(site)
        return (
            f"Planned slice {sid} ({site.mid})",
            {
                "operation": "plan_slice",
                "milestoneId": site.mid,
                "sliceId": sid,
                "planPath": str(plan.resolve()),
                "taskPlanPaths": [],
            },
        )

    tasks = [
        {"taskId": f"T{n:02d}", "title": f"Part {n} of {unit.title}", "files": [p]}
        for n, p in enumerate(files, start=1)
    ]
    args = {
        "milestoneId": site.mid,
        "sliceId": sid,
        "goal": "planned by the fake GSD worker.",
        "tasks": tasks,
    }
    return [ToolCall("gsd_plan_slice", args, execute)]


def _execute_task(site: Site, unit: Unit) -> list[ToolCall]:
    assert unit.task is not None
    task, sdir = unit.task, _slice_dir(site, unit.slice)
    calls = []
    for entry in task.files:
        target = _safe_target(site, entry)
        if target is None or target.is_dir():
            _say(f"{unit.id}: skipping file outside the worktree's code: {entry}")
            continue
        calls.append(_code_call(site, unit, entry, target))
    summary = sdir / "tasks" / f"{task.tid}-SUMMARY.md"

    def execute() -> tuple[str, dict[str, Any]]:
        fields = {
            "id": task.tid,
            "parent": unit.slice,
            "milestone": site.mid,
            "verification_result": "passed",
        }
        body = "Executed by the fake GSD worker.\n\nFiles:\n" + "".join(f"- `{f}`\n" for f in task.files)
        _write_atomic(summary, _summary(fields, f"# {task.tid}: {task.title}", body))
        _mark_done(sdir / f"{unit.slice}-PLAN.md", _TASK_RE, task.tid, in_slices=False)
        _db_set(
            site.root,
            "UPDATE tasks SET status = 'complete', completed_at = ? "
            "WHERE milestone_id = ? AND slice_id = ? AND id = ?",
            site.mid,
            unit.slice,
            task.tid,
        )
        return (
            f"Completed task {task.tid} ({unit.slice}/{site.mid})",
            {
                "operation": "complete_task",
                "taskId": task.tid,
                "sliceId": unit.slice,
                "milestoneId": site.mid,
                "summaryPath": str(summary.resolve()),
            },
        )

    args = {
        "milestoneId": site.mid,
        "sliceId": unit.slice,
        "taskId": task.tid,
        "oneLiner": f"Implemented {task.title} (fake)",
        "narrative": "Fake GSD worker.",
        "verification": "fake",
        "keyFiles": list(task.files),
        "blockerDiscovered": False,
    }
    return [*calls, ToolCall("gsd_task_complete", args, execute)]


def _complete_slice(site: Site, unit: Unit) -> list[ToolCall]:
    summary = _slice_dir(site, unit.slice) / f"{unit.slice}-SUMMARY.md"

    def execute() -> tuple[str, dict[str, Any]]:
        roadmap = _milestone_file(site, "ROADMAP")
        assert roadmap is not None
        _mark_done(roadmap, _SLICE_RE, unit.slice, in_slices=True)
        fields = {"id": unit.slice, "parent": site.mid, "milestone": site.mid}
        _write_atomic(
            summary, _summary(fields, f"# {unit.slice}: {unit.title}", "Completed by the fake GSD worker.")
        )
        _db_set(
            site.root,
            "UPDATE slices SET status = 'complete', completed_at = ? WHERE milestone_id = ? AND id = ?",
            site.mid,
            unit.slice,
        )
        return (
            f"Completed slice {unit.slice} ({site.mid})",
            {
                "operation": "complete_slice",
                "sliceId": unit.slice,
                "milestoneId": site.mid,
                "summaryPath": str(summary.resolve()),
            },
        )

    args = {
        "milestoneId": site.mid,
        "sliceId": unit.slice,
        "sliceTitle": unit.title,
        "oneLiner": f"{unit.slice} delivered (fake)",
        "narrative": "Fake GSD worker.",
        "verification": "fake",
    }
    return [ToolCall("gsd_slice_complete", args, execute)]


def _complete_milestone(site: Site, unit: Unit) -> list[ToolCall]:
    summary = _milestone_file(site, "SUMMARY") or site.mdir / f"{site.mid}-SUMMARY.md"

    def execute() -> tuple[str, dict[str, Any]]:
        _db_set(
            site.root, "UPDATE milestones SET status = 'complete', completed_at = ? WHERE id = ?", site.mid
        )
        fields = {"id": site.mid, "title": json.dumps(unit.title), "status": "complete"}
        _write_atomic(
            summary, _summary(fields, f"# {site.mid}: {unit.title}", "Completed by the fake GSD worker.")
        )
        path = str(summary.resolve())
        return (
            f"Completed milestone {site.mid}. Summary written to {path}",
            {"operation": "complete_milestone", "milestoneId": site.mid, "summaryPath": path},
        )

    args = {
        "milestoneId": site.mid,
        "title": unit.title,
        "oneLiner": f"{unit.title} done (fake)",
        "narrative": "Fake GSD worker.",
        "verificationPassed": True,
    }
    return [ToolCall("gsd_complete_milestone", args, execute)]


_TOOLS: dict[str, Callable[[Site, Unit], list[ToolCall]]] = {
    "plan-milestone": _plan_milestone,
    "plan-slice": _plan_slice,
    "execute-task": _execute_task,
    "complete-slice": _complete_slice,
    "complete-milestone": _complete_milestone,
}

_FINAL_TEXT = {
    "plan-milestone": "Milestone {mid} planned.",
    "plan-slice": "Slice {sid} planned.",
    "execute-task": "Task {tid} complete.",
    "complete-slice": "Slice {sid} complete.",
    "complete-milestone": "Milestone {mid} complete.",
}


def _prompt(site: Site, unit: Unit) -> str:
    """The unit's custom message, with GSD's own ``## UNIT:`` header."""
    sl = unit.slice
    header = {
        "plan-milestone": f'Plan Milestone {site.mid} ("{unit.title}")',
        "plan-slice": f'Plan Slice {sl} ("{unit.title}") — Milestone {site.mid}',
        "execute-task": (
            f'Execute Task {unit.task.tid if unit.task else ""} ("{unit.title}") '
            f"— Slice {sl}, Milestone {site.mid}"
        ),
        "complete-slice": f'Complete Slice {sl} ("{unit.title}") — Milestone {site.mid}',
        "complete-milestone": f'Complete Milestone {site.mid} ("{unit.title}")',
    }[unit.type]
    return (
        f"You are executing GSD auto-mode.\n\n## Working Directory\n\nWork only in "
        f"`{site.root}`. Do not `cd` elsewhere.\n\n## UNIT: {header}\n"
    )


# --- state kept between runs (the checkout's git dir, never committed) ---------------------


def _load_state(cfg: Config) -> dict[str, Any]:
    try:
        state = json.loads(cfg.state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    return state if isinstance(state, dict) else {}


def _save_state(cfg: Config, state: dict[str, Any]) -> None:
    _write_atomic(cfg.state_path, json.dumps(state, indent=2) + "\n")


def _session_state(cfg: Config, state: dict[str, Any]) -> dict[str, Any]:
    sessions = state.setdefault("sessions", {})
    return dict(sessions.setdefault(cfg.mid, {}))


def _update_session(cfg: Config, **changes: Any) -> dict[str, Any]:
    state = _load_state(cfg)
    session = {**_session_state(cfg, state), **changes}
    state["sessions"][cfg.mid] = session
    _save_state(cfg, state)
    return session


def _add_to_ledger(cfg: Config, cost: float, tokens: int) -> None:
    session = _session_state(cfg, _load_state(cfg))
    _update_session(
        cfg,
        units=int(session.get("units", 0)) + 1,
        cost=float(session.get("cost", 0.0)) + cost,
        tokens=int(session.get("tokens", 0)) + tokens,
    )


def _take_failure(cfg: Config) -> bool:
    """Count one failure for GSD_FAKE_FAIL_AT unless FAIL_TIMES are used up (across runs)."""
    state = _load_state(cfg)
    failures = state.setdefault("failures", {})
    done = int(failures.get(cfg.knobs.fail_at, 0))
    if done >= cfg.knobs.fail_times:
        return False
    failures[cfg.knobs.fail_at] = done + 1
    _save_state(cfg, state)
    return True


def format_cost(cost: float) -> str:
    """metrics.ts formatCost."""
    if cost < 0.01:
        return f"${cost:.4f}"
    return f"${cost:.3f}" if cost < 1 else f"${cost:.2f}"


def format_tokens(count: int) -> str:
    """format-utils.ts formatTokenCount."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}k" if count < 1_000_000 else f"{count / 1_000_000:.2f}M"


def _stop_text(cfg: Config, prefix: str) -> str:
    """GSD's stop notify: ``<prefix>.`` and, once units ran, the session line."""
    session = _session_state(cfg, _load_state(cfg))
    units = int(session.get("units", 0))
    if not units:
        return f"{prefix}."
    return (
        f"{prefix}.\nSession: {format_cost(float(session.get('cost', 0.0)))} · "
        f"{format_tokens(int(session.get('tokens', 0)))} tokens · {units} units"
    )


# --- git: GSD's pre-completion commit and its guard ----------------------------------------


def _identity(root: Path) -> list[str]:
    """The project's git identity, or the fake's when git has none configured."""
    args = []
    for key, value in (("user.name", FAKE_NAME), ("user.email", FAKE_EMAIL)):
        if _git_run(root, "config", key).returncode != 0:
            args += ["-c", f"{key}={value}"]
    return args


def _staging_exclusions(site: Site) -> list[str]:
    """GSD's runtime paths and, for a locked worker, every other milestone's directory."""
    others = [
        f".gsd/milestones/{p.name}/"
        for p in (site.root / ".gsd" / "milestones").iterdir()
        if p.is_dir() and p.name != site.mdir.name
    ]
    return [*RUNTIME_EXCLUSION_PATHS, *sorted(others)]


def _stage(site: Site) -> None:
    """native-git-bridge.ts nativeAddAllWithExclusions: ``git add -A -- :!<path>…``."""
    specs = [f":!{p}" for p in _staging_exclusions(site)]
    proc = _git_run(site.root, "add", "-A", "--", *specs)
    if "beyond a symbolic link" in proc.stderr:  # a symlinked .gsd: everything but it
        proc = _git_run(site.root, "add", "-A", "--", ".", ":!.gsd")
    if proc.returncode == 0 or "ignored by one of your .gitignore files" in proc.stderr:
        return  # git exits 1 when an exclusion names an ignored path: staging still happened
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    raise FakeError(f"git add failed in {site.root}: {detail[-1] if detail else proc.returncode}")


def preflight_commit(site: Site) -> bool:
    """Commit everything GSD would (``git add -A`` minus its runtime paths and the other
    milestones' directories); True when uncommitted changes remain afterwards (the guard)."""
    with _critical():
        if not _git(site.root, "status", "--porcelain").strip():
            return False
        _stage(site)
        if _git_run(site.root, "diff", "--cached", "--quiet").returncode != 0:
            _git(
                site.root,
                *_identity(site.root),
                "commit",
                "--no-verify",
                "-q",
                "-m",
                PREFLIGHT_MESSAGE.format(mid=site.mid),
            )
        return bool(_git(site.root, "status", "--porcelain").strip())


def _guard_would_refuse(site: Site) -> bool:
    """For ``query``: paths the pre-completion commit would leave behind (never stages)."""
    proc = _git_run(site.root, "status", "--porcelain", "--", *_staging_exclusions(site))
    return proc.returncode == 0 and bool(proc.stdout.strip())


# --- the auto loop -------------------------------------------------------------------------


def take_signal(cfg: Config) -> str | None:
    """GSD's consumeSignal: a ``{signal, sentAt}`` file is deleted and returned; anything else
    is left where it is and ignored."""
    try:
        data = json.loads(cfg.signal_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "signal" not in data or "sentAt" not in data:
        return None
    with suppress(FileNotFoundError):
        cfg.signal_path.unlink()
    return str(data["signal"])


def _spin(cfg: Config, session: AgentSession, unit: Unit) -> NoReturn:
    while True:
        session.assistant_open()
        _sleep(max(cfg.knobs.unit_seconds, 0.01))
        text = [{"type": "text", "text": f"Still working on {unit.type} {unit.id}."}]
        msg = session.assistant_close(text, cfg.knobs.unit_cost, "stop")
        session.turn_end(msg, [])
        session.turn_start()


def _provider_failure(cfg: Config, em: Emitter, session: AgentSession) -> NoReturn:
    if cfg.knobs.provider == "error401":
        session.assistant_open("error", ERROR_401)
        msg = session.assistant_close([], None, "error", ERROR_401)
        session.turn_end(msg, [])
        em.notify(PROVIDER_PAUSED.format(error=ERROR_401), "warning")
        _update_session(cfg, paused=True)
        raise Finish(EXIT_PAUSED)
    attempt = 0
    while True:
        session.assistant_open("error", ERROR_500)
        msg = session.assistant_close([], None, "error", ERROR_500)
        session.turn_end(msg, [])
        session.agent_end()
        if attempt == RETRY_ATTEMPTS:
            em.emit({"type": "auto_retry_end", "success": False, "attempt": attempt, "finalError": ERROR_500})
            _hang()
        attempt += 1
        delay = cfg.knobs.retry_seconds * 2 ** (attempt - 1)
        em.emit(
            {
                "type": "auto_retry_start",
                "attempt": attempt,
                "maxAttempts": RETRY_ATTEMPTS,
                "delayMs": round(delay * 1000),
                "errorMessage": ERROR_500,
            }
        )
        _sleep(delay)
        session.agent_start(None)


def run_unit(cfg: Config, em: Emitter, run: Run, unit: Unit) -> None:
    """One unit: a fresh agent session that calls its tools and reports the unit's cost."""
    knobs, site = cfg.knobs, cfg.site
    if knobs.hang_at and unit.matches(knobs.hang_at):
        _hang()
    em.notify(f"Starting {unit.type} {unit.id}")
    if knobs.fail_at and unit.matches(knobs.fail_at) and _take_failure(cfg):
        em.notify(f"Unit {unit.type} {unit.id} failed (GSD_FAKE_FAIL_AT)", "error")
        raise FakeError(f"{unit.type} {unit.id} failed on purpose (GSD_FAKE_FAIL_AT)")
    session = AgentSession(em, run)
    session.agent_start(_prompt(site, unit))
    if knobs.provider:
        _provider_failure(cfg, em, session)
    if knobs.spin_at and unit.matches(knobs.spin_at):
        _spin(cfg, session, unit)
    session.assistant_open()
    _sleep(knobs.unit_seconds)  # the model at work; a unit cut short here costs nothing
    half = knobs.unit_cost / 2
    with _critical():
        calls = _TOOLS[unit.type](site, unit)
        if unit.type == "execute-task":  # GSD_FAKE_EXTRA_FILES: files no plan names
            extra = [(e, t) for e in knobs.extra_for(unit) if (t := _safe_target(site, e)) is not None]
            calls[-1:-1] = [_code_call(site, unit, e, t) for e, t in extra]
        msg = session.assistant_close([c.content() for c in calls], half, "toolUse")
        try:
            results = [session.tool(c) for c in calls]
        except OSError as exc:
            raise FakeError(f"{unit.type} {unit.id}: {exc}") from None
        session.turn_end(msg, results)
        session.turn_start()
        session.assistant_open()
        ids = {"mid": site.mid, "sid": unit.slice, "tid": unit.task.tid if unit.task else ""}
        text = [{"type": "text", "text": _FINAL_TEXT[unit.type].format(**ids)}]
        msg = session.assistant_close(text, knobs.unit_cost - half, "stop")
        session.turn_end(msg, [])
        session.agent_end()
        _add_to_ledger(cfg, session.cost, session.tokens)
    em.notify(f"Finished {unit.type} {unit.id}")


def _is_complete(site: Site) -> bool:
    with _db(site.root) as conn:
        row = _milestone_row(conn, site.mid)
    return row is not None and row["status"] == "complete"


def rerender_siblings(root: Path, mid: str) -> None:
    """GSD renders every milestone's markdown from its own DB at start: a sibling's roadmap
    slice ticked on disk (a merge brought it) but pending in this checkout's DB is written back
    unticked. (The real worker, relaunched after a manual ``git merge`` of a sibling's landed
    work, rewrote that sibling's ROADMAP/PLAN files so; its pre-completion commit never stages
    other milestones' directories, so completion was then refused.)"""
    for ident, folder in _milestone_dirs(root):
        roadmap = _milestone_file(Site(root, ident, folder), "ROADMAP") if ident != mid else None
        if roadmap is None:
            continue
        with _db(root) as conn:
            sql = "SELECT id FROM slices WHERE milestone_id = ? AND status = 'complete'"
            rows = conn.execute(sql, (ident,))
            done = {sid for (sid,) in rows}
        text = _read(roadmap)
        lines = text.splitlines(keepends=True)
        inside = False
        for i, line in enumerate(lines):
            if line.startswith("## "):
                inside = _is_slices_heading(line)
            elif inside and (m := _SLICE_RE.match(line)) and m.group(1) in "xX" and m.group(2) not in done:
                lines[i] = line[:3] + " " + line[4:]
        if "".join(lines) != text:
            _write_atomic(roadmap, "".join(lines))


def _db_in_sync(cfg: Config, em: Emitter) -> None:
    """GSD's startup check: markdown must match the DB (else notify and stay silent)."""
    disk = markdown_counts(cfg.root)
    with _db(cfg.root) as conn:
        db = db_counts(conn)
        row = _milestone_row(conn, cfg.mid)
    if disk != db or row is None:
        em.notify(
            DB_MISMATCH.format(
                m=disk.milestones, s=disk.slices, t=disk.tasks, dm=db.milestones, ds=db.slices, dt=db.tasks
            ),
            "warning",
        )
        _hang()


def work(cfg: Config, em: Emitter) -> int:
    """Run units until the milestone is complete or something says otherwise; the exit code."""
    em.emit({"type": "extensions_ready"})
    _db_in_sync(cfg, em)
    if _is_complete(cfg.site):
        _hang()  # the real worker, started on a completed milestone, never says a word
    rerender_siblings(cfg.root, cfg.mid)
    if _session_state(cfg, _load_state(cfg)).get("paused"):
        em.notify(RESUMING.format(mid=cfg.mid))
        em.notify(AUTO_RESUMED)
    else:
        em.notify(AUTO_STARTED)
    _update_session(cfg, paused=False)
    run = Run()
    ran: tuple[str, str] | None = None
    while True:
        unit = next_unit(cfg.site)
        if ran == (unit.type, unit.id):
            raise FakeError(f"{unit.type} {unit.id} made no progress on disk; giving up")
        if unit.type == "complete-milestone" and preflight_commit(cfg.site):
            em.notify(AUTO_PAUSED)  # GSD names the reason only in `headless query`
            _update_session(cfg, paused=True)
            return EXIT_PAUSED
        run_unit(cfg, em, run, unit)
        ran = (unit.type, unit.id)
        sig = take_signal(cfg)
        if sig == "pause":
            em.notify(AUTO_PAUSED)
            _update_session(cfg, paused=True)
            return EXIT_PAUSED
        if sig == "stop":
            em.notify(_stop_text(cfg, AUTO_STOPPED))
            return EXIT_OK
        if _is_complete(cfg.site):
            em.notify(_stop_text(cfg, ALL_COMPLETE))
            return EXIT_OK


# --- query ---------------------------------------------------------------------------------

_PHASES = {
    "plan-milestone": "pre-planning",
    "plan-slice": "planning",
    "execute-task": "executing",
    "complete-slice": "summarizing",
    "complete-milestone": "completing-milestone",
}


def _next_action(unit: Unit) -> str:
    sid = unit.slice
    return {
        "plan-milestone": f"Plan milestone {unit.id} ({unit.title}).",
        "plan-slice": f"Plan slice {sid} ({unit.title}).",
        "execute-task": f"Execute {unit.task.tid if unit.task else ''}: {unit.title} in slice {sid}.",
        "complete-slice": f"All tasks done in {sid}. Write slice summary and complete slice.",
        "complete-milestone": f"All slices complete in {unit.id}. Write milestone summary.",
    }[unit.type]


def query(root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``gsd headless query``: GSD's state as the checkout's DB (and disk) have it."""
    rows, slice_rows, task_rows = _read_db(root)
    lock = env.get("GSD_MILESTONE_LOCK", "").strip() if env.get("GSD_PARALLEL_WORKER") else ""
    if lock:
        rows = [r for r in rows if r["id"] == lock]
    requirements = {"active": 0, "validated": 0, "deferred": 0, "outOfScope": 0, "blocked": 0, "total": 0}
    state: dict[str, Any] = {
        "activeMilestone": None,
        "activeSlice": None,
        "activeTask": None,
        "phase": "pre-planning",
        "recentDecisions": [],
        "blockers": [],
        "nextAction": NO_MILESTONES,
    }
    nxt: dict[str, Any] = {"action": "stop", "reason": NO_MILESTONES}
    registry = [
        {"id": r["id"], "title": _strip_id(r["title"]) or r["id"], "status": r["status"]} for r in rows
    ]
    done = [r for r in registry if r["status"] == "complete"]
    progress: dict[str, Any] = {"milestones": {"done": len(done), "total": len(rows)}}
    active = next((r for r in registry if r["status"] != "complete"), None)
    if rows and active is None:
        state.update(
            lastCompletedMilestone={"id": done[-1]["id"], "title": done[-1]["title"]},
            phase="complete",
            nextAction=ALL_MILESTONES_COMPLETE,
        )
        nxt = {"action": "stop", "reason": ALL_MILESTONES_COMPLETE}
    elif active is not None:
        mid = active["id"]
        state["activeMilestone"] = {"id": mid, "title": active["title"]}
        for name, table in (("slices", slice_rows), ("tasks", task_rows)):
            mine = [r for r in table if r["milestone_id"] == mid]
            if mine:
                progress[name] = {"done": sum(r["status"] == "complete" for r in mine), "total": len(mine)}
        try:
            site = find_site(root, mid)
        except FakeError as exc:
            nxt = {"action": "stop", "reason": str(exc)}
        else:
            unit = next_unit(site)
            if unit.slice:
                title = next((s.title for s, _ in read_plan(site).slices if s.sid == unit.slice), unit.slice)
                state["activeSlice"] = {"id": unit.slice, "title": title}
            if unit.task:
                state["activeTask"] = {"id": unit.task.tid, "title": unit.task.title}
            state.update(phase=_PHASES[unit.type], nextAction=_next_action(unit))
            nxt = {"action": "dispatch", "unitType": unit.type, "unitId": unit.id}
            if unit.type == "complete-milestone" and _guard_would_refuse(site):
                nxt = {"action": "stop", "reason": GUARD_REASON.format(mid=mid)}
    state.update(registry=registry, requirements=requirements, progress=progress)
    return {"state": state, "next": nxt, "cost": {"workers": [], "total": 0}}


# --- command line --------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    command: str
    json: bool


def parse_args(argv: list[str]) -> Args:
    """``[headless] [--json] [auto|recover|query]``; nothing at all means ``headless --json
    auto``. Other ``gsd headless`` flags are accepted and ignored (with their values)."""
    if not argv:
        return Args("auto", True)
    command, stream_json, skip = "", False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "headless" and not command:
            continue
        elif arg == "--json":
            stream_json = True
        elif arg in _VALUE_FLAGS:
            skip = True
        elif arg.startswith("--"):
            continue
        elif not command:
            command = arg
    return Args(command or "auto", stream_json)


def _summary_lines(em: Emitter, status: str, started: float) -> None:
    _stderr(f"[headless] Status: {status}")
    _stderr(f"[headless] Duration: {time.monotonic() - started:.1f}s")
    _stderr(f"[headless] Events: {em.count} total, {em.tool_calls} tool calls")


def _auto(root: Path, args: Args) -> int:
    cfg = load_config(root, os.environ)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _stderr(SIGNAL_HANDLERS_READY)
    em = Emitter(sys.stdout, args.json)
    started = time.monotonic()
    try:
        code = work(cfg, em)
    except Finish as done:
        code = done.code
    _summary_lines(em, "complete" if code == EXIT_OK else "blocked", started)
    return code


HELP = """\
usage: python -m gsd_parallel_plugin.testing.fake_gsd [headless] [--json] [auto|recover|query]

The fake GSD worker: a stand-in for `gsd headless --json auto` that needs no model provider.
It works on the milestone GSD_MILESTONE_LOCK names, in the git checkout it runs in (cwd, which
must hold .gsd/), and only with GSD_PARALLEL_WORKER set, as gsd-parallel launches it.

Run the orchestrator with it:
  export GSD_PARALLEL_WORKER_COMMAND="python -m gsd_parallel_plugin.testing.fake_gsd headless --json auto"
  gsd-parallel start --wait

Run it by hand in a milestone checkout:
  cd .gsd-parallel/M001 && GSD_MILESTONE_LOCK=M001 GSD_PARALLEL_WORKER=1 \\
    python -m gsd_parallel_plugin.testing.fake_gsd headless --json auto

commands:
  auto     work through the locked milestone's units, one commit each (the default)
  recover  import the markdown plan into .gsd/gsd.db
  query    print GSD's state document as JSON

knobs (environment):
  GSD_FAKE_UNIT_SECONDS (0.05)  time per unit    GSD_FAKE_UNIT_COST (0.01)  USD per unit
  GSD_FAKE_FAIL_AT=<unit>, GSD_FAKE_FAIL_TIMES (1)  fail at that unit (exit 1), that many times
  GSD_FAKE_HANG_AT=<unit>   hang at that unit      GSD_FAKE_SPIN_AT=<unit>  spend, never progress
  GSD_FAKE_PROVIDER=error500|error401, GSD_FAKE_RETRY_SECONDS (0.02)  provider failures
  GSD_FAKE_EXTRA_FILES=M002=src/x.py[;…]  tasks also edit files no plan names

<unit> is M001, M001/S01, M001/S01/T01, or <type>:<id> such as complete-slice:M001/S01.
The module docstring says exactly what it mirrors of the real GSD."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m gsd_parallel_plugin.testing.fake_gsd headless --json auto``."""
    words = sys.argv[1:] if argv is None else argv
    if any(w in {"-h", "--help", "help"} for w in words):
        with suppress(BrokenPipeError):  # `--help | head`
            print(HELP, flush=True)
        return EXIT_OK
    args = parse_args(words)
    if args.command not in COMMANDS:
        _stderr(
            f"[headless] Error: the fake GSD worker has no command {args.command!r} "
            f"(it knows {', '.join(COMMANDS)})"
        )
        return EXIT_ERROR
    root = Path.cwd()
    if not (root / ".gsd").is_dir():
        for line in NO_GSD_DIR:
            _stderr(line)
        return EXIT_ERROR
    try:
        if args.command == "recover":
            counts = recover(root)
            _stderr(RECOVERED.format(m=counts.milestones, s=counts.slices, t=counts.tasks))
            return EXIT_OK
        if args.command == "query":
            print(json.dumps(query(root, os.environ)), flush=True)
            return EXIT_OK
        return _auto(root, args)
    except Cancelled:
        _stderr(f"\n{INTERRUPTED}")
        return EXIT_CANCELLED
    except FakeError as exc:
        if _Guard.pending:
            _stderr(f"\n{INTERRUPTED}")
            return EXIT_CANCELLED
        _say(f"error: {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
