"""``status``: what a waiting milestone waits for, and a supervisor that died meanwhile."""

from __future__ import annotations

import os
import signal

from gsd_parallel_plugin.run.supervisor import SupervisorLock
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.scenarios import ONE, one_line_error


def test_status_of_a_waiting_milestone_says_what_it_waits_for(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0.3)
    project = gsd_project(
        {
            **ONE,
            "M002": {"title": "Two", "depends_on": ["M001"], "slices": {"S01": {"T01": ["c"]}}},
            "M003": {"title": "Old", "complete": True},
        }
    )
    assert cli("--project", project.root, "start").code == 0
    result = cli("--project", project.root, "status", "M002")
    assert result.code == 0, result.err
    assert "M002" in result.out and "Blocked by incomplete dependencies: M001." in result.out
    data = cli("--project", project.root, "status", "M002", "--json").json()
    assert data["workers"] == []
    assert data["waiting"] == [{"id": "M002", "reason": "Blocked by incomplete dependencies: M001."}]
    one_line_error(cli("--project", project.root, "status", "M003"), "M003", "Already complete.")


def test_status_after_the_supervisor_died_adopts_and_does_not_say_not_running(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=1.5)
    project = gsd_project(ONE)
    assert cli("--project", project.root, "start").code == 0
    holder = SupervisorLock.holder(project.gsd / "parallel")
    assert holder is not None
    os.kill(holder["pid"], signal.SIGKILL)
    wait_until(lambda: SupervisorLock.holder(project.gsd / "parallel") is None, timeout=10)
    status = cli("--project", project.root, "status")
    assert status.code == 0, status.err
    assert "started a new one to adopt the workers" in status.err
    assert "Supervisor: not running" not in status.out, status.out
    assert cli("--project", project.root, "stop").code == 0
