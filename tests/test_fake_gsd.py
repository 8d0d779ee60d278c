"""End-to-end tests of the fake GSD worker on real git repositories and worktrees.

Every test runs ``python -m gsd_parallel_plugin.testing.fake_gsd`` as a real process in a real
worktree on ``milestone/<MID>``, and checks the disk, the branch history and the NDJSON it printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sh

MODULE = "gsd_parallel_plugin.testing.fake_gsd"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

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
FULL_UNITS = 2 * 2 + 2 + 1  # S*T + S + 1: four tasks, two slice completions, the milestone


def git(cwd: Path) -> Any:
    return sh.git.bake(_tty_out=False, _cwd=str(cwd), _env=GIT_ENV)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@dataclass
class Project:
    root: Path

    def worktree(self, mid: str) -> Path:
        wt = self.root / ".gsd" / "worktrees" / mid
        if not wt.exists():
            git(self.root)("worktree", "add", "-q", "-b", f"milestone/{mid}", str(wt), "main")
        return wt

    def sha(self, ref: str) -> str:
        return str(git(self.root)("rev-parse", ref)).strip()

    def log(self, fmt: str, rng: str = "main..milestone/M001") -> list[str]:
        out = str(git(self.root)("log", "--reverse", f"--format={fmt}", rng))
        return [line for line in out.splitlines() if line]

    def signal(self, mid: str, name: str) -> Path:
        path = self.root / ".gsd" / "parallel" / f"{mid}.signal.json"
        write(path, json.dumps({"signal": name, "sentAt": 0, "from": "coordinator"}))
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    git(root)("init", "-q", "-b", "main")
    write(root / ".gitignore", ".gsd/worktrees/\n.gsd/parallel/\n")
    write(root / "src" / "app.py", "print('hello')")  # no trailing newline on purpose
    m1 = root / ".gsd" / "milestones" / "M001"
    write(m1 / "M001-ROADMAP.md", ROADMAP)
    write(m1 / "slices" / "S01" / "S01-PLAN.md", PLAN_S01)
    write(m1 / "slices" / "S02" / "S02-PLAN.md", PLAN_S02)
    write(root / ".gsd" / "milestones" / "M002" / "M002-ROADMAP.md", OTHER_ROADMAP)
    git(root)("add", "-A")
    git(root)("commit", "-q", "-m", "initial")
    return Project(root)


def worker_env(project: Project, mid: str | None, **knobs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GSD_", "GIT_AUTHOR_", "GIT_COMMITTER_"))}
    env.update({"GSD_PARALLEL_WORKER": "1", "GSD_PROJECT_ROOT": str(project.root),
                "GSD_FAKE_UNIT_SECONDS": "0", "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_CONFIG_NOSYSTEM": "1"})
    if mid is not None:
        env["GSD_MILESTONE_LOCK"] = mid
    env.update(knobs)
    return env


@dataclass
class Run:
    rc: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def notifies(self) -> list[str]:
        return [e["message"] for e in self.events
                if e["type"] == "extension_ui_request" and e["method"] == "notify"]

    @property
    def costs(self) -> list[float]:
        return [e["message"]["usage"]["cost"]["total"] for e in self.events
                if e["type"] == "message_end"]


def parse(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    assert all(line.strip() for line in lines), "blank line in NDJSON output"
    return [json.loads(line) for line in lines]  # every line must be one JSON document


def run(project: Project, mid: str | None = "M001", *, cwd: Path | None = None,
        **knobs: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, "headless", "--json", "auto"],
        cwd=cwd or project.worktree(mid or "M001"), env=worker_env(project, mid, **knobs),
        capture_output=True, text=True, timeout=60, check=False,
    )
    return Run(proc.returncode, parse(proc.stdout), proc.stderr)


def start(project: Project, mid: str = "M001", **knobs: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", MODULE], cwd=project.worktree(mid),
        env=worker_env(project, mid, **knobs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], predicate: Any) -> list[dict[str, Any]]:
    """Read events until one satisfies predicate (the worker must get there by itself)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if predicate(seen[-1]):
            return seen
    raise AssertionError(f"worker ended before the expected event; saw {seen}")


def is_notify(text: str) -> Any:
    return lambda e: e["type"] == "extension_ui_request" and text in e.get("message", "")


def terminate(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def milestone_summary(wt: Path, mid: str = "M001") -> Path:
    return wt / ".gsd" / "milestones" / mid / f"{mid}-SUMMARY.md"


def test_runs_a_planned_milestone_to_completion(project: Project) -> None:
    main_before = project.sha("main")
    result = run(project, GSD_FAKE_UNIT_COST="0.125")
    wt = project.worktree("M001")

    assert result.rc == 0, result.stderr
    assert result.events[0] == {"type": "agent_start"}
    assert [e for e in result.events if e["type"] == "agent_start"] == [result.events[0]]
    assert result.notifies[-1] == "Auto-mode stopped — milestone M001 complete"
    starts = [m.removeprefix("Starting ") for m in result.notifies if m.startswith("Starting ")]
    assert starts == [
        "execute-task M001/S01/T01", "execute-task M001/S01/T02", "complete-slice M001/S01",
        "execute-task M001/S02/T01", "execute-task M001/S02/T02", "complete-slice M001/S02",
        "complete-milestone M001",
    ]
    assert sum(result.costs) == FULL_UNITS * 0.125 and len(result.costs) == FULL_UNITS
    usage = next(e for e in result.events if e["type"] == "message_end")["message"]["usage"]
    assert set(usage) >= {"input", "output", "cacheRead", "cacheWrite", "totalTokens"}
    edits = [e["args"]["path"] for e in result.events
             if e["type"] == "tool_execution_start" and e["toolName"] == "edit"]
    assert edits[:3] == ["src/app.py", "lib/core/util.txt", "src/app.py"]
    ends = [e for e in result.events if e["type"] == "tool_execution_end"]
    assert ends and not any(e["isError"] for e in ends)

    # code files: one line per task that lists them, directories created, prose entries ignored
    assert (wt / "src/app.py").read_text() == (
        "print('hello')\nM001/S01/T01\nM001/S01/T02\nM001/S02/T02\n")
    assert (wt / "lib/core/util.txt").read_text() == "M001/S01/T01\n"
    assert (wt / "docs/guide.md").read_text() == "M001/S02/T01\n"
    assert not (wt / "and 3 other files").exists()

    mdir = wt / ".gsd/milestones/M001"
    summary = milestone_summary(wt).read_text()
    assert "\nstatus: complete\n" in summary and "# M001: Core API" in summary
    roadmap = (mdir / "M001-ROADMAP.md").read_text()
    assert "- [x] **S01: Storage**" in roadmap and "- [x] **S02: Docs**" in roadmap
    assert "- [ ] **S99:" in roadmap  # outside ## Slices: not a slice, untouched
    assert "- [x] **T02: Wire it**" in (mdir / "slices/S01/S01-PLAN.md").read_text()
    for sid in ("S01", "S02"):
        assert (mdir / f"slices/{sid}/{sid}-SUMMARY.md").is_file()
        for tid in ("T01", "T02"):
            assert (mdir / f"slices/{sid}/tasks/{tid}-SUMMARY.md").is_file()

    # history: one commit per unit on milestone/M001 only, by the fake identity, own paths only
    assert project.sha("main") == main_before
    subjects = project.log("%s")
    assert [s.split(":")[0] for s in subjects] == [
        "M001/S01/T01", "M001/S01/T02", "M001/S01", "M001/S02/T01", "M001/S02/T02", "M001/S02",
        "M001"]
    assert set(project.log("%an <%ae>")) == {"GSD Fake Worker <gsd-fake@example.invalid>"}
    names = git(project.root)("log", "--name-only", "--format=", "main..milestone/M001")
    touched = set(str(names).split())
    code = {"src/app.py", "lib/core/util.txt", "docs/guide.md"}
    assert code <= touched
    assert all(p in code or p.startswith(".gsd/milestones/M001/") for p in touched)
    assert str(git(wt)("status", "--porcelain")) == ""


def test_default_cost_sums_exactly_in_decimal(project: Project) -> None:
    result = run(project)
    assert result.rc == 0, result.stderr
    assert result.costs == [0.01] * FULL_UNITS
    assert sum(Decimal(str(c)) for c in result.costs) == Decimal("0.01") * FULL_UNITS


def test_already_complete_milestone_exits_at_once(project: Project) -> None:
    assert run(project).rc == 0
    head = project.sha("milestone/M001")
    again = run(project)
    assert again.rc == 0
    assert again.notifies == ["Milestone M001 is already complete — nothing to do"]
    assert again.costs == []
    assert project.sha("milestone/M001") == head


def test_pause_signal_exits_10_and_rerun_completes(project: Project) -> None:
    sig = project.signal("M001", "pause")
    first = run(project, GSD_FAKE_UNIT_COST="0.25")
    assert first.rc == 10, first.stderr
    assert first.notifies[-1].startswith("Auto-mode paused")
    assert not sig.exists()  # read and deleted
    assert len(project.log("%s")) == 1 and len(first.costs) == 1
    assert not milestone_summary(project.worktree("M001")).exists()

    second = run(project, GSD_FAKE_UNIT_COST="0.25")
    assert second.rc == 0, second.stderr
    assert "Starting execute-task M001/S01/T01" not in second.notifies  # resumed from disk
    assert sum(first.costs) + sum(second.costs) == FULL_UNITS * 0.25
    assert len(project.log("%s")) == FULL_UNITS
    assert milestone_summary(project.worktree("M001")).is_file()


def test_resume_signal_is_consumed_and_work_goes_on(project: Project) -> None:
    sig = project.signal("M001", "resume")
    result = run(project)
    assert result.rc == 0 and not sig.exists()
    assert milestone_summary(project.worktree("M001")).is_file()


def test_stop_signal_exits_0_without_summary(project: Project) -> None:
    project.signal("M001", "stop")
    result = run(project)
    assert result.rc == 0, result.stderr
    assert result.notifies[-1].startswith("Auto-mode stopped")
    assert "complete" not in result.notifies[-1]
    assert not milestone_summary(project.worktree("M001")).exists()
    assert len(project.log("%s")) == 1


def test_signal_file_falls_back_to_cwd_without_project_root(project: Project) -> None:
    wt = project.worktree("M001")
    write(wt / ".gsd/parallel/M001.signal.json", json.dumps({"signal": "pause"}))
    env = worker_env(project, "M001")
    del env["GSD_PROJECT_ROOT"]
    proc = subprocess.run([sys.executable, "-m", MODULE], cwd=wt, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 10, proc.stderr


def test_sigterm_exits_11_without_committing_the_unit(project: Project) -> None:
    proc = start(project, GSD_FAKE_UNIT_SECONDS="60")
    read_until(proc, is_notify("Starting execute-task M001/S01/T01"))
    rc, rest = terminate(proc)
    assert rc == 11
    assert "message_end" not in rest
    assert project.log("%s") == []
    assert not (project.worktree("M001") / "lib/core/util.txt").exists()


@pytest.mark.parametrize("times", [1, 2])
def test_fail_at_fails_that_many_runs_then_completes(project: Project, times: int) -> None:
    knobs: dict[str, Any] = {"GSD_FAKE_FAIL_AT": "M001/S01/T02", "GSD_FAKE_FAIL_TIMES": str(times),
             "GSD_FAKE_UNIT_COST": "0.5"}
    costs: list[float] = []
    for _ in range(times):
        failed = run(project, **knobs)
        assert failed.rc == 1
        assert failed.notifies[-1] == "Unit execute-task M001/S01/T02 failed (GSD_FAKE_FAIL_AT)"
        assert "GSD_FAKE_FAIL_AT" in failed.stderr
        costs += failed.costs
    assert [s.split(":")[0] for s in project.log("%s")] == ["M001/S01/T01"]
    done = run(project, **knobs)
    assert done.rc == 0, done.stderr
    assert sum(costs + done.costs) == FULL_UNITS * 0.5
    assert milestone_summary(project.worktree("M001")).is_file()
    # the counter lives in the worktree's git dir, not in the tree
    assert str(git(project.worktree("M001"))("status", "--porcelain")) == ""


def test_typed_fail_at_picks_complete_slice_not_plan(project: Project) -> None:
    failed = run(project, GSD_FAKE_FAIL_AT="complete-slice:M001/S01")
    assert failed.rc == 1
    assert [s.split(":")[0] for s in project.log("%s")] == ["M001/S01/T01", "M001/S01/T02"]


def test_hang_at_prints_nothing_and_is_killable(project: Project) -> None:
    proc = start(project, GSD_FAKE_HANG_AT="M001/S01/T02")
    read_until(proc, is_notify("Finished execute-task M001/S01/T01"))
    deadline = time.monotonic() + 0.5  # give a broken HANG_AT time to run ahead
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the worker should still be hanging"
    rc, rest = terminate(proc)
    assert rc == 11
    assert rest == ""  # not even the Starting notify of the hanging unit
    assert len(project.log("%s")) == 1


def test_spin_at_burns_cost_without_progress(project: Project) -> None:
    proc = start(project, GSD_FAKE_SPIN_AT="M001/S01/T02", GSD_FAKE_UNIT_SECONDS="0.01")
    read_until(proc, is_notify("Starting execute-task M001/S01/T02"))
    head = project.sha("milestone/M001")
    spins = 0
    while spins < 5:
        event = read_until(proc, lambda e: True)[-1]
        assert event["type"] == "message_end", event
        assert event["message"]["usage"]["cost"]["total"] == 0.01
        spins += 1
    rc, _ = terminate(proc)
    assert rc == 11
    assert project.sha("milestone/M001") == head
    wt = project.worktree("M001")
    assert not (wt / ".gsd/milestones/M001/slices/S01/tasks/T02-SUMMARY.md").exists()
    assert (wt / "src/app.py").read_text() == "print('hello')\nM001/S01/T01\n"


def test_plans_a_milestone_that_has_only_a_context(project: Project) -> None:
    mdir = project.root / ".gsd/milestones/M003-find-things"
    write(mdir / "M003-CONTEXT.md", "---\ndepends_on: []\n---\n\n# M003: Search box\n")
    git(project.root)("add", "-A")
    git(project.root)("commit", "-q", "-m", "add M003")
    result = run(project, "M003", GSD_FAKE_UNIT_COST="0.125")
    assert result.rc == 0, result.stderr
    starts = [m.removeprefix("Starting ") for m in result.notifies if m.startswith("Starting ")]
    assert starts == ["plan-milestone M003", "plan-slice M003/S01", "execute-task M003/S01/T01",
                      "execute-task M003/S01/T02", "complete-slice M003/S01",
                      "complete-milestone M003"]
    assert sum(result.costs) == 6 * 0.125

    wt = project.worktree("M003")
    wmdir = wt / ".gsd/milestones/M003-find-things"
    roadmap = (wmdir / "M003-ROADMAP.md").read_text()
    assert roadmap.startswith("# M003: Search box\n")
    assert "- [x] **S01: Search box**" in roadmap
    plan = (wmdir / "slices/S01/S01-PLAN.md").read_text()
    assert "- [x] **T01:" in plan and "- [x] **T02:" in plan
    assert "  - Files: `src/m003/s01_t01.txt`" in plan
    assert (wt / "src/m003/s01_t01.txt").read_text() == "M003/S01/T01\n"
    assert (wt / "src/m003/s01_t02.txt").read_text() == "M003/S01/T02\n"
    assert 'title: "Search box"' in (wmdir / "M003-SUMMARY.md").read_text()
    assert len(project.log("%s", "main..milestone/M003")) == 6


def test_done_tasks_on_disk_are_skipped(project: Project) -> None:
    mdir = project.root / ".gsd/milestones/M001"
    plan = mdir / "slices/S01/S01-PLAN.md"
    plan.write_text(plan.read_text().replace("- [ ] **T01: Store**", "- [x] **T01: Store**"))
    write(mdir / "slices/S02/tasks/T01-SUMMARY.md", "---\nid: T01\n---\n")
    git(project.root)("commit", "-q", "-am", "T01 done by hand")
    git(project.root)("add", "-A")
    git(project.root)("commit", "-q", "-m", "S02/T01 summary")
    result = run(project)
    assert result.rc == 0, result.stderr
    assert len(result.costs) == FULL_UNITS - 2
    assert not (project.worktree("M001") / "lib/core/util.txt").exists()


@pytest.mark.parametrize(("lock", "message"), [
    (None, "GSD_MILESTONE_LOCK is not set"),
    ("m1; rm -rf /", "is not a milestone ID"),
    ("M009", "milestone M009 not found"),
])
def test_bad_lock_is_one_line_and_exit_1(project: Project, lock: str | None,
                                         message: str) -> None:
    result = run(project, lock, cwd=project.worktree("M001"))
    assert result.rc == 1
    assert result.events == []
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_task_cut_short_after_its_edits_is_not_doubled(project: Project) -> None:
    wt = project.worktree("M001")
    app = wt / "src/app.py"
    app.write_text("print('hello')\nM001/S01/T01\n")  # edited, killed before the commit
    assert run(project).rc == 0
    assert app.read_text().count("M001/S01/T01") == 1
    assert str(git(wt)("status", "--porcelain")) == ""


def test_signal_after_the_last_unit_does_not_stop_completion(project: Project) -> None:
    assert run(project, GSD_FAKE_FAIL_AT="complete-milestone:M001").rc == 1
    sig = project.signal("M001", "pause")
    last = run(project)
    assert last.rc == 0, last.stderr
    assert last.notifies[-1] == "Auto-mode stopped — milestone M001 complete"
    assert milestone_summary(project.worktree("M001")).is_file() and not sig.exists()
