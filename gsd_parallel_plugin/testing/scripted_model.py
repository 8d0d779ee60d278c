"""A scripted OpenAI-compatible model that walks the real GSD auto mode through a milestone.

Why one module: it is one server; the script (which unit a prompt is, what to answer) and the HTTP
handler that streams it change together, and it runs both in a test's thread and as ``python -m``
for the demo.

GSD (``gsd headless --json auto``) talks to any ``openai-completions`` provider it finds in
``$GSD_HOME/agent/models.json``. This server is one: it answers ``POST .../chat/completions``
with SSE chunks, so tests can run the real binary without a real model, offline and for free::

    with ScriptedModel() as model:
        write_agent_config(gsd_home / "agent", model)
        ...  # run gsd; model.billed_nanos() is what GSD's events will say it cost

How it decides: GSD starts every auto-mode unit as a fresh session whose prompt holds a
``## UNIT: ...`` header (validate-milestone has its own wording). The server finds the latest
such prompt, counts the assistant turns already made after it and plays the next step of that
unit's script: the tool calls that do the unit's work (``write`` for each file the inlined task
plan expects, then ``gsd_task_complete``, ``gsd_slice_complete``, ``gsd_validate_milestone`` or
``gsd_complete_milestone``), then a final text. Every answer reports usage
(``prompt_tokens`` = request bytes / 4, ``completion_tokens`` = 50) from which GSD computes cost.

It listens on 127.0.0.1 only (an ephemeral port by default), in a background thread.
``python -m gsd_parallel_plugin.testing.scripted_model`` runs it in the foreground for demos.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict, cast, get_args

from ..money import cost_to_nanos

Mode = Literal["normal", "error500", "error401", "error400", "hang"]
"""``normal`` plays the script; ``errorNNN`` answers HTTP NNN; ``hang`` never answers."""

MODES: tuple[str, ...] = get_args(Mode)
HOST = "127.0.0.1"
COMPLETION_TOKENS = 50
"""``completion_tokens`` reported by every answer (the prompt's are its bytes / 4)."""

_ERROR_TYPES = {500: "server_error", 401: "authentication_error", 400: "invalid_request_error"}


@dataclass(frozen=True)
class ModelPrices:
    """USD per million tokens, as GSD's ``models.json`` ``cost`` block holds them."""

    input: float = 3.0
    output: float = 15.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    def as_models_json(self) -> dict[str, float]:
        """The ``cost`` object of a ``models.json`` model."""
        return {
            "input": self.input,
            "output": self.output,
            "cacheRead": self.cache_read,
            "cacheWrite": self.cache_write,
        }

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The float GSD puts in ``usage.cost.total`` for one answer.

        Mirrors pi-ai's ``calculateCost`` operation by operation (IEEE doubles in both
        languages, so the result is bit-identical): each part is ``(price / 1000000) * tokens``
        and the total is ``((input + output) + cacheRead) + cacheWrite``. The openai-completions
        provider takes ``input = prompt_tokens - cached`` and ``output = completion_tokens +
        reasoning``; this server reports neither cached nor reasoning tokens.
        """
        cost_input = (self.input / 1000000) * prompt_tokens
        cost_output = (self.output / 1000000) * completion_tokens
        cost_cache_read = (self.cache_read / 1000000) * 0
        cost_cache_write = (self.cache_write / 1000000) * 0
        return cost_input + cost_output + cost_cache_read + cost_cache_write


@dataclass(frozen=True)
class ToolCall:
    """One function call the model makes."""

    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """One assistant turn: tool calls (then GSD calls back with their results), or final text."""

    calls: tuple[ToolCall, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class Unit:
    """The GSD unit a request belongs to, with the IDs its prompt names."""

    kind: str
    milestone: str = ""
    slice: str = ""
    task: str = ""
    title: str = ""
    files: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        """``M001``, ``M001/S01`` or ``M001/S01/T01``, as GSD names units."""
        return "/".join(part for part in (self.milestone, self.slice, self.task) if part)


class RequestRecord(TypedDict):
    """One chat request as the server saw and answered it (``ScriptedModel.request_log``)."""

    n: int
    unit: str | None
    id: str
    step: int
    mode: str
    reply: str
    calls: list[str]
    missing_tools: list[str]
    tokens: dict[str, int] | None
    cost_nanos: int


# The unit headers of GSD's auto-mode prompts (src/resources/extensions/gsd/prompts/*.md).
_UNIT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "execute-task",
        re.compile(r'## UNIT: Execute Task (\S+) \("(.*?)"\) — Slice (\S+) \("(.*?)"\), Milestone (\S+)'),
    ),
    ("complete-slice", re.compile(r'## UNIT: Complete Slice (\S+) \("(.*?)"\) — Milestone (\S+)')),
    ("complete-milestone", re.compile(r'## UNIT: Complete Milestone (\S+) \("(.*?)"\)')),
    ("validate-milestone", re.compile(r"validation orchestrator for \*\*(\S+) - (.*?)\*\*")),
    ("plan-slice", re.compile(r'## UNIT: Plan Slice (\S+) \("(.*?)"\) — Milestone (\S+)')),
    ("research-slice", re.compile(r'## UNIT: Research Slice (\S+) \("(.*?)"\) - Milestone (\S+)')),
    ("research-milestone", re.compile(r'## UNIT: Research Milestone (\S+) \("(.*?)"\)')),
    ("run-uat", re.compile(r"## UNIT: Run UAT — (\S+)/(\S+)")),
    ("reassess-roadmap", re.compile(r"## UNIT: Reassess Roadmap — Milestone (\S+) after (\S+)")),
)
_EXPECTED_OUTPUT = re.compile(r"^## Expected Output[ \t]*\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_BACKTICKED = re.compile(r"`([^`\n]+)`")


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whose ``content`` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def expected_files(prompt: str) -> tuple[str, ...]:
    """The files an execute-task prompt's inlined task plan lists under ``## Expected Output``.

    GSD inlines the task plan (not the slice plan's ``- Files:`` line) into the prompt, so
    this is where the task's files are named. Only relative paths are taken: the model
    must never write outside the checkout.
    """
    section = _EXPECTED_OUTPUT.search(prompt)
    if section is None:
        return ()
    files: list[str] = []
    for line in section.group(1).splitlines():
        if not line.lstrip().startswith(("- ", "* ")):
            continue
        for path in _BACKTICKED.findall(line):
            path = path.strip().removeprefix("./")
            if path and not path.startswith(("/", "~")) and ".." not in Path(path).parts:
                files.append(path)
    return tuple(dict.fromkeys(files))


def find_unit(messages: Sequence[Mapping[str, Any]]) -> tuple[Unit | None, int]:
    """The unit of the latest unit prompt in *messages*, and that message's index (-1: none)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") not in ("user", "system", "developer"):
            continue
        text = message_text(message)
        for kind, pattern in _UNIT_PATTERNS:
            match = pattern.search(text)
            if match:
                return _unit_from(kind, match.groups(), text[match.start() :]), index
    return None, -1


def _unit_from(kind: str, groups: Sequence[str], prompt: str) -> Unit:
    if kind == "execute-task":
        task, title, slice_id, _slice_title, milestone = groups
        files = expected_files(prompt) or (f"src/{milestone.lower()}_{slice_id.lower()}_{task.lower()}.txt",)
        return Unit(kind, milestone, slice_id, task, title, files)
    if kind in ("complete-slice", "plan-slice", "research-slice"):
        slice_id, title, milestone = groups
        return Unit(kind, milestone, slice_id, title=title)
    if kind == "run-uat":
        milestone, slice_id = groups
        return Unit(kind, milestone, slice_id)
    if kind == "reassess-roadmap":
        milestone, after = groups
        return Unit(kind, milestone, title=f"after {after}")
    milestone, title = groups
    return Unit(kind, milestone, title=title)


def script_for(unit: Unit) -> list[Step]:
    """The steps that complete *unit* through GSD's own tools, ending with a final text."""
    mid, sid, tid = unit.milestone, unit.slice, unit.task
    if unit.kind == "execute-task":
        check = " && ".join(f"test -f {path}" for path in unit.files)
        writes = tuple(
            ToolCall("write", {"path": path, "content": f"{unit.id}: {unit.title}\n"}) for path in unit.files
        )
        done = ToolCall(
            "gsd_task_complete",
            {
                "milestoneId": mid,
                "sliceId": sid,
                "taskId": tid,
                "oneLiner": f"Implemented {unit.title} (scripted)",
                "narrative": f"The scripted model wrote {', '.join(unit.files)}.",
                "verification": check,
                "verificationEvidence": [
                    {"command": check, "exitCode": 0, "verdict": "✅ pass", "durationMs": 5}
                ],
                "deviations": "None.",
                "knownIssues": "None.",
                "keyFiles": list(unit.files),
                "keyDecisions": [],
                "blockerDiscovered": False,
            },
        )
        return [Step(writes), Step((done,)), Step(text=f"Task {tid} complete.")]
    if unit.kind == "complete-slice":
        done = ToolCall(
            "gsd_slice_complete",
            {
                "milestoneId": mid,
                "sliceId": sid,
                "sliceTitle": unit.title,
                "oneLiner": f"{unit.title} delivered (scripted)",
                "narrative": "All tasks completed by the scripted model.",
                "verification": "Task verification commands passed.",
                "uatContent": "# UAT\n\n- [x] Files exist (artifact-driven).\n",
                "deviations": "None.",
                "knownLimitations": "None.",
                "followUps": "None.",
            },
        )
        return [Step((done,)), Step(text=f"Slice {sid} complete.")]
    if unit.kind == "validate-milestone":
        done = ToolCall(
            "gsd_validate_milestone",
            {
                "milestoneId": mid,
                "verdict": "pass",
                "remediationRound": 0,
                "successCriteriaChecklist": "- [x] All success criteria met (scripted)",
                "sliceDeliveryAudit": "| Slice | Claimed | Delivered |\n|---|---|---|\n| all | yes | yes |",
                "crossSliceIntegration": "None.",
                "requirementCoverage": "All covered.",
                "verdictRationale": "Scripted model: everything passed.",
            },
        )
        return [Step((done,)), Step(text=f"Milestone {mid} validation complete — verdict: pass.")]
    if unit.kind == "complete-milestone":
        done = ToolCall(
            "gsd_complete_milestone",
            {
                "milestoneId": mid,
                "title": unit.title,
                "oneLiner": f"{unit.title} done (scripted)",
                "narrative": "The scripted model completed every slice.",
                "verificationPassed": True,
                "successCriteriaResults": "- [x] met",
                "definitionOfDoneResults": "- [x] met",
                "requirementOutcomes": "None.",
                "keyDecisions": [],
                "keyFiles": [],
                "lessonsLearned": [],
                "followUps": "None.",
                "deviations": "None.",
            },
        )
        return [Step((done,)), Step(text=f"Milestone {mid} complete.")]
    if unit.kind in ("research-slice", "research-milestone"):
        args: dict[str, Any] = {"milestone_id": mid}
        if sid:
            args["slice_id"] = sid
        args |= {"artifact_type": "RESEARCH", "content": "# Research\n\nNothing to research (scripted).\n"}
        return [Step((ToolCall("gsd_summary_save", args),)), Step(text="Researched.")]
    if unit.kind == "run-uat":
        save = ToolCall(
            "gsd_summary_save",
            {
                "milestone_id": mid,
                "slice_id": sid,
                "artifact_type": "ASSESSMENT",
                "content": "---\nverdict: PASS\n---\n# UAT\n\nPASS (scripted)\n",
            },
        )
        return [Step((save,)), Step(text=f"UAT {sid} complete.")]
    if unit.kind == "reassess-roadmap":
        return [Step(text="Roadmap reassessed. No changes needed.")]
    return [Step(text="Done.")]


def next_step(body: Mapping[str, Any]) -> tuple[Unit | None, int, Step]:
    """The unit of a chat request, how many turns it already had, and the step to play now."""
    messages = body.get("messages") or []
    unit, index = find_unit(messages)
    after = messages[index + 1 :] if index >= 0 else messages
    done = sum(1 for message in after if message.get("role") == "assistant")
    steps = script_for(unit) if unit else [Step(text="OK.")]
    return unit, done, steps[min(done, len(steps) - 1)]


def sse_events(model: str, step: Step, prompt_tokens: int) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one streamed answer, usage chunk last."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    if step.calls:
        for index, call in enumerate(step.calls):
            events.append(chunk({"tool_calls": [_tool_call(call, index)]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events.append(chunk({"content": step.text}))
        events.append(chunk({}, "stop"))
    events.append(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(prompt_tokens),
        }
    )
    return events


def _tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
    }
    if index is not None:
        payload["index"] = index
    return payload


def _usage(prompt_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt_tokens + COMPLETION_TOKENS,
    }


class ScriptedModel:
    """The scripted model server; see the module docstring. Every method is thread-safe."""

    def __init__(self, *, delay: float = 0.0, prices: ModelPrices | None = None, port: int = 0) -> None:
        self.prices = prices or ModelPrices()
        self._requested_port = port
        self._lock = threading.Lock()
        self._mode: Mode = "normal"
        self._delay = float(delay)
        self._delays: dict[str, float] = {}
        self._answered = 0
        self._received = 0
        self._billed = 0
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> ScriptedModel:
        """Bind 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer((HOST, self._requested_port), _handler_for(self))
        server.daemon_threads = True  # a hanging answer must not block stop()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() waits for the loop to notice
            name=f"scripted-model:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release every hanging or delayed answer (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it listens -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port it listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("ScriptedModel is not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``: nothing off this machine can reach it."""
        return HOST

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``baseUrl`` of its ``models.json`` provider."""
        return f"http://{HOST}:{self.port}/v1"

    # -- control ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The current mode."""
        with self._lock:
            return self._mode

    def set_mode(self, mode: Mode | str) -> None:
        """Switch mode; the next request sees it (one already answering finishes as it began)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        with self._lock:
            self._mode = cast(Mode, mode)

    def set_delay(self, seconds: float, *, milestone: str | None = None) -> None:
        """Wait this long before each answer from the next request on (0: none); with
        *milestone*, only for that milestone's units (it wins over the general delay), so
        one worker can be made slower than its siblings."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            if milestone is None:
                self._delay = float(seconds)
            else:
                self._delays[milestone] = float(seconds)

    # -- what happened ----------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Chat requests answered (scripted answers and forced errors; a hanging one is not)."""
        with self._lock:
            return self._answered

    @property
    def request_log(self) -> list[RequestRecord]:
        """A copy of every chat request received, in order (including unanswered ones)."""
        with self._lock:
            return [cast(RequestRecord, dict(entry)) for entry in self._log]

    def billed_nanos(self) -> int:
        """Nano-USD GSD reports for every scripted answer fully sent so far.

        Each answer adds ``cost_to_nanos`` of the exact float GSD computes for it
        (:meth:`ModelPrices.cost_usd`), so the sum equals the sum over GSD's ``message_end``
        events of ``cost_to_nanos(usage.cost.total)``, to the nano.
        """
        with self._lock:
            return self._billed

    def units(self) -> list[str]:
        """``"<unit type> <id>"`` of each unit the model was asked about, first seen order."""
        seen: dict[str, None] = {}
        for entry in self.request_log:
            if entry["unit"]:
                seen[f"{entry['unit']} {entry['id']}"] = None
        return list(seen)

    # -- serving (called from handler threads) ----------------------------------------------

    def _receive(self, body: Mapping[str, Any], size: int) -> tuple[RequestRecord, Step, float]:
        unit, done, step = next_step(body)
        offered = {
            str((tool.get("function") or {}).get("name"))
            for tool in body.get("tools") or []
            if isinstance(tool, dict)
        }
        with self._lock:
            self._received += 1
            mode = self._mode
            delay = self._delays.get(unit.milestone, self._delay) if unit else self._delay
            record: RequestRecord = {
                "n": self._received,
                "unit": unit.kind if unit else None,
                "id": unit.id if unit else "",
                "step": done,
                "mode": mode,
                "reply": "tools" if step.calls else "text",
                "calls": [call.name for call in step.calls],
                "missing_tools": [call.name for call in step.calls if call.name not in offered],
                "tokens": None,
                "cost_nanos": 0,
            }
            if mode == "normal":
                record["tokens"] = {"prompt": max(1, size // 4), "completion": COMPLETION_TOKENS}
            elif mode == "hang":
                record["reply"] = "hang"
            else:
                record["reply"] = "error"
            self._log.append(record)
        return record, step, delay

    def _answered_one(self, record: RequestRecord, cost_nanos: int = 0) -> None:
        with self._lock:
            self._answered += 1
            self._billed += cost_nanos
            record["cost_nanos"] = cost_nanos


def _handler_for(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(_ScriptedHandler):
        owner = model

    return Handler


class _ScriptedHandler(BaseHTTPRequestHandler):
    """HTTP side of :class:`ScriptedModel` (``owner`` is set per server)."""

    protocol_version = "HTTP/1.1"
    owner: ScriptedModel

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def _send_json(self, code: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """``/v1/models`` for clients that list models first; anything else is a health check."""
        if self.path.rstrip("/").endswith("/models"):
            entry = {"id": "scripted-model", "object": "model", "owned_by": "gsd-parallel"}
            self._send_json(200, {"object": "list", "data": [entry]})
        else:
            self._send_json(200, {"ok": True})

    def do_POST(self) -> None:
        """Answer a chat completion according to the script and the current mode."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no such endpoint {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "body is not a JSON object"}})
            return
        record, step, delay = self.owner._receive(body, len(raw))
        stopping = self.owner._stopping
        if delay and stopping.wait(delay):
            return
        mode = record["mode"]
        if mode == "hang":
            stopping.wait()
            self.close_connection = True
            return
        if mode != "normal":
            code = int(mode.removeprefix("error"))
            error = {"message": f"scripted error {code}", "type": _ERROR_TYPES[code], "code": code}
            self._send_json(code, {"error": error})
            self.owner._answered_one(record)
            return
        tokens = record["tokens"] or {"prompt": 1, "completion": COMPLETION_TOKENS}
        cost = cost_to_nanos(self.owner.prices.cost_usd(tokens["prompt"], tokens["completion"])) or 0
        name = str(body.get("model") or "scripted-model")
        try:
            if body.get("stream"):
                self._stream(name, step, tokens["prompt"])
            else:
                self._send_json(200, _completion(name, step, tokens["prompt"]))
        except OSError:  # the client went away: GSD never saw this answer, so it is not billed
            self.close_connection = True
            return
        self.owner._answered_one(record, cost)

    def _stream(self, model: str, step: Step, prompt_tokens: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in sse_events(model, step, prompt_tokens):
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _completion(model: str, step: Step, prompt_tokens: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if step.calls else step.text}
    if step.calls:
        message["tool_calls"] = [_tool_call(call) for call in step.calls]
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if step.calls else "stop"}
        ],
        "usage": _usage(prompt_tokens),
    }


def write_agent_config(
    agent_dir: Path,
    model: ScriptedModel,
    *,
    provider: str = "scripted",
    model_id: str = "scripted-model",
) -> None:
    """Make *model* GSD's default model: ``models.json`` and ``settings.json`` in *agent_dir*.

    *agent_dir* is ``$GSD_HOME/agent`` (GSD's loader sets ``GSD_CODING_AGENT_DIR`` to exactly
    that, whatever the environment said). The prices in ``cost`` are ``model.prices``: what GSD
    multiplies the reported tokens by.
    """
    agent_dir.mkdir(parents=True, exist_ok=True)
    models = {
        "providers": {
            provider: {
                "baseUrl": model.base_url,
                "apiKey": "scripted-key",
                "api": "openai-completions",
                "models": [
                    {
                        "id": model_id,
                        "name": "Scripted model",
                        "reasoning": False,
                        "input": ["text"],
                        "cost": model.prices.as_models_json(),
                        "contextWindow": 200000,
                        "maxTokens": 8192,
                    }
                ],
            }
        }
    }
    settings = {"defaultProvider": provider, "defaultModel": model_id}
    (agent_dir / "models.json").write_text(json.dumps(models, indent=2) + "\n", encoding="utf-8")
    (agent_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground until Ctrl-C; print its base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m gsd_parallel_plugin.testing.scripted_model",
        description="A scripted OpenAI-compatible model for driving the real GSD (127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    args = parser.parse_args(argv)
    model = ScriptedModel(delay=args.delay, port=args.port).start()
    print(model.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        model.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
