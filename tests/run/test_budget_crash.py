"""The supervisor killed (kill -9) while the budget guard stops workers (issue 13, item 9).

The worker is frozen (SIGSTOP) so the guard's SIGTERM waits: the supervisor is killed with
the worker recorded ``stopping`` for the budget, then the worker ends with no supervisor.
The budget reason must survive, and raising the ceiling must continue the run, as the
README promises.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from gsd_parallel_plugin.models import StateReason
from gsd_parallel_plugin.store import Store, WorkerRow
from gsd_parallel_plugin.testing.builder import build_project, write_preferences
from gsd_parallel_plugin.testing.scenarios import PREFS
from gsd_parallel_plugin.testing.session import wait_until


def _row(project) -> WorkerRow | None:
    with Store(project.gsd / "parallel" / "coordinator.db", readonly=True) as s:
        run = s.latest_run()
        return s.worker("M001", run.id) if run else None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("raise_ceiling", [False, True], ids=["ceiling-kept", "ceiling-raised"])
def test_supervisor_killed_while_the_budget_guard_stops_a_worker(tmp_path, cli, fake_worker, raise_ceiling):
    fake_worker(unit_seconds=0.3, unit_cost=0.125)
    prefs = {**PREFS, "max_workers": 1, "budget_ceiling": 50, "stop_grace_seconds": 60,
             "auto_merge": "auto"}  # fmt: skip
    tasks = {f"T0{i}": [f"src/a{i}.py"] for i in range(1, 5)}
    project = build_project(tmp_path / "proj", {"M001": {"title": "Alpha", "slices": {"S01": tasks}}},
                            preferences=prefs)  # fmt: skip
    db = project.gsd / "parallel" / "coordinator.db"
    assert cli("--project", project.root, "start").code == 0
    row = wait_until(lambda: (r := _row(project)) is not None and r.cost_nanos > 0 and r)
    worker = row.pid
    assert worker is not None
    os.kill(worker, signal.SIGSTOP)  # the guard's SIGTERM waits until the test lets it through
    # The ceiling is reached: the preference a new supervisor reads, and the run's copy that
    # the running guard checks every tick.
    write_preferences(project.gsd, {**prefs, "budget_ceiling": 0.01})
    with Store(db) as s:
        run = s.active_run()
        assert run is not None
        s.update_run(run.id, budget_ceiling=0.01)
    wait_until(lambda: (r := _row(project)) is not None and r.state == "stopping")
    supervisor = json.loads((project.gsd / "parallel" / "supervisor.lock").read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: _gone(supervisor))
    os.kill(worker, signal.SIGCONT)  # the SIGTERM lands: the worker ends, nobody watching
    wait_until(lambda: _gone(worker))

    if raise_ceiling:
        write_preferences(project.gsd, {**prefs, "budget_ceiling": 100})
    status = cli("--project", project.root, "status")  # any command brings a supervisor back
    assert status.code == 0, status.err
    if not raise_ceiling:
        r = wait_until(lambda: (r := _row(project)) is not None and r.state == "stopped" and r)
        assert r.state_reason == StateReason.BUDGET
        again = cli("--project", project.root, "start")
        assert again.code == 2 and "Raise parallel.budget_ceiling" in again.err
        return
    # Raised: the run continues (the same run, its cost kept) and finishes the milestone.
    r = wait_until(lambda: (r := _row(project)) is not None and r.state == "complete" and r,
                   timeout=90)  # fmt: skip
    wait_until(lambda: _finished(db), timeout=60)
    with Store(db, readonly=True) as s:
        runs = [x[0] for x in s._conn.execute("SELECT id FROM runs")]
        assert len(runs) == 1 and s.merged_milestones().keys() == {"M001"}
    assert r.restarts == 0 and r.cost_nanos >= row.cost_nanos
    reasons = [m for _i, _k, m in _events(db) if "M001" in m and "stopping" in m]
    assert reasons, "the guard's stop was recorded"


def _finished(db: Path) -> bool:
    with Store(db, readonly=True) as s:
        run = s.latest_run()
        return run is not None and run.state == "finished"


def _events(db: Path) -> list[tuple[int, str, str]]:
    with Store(db, readonly=True) as s:
        return [(r[0], r[1], r[2]) for r in s._conn.execute("SELECT id, kind, message FROM events")]
