"""The real-GSD harness: finding the binary, its environment, its projects, and one real run.

Only the real run is marked ``real_gsd`` (it skips without the binary); the rest is fast and
runs everywhere. The real run's checkout is laid out as FINDINGS.md's isolating recipe says (try-worker.sh ``outside``): a
linked worktree at ``<root>.worktrees/M001`` on ``milestone/M001``, GSD's runtime files in
``.git/info/exclude``, ``git: {isolation: none, manage_gitignore: false}`` in ``$GSD_HOME``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import ProjectError
from gsd_parallel_plugin.money import cost_to_nanos
from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.testing.builder import git
from gsd_parallel_plugin.testing.real_gsd import (
    ENV_REAL_GSD,
    REAL_GSD_CLEARED_VARIABLES,
    WORKER_EXCLUDES,
    RealGsdError,
    find_real_gsd,
    make_gsd_project,
    real_gsd_env,
    real_gsd_environ,
)
from gsd_parallel_plugin.testing.scripted_model import ScriptedModel
from gsd_parallel_plugin.workspace.git import add_exclude

WORKER_PREFERENCES = "---\nversion: 1\ngit:\n  isolation: none\n  manage_gitignore: false\n---\n"


def executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_find_real_gsd_prefers_the_variable_and_never_guesses(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "gsd-parallel" / "real-gsd"
    old = executable(cache / "aaa" / "bin" / "gsd")
    new = executable(cache / "bbb" / "bin" / "gsd")
    executable(cache / "ccc" / "bin" / "gsd", mode=0o644)  # newest, but not executable
    os.utime(old, (1, 1))
    explicit = executable(tmp_path / "elsewhere" / "gsd")

    assert find_real_gsd({"XDG_CACHE_HOME": str(tmp_path / "cache")}) == new
    assert find_real_gsd({"XDG_CACHE_HOME": str(tmp_path / "empty")}) is None
    assert find_real_gsd({ENV_REAL_GSD: str(explicit), "XDG_CACHE_HOME": str(tmp_path / "cache")}) == explicit
    with pytest.raises(RealGsdError, match="no such file"):
        find_real_gsd({ENV_REAL_GSD: str(tmp_path / "missing")})
    with pytest.raises(RealGsdError, match="not executable"):
        find_real_gsd({ENV_REAL_GSD: str(cache / "ccc" / "bin" / "gsd")})


def test_real_gsd_env_isolates_gsd_from_the_developer(tmp_path: Path) -> None:
    env = real_gsd_env(tmp_path / "gh")
    assert env["GSD_HOME"] == str(tmp_path / "gh")
    assert env["GSD_CODING_AGENT_DIR"] == str(tmp_path / "gh" / "agent")
    assert env["HOME"] == str(tmp_path / "gh" / "user-home")
    assert env["GSD_RTK_DISABLED"] == env["PI_OFFLINE"] == "1"
    assert real_gsd_env(tmp_path / "gh", home=tmp_path / "h")["HOME"] == str(tmp_path / "h")
    inherited = {"PATH": "/bin", "GSD_MILESTONE_LOCK": "M009", "OPENAI_API_KEY": "sk-real", "HOME": "/root"}
    full = real_gsd_environ(tmp_path / "gh", base=inherited)
    assert full["PATH"] == "/bin" and full["HOME"] == str(tmp_path / "gh" / "user-home")
    assert not set(full) & (set(REAL_GSD_CLEARED_VARIABLES) - set(env))


def test_make_gsd_project_is_one_commit_our_reader_understands(tmp_path: Path) -> None:
    root = make_gsd_project(
        tmp_path / "p", ["M001", "M002"], depends={"M002": ["M001"]}, files={"M002": ["src/a.py", "lib/b.py"]}
    )
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(root, "rev-list", "--count", "HEAD") == "1"
    assert git(root, "log", "--format=%an <%ae>") == "gsd-test <gsd@test.invalid>"
    assert git(root, "status", "--porcelain") == ""
    assert ".gsd/milestones/M002/slices/S01/tasks/T01-PLAN.md" in git(root, "ls-files")
    assert git(root, "check-ignore", ".gsd/gsd.db", ".gsd/STATE.md").splitlines() == [
        ".gsd/gsd.db",
        ".gsd/STATE.md",
    ]
    milestones = {m.id: m for m in read_project(root).milestones}
    assert milestones["M002"].depends_on == ("M001",) and milestones["M001"].depends_on == ()
    assert milestones["M001"].files == {"src/m001.txt"}
    assert milestones["M002"].files == {"src/a.py", "lib/b.py"}
    plan = (root / ".gsd/milestones/M002/slices/S01/tasks/T01-PLAN.md").read_text()
    assert "## Expected Output\n\n- `src/a.py`\n- `lib/b.py`\n" in plan  # what the scripted model writes

    untracked = make_gsd_project(tmp_path / "u", ["M001"], track_gsd=False)
    assert git(untracked, "ls-files").splitlines() == [".gitignore", "README.md"]
    assert (untracked / ".gsd" / "milestones" / "M001" / "M001-ROADMAP.md").is_file()
    with pytest.raises(ProjectError):
        make_gsd_project(tmp_path / "bad", ["../M001"])


@pytest.mark.real_gsd
def test_one_real_worker_completes_its_milestone_and_bills_what_the_model_served(
    real_gsd: Path, scripted_model: ScriptedModel, gsd_home: Path, tmp_path: Path
) -> None:
    root = make_gsd_project(tmp_path / "proj", ["M001", "M002"], depends={"M002": ["M001"]})
    checkout = tmp_path / "proj.worktrees" / "M001"
    git(root, "worktree", "add", "-q", str(checkout), "-b", "milestone/M001")
    add_exclude(root, WORKER_EXCLUDES)
    (gsd_home / "PREFERENCES.md").write_text(WORKER_PREFERENCES)
    main_before = git(root, "rev-parse", "main")

    recover = subprocess.run(
        [str(real_gsd), "headless", "recover"], cwd=checkout, capture_output=True, text=True, timeout=60
    )
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert scripted_model.requests == 0  # importing the plan asks no model

    worker_env = {**os.environ, "GSD_MILESTONE_LOCK": "M001", "GSD_PARALLEL_WORKER": "1"}
    run = subprocess.run(
        [str(real_gsd), "headless", "--json", "auto"],
        cwd=checkout,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    events = []
    for line in run.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    billed = [
        cost_to_nanos(((e["message"].get("usage") or {}).get("cost") or {}).get("total"))
        for e in events
        if e.get("type") == "message_end" and e["message"].get("role") == "assistant"
    ]
    assert None not in billed
    assert sum(b for b in billed if b is not None) == scripted_model.billed_nanos() > 0
    assert len(billed) == scripted_model.requests

    assert scripted_model.units() == [
        "execute-task M001/S01/T01",
        "complete-slice M001/S01",
        "validate-milestone M001",
        "complete-milestone M001",
    ]
    assert all(not entry["missing_tools"] for entry in scripted_model.request_log)

    with sqlite3.connect(checkout / ".gsd" / "gsd.db") as db:
        status = dict(db.execute("SELECT id, status FROM milestones").fetchall())
    assert status["M001"] == "complete" and status["M002"] != "complete"  # the lock held it to M001
    assert (checkout / "src" / "m001.txt").read_text() == "M001/S01/T01: Write greeting\n"
    assert "src/m001.txt" in git(checkout, "show", "--name-only", "--format=", "milestone/M001")
    assert git(root, "rev-parse", "main") == main_before  # the worker committed on its branch only
    assert not (root / ".gsd" / "gsd.db").exists()
    user_home = Path(os.environ["HOME"])
    assert user_home == tmp_path / "user-home"
    assert (user_home / ".agents" / "skills").is_dir()  # GSD installs skills into ~: not the real one
    assert not (user_home / ".gsd").exists()  # its own state went to the isolated GSD_HOME
    assert (gsd_home / "agent" / "sessions").is_dir()
