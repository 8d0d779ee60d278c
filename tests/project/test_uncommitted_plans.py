"""A milestone whose planning files are not committed is never started blind in a checkout
that lacks them: ``start --dry-run``, ``start``, ``status`` and the supervisor hold it back
with what to commit, and it runs once committed (issue 13, item 1)."""

from __future__ import annotations

from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS

MILESTONES = {
    "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/a.py"]}}},
    "M003": {"title": "New", "slices": {"S01": {"T01": ["src/b.py"]}}},
    "M004": {"title": "Edited", "slices": {"S01": {"T01": ["src/c.py"]}}},
}


def test_uncommitted_milestone_and_plan_edit_are_held_back_until_committed(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj", MILESTONES, preferences={**PREFS, "max_workers": 3, "auto_merge": "auto"}
    )
    # M003 exists only in the working tree; M004's plan has an edit nobody committed.
    project.git("rm", "-r", "-q", "--cached", ".gsd/milestones/M003")
    project.git("commit", "-q", "-m", "M003 not committed yet")
    plan = project.root / ".gsd/milestones/M004/slices/S01/S01-PLAN.md"
    plan.write_text(plan.read_text() + "\n<!-- edited, not committed -->\n")

    dry = cli("--project", project.root, "start", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    data = dry.json()
    assert data["plan"]["start"] == ["M002"]
    reasons = {v["id"]: v["reason"] for v in data["ineligible"]}
    assert "Commit .gsd/milestones/M003 first." in reasons["M003"]
    assert "Commit .gsd/milestones/M004 first." in reasons["M004"]
    assert "(slices/S01/S01-PLAN.md)" in reasons["M004"]

    ran = cli("--project", project.root, "start", "--wait", "--json")
    assert ran.code == 0, ran.err
    status = cli("--project", project.root, "status", "--json").json()
    assert [w["id"] for w in status["workers"]] == ["M002"]  # never started blind
    waiting = {w["id"]: w["reason"] for w in status["waiting"]}
    assert "Commit .gsd/milestones/M003 first." in waiting["M003"]
    assert "Commit .gsd/milestones/M004 first." in waiting["M004"]

    project.git("add", ".gsd/milestones/M003", ".gsd/milestones/M004")
    project.git("commit", "-q", "-m", "plans")
    again = cli("--project", project.root, "start", "--wait", "--json")
    assert again.code == 0, again.err
    final = cli("--project", project.root, "status", "--json").json()
    assert {w["id"]: (w["state"], w["restarts"]) for w in final["workers"]} == {
        mid: ("complete", 0) for mid in ("M002", "M003", "M004")
    }
