"""doctor finds what crashes leave behind and --fix cleans only what is provably dead."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import psutil

from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import ONE

PREFS = {"enabled": True, "max_workers": 2}


def one(tmp_path, **extra):
    return build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}}},
            "M002": {"title": "Two", "slices": {"S01": {"T01": ["c.txt"]}}},
        },
        preferences={**PREFS, **extra},
    )


def test_clean_project_has_no_problems(tmp_path, cli):
    project = one(tmp_path)
    result = cli("--project", project.root, "doctor")
    assert result.code == 0
    assert "No problems found." in result.out


def test_dead_supervisor_and_worker_then_fix(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02, hang_at="M001/S01/T02")
    project = one(tmp_path)
    assert cli("--project", project.root, "start").code == 0
    t01 = project.root / ".gsd-parallel/M001/.gsd/milestones/M001/slices/S01/tasks/T01-SUMMARY.md"
    wait_until(t01.exists, timeout=30)  # GSD commits nothing before the end: the disk shows it
    status = cli("--project", project.root, "status", "--json").json()
    lock = json.loads((project.gsd / "parallel" / "supervisor.lock").read_text())
    os.kill(lock["pid"], signal.SIGKILL)
    worker = next(w for w in status["workers"] if w["id"] == "M001")
    os.kill(worker["pid"], signal.SIGKILL)
    wait_until(
        lambda: (
            not psutil.pid_exists(lock["pid"]) or psutil.Process(lock["pid"]).status() == psutil.STATUS_ZOMBIE
        )
    )
    time.sleep(0.2)
    found = cli("--project", project.root, "doctor", "--json")
    assert found.code == 1
    kinds = {(p["kind"], p["id"]) for p in found.json()["problems"]}
    assert ("dead-worker", "M001") in kinds
    # the worktree holds unmerged work: it is not an orphan and never offered for removal
    assert not any(k == "orphan" and mid == "M001" for k, mid in kinds)
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert "[fixed]" in fixed.out
    assert (project.root / ".gsd-parallel" / "M001").is_dir()
    status = cli("--project", project.root, "status", "--json").json()
    assert next(w for w in status["workers"] if w["id"] == "M001")["state"] in {"crashed", "running"}
    cli("--project", project.root, "stop")


def test_stale_lock_status_and_signal_files(tmp_path, cli):
    project = one(tmp_path)
    parallel = project.gsd / "parallel"
    parallel.mkdir(parents=True)
    (parallel / "supervisor.lock").write_text(json.dumps({"pid": 999999, "create_time": 1.0}))
    (parallel / "workers").mkdir()
    (parallel / "workers" / "M001.status.json").write_text(
        json.dumps({"milestoneId": "M001", "state": "running", "pid": 999999})
    )
    (parallel / "M002.signal.json").write_text(json.dumps({"signal": "pause"}))
    found = cli("--project", project.root, "doctor")
    assert found.code == 1
    assert "stale supervisor lock" in found.out
    assert "stale status file M001.status.json" in found.out
    assert "signal file M002.signal.json" in found.out
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert fixed.code == 0, fixed.out
    assert (parallel / "supervisor.lock").read_text() == ""
    assert not (parallel / "workers" / "M001.status.json").exists()
    assert not (parallel / "M002.signal.json").exists()
    assert "No problems found." in cli("--project", project.root, "doctor").out


def test_orphan_worktrees_clean_removed_dirty_kept(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.0)
    project = one(tmp_path)
    # Worktrees for two milestones that then vanish from the plan (no commits of their own).
    project.git(
        "worktree", "add", "-q", "-b", "gsd-parallel/M008", str(project.root / ".gsd-parallel" / "M008")
    )
    project.git(
        "worktree", "add", "-q", "-b", "gsd-parallel/M009", str(project.root / ".gsd-parallel" / "M009")
    )
    (project.root / ".gsd-parallel" / "M009" / "precious.txt").write_text("uncommitted work\n")
    # A branch with real unmerged commits and no worktree, for a milestone that no longer exists.
    project.git("branch", "gsd-parallel/M007")
    wt = tmp_path / "tmpwt"
    project.git("worktree", "add", "-q", str(wt), "gsd-parallel/M007")
    (wt / "x.txt").write_text("x\n")
    from gsd_parallel_plugin.testing.builder import git

    git(wt, "add", "x.txt")
    git(wt, "commit", "-q", "-m", "work")
    project.git("worktree", "remove", str(wt))
    found = cli("--project", project.root, "doctor")
    assert "orphan worktree" in found.out and "M008" in found.out and "M009" in found.out
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert not (project.root / ".gsd-parallel" / "M008").exists()
    assert project.git("branch", "--list", "gsd-parallel/M008") == ""
    # dirty: kept, with the file named
    assert (project.root / ".gsd-parallel" / "M009" / "precious.txt").read_text() == "uncommitted work\n"
    assert "precious.txt" in fixed.out
    # unmerged commits: the branch is kept
    assert project.git("branch", "--list", "gsd-parallel/M007").strip() == "gsd-parallel/M007"
    assert fixed.code == 1


def test_deleted_worktree_directory_is_pruned(tmp_path, cli):
    project = one(tmp_path)
    path = project.root / ".gsd-parallel" / "M002"
    project.git("worktree", "add", "-q", "-b", "gsd-parallel/M002", str(path))
    shutil.rmtree(path)
    found = cli("--project", project.root, "doctor")
    assert "is missing" in found.out
    cli("--project", project.root, "doctor", "--fix")
    assert str(path) not in project.git("worktree", "list")


def test_doctor_is_clean_after_ordinary_use(tmp_path, cli, fake_worker):
    """A finished run, its merge, a later milestone's run: status files of finished milestones
    are a record of how they ended, not stale; doctor exits 0 throughout."""
    fake_worker(unit_seconds=0.0)
    project = one(tmp_path)
    root = project.root
    run = cli("--project", root, "start", "--wait")
    assert run.code == 0, run.err
    checked = cli("--project", root, "doctor")
    assert checked.code == 0, checked.out
    merged = cli("--project", root, "merge")
    assert merged.code == 0, merged.out + merged.err
    checked = cli("--project", root, "doctor")
    assert checked.code == 0, checked.out
    # A new milestone planned and committed afterwards gets its own run.
    (project.gsd / "milestones" / "M003").mkdir()
    from gsd_parallel_plugin.testing.builder import write_milestone

    write_milestone(project.gsd, "M003", {"title": "Three", "slices": {"S01": {"T01": ["d.txt"]}}})
    project.commit_all("plan M003")
    again = cli("--project", root, "start", "--wait")
    assert again.code == 0, again.out + again.err
    checked = cli("--project", root, "doctor")
    assert checked.code == 0, checked.out
    assert "No problems found." in checked.out


def test_doctor_after_a_clean_run_finds_nothing(gsd_project, cli, fake_worker):
    """The status files of a finished run say what the store says: not stale, nothing to fix."""
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "auto"})
    assert cli("--project", project.root, "start", "--wait").code == 0
    doctor = cli("--project", project.root, "doctor")
    assert doctor.code == 0, doctor.out
    assert "No problems found." in doctor.out
    # A status file that disagrees with the finished run is still reported.
    status_file = project.gsd / "parallel" / "workers" / "M001.status.json"
    status_file.write_text(json.dumps({"milestoneId": "M001", "state": "running", "pid": 999999}))
    assert "stale status file M001.status.json" in cli("--project", project.root, "doctor").out
