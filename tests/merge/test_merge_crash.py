"""The supervisor killed (kill -9) in the middle of a merge, with and without workers running.

A plugin holds the merge at one step (``before_merge``: before it lands; ``on_merge_complete``:
landed and recorded, its clean-up not done yet) until the test has killed the supervisor.
Then only the user's next command (``status``, ``start``) is there to carry on: the run must
finish by itself, every milestone merged exactly once, the old journal row closed, no
temporary merge worktree registered, no branch or worktree left over, ``doctor`` clean.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS, main_log, write_plugin
from gsd_parallel_plugin.testing.session import wait_until

HOLD = """
import os, time
from pathlib import Path
from gsd_parallel_plugin import hookimpl

def _hold(step, mid):
    if os.environ.get("HOLD_STEP") != step or mid != os.environ.get("HOLD_MID"):
        return
    mark = Path(os.environ["HOLD_MARK"])
    if mark.exists():
        return  # the merge after the crash goes through
    mark.write_text(str(os.getpid()))
    time.sleep(120)  # killed here

@hookimpl
def before_merge(milestone_id, worktree, changed_files, commit):
    _hold("before_merge", milestone_id)
    return None

@hookimpl
def on_merge_complete(milestone_id, commit, branch):
    _hold("on_merge_complete", milestone_id)
"""


def _project(tmp_path: Path, with_worker: bool):
    milestones = {
        "M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/a.py"]}}},
        "M002": {"title": "Beta", "depends_on": ["M001"], "slices": {"S01": {"T01": ["src/b.py"]}}},
    }
    if with_worker:  # still running while M001 merges
        milestones["M003"] = {"title": "Gamma", "slices": {
            "S01": {f"T0{i}": [f"src/c{i}.py"] for i in range(1, 7)}}}  # fmt: skip
    prefs = {**PREFS, "max_workers": 3, "auto_merge": "auto"}
    return build_project(tmp_path / "proj", milestones, preferences=prefs)


def _db(project) -> Path:
    return project.gsd / "parallel" / "coordinator.db"


def _finished(project) -> bool:
    with Store(_db(project), readonly=True) as s:
        run = s.latest_run()
        return run is not None and run.state == "finished"


@pytest.mark.parametrize("command", ["status", "start"])
@pytest.mark.parametrize("step", ["before_merge", "on_merge_complete"])
@pytest.mark.parametrize("with_worker", [False, True], ids=["idle", "worker-running"])
def test_supervisor_killed_during_a_merge_the_run_still_finishes_cleanly(
    tmp_path, cli, fake_worker, step, with_worker, command
):
    fake_worker(unit_seconds=0.3 if with_worker else 0.02, unit_cost=0.125)
    env = write_plugin(tmp_path, "hold_merge", HOLD)
    mark = tmp_path / "held"
    env.update(HOLD_STEP=step, HOLD_MID="M001", HOLD_MARK=str(mark))
    project = _project(tmp_path, with_worker)
    started = cli("--project", project.root, "start", env=env)
    assert started.code == 0, started.err
    pid = int(wait_until(lambda: mark.exists() and mark.read_text(), timeout=60))
    if with_worker:
        with Store(_db(project), readonly=True) as s:
            run = s.active_run()
            assert run is not None
            assert s.worker("M003", run.id).state == "running"  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)  # the supervisor, inside the merge
    wait_until(lambda: not (project.gsd / "parallel" / "supervisor.lock").read_text().strip()
               or not _alive(pid), timeout=10)  # fmt: skip

    again = cli("--project", project.root, command, env=env)
    assert again.code == 0, again.out + again.err
    wait_until(lambda: _finished(project), timeout=120)

    titles = main_log(project)
    expected = {"feat: Alpha", "feat: Beta"} | ({"feat: Gamma"} if with_worker else set())
    assert sorted(t for t in titles if t.startswith("feat:")) == sorted(expected)  # once each
    with Store(_db(project), readonly=True) as s:
        assert s.unfinished_merges() == []
        assert set(s.merged_milestones()) == {"M001", "M002", *(["M003"] if with_worker else [])}
        first = s.merges("M001")[0]
        assert first.outcome == ("aborted" if step == "before_merge" else "merged")
    worktrees = project.git("worktree", "list", "--porcelain")
    assert "merging" not in worktrees and worktrees.count("worktree ") == 1
    assert project.git("branch", "--list", "gsd-parallel/*") == ""
    assert not list((project.gsd / "parallel" / "merging").glob("*"))
    doctor = cli("--project", project.root, "doctor", env=env)
    assert doctor.code == 0, doctor.out
    assert project.git("status", "--porcelain") == ""


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_status_does_not_respawn_for_a_run_that_waits_for_the_user(tmp_path, cli, fake_worker):
    """auto_merge confirm with nobody to confirm: nothing for a supervisor to do, none starts."""
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/a.py"]}}},
         "M002": {"title": "Beta", "depends_on": ["M001"],
                  "slices": {"S01": {"T01": ["src/b.py"]}}}},
        preferences={**PREFS, "auto_merge": "manual"},
    )  # fmt: skip
    assert cli("--project", project.root, "start", "--wait").code == 0
    status = cli("--project", project.root, "--json", "status")
    assert status.code == 0
    assert json.loads(status.out)["supervisor"] is None
    # A spawned supervisor would hold the lock by now (status waits for it to).
    assert not (project.gsd / "parallel" / "supervisor.lock").read_text().strip()
