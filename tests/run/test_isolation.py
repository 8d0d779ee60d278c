"""The isolation guard against real repositories, real checkouts and real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gsd_parallel_plugin.models import WorkerHandle
from gsd_parallel_plugin.processes import process_create_time
from gsd_parallel_plugin.run.isolation import IsolationGuard, WatchedWorker, checkout_head
from gsd_parallel_plugin.testing.builder import commit_file, git
from gsd_parallel_plugin.workspace import worktrees as wtm

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def sleeper(repo: Path):
    """A real process standing in for a worker, with its cwd in the M001 checkout."""
    checkout = wtm.ensure_worktree(repo, "M001", "main").path
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=checkout)
    created = None
    while created is None:
        created = process_create_time(proc.pid)
    yield WatchedWorker("M001", checkout, WorkerHandle(proc.pid, created))
    proc.kill()
    proc.wait()


def test_a_well_behaved_worker_and_the_users_own_commits_are_no_breach(
    repo: Path, sleeper: WatchedWorker
) -> None:
    guard = IsolationGuard(repo)
    assert guard.check([sleeper]) == []
    commit_file(sleeper.checkout, "src/m001.txt")  # the worker's own branch moves: fine
    commit_file(repo, "user.txt")  # the user commits on main: fine
    git(repo, "branch", "feature")  # the user branches from main: fine
    (repo / "wip.txt").write_text("wip\n")
    git(repo, "add", "wip.txt")
    git(repo, "stash")  # the user stashes in the main checkout: fine
    assert guard.check([sleeper]) == []


def test_a_worker_checking_out_another_branch_is_a_breach(repo: Path, sleeper: WatchedWorker) -> None:
    guard = IsolationGuard(repo)
    guard.check([sleeper])
    git(sleeper.checkout, "checkout", "-q", "-b", "elsewhere")
    assert checkout_head(sleeper.checkout) == "ref: refs/heads/elsewhere"
    [breach] = guard.check([sleeper])
    assert breach.mid == "M001" and "switched its checkout" in breach.what
    assert "elsewhere" in breach.what


def test_a_worker_moving_main_to_its_work_is_a_breach(repo: Path, sleeper: WatchedWorker) -> None:
    guard = IsolationGuard(repo)
    guard.check([sleeper])
    tip = commit_file(sleeper.checkout, "src/m001.txt")
    assert guard.check([sleeper]) == []
    git(sleeper.checkout, "update-ref", "refs/heads/main", tip)  # what `git push . HEAD:main` does
    [breach] = guard.check([sleeper])
    assert breach.what.startswith("moved main (")


def test_a_stash_made_on_the_worker_branch_is_a_breach(repo: Path, sleeper: WatchedWorker) -> None:
    guard = IsolationGuard(repo)
    guard.check([sleeper])
    (sleeper.checkout / "README.md").write_text("changed by the worker\n")
    git(sleeper.checkout, "stash")  # refs/stash is shared by every worktree
    [breach] = guard.check([sleeper])
    assert "refs/stash" in breach.what


def test_a_worker_leaving_its_checkout_is_a_breach(repo: Path, tmp_path: Path) -> None:
    checkout = wtm.ensure_worktree(repo, "M001", "main").path
    script = "import os, time; time.sleep(0.3); os.chdir(os.environ['ROOT']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=checkout, env={"ROOT": str(repo)})
    try:
        created = process_create_time(proc.pid)
        assert created is not None
        worker = WatchedWorker("M001", checkout, WorkerHandle(proc.pid, created))
        guard = IsolationGuard(repo)
        assert guard.check([worker]) == []
        deadline = time.monotonic() + 10
        breaches = []
        while not breaches and time.monotonic() < deadline:
            time.sleep(0.05)
            breaches = guard.check([worker])
        [breach] = breaches
        assert "left its checkout" in breach.what and str(repo) in breach.what
    finally:
        proc.kill()
        proc.wait()


def test_a_squash_merge_of_the_branch_is_no_breach(repo: Path, sleeper: WatchedWorker) -> None:
    """What our own merges do to main never reads as the worker's doing."""
    guard = IsolationGuard(repo)
    commit_file(sleeper.checkout, "src/m001.txt")
    guard.check([sleeper])
    git(repo, "merge", "--squash", "-q", "gsd-parallel/M001")
    git(repo, "commit", "-q", "-m", "feat: M001")
    assert guard.check([sleeper]) == []
