"""End-to-end tests of the fake GSD worker: real processes, real git, real SQLite.

Each test runs ``python -m gsd_parallel_plugin.testing.fake_gsd`` in a checkout laid out as
gsd-parallel lays it out (``<root>/.gsd-parallel/<MID>`` on ``gsd-parallel/<MID>``, kept out
of the root by ``info/exclude``), usually after ``headless recover``, and checks the NDJSON, the
checkout's ``.gsd/gsd.db``, the disk and the branch history against what the real GSD worker
was measured to do (docs/ARCHITECTURE.md, *The GSD adapter*).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gsd_parallel_plugin.testing import fake_gsd as fake

MODULE = "gsd_parallel_plugin.testing.fake_gsd"
AUTO = ("headless", "--json", "auto")
IDENTITY = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
BASE_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("GSD_", "GIT_AUTHOR_", "GIT_COMMITTER_"))
}
BASE_ENV.update(IDENTITY, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")

ROADMAP = """# M001: Core API

**Vision:** a small API.

## Slices

- [ ] **S01: Storage** `risk:high` `depends:[]`
  > After this: data is stored.

- [ ] **S02: Docs** `risk:low` `depends:[S01]`
  > After this: it is documented.

## Boundary Map

- [ ] **S99: Not a slice, outside the Slices section**
"""

PLAN_S01 = """# S01: Storage

## Tasks

- [ ] **T01: Store** `est:30m`
  Keep things.
  - Files: `src/app.py`, `lib/core/util.txt`
  - Verify: pytest

- [ ] **T02: Wire it** `est:10m`
  ## Steps
  1. wire
  - Files: `./src/app.py (edited)`

## Files Likely Touched

- src/app.py
- lib/core/util.txt
"""

PLAN_S02 = """# S02: Docs

## Tasks

- [ ] **T01: Guide**
  - Files: `docs/guide.md`

- [ ] **T02: Mention in app**
  - Files: `src/app.py`, `and 3 other files`
"""

OTHER_ROADMAP = "# M002: Other\n\n## Slices\n\n- [ ] **S01: Other**\n"
OTHER_CONTEXT = "---\ndepends_on: [M001]\n---\n\n# M002: Other\n"
FULL_UNITS = 2 * 2 + 2 + 1  # S*T + S + 1: four tasks, two slice completions, the milestone
UNITS = [
    "execute-task M001/S01/T01",
    "execute-task M001/S01/T02",
    "complete-slice M001/S01",
    "execute-task M001/S02/T01",
    "execute-task M001/S02/T02",
    "complete-slice M001/S02",
    "complete-milestone M001",
]
PAUSED = "Auto-mode paused (Escape). Type to interact, or /gsd auto to resume."
STARTED = "Auto-mode started. Will loop until milestone complete."
INTERRUPTED = "[headless] Interrupted, stopping child process..."
GUARD = (
    "Cannot complete milestone M001: uncommitted changes remain after the pre-completion "
    "commit. Commit or stash before closing."
)
PREFLIGHT = "chore: auto-commit after complete-milestone-preflight\n\nGSD-Unit: M001"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=BASE_ENV, capture_output=True, text=True, check=True)
    return done.stdout


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def parse(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    assert all(line.strip() for line in lines), "blank line in NDJSON output"
    return [json.loads(line) for line in lines]  # every line must be one JSON document


@dataclass
class Run:
    rc: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def notifies(self) -> list[str]:
        return notifies(self.events)

    @property
    def costs(self) -> list[float]:
        return assistant_costs(self.events)

    @property
    def units(self) -> list[str]:
        return [m.removeprefix("Starting ") for m in self.notifies if m.startswith("Starting ")]


def notifies(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "extension_ui_request" and e["method"] == "notify"]


def assistant_costs(events: list[dict[str, Any]]) -> list[float]:
    return [
        e["message"]["usage"]["cost"]["total"]
        for e in events
        if e["type"] == "message_end" and e["message"]["role"] == "assistant"
    ]


def unit_costs(events: list[dict[str, Any]]) -> list[float]:
    """Per agent session, the sum of its assistant costs (one entry per finished unit)."""
    out: list[float] = []
    for e in events:
        if e["type"] == "agent_start":
            out.append(0.0)
        elif e["type"] == "message_end" and e["message"]["role"] == "assistant":
            out[-1] += e["message"]["usage"]["cost"]["total"]
    return out


@dataclass
class Project:
    root: Path

    def checkout(self, mid: str = "M001", *, recover: bool = True) -> Path:
        wt = self.root / ".gsd-parallel" / mid
        if not wt.exists():
            git(self.root, "worktree", "add", "-q", "-b", f"gsd-parallel/{mid}", str(wt), "main")
            if recover:  # in-process to keep the file fast; recover's own tests run it for real
                fake.recover(wt)
        return wt

    def cmd(
        self, cwd: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", MODULE, *args],
            cwd=cwd,
            env=env or BASE_ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def env(self, mid: str | None = "M001", **knobs: str) -> dict[str, str]:
        env = {
            **BASE_ENV,
            "GSD_PARALLEL_WORKER": "1",
            "GSD_FAKE_UNIT_SECONDS": "0",
            "GSD_FAKE_RETRY_SECONDS": "0.01",
        }
        if mid is not None:
            env["GSD_MILESTONE_LOCK"] = mid
        env.update(knobs)
        return env

    def run(
        self, mid: str = "M001", *, args: tuple[str, ...] = AUTO, cwd: Path | None = None, **knobs: str
    ) -> Run:
        done = self.cmd(cwd or self.checkout(mid), *args, env=self.env(mid, **knobs))
        return Run(done.returncode, parse(done.stdout), done.stderr)

    def start(self, mid: str = "M001", **knobs: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", MODULE, *AUTO],
            cwd=self.checkout(mid),
            env=self.env(mid, **knobs),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def log(self, fmt: str = "%B", branch: str = "gsd-parallel/M001") -> list[str]:
        out = git(self.root, "log", "-z", "--reverse", f"--format={fmt}", f"main..{branch}")
        return [entry.strip() for entry in out.split("\0") if entry.strip()]

    def signal(self, name: str, mid: str = "M001", at: Path | None = None, **extra: Any) -> Path:
        path = (at or self.checkout(mid)) / ".gsd" / "parallel" / f"{mid}.signal.json"
        write(path, json.dumps({"signal": name, "sentAt": 0, "from": "coordinator", **extra}))
        return path


def status(wt: Path) -> list[str]:
    return git(wt, "status", "--porcelain").splitlines()


def db_rows(wt: Path, table: str = "milestones") -> dict[Any, dict[str, Any]]:
    with closing(sqlite3.connect(wt / ".gsd" / "gsd.db")) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM {table}").fetchall()
    key = {
        "milestones": ("id",),
        "slices": ("milestone_id", "id"),
        "tasks": ("milestone_id", "slice_id", "id"),
    }[table]
    return {"/".join(r[k] for k in key): dict(r) for r in rows}


def milestone_status(wt: Path, mid: str = "M001") -> str:
    return str(db_rows(wt)[mid]["status"])


def summary(wt: Path, mid: str = "M001") -> Path:
    return wt / ".gsd" / "milestones" / mid / f"{mid}-SUMMARY.md"


def read_until(
    proc: subprocess.Popen[str], predicate: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Read events until one satisfies predicate (the worker must get there by itself)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if predicate(seen[-1]):
            return seen
    raise AssertionError(f"worker ended before the expected event; saw {seen}")


def is_notify(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "extension_ui_request" and text in e.get("message", "")


def still_alive(proc: subprocess.Popen[str], seconds: float = 0.25) -> bool:
    deadline = time.monotonic() + seconds  # time for a broken worker to move on or exit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return True


def handlers_ready(proc: subprocess.Popen[str]) -> None:
    """Wait for the worker's SIGTERM/SIGINT handlers (it says so on stderr first): a signal
    sent before them kills the interpreter instead, which is not what a test asks about."""
    assert proc.stderr is not None
    while (line := proc.stderr.readline()) and line.rstrip("\n") != fake.SIGNAL_HANDLERS_READY:
        pass


def terminate(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, parse(out), err


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root / ".gitignore", ".gsd/gsd.db*\n.gsd/parallel/\n")
    write(root / "src" / "app.py", "print('hello')")  # no trailing newline on purpose
    m1 = root / ".gsd" / "milestones" / "M001"
    write(m1 / "M001-ROADMAP.md", ROADMAP)
    write(m1 / "slices" / "S01" / "S01-PLAN.md", PLAN_S01)
    write(m1 / "slices" / "S02" / "S02-PLAN.md", PLAN_S02)
    write(root / ".gsd" / "milestones" / "M002" / "M002-ROADMAP.md", OTHER_ROADMAP)
    write(root / ".gsd" / "milestones" / "M002" / "M002-CONTEXT.md", OTHER_CONTEXT)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    exclude = Path(git(root, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    with (exclude / "info" / "exclude").open("a") as fh:
        fh.write("/.gsd-parallel/\n")
    return Project(root)


# --- command line ------------------------------------------------------------------------


def test_no_arguments_means_headless_json_auto(project: Project) -> None:
    result = project.run(args=())
    assert result.rc == 0, result.stderr
    assert result.events[0] == {"type": "extensions_ready"}
    assert result.units == UNITS
    # the default cost, 0.01 a unit in two halves, sums exactly in decimal
    assert result.costs == [0.005] * (2 * FULL_UNITS)
    assert sum(Decimal(str(c)) for c in result.costs) == Decimal("0.01") * FULL_UNITS


def test_unknown_command_is_one_stderr_line_and_exit_1(project: Project) -> None:
    done = project.cmd(project.checkout(), "headless", "frobnicate", env=project.env())
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "frobnicate" in done.stderr


def test_without_json_nothing_goes_to_stdout(project: Project) -> None:
    done = project.cmd(project.checkout(), "headless", "auto", env=project.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert STARTED in done.stderr
    assert milestone_status(project.checkout()) == "complete"


@pytest.mark.parametrize("command", ["auto", "recover", "query"])
def test_no_gsd_directory_is_the_real_error(tmp_path: Path, project: Project, command: str) -> None:
    done = project.cmd(tmp_path, "headless", "--json", command, env=project.env())
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "[headless] Error: No .gsd/ directory found in current directory.",
        "[headless] Run 'gsd' interactively first to initialize a project.",
    ]


# --- recover -------------------------------------------------------------------------------


def test_recover_imports_every_milestone_into_a_real_sqlite_db(project: Project) -> None:
    m3 = project.root / ".gsd" / "milestones" / "M003"
    write(m3 / "M003-CONTEXT.md", "# M003: Done already\n")
    write(m3 / "M003-SUMMARY.md", "---\nid: M003\nstatus: complete\n---\n\n# M003\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "M003")
    wt = project.checkout(recover=False)
    assert not (wt / ".gsd" / "gsd.db").exists()
    done = project.cmd(wt, "headless", "recover")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "gsd-recover: recovered 3M/3S/4T hierarchy\n"
    assert done.stdout == ""

    with closing(sqlite3.connect(wt / ".gsd" / "gsd.db")) as conn:
        columns = {r[1]: (r[2], r[5]) for r in conn.execute("PRAGMA table_info(milestones)")}
    assert {k: columns[k] for k in ("id", "title", "status", "depends_on", "created_at", "completed_at")} == {
        "id": ("TEXT", 1),
        "title": ("TEXT", 0),
        "status": ("TEXT", 0),
        "depends_on": ("TEXT", 0),
        "created_at": ("TEXT", 0),
        "completed_at": ("TEXT", 0),
    }
    rows = db_rows(wt)
    assert sorted(rows) == ["M001", "M002", "M003"]
    assert rows["M001"]["title"] == "M001: Core API"  # the heading, as GSD stores it
    assert [rows[m]["status"] for m in ("M001", "M002", "M003")] == ["active", "active", "complete"]
    assert rows["M001"]["completed_at"] is None and rows["M003"]["completed_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows["M001"]["created_at"])
    assert json.loads(rows["M002"]["depends_on"]) == ["M001"]
    assert sorted(db_rows(wt, "slices")) == ["M001/S01", "M001/S02", "M002/S01"]
    assert db_rows(wt, "slices")["M001/S02"]["depends"] == '["S01"]'
    tasks = db_rows(wt, "tasks")
    assert sorted(tasks) == ["M001/S01/T01", "M001/S01/T02", "M001/S02/T01", "M001/S02/T02"]
    assert {t["status"] for t in tasks.values()} == {"pending"}
    assert json.loads(tasks["M001/S01/T01"]["files"]) == ["src/app.py", "lib/core/util.txt"]
    assert not (project.root / ".gsd" / "gsd.db").exists()  # only the checkout's DB


def test_recover_is_idempotent_and_keeps_completed_rows_complete(project: Project) -> None:
    wt = project.checkout()
    assert project.run().rc == 0
    before = db_rows(wt)
    assert before["M001"]["status"] == "complete" and before["M001"]["completed_at"]
    summary(wt).unlink()  # even without its SUMMARY a completed milestone stays complete
    for _ in range(2):
        done = project.cmd(wt, "headless", "recover")
        assert done.returncode == 0, done.stderr
        assert db_rows(wt) == before
    assert {t["status"] for t in db_rows(wt, "tasks").values() if t["milestone_id"] == "M001"} == {"complete"}


# --- the DB is authoritative -----------------------------------------------------------------


def test_without_recover_the_worker_notifies_and_waits_silently(project: Project) -> None:
    project.checkout(recover=False)
    proc = project.start()
    seen = read_until(proc, is_notify("do not match the authoritative DB"))
    assert notifies(seen) == [
        "Markdown planning artifacts (2M/3S/4T) do not match the authoritative DB (0M/0S/0T). "
        "Runtime startup will not import markdown automatically; run explicit GSD recovery if "
        "markdown should repopulate the database."
    ]
    assert seen[-1]["notifyType"] == "warning"
    assert still_alive(proc), "the real worker never exits here"
    rc, rest, err = terminate(proc)
    assert rc == 11
    assert rest == []
    assert not [e for e in seen if e["type"] in ("message_end", "agent_start")]  # no model call
    assert err.splitlines()[0] == "[headless] signal-handlers-ready"
    assert err.rstrip("\n").endswith("\n" + INTERRUPTED)
    assert db_rows(project.checkout()) == {}  # an empty DB is created, nothing imported


def test_markdown_changed_after_recover_is_not_imported(project: Project) -> None:
    wt = project.checkout()
    plan = wt / ".gsd/milestones/M001/slices/S02/S02-PLAN.md"
    plan.write_text(plan.read_text() + "\n- [ ] **T03: One more**\n")
    proc = project.start()
    seen = read_until(proc, is_notify("do not match the authoritative DB"))
    assert notifies(seen)[-1].startswith(
        "Markdown planning artifacts (2M/3S/5T) do not match the authoritative DB (2M/3S/4T)."
    )
    assert terminate(proc)[0] == 11


def test_an_already_complete_milestone_stays_silent(project: Project) -> None:
    assert project.run().rc == 0
    head = project.log("%H")
    proc = project.start()
    handlers_ready(proc)  # (a loaded machine took longer than still_alive's 0.25 s to get there)
    assert still_alive(proc), "the real worker never exits on a completed milestone"
    rc, events, err = terminate(proc)
    assert rc == 11
    assert events == [{"type": "extensions_ready"}]
    assert INTERRUPTED in err
    assert project.log("%H") == head


# --- a full run: events, DB, git -----------------------------------------------------------


def test_runs_a_milestone_to_completion(project: Project) -> None:
    main_before = git(project.root, "rev-parse", "main")
    result = project.run(GSD_FAKE_UNIT_COST="0.125")
    wt = project.checkout()
    assert result.rc == 0, result.stderr
    assert result.notifies[0] == STARTED
    assert result.units == UNITS
    assert result.notifies[-1] == (
        "Auto-mode stopped — all milestones complete.\nSession: $0.875 · 17.5k tokens · 7 units"
    )
    tail = result.stderr.splitlines()[-3:]
    assert tail[0] == "[headless] Status: complete"
    assert re.fullmatch(r"\[headless\] Duration: \d+\.\ds", tail[1])
    assert tail[2] == f"[headless] Events: {len(result.events)} total, 12 tool calls"

    # completion is in the DB, with its time
    row = db_rows(wt)["M001"]
    assert row["status"] == "complete" and row["completed_at"]
    assert db_rows(wt)["M002"]["status"] == "active"
    assert {s["status"] for k, s in db_rows(wt, "slices").items() if k.startswith("M001")} == {"complete"}

    # the code: one line per task that lists the file, directories created, prose ignored
    assert (wt / "src/app.py").read_text() == ("print('hello')\nM001/S01/T01\nM001/S01/T02\nM001/S02/T02\n")
    assert (wt / "lib/core/util.txt").read_text() == "M001/S01/T01\n"
    assert (wt / "docs/guide.md").read_text() == "M001/S02/T01\n"
    assert not (wt / "and 3 other files").exists()
    mdir = wt / ".gsd/milestones/M001"
    roadmap = (mdir / "M001-ROADMAP.md").read_text()
    assert "- [x] **S01: Storage**" in roadmap and "- [x] **S02: Docs**" in roadmap
    assert "- [ ] **S99:" in roadmap  # outside ## Slices: not a slice, untouched
    assert "- [x] **T02: Wire it**" in (mdir / "slices/S01/S01-PLAN.md").read_text()
    text = summary(wt).read_text()
    assert "\nstatus: complete\n" in text and "# M001: Core API" in text

    # git: one pre-completion commit of everything; the SUMMARY comes after it, uncommitted
    assert git(project.root, "rev-parse", "main") == main_before
    assert project.log() == [PREFLIGHT]
    assert project.log("%an <%ae>|%cn <%ce>") == [
        "Test User <test@example.invalid>|Test User <test@example.invalid>"
    ]
    touched = set(git(wt, "show", "--name-only", "--format=", "HEAD").split())
    assert touched == {
        "src/app.py",
        "lib/core/util.txt",
        "docs/guide.md",
        ".gsd/milestones/M001/M001-ROADMAP.md",
        ".gsd/milestones/M001/slices/S01/S01-PLAN.md",
        ".gsd/milestones/M001/slices/S02/S02-PLAN.md",
        *(
            f".gsd/milestones/M001/slices/{s}/{f}-SUMMARY.md"
            for s in ("S01", "S02")
            for f in (s, "tasks/T01", "tasks/T02")
        ),
    }
    assert status(wt) == ["?? .gsd/milestones/M001/M001-SUMMARY.md"]


def test_events_have_the_real_shapes(project: Project) -> None:
    events = project.run(GSD_FAKE_UNIT_COST="0.125").events
    sessions: list[list[dict[str, Any]]] = []
    inside = False
    for e in events:
        if e["type"] == "agent_start":
            sessions.append([])
            inside = True
        if inside:
            sessions[-1].append(e)
        inside = inside and e["type"] != "agent_end"
    assert [
        e for e in events if e["type"] != "extension_ui_request" and not any(e in s for s in sessions)
    ] == [{"type": "extensions_ready"}]
    assert len(sessions) == FULL_UNITS  # every unit is a fresh agent session
    assert len({s[0]["sessionId"] for s in sessions}) == FULL_UNITS
    assert sum(e["type"] == "agent_end" for e in events) == FULL_UNITS

    lifecycle = []
    for n, session in enumerate(sessions):
        kinds = [e["type"] for e in session]
        assert kinds[:4] == ["agent_start", "turn_start", "message_start", "message_end"]
        custom = session[3]["message"]
        assert custom["role"] == "custom" and "usage" not in custom
        assert "## UNIT: " in custom["content"]
        assert kinds[-1] == "agent_end" and kinds.count("turn_start") == kinds.count("turn_end")
        ends = [e["message"] for e in session if e["type"] == "message_end"]
        assistant = [m for m in ends if m["role"] == "assistant"]
        assert len(assistant) == 2
        for m in assistant:
            assert set(m["usage"]) == {"input", "output", "cacheRead", "cacheWrite", "totalTokens", "cost"}
            assert set(m["usage"]["cost"]) == {"input", "output", "cacheRead", "cacheWrite", "total"}
            assert m["usage"]["cost"]["total"] == 0.0625
        assert assistant[0]["stopReason"] == "toolUse" and assistant[1]["stopReason"] == "stop"
        results = [m for m in ends if m["role"] == "toolResult"]
        assert results and all("usage" not in m and m["isError"] is False for m in results)
        starts = [e for e in session if e["type"] == "tool_execution_start"]
        finished = [e for e in session if e["type"] == "tool_execution_end"]
        assert (
            [e["toolCallId"] for e in starts]
            == [e["toolCallId"] for e in finished]
            == [c["id"] for c in assistant[0]["content"]]
        )
        assert all(e["isError"] is False and e["result"]["content"] for e in finished)
        last = finished[-1]
        lifecycle.append(
            (last["toolName"], starts[-1]["args"].get("sliceId"), starts[-1]["args"].get("taskId"))
        )
        assert starts[-1]["args"]["milestoneId"] == "M001"
        assert last["result"]["details"]["milestoneId"] == "M001"
        # cost_update and execution_complete: first unit only (never to be counted)
        assert ("cost_update" in kinds) == (n == 0)
        assert ("execution_complete" in kinds) == (n == 0)
    assert lifecycle == [
        ("gsd_task_complete", "S01", "T01"),
        ("gsd_task_complete", "S01", "T02"),
        ("gsd_slice_complete", "S01", None),
        ("gsd_task_complete", "S02", "T01"),
        ("gsd_task_complete", "S02", "T02"),
        ("gsd_slice_complete", "S02", None),
        ("gsd_complete_milestone", None, None),
    ]
    files = [
        (e["toolName"], e["args"]["path"])
        for e in events
        if e["type"] == "tool_execution_start" and e["toolName"] in ("write", "edit")
    ]
    assert files == [
        ("edit", "src/app.py"),
        ("write", "lib/core/util.txt"),
        ("edit", "src/app.py"),
        ("write", "docs/guide.md"),
        ("edit", "src/app.py"),
    ]
    done = next(
        e for e in events if e["type"] == "tool_execution_end" and e["toolName"] == "gsd_complete_milestone"
    )
    assert done["result"]["details"]["summaryPath"] == str(summary(project.checkout()).resolve())
    assert sum(assistant_costs(events)) == FULL_UNITS * 0.125
    assert [e["type"] for e in events if e["type"] in ("auto_retry_start", "auto_retry_end")] == []


def test_plans_a_milestone_that_has_only_a_context(project: Project) -> None:
    mdir = project.root / ".gsd/milestones/M003-find-things"
    write(mdir / "M003-CONTEXT.md", "---\ndepends_on: []\n---\n\n# M003: Search box\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "add M003")
    result = project.run("M003", GSD_FAKE_UNIT_COST="0.125")
    assert result.rc == 0, result.stderr
    assert result.units == [
        "plan-milestone M003",
        "plan-slice M003/S01",
        "execute-task M003/S01/T01",
        "execute-task M003/S01/T02",
        "complete-slice M003/S01",
        "complete-milestone M003",
    ]
    assert sum(result.costs) == 6 * 0.125
    tools = [
        e["toolName"]
        for e in result.events
        if e["type"] == "tool_execution_start" and e["toolName"].startswith("gsd_")
    ]
    assert tools[:2] == ["gsd_plan_milestone", "gsd_plan_slice"]

    wt = project.checkout("M003")
    wmdir = wt / ".gsd/milestones/M003-find-things"
    roadmap = (wmdir / "M003-ROADMAP.md").read_text()
    assert roadmap.startswith("# M003: Search box\n") and "- [x] **S01: Search box**" in roadmap
    plan = (wmdir / "slices/S01/S01-PLAN.md").read_text()
    assert "- [x] **T01:" in plan and "  - Files: `src/m003/s01_t01.txt`" in plan
    assert (wt / "src/m003/s01_t02.txt").read_text() == "M003/S01/T02\n"
    assert 'title: "Search box"' in (wmdir / "M003-SUMMARY.md").read_text()
    # the DB learnt the planned slice and tasks, so a rerun's sync check still passes
    assert sorted(k for k in db_rows(wt, "tasks") if k.startswith("M003")) == ["M003/S01/T01", "M003/S01/T02"]
    assert db_rows(wt)["M003"]["status"] == "complete"
    assert project.log("%s", "gsd-parallel/M003") == ["chore: auto-commit after complete-milestone-preflight"]


def test_done_tasks_on_disk_are_skipped(project: Project) -> None:
    mdir = project.root / ".gsd/milestones/M001"
    plan = mdir / "slices/S01/S01-PLAN.md"
    plan.write_text(plan.read_text().replace("- [ ] **T01: Store**", "- [x] **T01: Store**"))
    write(mdir / "slices/S02/tasks/T01-SUMMARY.md", "---\nid: T01\n---\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "two tasks done by hand")
    result = project.run()
    assert result.rc == 0, result.stderr
    assert len(result.units) == FULL_UNITS - 2
    assert not (project.checkout() / "lib/core/util.txt").exists()


def test_a_task_cut_short_after_its_edits_is_not_doubled(project: Project) -> None:
    app = project.checkout() / "src/app.py"
    app.write_text("print('hello')\nM001/S01/T01\n")  # edited, killed before its summary
    assert project.run().rc == 0
    assert app.read_text().count("M001/S01/T01") == 1


# --- the pre-completion commit and its guard -------------------------------------------------


@pytest.mark.parametrize("leftover", ["db not ignored", "other milestone"])
def test_the_guard_refuses_completion_when_changes_remain(project: Project, leftover: str) -> None:
    wt = project.checkout()
    if leftover == "db not ignored":  # a runtime file GSD never stages
        write(wt / ".gitignore", ".gsd/parallel/\n")
        git(wt, "commit", "-q", "-am", "the DB is not ignored")
        left = "?? .gsd/gsd.db"
    else:  # a locked worker never stages another milestone's directory
        write(wt / ".gsd/milestones/M002/notes.md", "never staged by M001's worker\n")
        left = "?? .gsd/milestones/M002/notes.md"
    result = project.run()
    assert result.rc == 10, result.stderr
    assert result.notifies[-1] == PAUSED  # GSD does not notify the reason
    assert "Starting complete-milestone M001" not in result.notifies
    assert "[headless] Status: blocked" in result.stderr
    assert project.log()[-1] == PREFLIGHT  # the commit happened, with everything else in it
    assert status(wt) == [left]
    assert milestone_status(wt) == "active" and not summary(wt).exists()
    query = json.loads(project.cmd(wt, "headless", "query", env=project.env()).stdout)
    assert query["next"] == {"action": "stop", "reason": GUARD}

    if leftover == "db not ignored":
        exclude = Path(git(wt, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
        with (exclude / "info" / "exclude").open("a") as fh:
            fh.write(".gsd/gsd.db*\n")
    else:
        (wt / left.removeprefix("?? ")).unlink()
    again = project.run()
    assert again.rc == 0, again.stderr
    assert again.notifies[:2] == ["Resuming paused session for M001.", "Auto-mode resumed."]
    assert again.units == ["complete-milestone M001"]
    assert milestone_status(wt) == "complete"


def test_an_ignored_gsd_copied_into_the_checkout_commits_only_code(tmp_path: Path) -> None:
    root = tmp_path / "ignored"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root / ".gitignore", ".gsd/\n/.gsd-parallel/\n")
    write(root / "src" / "app.py", "print('hello')\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    m1 = root / ".gsd" / "milestones" / "M001"
    write(m1 / "M001-ROADMAP.md", ROADMAP)
    write(m1 / "slices" / "S01" / "S01-PLAN.md", PLAN_S01)
    write(m1 / "slices" / "S02" / "S02-PLAN.md", PLAN_S02)
    project = Project(root)
    wt = project.checkout(recover=False)
    shutil.copytree(root / ".gsd", wt / ".gsd")
    fake.recover(wt)
    result = project.run()
    assert result.rc == 0, result.stderr
    assert project.log() == [PREFLIGHT]
    assert set(git(wt, "show", "--name-only", "--format=", "HEAD").split()) == {
        "src/app.py",
        "lib/core/util.txt",
        "docs/guide.md",
    }
    assert status(wt) == [] and summary(wt).is_file()
    assert milestone_status(wt) == "complete"


def test_pause_leaves_the_work_uncommitted_and_a_rerun_resumes(project: Project) -> None:
    wt = project.checkout()
    sig = project.signal("pause")
    first = project.run(GSD_FAKE_UNIT_COST="0.25")
    assert first.rc == 10, first.stderr
    assert first.notifies[-1] == PAUSED
    assert first.units == UNITS[:1]
    assert not sig.exists()  # read and deleted
    assert project.log() == []
    assert set(status(wt)) == {
        " M .gsd/milestones/M001/slices/S01/S01-PLAN.md",
        " M src/app.py",
        "?? .gsd/milestones/M001/slices/S01/tasks/",
        "?? lib/",
    }
    assert milestone_status(wt) == "active"

    second = project.run(GSD_FAKE_UNIT_COST="0.25")
    assert second.rc == 0, second.stderr
    assert second.notifies[:2] == ["Resuming paused session for M001.", "Auto-mode resumed."]
    assert second.units == UNITS[1:]  # resumed from disk
    assert sum(first.costs) + sum(second.costs) == FULL_UNITS * 0.25
    assert second.notifies[-1].endswith("Session: $1.75 · 17.5k tokens · 7 units")
    assert project.log() == [PREFLIGHT]
    assert milestone_status(wt) == "complete"


def test_stop_exits_0_without_completion(project: Project) -> None:
    wt = project.checkout()
    project.signal("stop")
    result = project.run()
    assert result.rc == 0, result.stderr
    assert result.notifies[-1] == "Auto-mode stopped.\nSession: $0.010 · 2.5k tokens · 1 units"
    assert milestone_status(wt) == "active" and not summary(wt).exists()
    assert project.log() == [] and status(wt)
    again = project.run()
    assert again.notifies[0] == STARTED  # a stop is not a pause: the next run starts afresh
    assert milestone_status(wt) == "complete"


def test_signals_are_read_from_the_checkout_not_the_project_root(project: Project) -> None:
    wt = project.checkout()
    at_root = project.signal("pause", at=project.root)
    result = project.run(GSD_PROJECT_ROOT=str(project.root))
    assert result.rc == 0, result.stderr
    assert at_root.exists() and milestone_status(wt) == "complete"


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        ({"signal": "resume", "sentAt": 1}, False),
        ({"signal": "pause"}, True),  # no sentAt: not a signal message, left alone
    ],
)
def test_other_signal_files_do_not_stop_the_work(project: Project, content: Any, kept: bool) -> None:
    path = project.signal("pause")
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = project.run()
    assert result.rc == 0, result.stderr
    assert path.exists() == kept
    assert milestone_status(project.checkout()) == "complete"


def test_a_pause_after_the_last_unit_exits_10_yet_the_milestone_is_complete(project: Project) -> None:
    wt = project.checkout()
    failed = project.run(GSD_FAKE_FAIL_AT="complete-milestone:M001")
    assert failed.rc == 1
    assert project.log() == [PREFLIGHT]  # the pre-completion commit comes before the unit
    project.signal("pause")
    last = project.run()
    assert last.rc == 10, last.stderr
    assert last.units == ["complete-milestone M001"]
    assert last.notifies[-1] == PAUSED
    assert milestone_status(wt) == "complete" and summary(wt).is_file()
    assert project.log() == [PREFLIGHT]


# --- provider failures ---------------------------------------------------------------------


def test_provider_500_retries_three_times_then_stays_silent(project: Project) -> None:
    proc = project.start(GSD_FAKE_PROVIDER="error500")
    seen = read_until(proc, lambda e: e["type"] == "auto_retry_end")
    assert still_alive(proc), "the real worker stays alive after its retries"
    rc, rest, err = terminate(proc)
    assert rc == 11 and rest == [] and INTERRUPTED in err
    start = next(i for i, e in enumerate(seen) if e["type"] == "agent_start")
    kinds = [e["type"] for e in seen[start:]]
    failed = ["turn_start", "message_start", "message_end", "turn_end", "agent_end"]
    retry = ["auto_retry_start", "agent_start", *failed]
    assert kinds == [
        "agent_start",
        "turn_start",
        "message_start",
        "message_end",
        "message_start",
        "cost_update",
        "message_end",
        "turn_end",
        "execution_complete",
        "agent_end",
        *retry * 3,
        "auto_retry_end",
    ]
    retries = [e for e in seen if e["type"] == "auto_retry_start"]
    assert [(e["attempt"], e["maxAttempts"], e["delayMs"]) for e in retries] == [
        (1, 3, 10),
        (2, 3, 20),
        (3, 3, 40),
    ]
    assert {e["errorMessage"] for e in retries} == {"500 Internal Server Error"}
    assert seen[-1] == {
        "type": "auto_retry_end",
        "success": False,
        "attempt": 3,
        "finalError": "500 Internal Server Error",
    }
    replies = [
        e["message"] for e in seen if e["type"] == "message_end" and e["message"]["role"] == "assistant"
    ]
    assert len(replies) == 4
    assert all(
        m["stopReason"] == "error"
        and m["errorMessage"].startswith("500 ")
        and m["usage"]["cost"]["total"] == 0
        for m in replies
    )
    assert milestone_status(project.checkout()) == "active"


def test_provider_401_pauses_with_the_real_text(project: Project) -> None:
    result = project.run(GSD_FAKE_PROVIDER="error401")
    assert result.rc == 10, result.stderr
    assert result.notifies[-1] == "Auto-mode paused due to provider error: 401 Unauthorized"
    kinds = [e["type"] for e in result.events]
    assert "agent_end" not in kinds and kinds[-2] == "turn_end"
    assert result.costs == [0]
    again = project.run()
    assert again.rc == 0 and again.notifies[0] == "Resuming paused session for M001."


# --- query ---------------------------------------------------------------------------------


def test_query_reports_gsd_state_from_the_db(project: Project) -> None:
    wt = project.checkout(recover=False)

    def query(**env: str) -> dict[str, Any]:
        done = project.cmd(wt, "headless", "query", env={**BASE_ENV, **env})
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    locked = {"GSD_MILESTONE_LOCK": "M001", "GSD_PARALLEL_WORKER": "1"}
    empty = query(**locked)
    assert (empty["state"]["phase"], empty["state"]["registry"], empty["next"]) == (
        "pre-planning",
        [],
        {"action": "stop", "reason": "No milestones found. Run /gsd to create one."},
    )
    assert not (wt / ".gsd/gsd.db").exists()  # query never writes
    assert project.cmd(wt, "headless", "recover").returncode == 0

    active = query(**locked)
    state = active["state"]
    assert state["phase"] == "executing"
    assert state["registry"] == [{"id": "M001", "title": "Core API", "status": "active"}]
    assert state["activeMilestone"] == {"id": "M001", "title": "Core API"}
    assert state["activeSlice"] == {"id": "S01", "title": "Storage"}
    assert state["activeTask"] == {"id": "T01", "title": "Store"}
    assert state["progress"]["tasks"] == {"done": 0, "total": 4}
    assert active["next"] == {"action": "dispatch", "unitType": "execute-task", "unitId": "M001/S01/T01"}
    assert [m["id"] for m in query()["state"]["registry"]] == ["M001", "M002"]  # no lock
    assert [m["id"] for m in query(GSD_MILESTONE_LOCK="M001")["state"]["registry"]] == [
        "M001",
        "M002",
    ]  # the lock alone does not scope it (as GSD's state.ts)

    project.signal("pause")
    assert project.run().rc == 10
    assert query(**locked)["next"]["unitId"] == "M001/S01/T02"
    assert project.run().rc == 0
    done = query(**locked)
    assert done["state"]["phase"] == "complete"
    assert done["state"]["registry"] == [{"id": "M001", "title": "Core API", "status": "complete"}]
    assert done["next"] == {"action": "stop", "reason": "All milestones complete."}
    assert set(done) == {"state", "next", "cost"}


# --- the lock ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock", "worker", "message"),
    [
        (None, "1", "GSD_MILESTONE_LOCK is not set"),
        ("m1; rm -rf /", "1", "is not a milestone ID"),
        ("M009", "1", "milestone M009 not found"),
        ("M001", None, "GSD_PARALLEL_WORKER is not set"),
    ],
)
def test_a_bad_lock_is_one_line_and_exit_1(
    project: Project, lock: str | None, worker: str | None, message: str
) -> None:
    env = project.env(lock)
    env.pop("GSD_PARALLEL_WORKER")
    if worker:
        env["GSD_PARALLEL_WORKER"] = worker
    done = project.cmd(project.checkout(), *AUTO, env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_checkout_under_gsd_worktrees_is_refused(project: Project) -> None:
    wt = project.root / ".gsd" / "worktrees" / "M001"
    git(project.root, "worktree", "add", "-q", "-b", "milestone/M001", str(wt), "main")
    result = project.run(cwd=wt)
    assert result.rc == 1 and result.events == []
    assert "escapeStaleWorktree" in result.stderr


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("GSD_FAKE_UNIT_SECONDS", "soon"),
        ("GSD_FAKE_PROVIDER", "error418"),
    ],
)
def test_a_bad_knob_is_exit_1(project: Project, knob: str, value: str) -> None:
    bad: dict[str, Any] = {knob: value}
    result = project.run(**bad)
    assert result.rc == 1 and result.events == []
    assert knob in result.stderr


# --- knobs ---------------------------------------------------------------------------------


def test_sigterm_mid_unit_exits_11_and_costs_nothing(project: Project) -> None:
    proc = project.start(GSD_FAKE_UNIT_SECONDS="60")
    read_until(proc, lambda e: e["type"] == "message_start" and e["message"]["role"] == "assistant")
    rc, rest, err = terminate(proc)
    assert rc == 11
    assert rest == []
    assert err.rstrip("\n").endswith(INTERRUPTED) and "Status" not in err
    wt = project.checkout()
    assert status(wt) == [] and not (wt / "lib/core/util.txt").exists()


def test_fail_at_fails_that_many_runs_then_completes(project: Project) -> None:
    knobs: dict[str, Any] = {
        "GSD_FAKE_FAIL_AT": "M001/S01/T02",
        "GSD_FAKE_FAIL_TIMES": "2",
        "GSD_FAKE_UNIT_COST": "0.5",
    }
    costs: list[float] = []
    for _ in range(2):
        failed = project.run(**knobs)
        assert failed.rc == 1
        assert failed.notifies[-1] == "Unit execute-task M001/S01/T02 failed (GSD_FAKE_FAIL_AT)"
        assert "GSD_FAKE_FAIL_AT" in failed.stderr
        assert failed.units == (UNITS[:2] if not costs else UNITS[1:2])
        costs += failed.costs
    done = project.run(**knobs)
    assert done.rc == 0, done.stderr
    assert sum(costs + done.costs) == FULL_UNITS * 0.5
    assert project.log() == [PREFLIGHT]
    # the counter lives in the checkout's git dir, never in the tree
    assert status(project.checkout()) == ["?? .gsd/milestones/M001/M001-SUMMARY.md"]


def test_typed_fail_at_picks_complete_slice_not_plan(project: Project) -> None:
    failed = project.run(GSD_FAKE_FAIL_AT="complete-slice:M001/S01")
    assert failed.rc == 1
    assert failed.units == UNITS[:3]
    assert unit_costs(failed.events) == [0.01, 0.01]


def test_hang_at_prints_nothing_and_is_killable(project: Project) -> None:
    proc = project.start(GSD_FAKE_HANG_AT="M001/S01/T02")
    read_until(proc, is_notify("Finished execute-task M001/S01/T01"))
    assert still_alive(proc), "the worker should still be hanging"
    rc, rest, _ = terminate(proc)
    assert rc == 11
    assert rest == []  # not even the Starting notify of the hanging unit


def test_spin_at_burns_cost_without_progress(project: Project) -> None:
    proc = project.start(GSD_FAKE_SPIN_AT="M001/S01/T02", GSD_FAKE_UNIT_SECONDS="0.01")
    read_until(proc, is_notify("Starting execute-task M001/S01/T02"))
    spins = 0
    while spins < 5:
        event = read_until(
            proc, lambda e: e["type"] == "message_end" and e["message"]["role"] == "assistant"
        )[-1]
        assert event["message"]["usage"]["cost"]["total"] == 0.01
        spins += 1
    rc, _, _ = terminate(proc)
    assert rc == 11
    wt = project.checkout()
    assert not (wt / ".gsd/milestones/M001/slices/S01/tasks/T02-SUMMARY.md").exists()
    assert (wt / "src/app.py").read_text() == "print('hello')\nM001/S01/T01\n"
    assert db_rows(wt, "tasks")["M001/S01/T02"]["status"] == "pending"


def test_format_helpers_follow_gsd() -> None:
    assert [fake.format_cost(c) for c in (0.005, 0.07, 0.743, 12.5)] == [
        "$0.0050",
        "$0.070",
        "$0.743",
        "$12.50",
    ]
    assert [fake.format_tokens(n) for n in (999, 246000, 2_500_000)] == ["999", "246.0k", "2.50M"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_says_how_to_run_it_anywhere(tmp_path: Path, flag: str) -> None:
    """``fake_gsd --help`` answers (exit 0) even outside a GSD project, and says how to use it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin.testing.fake_gsd", flag],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("usage: python -m gsd_parallel_plugin.testing.fake_gsd")
    assert "GSD_PARALLEL_WORKER_COMMAND" in done.stdout and "GSD_FAKE_UNIT_SECONDS" in done.stdout
