"""What a demanding user runs into: odd input, odd states, Ctrl-C, and getting unstuck.

Every test drives the real ``gsd-parallel`` CLI (a subprocess) on a real git project; the
rule checked throughout is one clear line, exit 2 for a user error, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until

from gsd_parallel_plugin.testing.builder import build_project

ONE = {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}}}}


def one_line_error(result, *needles: str) -> None:
    """Exit 2, a single ``gsd-parallel:`` line on stderr naming every needle, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("gsd-parallel: "), lines[0]
    assert "Traceback" not in result.err and "internal error" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def worker_states(cli, root: Path) -> dict[str, str]:
    status = cli("--project", root, "status", "--json")
    return {w["id"]: w["state"] for w in status.json().get("workers", [])}


# --------------------------------------------------------------------------- preferences


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("budget_ceiling", ".inf"),
        ("budget_ceiling", "1.0e-12"),  # rounds to $0 in the store's nano-USD
        ("budget_ceiling", "1.0e+300"),  # does not fit the store's integer nano-USD
        ("milestone_budget", ".inf"),
        ("milestone_budget", "1.0e-12"),
        ("stop_grace_seconds", ".inf"),  # SIGKILL would never come, `stop` would never return
        ("stall_minutes", ".inf"),
    ],
)
def test_unusable_numbers_in_preferences_are_refused(tmp_path, cli, key, value):
    project = build_project(tmp_path / "p", ONE)
    (project.gsd / "PREFERENCES.md").write_text(
        f"---\nparallel:\n  enabled: true\n  {key}: {value}\n---\n"
    )
    for command in (("start", "--dry-run"), ("start",), ("status",)):
        one_line_error(cli("--project", project.root, *command), f"parallel.{key}", "invalid")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e300"])
def test_resume_budget_must_be_a_usable_amount(tmp_path, cli, value):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    one_line_error(cli("--project", project.root, "resume", "M001", "--budget", value), "--budget")


# --------------------------------------------------------------------------- getting unstuck


def test_a_stopped_milestone_can_be_continued(gsd_project, cli, fake_worker):
    """stop, then start says how to continue it, and resume continues it from disk."""
    fake_worker(unit_seconds=0.3)
    project = gsd_project(ONE)
    assert cli("--project", project.root, "start").code == 0
    stopped = cli("--project", project.root, "stop", "M001")
    assert stopped.code == 0, stopped.err
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "stopped", timeout=20)

    again = cli("--project", project.root, "start")
    assert again.code == 0, again.err
    assert "M001 (stopped)" in again.out and "/gsd parallel resume M001" in again.out
    held = cli("--project", project.root, "start", "--json").json()["held"]
    assert held == [{"id": "M001", "state": "stopped"}]

    resumed = cli("--project", project.root, "resume", "M001")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("Resumed worker for M001.")
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "complete", timeout=30)
    assert (project.root / ".gsd/worktrees/M001/.gsd/milestones/M001/M001-SUMMARY.md").is_file()


def test_a_failed_milestone_can_be_retried_with_resume(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0.05, fail_at="M001/S01/T02", fail_times=1)
    project = gsd_project(ONE, preferences={"enabled": True, "max_restarts": 0})
    result = cli("--project", project.root, "start", "--wait")
    assert worker_states(cli, project.root) == {"M001": "failed"}, result.err
    resumed = cli("--project", project.root, "resume")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("All parallel workers resumed.")
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "complete", timeout=30)


def test_resume_twice_and_pause_twice_say_it_is_already_so(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0.3)
    project = gsd_project(ONE)
    assert cli("--project", project.root, "start").code == 0
    one_line_error(cli("--project", project.root, "resume", "M001"), "M001 is already running")
    assert cli("--project", project.root, "pause", "M001").code == 0
    one_line_error(cli("--project", project.root, "pause", "M001"), "M001 is already paus")
    assert cli("--project", project.root, "stop").code == 0
