"""ETA: units remaining from real plan files, pace from real store events, run-level estimate."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import GIT_IDENTITY, build_project, run_fake_gsd
from gsd_parallel_plugin.views.eta import (
    Queued,
    active_seconds,
    eta_for,
    format_duration,
    remaining_units,
    run_eta,
    task_progress,
)


@dataclass
class W:
    state: str
    units_done: int
    started_at: float


@dataclass
class E:
    at: float
    milestone_id: str | None
    kind: str
    data: object


def test_remaining_units_follow_gsd_unit_rules(tmp_path: Path) -> None:
    project = build_project(
        tmp_path / "p",
        {
            "M001": {"slices": {"S01": {"T01": ["a"], "T02": ["b"]}}},  # 2 tasks + close + done
            "M002": {"slices": {"S01": {"T01": ["a"]}, "S02": None}},  # 1+1 | plan+2+1 | +1
            "M003": {"title": "Context only"},  # plan-milestone + (plan-slice + 2 + close) + done
            "M004": {"complete": True, "slices": {"S01": {"T01": ["a"]}}},
            "M005": {"slices": {"S01": {"T01": ["a"]}, "S02": {"T01": ["b"]}}, "done_slices": ["S01"]},
        },
    )
    # Mark one task done the way GSD does: a task summary next to the plan.
    tasks = project.milestone_dir("M001") / "slices" / "S01" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "T01-SUMMARY.md").write_text("# T01\n")
    p = read_project(project.root)
    assert remaining_units(p.get("M001")) == 1 + 1 + 1
    assert remaining_units(p.get("M002")) == (1 + 1) + (1 + 2 + 1) + 1
    assert remaining_units(p.get("M003")) == 6
    assert remaining_units(p.get("M004")) == 0
    assert remaining_units(p.get("M005")) == (1 + 1) + 1
    assert task_progress(p.get("M001")) == (1, 2)
    assert task_progress(p.get("M002")) == (0, None)  # S02 has no plan: total unknown
    assert task_progress(p.get("M004")) == (1, 1)


@pytest.mark.parametrize(
    "spec",
    [
        {"slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}, "S02": {"T01": ["c.txt"]}}},
        {"title": "Only a context"},
        {"slices": {"S01": None}},
    ],
)
def test_remaining_units_match_what_the_fake_worker_runs(tmp_path: Path, spec: dict) -> None:
    """The estimate is the number of units GSD's (fake) auto mode really runs."""
    project = build_project(tmp_path / "p", {"M001": spec})
    expected = remaining_units(read_project(project.root).get("M001"))
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "GSD_MILESTONE_LOCK": "M001",
        "GSD_FAKE_UNIT_SECONDS": "0",
        "GSD_PROJECT_ROOT": str(project.root),
    }
    done = run_fake_gsd(project.root, "M001", env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    finished = [e for e in events if str(e.get("message", "")).startswith("Finished ")]
    assert len(finished) == expected
    assert remaining_units(read_project(project.root).get("M001")) == 0


def test_active_seconds_counts_only_progress_states() -> None:
    events = [
        E(100.0, "M001", "state", {"old": "starting", "new": "running"}),
        E(105.0, "M002", "state", {"old": "starting", "new": "running"}),
        E(130.0, "M001", "state", {"old": "running", "new": "pausing"}),
        E(131.0, None, "supervisor", None),
        E(140.0, "M001", "state", {"old": "pausing", "new": "paused"}),
        E(200.0, "M001", "state", {"old": "paused", "new": "running"}),
        E(150.0, "M002", "state", {"old": "running", "new": "complete"}),
        E(150.0, "M003", "state", {"old": "starting", "new": "failed"}),
    ]
    got = active_seconds(events, now=210.0)
    assert got == {"M001": 40.0 + 10.0, "M002": 45.0, "M003": 0.0}


def test_active_seconds_reads_real_store_events(tmp_path: Path) -> None:
    with Store(tmp_path / "coordinator.db") as store:
        run = store.create_run()
        store.add_worker(run.id, "M001", "One", tmp_path, "gsd-parallel/M001")
        store.set_state("M001", run.id, "running")
        store.set_state("M001", run.id, "pausing", "pause requested")
        store.set_state("M001", run.id, "paused")
        events = store.events(limit=100, after_id=0, run_id=run.id)
    running = next(e for e in events if e.data["new"] == "running")
    paused = next(e for e in events if e.data["new"] == "paused")
    got = active_seconds(events, now=paused.at + 1000)
    assert got["M001"] == pytest.approx(paused.at - running.at)


def test_eta_for_a_worker() -> None:
    live = W("running", units_done=4, started_at=1000.0)
    assert eta_for(live, 1040.0, remaining=3) == pytest.approx(30.0)  # 10 s/unit since launch
    assert eta_for(live, 1040.0, remaining=3, active=20.0) == pytest.approx(15.0)
    assert eta_for(W("running", 0, 1000.0), 1040.0, remaining=3) is None  # no unit finished yet
    assert eta_for(W("paused", 4, 1000.0), 1040.0, remaining=3) is None
    assert eta_for(W("failed", 4, 1000.0), 1040.0, remaining=3) is None
    assert eta_for(W("complete", 4, 1000.0), 1040.0, remaining=3) == 0.0
    assert eta_for(live, 1040.0, remaining=0) == 0.0


def test_run_eta_schedules_the_queue_into_free_slots() -> None:
    running = {"M001": 10.0, "M002": 30.0}
    # M003 takes the slot M001 frees at 10 s and needs 2 units x 5 s.
    assert run_eta(running, [Queued("M003", 2)], max_workers=2, pace=5.0) == 30.0
    # Depending on M002 it cannot start before 30 s.
    assert run_eta(running, [Queued("M003", 2, ("M002",))], max_workers=2, pace=5.0) == 40.0
    # A free third slot starts it at once.
    assert run_eta(running, [Queued("M003", 10)], max_workers=3, pace=5.0) == 50.0
    assert run_eta({}, [], max_workers=2, pace=None) == 0.0
    assert run_eta({"M001": None}, [], max_workers=2, pace=None) is None
    assert run_eta(running, [Queued("M003", 2)], max_workers=2, pace=None) is None


def test_format_duration() -> None:
    assert format_duration(None) == "?"
    assert format_duration(0) == "-"
    assert format_duration(44.4) == "~44s"
    assert format_duration(61) == "~1m"
    assert format_duration(3599) == "~1h00m"
    assert format_duration(2 * 3600 + 5 * 60) == "~2h05m"


def test_estimate_for_status_from_a_real_store(tmp_path: Path) -> None:
    from gsd_parallel_plugin.preferences import load_preferences
    from gsd_parallel_plugin.views.snapshot import estimate

    project = build_project(
        tmp_path / "p",
        {
            "M001": {"slices": {"S01": {"T01": ["a"], "T02": ["b"], "T03": ["c"]}}},  # 5 units
            "M002": {"slices": {"S01": {"T01": ["d"]}}},  # 3 units
            "M003": {"depends_on": ["M001"], "slices": {"S01": {"T01": ["e"]}}},  # 3 units, waits
        },
        preferences={"enabled": True, "max_workers": 2},
    )
    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        run = store.create_run()
        for mid in ("M001", "M002"):
            store.add_worker(run.id, mid, mid, project.root, f"gsd-parallel/{mid}")
            store.set_state(mid, run.id, "running")
        store.record_output(run.id, "M001", expected_offset=0, new_offset=10, units_delta=1)
        store.record_output(run.id, "M002", expected_offset=0, new_offset=10, units_delta=2)
        started = max(e.at for e in store.events(10, after_id=0))
    est = estimate(project.root, load_preferences(project.gsd), now=started + 10.0)
    # The root plan still shows every task undone (no worktree here): M001 has 5 units left
    # at 10 s/unit, M002 3 units at 5 s/unit.
    assert est.workers["M001"] == pytest.approx(50.0, rel=0.01)
    assert est.workers["M002"] == pytest.approx(15.0, rel=0.01)
    # M003 waits for M001 (and its merge): the run pace is 20 s / 3 units; 3 units after 50 s.
    assert est.run == pytest.approx(50.0 + 3 * 20.0 / 3, rel=0.01)
