"""``stop``, ``pause`` and ``resume`` as a user meets them: continuing a stopped or failed
milestone, saying when it is already so, ``pause --now``, and ``stop`` of the whole run.
"""

from __future__ import annotations

import psutil
import pytest

from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import ONE, one_line_error, worker_states


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e300"])
def test_resume_budget_must_be_a_usable_amount(tmp_path, cli, value):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    one_line_error(cli("--project", project.root, "resume", "M001", "--budget", value), "--budget")


def test_a_stopped_milestone_can_be_continued(gsd_project, cli, fake_worker):
    """stop, then start says how to continue it, and resume continues it from disk."""
    fake_worker(
        unit_seconds=1.5
    )  # stop lands mid-unit even on a loaded machine (at 0.3 s it could finish first)
    project = gsd_project(ONE)
    assert cli("--project", project.root, "start").code == 0
    stopped = cli("--project", project.root, "stop", "M001")
    assert stopped.code == 0, stopped.err
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "stopped", timeout=20)

    again = cli("--project", project.root, "start")
    assert again.code == 0, again.err
    assert "M001 (stopped)" in again.out and "`gsd-parallel resume M001`" in again.out
    held = cli("--project", project.root, "start", "--json").json()["held"]
    assert held == [{"id": "M001", "state": "stopped"}]

    resumed = cli("--project", project.root, "resume", "M001")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("Resumed worker for M001.")
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "complete", timeout=30)
    assert (project.root / ".gsd-parallel/M001/.gsd/milestones/M001/M001-SUMMARY.md").is_file()


def test_a_failed_milestone_can_be_retried_with_resume(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0.05, fail_at="M001/S01/T02", fail_times=1)
    project = gsd_project(ONE, preferences={"enabled": True, "max_restarts": 0})
    result = cli("--project", project.root, "start", "--wait")
    assert worker_states(cli, project.root) == {"M001": "failed"}, result.err
    assert "retry with `gsd-parallel resume M001`" in cli("--project", project.root, "status").out
    resumed = cli("--project", project.root, "resume")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("All parallel workers resumed.")
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "complete", timeout=30)


def test_resume_twice_and_pause_twice_say_it_is_already_so(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=1.5)
    project = gsd_project(ONE)
    assert cli("--project", project.root, "start").code == 0
    one_line_error(cli("--project", project.root, "resume", "M001"), "M001 is already running")
    assert cli("--project", project.root, "pause", "M001").code == 0
    one_line_error(cli("--project", project.root, "pause", "M001"), "M001 is already paus")
    assert cli("--project", project.root, "stop").code == 0


def test_after_stop_all_the_run_says_stopped_and_starts_nothing(gsd_project, cli, fake_worker):
    """stop (all) frees both slots: the third milestone must not start in them, and status
    and watch say the run is stopped instead of promising "starting next" and an ETA."""
    fake_worker(unit_seconds=5.0)
    three = {
        **ONE,
        "M002": {"title": "Two", "slices": {"S01": {"T01": ["c.txt"]}}},
        "M003": {"title": "Three", "slices": {"S01": {"T01": ["d.txt"]}}},
    }
    project = gsd_project(three, preferences={"enabled": True, "max_workers": 2})
    root = project.root
    assert cli("--project", root, "start").code == 0
    stopped = cli("--project", root, "stop")
    assert stopped.code == 0, stopped.err
    wait_until(lambda: cli("--project", root, "status", "--json").json()["supervisor"] is None, timeout=30)
    status = cli("--project", root, "status", "--json").json()
    assert status["active"] is False and status["stopped"] is True
    assert {w["id"] for w in status["workers"]} == {"M001", "M002"}  # M003 never started
    assert {w["state"] for w in status["workers"]} <= {"stopped", "complete"}
    text = cli("--project", root, "status").out
    assert "Run stopped" in text and "resume" in text
    frame = cli("--project", root, "watch", "--once", "--width", "100")
    assert frame.code == 0
    assert "starting next" not in frame.out and "run ETA" not in frame.out, frame.out
    assert "stopped" in frame.out.splitlines()[0] and "Run stopped" in frame.out
    shot = cli("--project", root, "watch", "--once", "--json").json()
    assert shot["active"] is False and shot["stopped"] is True and shot["run_eta_seconds"] is None


def test_pause_now_escalates_a_pause_still_waiting_for_its_unit(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=20.0)  # the graceful pause waits for this unit to end
    project = gsd_project(ONE)
    root = project.root
    assert cli("--project", root, "start").code == 0
    wait_until(lambda: worker_states(cli, root).get("M001") == "running", timeout=30)
    assert cli("--project", root, "pause", "M001").code == 0
    assert worker_states(cli, root)["M001"] == "pausing"
    now = cli("--project", root, "pause", "M001", "--now")
    assert now.code == 0, now.err
    status = cli("--project", root, "status", "--json").json()
    w = next(w for w in status["workers"] if w["id"] == "M001")
    assert w["state"] == "paused"
    assert psutil.Process(w["pid"]).status() == psutil.STATUS_STOPPED
    one_line_error(cli("--project", root, "pause", "M001", "--now"), "M001 is already paused")
    assert cli("--project", root, "stop").code == 0


def test_resume_after_an_escalated_pause_runs_on(gsd_project, cli, fake_worker):
    """pause, then pause --now, then resume: the worker thaws and goes on past its unit (the
    graceful pause it was waiting on is cancelled too; it used to pause after that unit)."""
    fake_worker(unit_seconds=6.0)
    project = gsd_project(ONE)
    root = project.root
    assert cli("--project", root, "start").code == 0
    wait_until(lambda: worker_states(cli, root).get("M001") == "running", timeout=30)
    assert cli("--project", root, "pause", "M001").code == 0
    now = cli("--project", root, "pause", "M001", "--now")
    assert now.code == 0, now.err
    assert cli("--project", root, "resume", "M001").code == 0
    signal_file = root / ".gsd-parallel" / "M001" / ".gsd" / "parallel" / "M001.signal.json"
    assert not signal_file.exists()

    def units() -> int:
        w = next(w for w in cli("--project", root, "status", "--json").json()["workers"] if w["id"] == "M001")
        return int(w["completed_units"])

    before = units()
    wait_until(lambda: units() > before, timeout=60)  # the unit it was in ended...
    assert worker_states(cli, root)["M001"] == "running"  # ...and it did not pause
    assert cli("--project", root, "stop").code == 0
