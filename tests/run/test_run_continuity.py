"""A run goes on until its work is merged: what waits for a merge stays listed, a second
`start` never relaunches a milestone that is complete but unmerged, and its cost stays.

Issue 13, items 2 and 3 (with the default ``auto_merge: confirm`` and nobody to confirm).
"""

from __future__ import annotations

from gsd_parallel_plugin.run.supervisor_lock import supervisor_running
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS

CONFIRM = {**PREFS, "auto_merge": "confirm"}


def _supervisor_gone(project) -> bool:
    return not supervisor_running(project.gsd / "parallel")


def test_overlap_held_milestone_waits_for_the_merge_then_runs(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/shared.py", "src/a.py"]}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/shared.py", "src/b.py"]}}},
        },
        preferences=CONFIRM,
    )
    first = cli("--project", project.root, "start", "--json")
    assert first.code == 0, first.err
    assert first.json()["plan"]["start"] == ["M002"]
    wait_until(lambda: _supervisor_gone(project), timeout=60)

    status = cli("--project", project.root, "status", "--json").json()
    assert status["active"] is True  # the run waits for M002's merge, it is not over
    assert {w["id"]: w["state"] for w in status["workers"]} == {"M002": "complete"}
    assert [w["id"] for w in status["waiting"]] == ["M003"]
    assert "starts after M002 is merged" in status["waiting"][0]["reason"]
    text = cli("--project", project.root, "status").out
    assert "- **M003** — overlaps M002 (src/shared.py); starts after M002 is merged" in text

    merged = cli("--project", project.root, "merge")
    assert merged.code == 0, merged.err
    assert "M003 can start now" in merged.err

    again = cli("--project", project.root, "start", "--wait", "--json")
    assert again.code == 0, again.err
    final = cli("--project", project.root, "status", "--json").json()
    assert {w["id"]: w["state"] for w in final["workers"]} == {"M002": "complete", "M003": "complete"}
    assert final["total_cost"] == sum(w["cost"] for w in final["workers"]) > 0


def test_second_start_never_relaunches_complete_unmerged_and_keeps_the_cost(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/a.py"]}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/b.py"]}}},
        },
        preferences=CONFIRM,
    )
    first = cli("--project", project.root, "start", "--wait", "--json")
    assert first.code == 0, first.err
    before = cli("--project", project.root, "status", "--json").json()
    costs = {w["id"]: w["cost"] for w in before["workers"]}
    assert set(costs) == {"M002", "M003"} and all(c > 0 for c in costs.values())

    for args in (("start", "--dry-run", "--json"), ("start", "--json")):
        again = cli("--project", project.root, *args)
        assert again.code == 0, again.err
        data = again.json()
        assert data["plan"]["start"] == [], args
        reasons = {v["id"]: v["reason"] for v in data["ineligible"]}
        assert reasons == {
            "M002": "Already complete (awaiting merge).",
            "M003": "Already complete (awaiting merge).",
        }
    assert data["started"] == []

    after = cli("--project", project.root, "status", "--json").json()
    assert {w["id"]: (w["state"], w["cost"]) for w in after["workers"]} == {
        mid: ("complete", cost) for mid, cost in costs.items()
    }
    assert after["total_cost"] == before["total_cost"] == sum(costs.values())

    merged = cli("--project", project.root, "merge", "--json")
    assert merged.code == 0, merged.err
    done = cli("--project", project.root, "status", "--json").json()
    assert done["active"] is False  # the last merge ends the run
    assert done["total_cost"] == before["total_cost"]


def test_a_supervisor_started_for_a_run_that_ended_meanwhile_opens_no_new_run(tmp_path, cli, fake_worker):
    """`status` reads the run, the supervisor closes it and exits, then `status` sees no
    supervisor and starts one for the run it read. That one must not open a run of its own:
    an empty newest run hid the finished run's workers from `status` (found under load)."""
    from dataclasses import replace

    from gsd_parallel_plugin.host import HostSession
    from gsd_parallel_plugin.invocation import load
    from gsd_parallel_plugin.models import CommandContext
    from gsd_parallel_plugin.run.ensure import ensure_supervisor
    from gsd_parallel_plugin.store import Store
    from gsd_parallel_plugin.views.runstate import RunView

    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["src/a.py"]}}}},
        preferences={**PREFS, "auto_merge": "auto"},
    )
    assert cli("--project", project.root, "start", "--wait").code == 0
    ctx = CommandContext(HostSession(project.root, interactive=False), ())
    loaded = load(ctx)
    view = RunView.read(loaded)
    assert view.run is not None and not view.active and view.workers
    # What `status` read a moment before the supervisor closed the run:
    stale = replace(view, run=replace(view.run, state="active"))

    ensure_supervisor(ctx, loaded, stale)
    wait_until(lambda: _supervisor_gone(project), timeout=30)

    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        latest = store.latest_run()
        assert latest is not None and latest.id == view.run.id and latest.state == "finished"
    status = cli("--project", project.root, "status", "--json").json()
    assert status["active"] is False
    assert {w["id"]: w["state"] for w in status["workers"]} == {"M001": "complete"}
