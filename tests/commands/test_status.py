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


def test_status_where_nothing_ran_still_warns_of_project_problems(gsd_project, cli):
    """Status with no run reads no plan, but a broken queue file or two directories for one
    ID are still shown: before any run is exactly when the user should hear of them."""
    project = gsd_project({**ONE, "M002": {"title": "Two"}})
    (project.gsd / "QUEUE-ORDER.json").write_text("{not json")
    (project.gsd / "milestones" / "M002-copy").mkdir()
    for argv in (("status",), ("status", "--json")):
        result = cli("--project", project.root, *argv)
        assert result.code == 0, result.err
        assert ".gsd/QUEUE-ORDER.json line 1: invalid JSON" in result.err
        assert "all map to milestone ID M002; rename all but one" in result.err
    assert "No parallel orchestration is currently active." in cli("--project", project.root, "status").out
    # the same lines a full read shows (status of a milestone reads the plans)
    full = cli("--project", project.root, "status", "M001")
    assert full.code == 0, full.err
    assert sorted(full.err.splitlines()) == sorted(result.err.splitlines())
