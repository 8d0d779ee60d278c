"""The coordination store deleted under a running run (issue 13, item 11).

Before: commands said "No parallel orchestration is currently active" while the workers kept
spending, and the cost history was gone without a word. Now the supervisor notices and
writes back what its open connection still reads; with no supervisor, commands say so and
``doctor --fix`` rebuilds the store from the workers' logs (they hold every cost).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil

from gsd_parallel_plugin.gsd.output import read_new_events, summarize
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS
from gsd_parallel_plugin.testing.session import wait_until


def _project(tmp_path: Path, tasks_count: int = 5):
    tasks = {f"T{i:02d}": [f"src/a{i}.py"] for i in range(1, tasks_count + 1)}
    return build_project(tmp_path / "proj", {"M001": {"title": "Alpha", "slices": {"S01": tasks}}},
                         preferences={**PREFS, "auto_merge": "auto"})  # fmt: skip


def _delete_store(parallel: Path) -> None:
    for p in parallel.glob("coordinator.db*"):  # what `rm coordinator.db*` does
        p.unlink()


def _log_cost(parallel: Path) -> int:
    return summarize(read_new_events(parallel / "M001.stdout.log", 0).events).cost_nanos


def _recorded(db: Path) -> int:
    with Store(db, readonly=True) as s:
        return sum(w.cost_nanos for w in s.workers())


def _finished(db: Path) -> bool:
    if not db.exists():
        return False
    with Store(db, readonly=True) as s:
        run = s.latest_run()
        return run is not None and run.state == "finished"


def _running_with_cost(db: Path) -> bool:
    with Store(db, readonly=True) as s:
        w = s.worker("M001")
        return w is not None and w.state == "running" and w.cost_nanos > 0


def test_store_deleted_while_the_supervisor_runs_is_written_back(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.3, unit_cost=0.125)
    project = _project(tmp_path)
    parallel = project.gsd / "parallel"
    db = parallel / "coordinator.db"
    assert cli("--project", project.root, "start").code == 0
    wait_until(lambda: _running_with_cost(db))
    _delete_store(parallel)
    wait_until(lambda: db.exists() and db.stat().st_size > 0)
    status = cli("--project", project.root, "--json", "status")
    assert status.code == 0, status.err
    data = json.loads(status.out)
    assert data["active"] and [w["id"] for w in data["workers"]] == ["M001"]
    wait_until(lambda: _finished(db), timeout=90)
    assert _recorded(db) == _log_cost(parallel) > 0  # every cost, once
    with Store(db, readonly=True) as s:
        assert "M001" in s.merged_milestones()
        assert any("deleted or damaged" in e.message for e in s.events_of_kind("store"))


def test_store_deleted_with_no_supervisor_is_said_and_rebuilt_by_doctor(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.8, unit_cost=0.125)
    project = _project(tmp_path, tasks_count=12)  # still running when the store is rebuilt
    parallel = project.gsd / "parallel"
    db = parallel / "coordinator.db"
    assert cli("--project", project.root, "start").code == 0
    wait_until(lambda: _running_with_cost(db))
    supervisor = json.loads((parallel / "supervisor.lock").read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(supervisor)
               or psutil.Process(supervisor).status() == psutil.STATUS_ZOMBIE)  # fmt: skip
    _delete_store(parallel)

    status = cli("--project", project.root, "status")
    assert status.code == 2, status.out
    assert "No parallel orchestration" not in status.out + status.err
    assert "doctor --fix" in status.err and "Traceback" not in status.err
    assert not db.exists()  # nothing created in its place
    doctor = cli("--project", project.root, "doctor")
    assert doctor.code == 1 and "missing" in doctor.out
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert "rebuilt the coordination store" in fixed.out, fixed.out + fixed.err
    assert "still runs: adopted" in fixed.out

    again = cli("--project", project.root, "--json", "status")  # adopts the live worker
    assert again.code == 0, again.err
    assert json.loads(again.out)["active"]
    wait_until(lambda: _finished(db), timeout=90)
    assert _recorded(db) == _log_cost(parallel) > 0
    with Store(db, readonly=True) as s:
        assert "M001" in s.merged_milestones()
    assert cli("--project", project.root, "doctor").code == 0
