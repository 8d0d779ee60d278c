"""A stand-in for ``gsd headless --json auto``: the fake GSD worker.

The real worker needs a model provider, so tests and the demo run this instead::

    GSD_MILESTONE_LOCK=M001 python -m gsd_parallel_plugin.testing.fake_gsd [ignored args]

cwd is the worktree (normally ``.gsd/worktrees/<MID>`` on branch ``milestone/<MID>``). It reads
``.gsd/milestones/<MID>*/`` there (directory found by ID prefix, as in GSD-FORMAT.md) and works
through the milestone in units, exactly like GSD's auto mode. Each unit re-reads the disk, so a
rerun resumes where the previous run stopped. Units, in order:

- ``plan-milestone`` ``M001``: only when there is no roadmap, or a roadmap without slices; writes
  ``M001-ROADMAP.md`` (``# M001: <title>``, one slice ``S01``) or adds ``S01`` to it.
- ``plan-slice`` ``M001/S01``: only for an undone slice without ``slices/S01/S01-PLAN.md``; writes a
  clean plan with tasks T01 and T02, ``- Files:`` ``src/m001/s01_t01.txt`` and ``..._t02.txt``.
  (An existing plan with no task lines is taken as is: the slice has zero tasks.)
- ``execute-task`` ``M001/S01/T01``: per undone task (neither ``[x]`` nor ``tasks/T01-SUMMARY.md``):
  appends the line ``M001/S01/T01`` to every ``- Files:`` entry (creating directories; not twice,
  so a retried task is idempotent; entries outside the worktree or under ``.git``/``.gsd`` are
  skipped with a warning), writes ``T01-SUMMARY.md``, marks the task ``[x]``.
- ``complete-slice`` ``M001/S01``: marks the roadmap slice ``[x]``, writes ``S01-SUMMARY.md``.
- ``complete-milestone`` ``M001``: writes ``M001-SUMMARY.md`` with ``status: complete``.

After every unit it commits, on the current branch, only the paths that unit wrote (``git add`` +
``git commit -- <paths>``, message ``<unit id>: <unit type> <title>``, identity
``GSD Fake Worker <gsd-fake@example.invalid>`` unless ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` are set).
It never writes another milestone's ``.gsd/milestones`` directory.

Cost. Every unit that finishes emits exactly one ``message_end`` whose ``usage.cost.total`` is
``GSD_FAKE_UNIT_COST``. A milestone whose roadmap has S slices, each with a plan of T tasks, costs
``S*T + S + 1`` units; add 1 if there is no roadmap (plan-milestone) and 1 per slice without a plan
(whose written plan then has 2 tasks). A milestone with only a CONTEXT costs 1+1+2+1+1 = 6 units.
Units already done on disk are not rerun; a unit cut short (SIGTERM, FAIL_AT) emits no cost and is
rerun in full, so interrupted-and-resumed runs add up to the same total. For exact float sums use a
binary-exact cost (``0.125``) or add with ``decimal.Decimal(str(x))``.

Protocol (GSD-FORMAT.md): stdout carries one JSON event per line, flushed: ``agent_start`` once;
per unit an ``extension_ui_request`` notify ``Starting <type> <id>``, ``tool_execution_start`` /
``tool_execution_end`` pairs (toolName ``edit`` for code files and checkbox edits, ``write`` for
new ``.gsd`` files; args.path), one ``message_end``, a notify ``Finished <type> <id>``; at the end
a notify
``Auto-mode stopped — milestone <MID> complete``. Human text goes to stderr.

After each unit the signal file ``$GSD_PROJECT_ROOT/.gsd/parallel/<MID>.signal.json`` (``<cwd>``
when ``GSD_PROJECT_ROOT`` is unset) is read and deleted: ``pause`` → notify ``Auto-mode paused…``,
exit 10; ``stop`` → notify ``Auto-mode stopped…``, exit 0 without SUMMARY; ``resume`` → carry on.
After the final unit the milestone is complete and a signal is consumed but ignored.

Exit codes: 0 complete, already complete, or stopped; 1 error (missing or invalid
``GSD_MILESTONE_LOCK``, missing milestone directory, git failure, FAIL_AT); 10 paused; 11 SIGTERM or
SIGINT (at any time, also while sleeping; file writes and the commit of a unit are finished first,
git runs in its own session so a process-group signal does not cut a commit in half).

Knobs (environment):

- ``GSD_FAKE_UNIT_SECONDS`` (0.05): sleep per unit, before its writes.
- ``GSD_FAKE_UNIT_COST`` (0.01): ``usage.cost.total`` of each unit's ``message_end``.
- ``GSD_FAKE_FAIL_AT=<unit>`` with ``GSD_FAKE_FAIL_TIMES`` (1): at the start of that unit (after its
  ``Starting`` notify, before any cost) emit an error notify and exit 1, that many times counted
  across restarts in ``<git-dir>/gsd-fake-state.json`` (the worktree's own git dir, from
  ``git rev-parse --git-dir``; keyed by the FAIL_AT value; never committed).
- ``GSD_FAKE_HANG_AT=<unit>``: at the start of that unit, print nothing and sleep until killed.
- ``GSD_FAKE_SPIN_AT=<unit>``: after that unit's ``Starting`` notify, emit a ``message_end`` with
  cost every ``GSD_FAKE_UNIT_SECONDS`` (at least every 0.01 s) forever, never writing or committing.

``<unit>`` is a unit id (``M001``, ``M001/S01``, ``M001/S01/T01``), matching every unit with that
id, or ``<type>:<id>`` to pick one of them: ``plan-slice:M001/S01``, ``complete-slice:M001/S01``,
``plan-milestone:M001``, ``complete-milestone:M001``.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

EXIT_OK, EXIT_ERROR, EXIT_PAUSED, EXIT_CANCELLED = 0, 1, 10, 11
FAKE_NAME, FAKE_EMAIL = "GSD Fake Worker", "gsd-fake@example.invalid"
STATE_FILE = "gsd-fake-state.json"
TASKS_PER_PLAN = 2

MID_RE = re.compile(r"^M\d{3}(-[a-z0-9]{6})?$")
_DIR_ID_RE = re.compile(r"^M\d+(?:-[a-z0-9]{6})?")
_SLICE_RE = re.compile(r"^[-*] \[([ xX])\] \*\*(S\d+):\s*(.*?)\*\*")
_TASK_RE = re.compile(r"^[-*] \[([ xX])\] \*\*(T\d+):\s*(.*?)\*\*")
_FILES_RE = re.compile(r"^\s*[-*]\s+Files:\s*(.*)$", re.IGNORECASE)
_HEADING_ID_RE = re.compile(r"^M\d+(?:-[a-z0-9]{6})?\s*[:—–-]\s*")
_TERMINAL = frozenset({"complete", "done", "skipped", "closed"})
_NOT_TERMINAL = frozenset({"active", "pending", "blocked", "failed", "failure", "incomplete"})
_FAILED_BODY_RE = re.compile(
    r"^# BLOCKER|auto-mode recovery failed|verification failed"
    r"|(?:status|verdict|outcome|result)\s*[:=-]\s*not complete",
    re.IGNORECASE | re.MULTILINE,
)


class FakeError(Exception):
    """A failure reported as one stderr line and exit 1."""


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


# --- output --------------------------------------------------------------------------------


def _say(message: str) -> None:
    with suppress(OSError, ValueError):
        print(f"[fake-gsd] {message}", file=sys.stderr, flush=True)


class Emitter:
    """Writes GSD-shaped NDJSON events to stdout, one flushed line each."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._ids = 0
        self._broken = False

    def _next(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def emit(self, event: dict[str, Any]) -> None:
        if self._broken:
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
                "id": self._next("n"),
                "method": "notify",
                "message": message,
                "notifyType": kind,
            }
        )
        _say(message)

    @contextmanager
    def tool(self, name: str, path: str) -> Iterator[None]:
        call_id = self._next("c")
        base = {"toolCallId": call_id, "toolName": name}
        self.emit({"type": "tool_execution_start", **base, "args": {"path": path}})
        ok = False
        try:
            yield
            ok = True
        finally:
            self.emit({"type": "tool_execution_end", **base, "result": {}, "isError": not ok})

    def message_end(self, cost: float, text: str) -> None:
        half = cost / 2  # halves of a float add back up to it exactly
        usage = {
            "input": 1000,
            "output": 250,
            "cacheRead": 0,
            "cacheWrite": 0,
            "totalTokens": 1250,
            "cost": {"input": half, "output": half, "cacheRead": 0.0, "cacheWrite": 0.0,
                     "total": float(cost)},
        }
        message = {"role": "assistant", "content": [{"type": "text", "text": text}],
                   "usage": usage, "stopReason": "stop"}
        self.emit({"type": "message_end", "message": message})


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    mid: str
    root: Path
    mdir: Path
    signal_path: Path
    state_path: Path
    unit_seconds: float
    unit_cost: float
    fail_at: str
    fail_times: int
    hang_at: str
    spin_at: str


def _env_number(name: str, default: float, kind: Callable[[str], float]) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise FakeError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise FakeError(f"{name}={raw!r} must be a finite number >= 0")
    return value


def _git(root: Path, *args: str) -> str:
    """Run git with a fixed identity, in its own session (a group SIGTERM must not cut it)."""
    argv = ["git", "-c", f"user.name={FAKE_NAME}", "-c", f"user.email={FAKE_EMAIL}",
            "-c", "commit.gpgsign=false", *args]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              start_new_session=True, check=False)
    except OSError as exc:
        raise FakeError(f"cannot run git: {exc}") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit {proc.returncode}"
        raise FakeError(f"git {args[0]} failed in {root}: {detail}")
    return proc.stdout


def _find_milestone_dir(root: Path, mid: str) -> Path:
    base = root / ".gsd" / "milestones"
    if not base.is_dir():
        raise FakeError(f"no .gsd/milestones directory in {root}")
    hits = sorted(
        p for p in base.iterdir()
        if p.is_dir() and (m := _DIR_ID_RE.match(p.name)) and m.group(0) == mid
    )
    if not hits:
        raise FakeError(f"milestone {mid} not found in {base}")
    if len(hits) > 1:
        raise FakeError(f"milestone {mid} matches several directories: "
                        + ", ".join(p.name for p in hits))
    return hits[0]


def load_config() -> Config:
    """Read the environment and locate the milestone; raise FakeError with one line."""
    mid = os.environ.get("GSD_MILESTONE_LOCK", "").strip()
    if not mid:
        raise FakeError("GSD_MILESTONE_LOCK is not set; it names the milestone to work on")
    if not MID_RE.match(mid):
        raise FakeError(f"GSD_MILESTONE_LOCK={mid!r} is not a milestone ID (M001 or M001-abc123)")
    root = Path.cwd()
    git_dir = Path(_git(root, "rev-parse", "--git-dir").strip())
    project_root = Path(os.environ.get("GSD_PROJECT_ROOT") or root)
    return Config(
        mid=mid,
        root=root,
        mdir=_find_milestone_dir(root, mid),
        signal_path=project_root / ".gsd" / "parallel" / f"{mid}.signal.json",
        state_path=(root / git_dir if not git_dir.is_absolute() else git_dir) / STATE_FILE,
        unit_seconds=_env_number("GSD_FAKE_UNIT_SECONDS", 0.05, float),
        unit_cost=float(_env_number("GSD_FAKE_UNIT_COST", 0.01, float)),
        fail_at=os.environ.get("GSD_FAKE_FAIL_AT", "").strip(),
        fail_times=_env_number("GSD_FAKE_FAIL_TIMES", 1, int),
        hang_at=os.environ.get("GSD_FAKE_HANG_AT", "").strip(),
        spin_at=os.environ.get("GSD_FAKE_SPIN_AT", "").strip(),
    )


# --- reading and writing the clean GSD format ----------------------------------------------


@dataclass(frozen=True)
class Task:
    tid: str
    title: str
    done: bool
    files: tuple[str, ...]


@dataclass(frozen=True)
class Slice:
    sid: str
    title: str
    done: bool


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


def _milestone_file(cfg: Config, suffix: str) -> Path | None:
    """``<ID>-SUFFIX.md`` (any case), else a legacy ``<ID>-<anything>-SUFFIX.md``."""
    files = sorted(p for p in cfg.mdir.iterdir() if p.is_file())
    exact, prefix, end = (f"{cfg.mid}-{suffix}.md".casefold(), f"{cfg.mid}-".casefold(),
                          f"-{suffix}.md".casefold())
    for p in files:
        if p.name.casefold() == exact:
            return p
    for p in files:
        name = p.name.casefold()
        if name.startswith(prefix) and name.endswith(end):
            return p
    return None


def _heading_title(path: Path | None) -> str:
    if path is None:
        return ""
    for line in _read(path).splitlines():
        if line.startswith("# "):
            return _HEADING_ID_RE.sub("", line[2:].strip()).strip()
    return ""


def milestone_title(cfg: Config) -> str:
    for suffix in ("ROADMAP", "CONTEXT", "CONTEXT-DRAFT"):
        if title := _heading_title(_milestone_file(cfg, suffix)):
            return title
    return cfg.mid


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
            slices.append(Slice(m.group(2), m.group(3).strip(), m.group(1) != " "))
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
    current: tuple[str, str, bool] | None = None
    files: list[str] = []

    def flush() -> None:
        if current is not None:
            tasks.append(Task(current[0], current[1], current[2], tuple(files)))

    for line in text.splitlines():
        if m := _TASK_RE.match(line):
            flush()
            current, files = (m.group(2), m.group(3).strip(), m.group(1) != " "), []
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


# --- units ---------------------------------------------------------------------------------


def _slice_dir(cfg: Config, sid: str) -> Path:
    return cfg.mdir / "slices" / sid


def next_unit(cfg: Config) -> Unit:
    """The first unit the disk says is still to do (the milestone is not complete)."""
    roadmap = _milestone_file(cfg, "ROADMAP")
    slices = parse_slices(_read(roadmap)) if roadmap else []
    if not slices:
        return Unit("plan-milestone", cfg.mid, milestone_title(cfg))
    for sl in slices:
        if sl.done:
            continue
        sdir = _slice_dir(cfg, sl.sid)
        plan = sdir / f"{sl.sid}-PLAN.md"
        sid_path = f"{cfg.mid}/{sl.sid}"
        if not plan.is_file():
            return Unit("plan-slice", sid_path, sl.title, sl.sid)
        for task in parse_tasks(_read(plan)):
            if not task.done and not (sdir / "tasks" / f"{task.tid}-SUMMARY.md").exists():
                return Unit("execute-task", f"{sid_path}/{task.tid}", task.title, sl.sid, task)
        return Unit("complete-slice", sid_path, sl.title, sl.sid)
    return Unit("complete-milestone", cfg.mid, milestone_title(cfg))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rel(cfg: Config, path: Path) -> str:
    return path.relative_to(cfg.root).as_posix()


def _write(cfg: Config, em: Emitter, path: Path, text: str) -> Path:
    with em.tool("write", _rel(cfg, path)):
        _write_atomic(path, text)
    return path


def _safe_target(cfg: Config, entry: str) -> Path | None:
    rel = Path(entry)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts or rel.parts[0] in (".git", ".gsd"):
        return None
    root = cfg.root.resolve()
    resolved = (cfg.root / rel).resolve()
    return cfg.root / rel if root in resolved.parents else None


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    if line in existing.splitlines():
        return  # retried task: the edit already happened
    with path.open("a", encoding="utf-8", newline="\n") as fh:
        fh.write(("\n" if existing and not existing.endswith("\n") else "") + line + "\n")


def _do_plan_milestone(cfg: Config, em: Emitter, unit: Unit) -> list[Path]:
    block = [f"- [ ] **S01: {unit.title}** `risk:low` `depends:[]`",
             f"  > After this: the fake work for {cfg.mid} is done."]
    roadmap = _milestone_file(cfg, "ROADMAP")
    if roadmap is None:
        roadmap = cfg.mdir / f"{cfg.mid}-ROADMAP.md"
        text = "\n".join([f"# {cfg.mid}: {unit.title}", "",
                          "**Vision:** planned by the fake GSD worker.", "", "## Slices", "",
                          *block, ""])
    else:
        lines = _read(roadmap).splitlines()
        at = next((i for i, ln in enumerate(lines) if _is_slices_heading(ln)), None)
        if at is None:
            lines += ["", "## Slices", "", *block]
        else:
            lines[at + 1 : at + 1] = ["", *block]
        text = "\n".join(lines) + "\n"
    return [_write(cfg, em, roadmap, text)]


def _do_plan_slice(cfg: Config, em: Emitter, unit: Unit) -> list[Path]:
    sid = unit.slice
    files = [f"src/{cfg.mid.lower()}/{sid.lower()}_t{n:02d}.txt"
             for n in range(1, TASKS_PER_PLAN + 1)]
    lines = [f"# {sid}: {unit.title}", "", "**Goal:** planned by the fake GSD worker.", "",
             "## Tasks", ""]
    for n, path in enumerate(files, start=1):
        lines += [f"- [ ] **T{n:02d}: Part {n} of {unit.title}** `est:5m`",
                  "  Append the unit marker to its file.",
                  f"  - Files: `{path}`", f"  - Verify: test -f {path}", ""]
    lines += ["## Files Likely Touched", "", *(f"- {p}" for p in files), ""]
    plan = _slice_dir(cfg, sid) / f"{sid}-PLAN.md"
    return [_write(cfg, em, plan, "\n".join(lines))]


def _summary(fields: dict[str, str], heading: str, body: str) -> str:
    front = [f"{k}: {v}" for k, v in fields.items()]
    return "\n".join(["---", *front, f"completed_at: {_now()}", "---", "", heading, "", body, ""])


def _do_execute_task(cfg: Config, em: Emitter, unit: Unit) -> list[Path]:
    assert unit.task is not None
    task, sdir, written = unit.task, _slice_dir(cfg, unit.slice), []
    for entry in task.files:
        target = _safe_target(cfg, entry)
        if target is None or target.is_dir():
            _say(f"{unit.id}: skipping file outside the worktree's code: {entry}")
            continue
        with em.tool("edit", entry):
            _append_line(target, unit.id)
        written.append(target)
    fields = {"id": task.tid, "parent": unit.slice, "milestone": cfg.mid,
              "verification_result": "passed"}
    body = "Executed by the fake GSD worker.\n\nFiles:\n" + "".join(
        f"- `{f}`\n" for f in task.files)
    written.append(_write(cfg, em, sdir / "tasks" / f"{task.tid}-SUMMARY.md",
                          _summary(fields, f"# {task.tid}: {task.title}", body)))
    plan = sdir / f"{unit.slice}-PLAN.md"
    _mark_done(plan, _TASK_RE, task.tid, in_slices=False)
    return [*written, plan]


def _do_complete_slice(cfg: Config, em: Emitter, unit: Unit) -> list[Path]:
    roadmap = _milestone_file(cfg, "ROADMAP")
    assert roadmap is not None
    with em.tool("edit", _rel(cfg, roadmap)):
        _mark_done(roadmap, _SLICE_RE, unit.slice, in_slices=True)
    fields = {"id": unit.slice, "parent": cfg.mid, "milestone": cfg.mid}
    summary = _slice_dir(cfg, unit.slice) / f"{unit.slice}-SUMMARY.md"
    text = _summary(fields, f"# {unit.slice}: {unit.title}", "Completed by the fake GSD worker.")
    return [roadmap, _write(cfg, em, summary, text)]


def _do_complete_milestone(cfg: Config, em: Emitter, unit: Unit) -> list[Path]:
    path = _milestone_file(cfg, "SUMMARY") or cfg.mdir / f"{cfg.mid}-SUMMARY.md"
    fields = {"id": cfg.mid, "title": json.dumps(unit.title), "status": "complete"}
    text = _summary(fields, f"# {cfg.mid}: {unit.title}", "Completed by the fake GSD worker.")
    return [_write(cfg, em, path, text)]


_ACTIONS: dict[str, Callable[[Config, Emitter, Unit], list[Path]]] = {
    "plan-milestone": _do_plan_milestone,
    "plan-slice": _do_plan_slice,
    "execute-task": _do_execute_task,
    "complete-slice": _do_complete_slice,
    "complete-milestone": _do_complete_milestone,
}


def _committable(cfg: Config, paths: list[Path]) -> list[str]:
    """The paths git can take: inside the work tree (a symlinked ``.gsd`` is not) and not ignored.

    Like GSD itself, planning files kept outside the repository are written but not committed.
    """
    root = cfg.root.resolve()
    inside = []
    for p in paths:
        try:
            p.resolve().relative_to(root)
        except ValueError:
            continue
        inside.append(_rel(cfg, p))
    rel = sorted(set(inside))
    if not rel:
        return []
    argv = ["git", "check-ignore", "--no-index", "--", *rel]
    done = subprocess.run(argv, cwd=cfg.root, capture_output=True, text=True, check=False,
                          start_new_session=True)
    ignored = set(done.stdout.splitlines()) if done.returncode == 0 else set()
    return [r for r in rel if r not in ignored]


def _commit(cfg: Config, unit: Unit, paths: list[Path]) -> None:
    rel = _committable(cfg, paths)
    if not rel:
        return
    _git(cfg.root, "add", "--", *rel)
    _git(cfg.root, "commit", "--no-verify", "-q", "-m", f"{unit.id}: {unit.type} {unit.title}",
         "--", *rel)


def _take_failure(cfg: Config) -> bool:
    """Count one failure for GSD_FAKE_FAIL_AT unless FAIL_TIMES are used up (across runs)."""
    try:
        state = json.loads(cfg.state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    failures = state.setdefault("failures", {})
    done = int(failures.get(cfg.fail_at, 0))
    if done >= cfg.fail_times:
        return False
    failures[cfg.fail_at] = done + 1
    _write_atomic(cfg.state_path, json.dumps(state, indent=2) + "\n")
    return True


def _spin(cfg: Config, em: Emitter, unit: Unit) -> NoReturn:
    while True:
        _sleep(max(cfg.unit_seconds, 0.01))
        em.message_end(cfg.unit_cost, f"Still working on {unit.type} {unit.id}.")


def _hang() -> NoReturn:
    while True:
        time.sleep(3600)


def run_unit(cfg: Config, em: Emitter, unit: Unit) -> None:
    """One unit: announce, honour the fault knobs, sleep, write, report cost, commit."""
    if cfg.hang_at and unit.matches(cfg.hang_at):
        _hang()
    em.notify(f"Starting {unit.type} {unit.id}")
    if cfg.fail_at and unit.matches(cfg.fail_at) and _take_failure(cfg):
        em.notify(f"Unit {unit.type} {unit.id} failed (GSD_FAKE_FAIL_AT)", "error")
        raise FakeError(f"{unit.type} {unit.id} failed on purpose (GSD_FAKE_FAIL_AT)")
    if cfg.spin_at and unit.matches(cfg.spin_at):
        _spin(cfg, em, unit)
    _sleep(cfg.unit_seconds)
    with _critical():
        try:
            written = _ACTIONS[unit.type](cfg, em, unit)
        except OSError as exc:
            raise FakeError(f"{unit.type} {unit.id}: {exc}") from None
        em.message_end(cfg.unit_cost, f"Finished {unit.type} {unit.id}.")
        _commit(cfg, unit, written)
    em.notify(f"Finished {unit.type} {unit.id}")


def take_signal(cfg: Config) -> str | None:
    """Read and delete the coordinator's signal file; return pause/stop/resume or None."""
    try:
        raw = cfg.signal_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        _say(f"cannot read {cfg.signal_path}: {exc}")
        return None
    with suppress(FileNotFoundError):
        cfg.signal_path.unlink()
    try:
        sig = json.loads(raw).get("signal")
    except (ValueError, AttributeError):
        sig = None
    if sig in ("pause", "stop", "resume"):
        return str(sig)
    _say(f"ignoring unreadable signal file {cfg.signal_path}")
    return None


def work(cfg: Config, em: Emitter) -> int:
    """Run units until the milestone is complete or a signal says otherwise; the exit code."""
    em.emit({"type": "agent_start"})
    ran: tuple[str, str] | None = None
    while True:
        if summary_is_terminal(_milestone_file(cfg, "SUMMARY")):
            if ran is None:
                em.notify(f"Milestone {cfg.mid} is already complete — nothing to do")
            else:
                em.notify(f"Auto-mode stopped — milestone {cfg.mid} complete")
            return EXIT_OK
        unit = next_unit(cfg)
        if ran == (unit.type, unit.id):
            raise FakeError(f"{unit.type} {unit.id} made no progress on disk; giving up")
        run_unit(cfg, em, unit)
        ran = (unit.type, unit.id)
        sig = take_signal(cfg)
        if unit.type == "complete-milestone":
            continue
        if sig == "pause":
            em.notify(f"Auto-mode paused — {cfg.mid} resumes from disk on the next run")
            return EXIT_PAUSED
        if sig == "stop":
            em.notify(f"Auto-mode stopped — stop requested for {cfg.mid}")
            return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point; arguments (``headless --json auto``) are accepted and ignored."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        return work(load_config(), Emitter(sys.stdout))
    except Cancelled:
        _say("cancelled by signal")
        return EXIT_CANCELLED
    except FakeError as exc:
        if _Guard.pending:
            return EXIT_CANCELLED
        _say(f"error: {exc}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
