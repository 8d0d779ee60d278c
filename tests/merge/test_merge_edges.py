"""Merge edge cases: an untracked .gsd, the merge lock, message contents, auto-resolution rules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gsd_parallel_plugin import hookimpl
from gsd_parallel_plugin.merge.attempt import MergeEnv, merge_milestone
from gsd_parallel_plugin.merge.steps import MergeLock, auto_resolvable, commit_message
from gsd_parallel_plugin.models import Milestone, Slice, Task
from gsd_parallel_plugin.plugins import Hooks, create_plugin_manager
from gsd_parallel_plugin.preferences import load_preferences
from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project, git
from gsd_parallel_plugin.testing.scenarios import PREFS, complete, journal


def env_for(project, **kw) -> MergeEnv:
    prefs = load_preferences(project.gsd).parallel
    store = Store(project.gsd / "parallel" / "coordinator.db")
    hooks = Hooks(create_plugin_manager(project.root).pm)
    return MergeEnv(project.root, read_project(project.root), store, hooks, prefs, **kw)


def test_untracked_gsd_planning_comes_home_by_copy(tmp_path, cli):
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}}},
        preferences=PREFS,
        git_init=False,
    )
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "README.md")
    git(project.root, "commit", "-q", "-m", "code only; .gsd stays untracked")
    wt = complete(project, "M002")
    roadmap = project.gsd / "milestones/M002/M002-ROADMAP.md"
    roadmap.write_text(roadmap.read_text() + "\n<!-- edited by the user meanwhile -->\n")
    later = (wt / ".gsd/milestones/M002/M002-ROADMAP.md").stat().st_mtime + 60
    os.utime(roadmap, (later, later))
    result = cli("--project", project.root, "merge", "--json")
    assert result.code == 0, result.out + result.err
    assert git(project.root, "ls-tree", "-r", "--name-only", "main") == "README.md\nsrc/auth.py"
    summary = project.gsd / "milestones/M002/M002-SUMMARY.md"
    assert "status: complete" in summary.read_text()
    assert (project.gsd / "milestones/M002/slices/S01/tasks/T01-SUMMARY.md").exists()
    assert "edited by the user meanwhile" in roadmap.read_text()  # newer: never overwritten
    assert not wt.exists()
    assert read_project(project.root).get("M002").complete


def test_one_merge_at_a_time(tmp_path):
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}}},
        preferences=PREFS,
    )
    complete(project, "M002")
    env = env_for(project, lock_timeout=0.2)
    lock = MergeLock(env.parallel_dir)
    assert lock.acquire()
    try:
        result = merge_milestone(env, "M002")
        assert result.outcome == "failed"
        assert f"another merge is running (pid {os.getpid()})" in (result.error or "")
        assert project.git("branch", "--list", "gsd-parallel/M002") != ""
    finally:
        lock.release()
    assert merge_milestone(env, "M002").outcome == "merged"
    env.store.close()


def test_bad_merge_check_command_is_one_line(tmp_path, cli):
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}}},
        preferences={**PREFS, "merge_check": ["no-such-check-program-xyz"]},
    )
    complete(project, "M002")
    result = cli("--project", project.root, "merge")
    assert result.code == 1
    assert "- **M002** — failed: merge_check command not found: no-such-check-program-xyz" in (result.out)
    assert journal(project)[-1].outcome == "failed"


def test_main_moved_meanwhile_is_refused_by_update_ref(tmp_path):
    """The expected-old-value guard: a ref that moved between build and landing is not lost."""
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}}},
        preferences=PREFS,
    )
    complete(project, "M002")
    env = env_for(project)

    class MoveMain:
        @hookimpl
        def before_merge(self, milestone_id, worktree, changed_files, commit):
            git(project.root, "commit", "-q", "--allow-empty", "-m", "someone else")
            return None

    env.hooks.pm.register(MoveMain())
    result = merge_milestone(env, "M002")
    assert result.outcome == "failed" and "main moved while the merge was being built" in (result.error or "")
    assert project.git("log", "-1", "--format=%s", "main") == "someone else"
    assert project.git("status", "--porcelain") == ""
    env.store.close()


@pytest.mark.parametrize(("path", "auto"), [
    (".gsd/STATE.md", True), (".gsd/milestones/M001/M001-ROADMAP.md", True),
    ("src/__pycache__/a.cpython-311.pyc", True), ("a/.DS_Store", True), ("x.pyc", True),
    ("src/app.py", False), ("docs/gsd.md", False), ("src/.gsdrc", False), ("gsd/x", False),
])  # fmt: skip
def test_auto_resolvable(path, auto):
    assert auto_resolvable(path) is auto


def test_commit_message_lists_done_work_and_trailers():
    m = Milestone(
        "M002", "Auth System", path=Path("."), status="complete",
        slices=(
            Slice("S01", "Login", True, tasks=(Task("T01", "Store", True), Task("T02", "X", False))),
            Slice("S02", "Later", False),
        ),
    )  # fmt: skip
    assert commit_message("M002", m, None) == (
        "feat: Auth System\n\nCompleted slices:\n- S01: Login\n  - T01: Store\n\n"
        "GSD-Milestone: M002\nBranch: gsd-parallel/M002\n"
    )
    assert commit_message("M002", m, ["S01"]).splitlines()[0] == "feat: Auth System (S01)"
    assert "GSD-Slice: S01" in commit_message("M002", m, ["S01"])
    assert commit_message("M009", None, None).startswith("feat: M009\n\nGSD-Milestone: M009\n")


def test_merge_inside_a_worker_is_refused(tmp_path, cli):
    project = build_project(tmp_path / "proj", {"M002": {"title": "A"}}, preferences=PREFS)
    result = cli("--project", project.root, "merge", env={"GSD_PARALLEL_WORKER": "1"})
    assert result.code == 2 and "within a parallel worker" in result.err


def test_root_in_the_middle_of_its_own_merge_is_named_and_left_alone(tmp_path, cli):
    from gsd_parallel_plugin.testing.builder import build_project
    from gsd_parallel_plugin.testing.scenarios import complete, snapshot

    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}}},
        preferences={"enabled": True},
        files={"README.md": "base\n", "notes.txt": "base\n"},
    )
    complete(project, "M002")
    # The user is half-way through a merge of their own in the main checkout.
    project.git("checkout", "-q", "-b", "side")
    (project.root / "notes.txt").write_text("side\n")
    project.git("commit", "-qam", "side")
    project.git("checkout", "-q", "main")
    (project.root / "notes.txt").write_text("main\n")
    project.git("commit", "-qam", "main")
    subprocess.run(["git", "merge", "side"], cwd=project.root, capture_output=True, check=False)
    assert (project.root / ".git" / "MERGE_HEAD").exists()
    before = snapshot(project.root)
    result = cli("--project", project.root, "merge", "M002", "--json")
    assert result.code == 1
    [row] = result.json()["results"]
    assert row["outcome"] == "failed"
    assert "in the middle of a merge" in row["error"] and "notes.txt" in row["error"]
    assert "git merge --abort" in row["error"]
    assert snapshot(project.root) == before  # their merge is exactly as they left it
