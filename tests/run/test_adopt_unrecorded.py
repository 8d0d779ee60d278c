"""A supervisor killed between spawning a worker and storing its pid (fault injection).

The next supervisor must find that worker (its environment names the milestone, it runs in
the milestone's checkout) and adopt it: a second worker on the same checkout would do the
same units twice and pay for them twice.
"""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS
from gsd_parallel_plugin.testing.session import wait_until


@pytest.mark.parametrize("left_as", ["starting", "crashed"])
def test_worker_whose_pid_was_not_stored_is_adopted_not_doubled(tmp_path, cli, fake_worker, left_as):
    fake_worker(unit_seconds=0.5, unit_cost=0.125)
    tasks = {f"T{i:02d}": [f"src/a{i}.py"] for i in range(1, 9)}
    project = build_project(tmp_path / "proj", {"M001": {"title": "Alpha", "slices": {"S01": tasks}}},
                            preferences={**PREFS, "auto_merge": "auto"})  # fmt: skip
    parallel = project.gsd / "parallel"
    db = parallel / "coordinator.db"
    assert cli("--project", project.root, "start").code == 0

    def running() -> bool:
        with Store(db, readonly=True) as s:
            w = s.worker("M001")
            return w is not None and w.state == "running" and w.cost_nanos > 0

    wait_until(running)
    supervisor = json.loads((parallel / "supervisor.lock").read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(supervisor)
               or psutil.Process(supervisor).status() == psutil.STATUS_ZOMBIE)  # fmt: skip
    # What the store holds when the kill lands right after the spawn: a new row has no pid
    # yet; a restart still has the crashed worker's (dead) pid.
    with Store(db) as s:
        run = s.active_run()
        assert run is not None
        if left_as == "starting":
            s._conn.execute("UPDATE workers SET state = 'starting', pid = NULL, create_time = NULL")
        else:
            s._conn.execute("UPDATE workers SET state = 'crashed', pid = 999999, create_time = 1.0")

    assert cli("--project", project.root, "status").code == 0  # brings a supervisor back

    def finished() -> bool:
        with Store(db, readonly=True) as s:
            r = s.latest_run()
            return r is not None and r.state == "finished"

    wait_until(finished, timeout=120)
    # Every worker's first line is `extensions_ready`: one line, one worker, ever.
    log = (parallel / "M001.stdout.log").read_text()
    assert log.count('"type": "extensions_ready"') == 1, "never a second worker for M001"
    with Store(db, readonly=True) as s:
        w = s.worker("M001")
        assert w is not None and w.state == "complete" and "M001" in s.merged_milestones()
