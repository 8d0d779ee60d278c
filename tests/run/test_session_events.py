"""The user's own GSD session as hooks: the spool the GSD extension writes, drained once.

The extension's side (spooling without blocking) is tested with Node in
``tests/gsd_extension``; the real GSD session in ``tests/real_gsd/test_inside_gsd.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from gsd_parallel_plugin.plugins import Hooks, create_plugin_manager
from gsd_parallel_plugin.run import session_events
from gsd_parallel_plugin.testing import session_hook_log, wait_until
from gsd_parallel_plugin.testing.builder import build_project, write_milestone
from gsd_parallel_plugin.workspace import layout


@pytest.fixture
def hook_log(hook_log_plugin) -> Path:
    """The kit's session-hook logger (GSD_PARALLEL_PLUGINS) logging the session hooks, in any process."""
    return hook_log_plugin(session_hook_log.MODULE, session_hook_log.LOG_VARIABLE)


def logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def spool(root: Path, *records: dict, torn: str = "") -> None:
    path = root / ".gsd" / "parallel" / layout.SESSION_EVENTS_SPOOL
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for record in records:
            fh.write(json.dumps({"session": "s1", "ts": 1, **record}) + "\n")
        fh.write(torn)


def hooks_for(root: Path) -> Hooks:
    return Hooks(create_plugin_manager(root).pm)


def drain(root: Path) -> list[session_events.SessionEvent]:
    return session_events.drain(
        root, hooks_for(root), branch=lambda: "main", run_total_usd=lambda: 1.5, budget_ceiling=None
    )


def test_each_line_is_delivered_once_with_running_session_totals(tmp_path, hook_log):
    root = tmp_path / "proj"
    (root / ".gsd").mkdir(parents=True)
    spool(
        root,
        {"event": "session_start", "cwd": str(root)},
        {"event": "cost", "cost_usd": 0.1},
        {"event": "cost", "cost_usd": 0.2},
        {"event": "milestone_complete", "milestone": "M001"},
        torn='{"event": "cost", "cost_u',  # the extension is mid-write: this waits
    )
    assert [e.kind for e in drain(root)] == ["session_start", "cost", "cost", "milestone_complete"]
    got = logged(hook_log)
    assert [g["hook"] for g in got] == ["start", "cost", "cost", "complete"]
    assert got[1] == {**got[1], "mid": "session:s1", "delta": 0.1, "total": 0.1, "run": 1.5,
                      "source": "session"}  # fmt: skip
    assert got[2]["total"] == pytest.approx(0.3)
    assert got[3] == {**got[3], "mid": "M001", "branch": "main", "worktree": str(root)}
    assert drain(root) == []  # nothing twice
    assert len(logged(hook_log)) == 4
    # The torn line, once finished, is delivered; the session's total carries over.
    with open(root / ".gsd" / "parallel" / layout.SESSION_EVENTS_SPOOL, "a") as fh:
        fh.write('sd": 0.05, "session": "s1"}\n')
    spool(root, {"event": "session_end", "cwd": str(root)})
    assert [e.kind for e in drain(root)] == ["cost", "session_end"]
    cost, end = logged(hook_log)[4:]
    assert cost["total"] == pytest.approx(0.35) and end["cost"] == pytest.approx(0.35)


def test_garbage_and_bad_ids_are_skipped_not_fatal(tmp_path, hook_log):
    root = tmp_path / "proj"
    (root / ".gsd").mkdir(parents=True)
    path = root / ".gsd" / "parallel" / layout.SESSION_EVENTS_SPOOL
    path.parent.mkdir(parents=True)
    path.write_text(
        "not json\n[1, 2]\n"
        + json.dumps({"event": "milestone_complete", "milestone": "../../etc"}) + "\n"
        + json.dumps({"event": "cost", "cost_usd": "NaN"}) + "\n"
        + json.dumps({"event": "teleport"}) + "\n"
        + json.dumps({"event": "cost", "cost_usd": 0.5, "session": "s2"}) + "\n"
    )  # fmt: skip
    assert [(e.kind, e.session_id) for e in drain(root)] == [("cost", "s2")]
    assert [g["hook"] for g in logged(hook_log)] == ["cost"]


def test_two_drains_at_once_deliver_each_event_once(tmp_path, hook_log):
    root = tmp_path / "proj"
    (root / ".gsd").mkdir(parents=True)
    spool(root, *({"event": "cost", "cost_usd": 0.001} for _ in range(300)))
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(drain(root)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 300
    assert len(logged(hook_log)) == 300


def test_a_spool_cut_short_by_hand_starts_over(tmp_path, hook_log):
    root = tmp_path / "proj"
    (root / ".gsd").mkdir(parents=True)
    spool(root, {"event": "cost", "cost_usd": 0.1}, {"event": "cost", "cost_usd": 0.1})
    assert len(drain(root)) == 2
    (root / ".gsd" / "parallel" / layout.SESSION_EVENTS_SPOOL).write_text("")
    spool(root, {"event": "session_end"})
    assert [e.kind for e in drain(root)] == ["session_end"]


def test_cli_drains_when_no_supervisor_runs(tmp_path, hook_log, cli):
    project = build_project(tmp_path / "proj", {"M001": {"slices": {"S01": {"T01": ["a.py"]}}}},
                            preferences={"enabled": True})  # fmt: skip
    spool(project.root, {"event": "session_start", "cwd": str(project.root)})
    result = cli("--project", project.root, "--json", "session-events")
    assert result.code == 0, result.err
    assert result.json()["delivered"] == 1
    assert [g["hook"] for g in logged(hook_log)] == ["start"]
    assert logged(hook_log)[0]["pid"] != os.getpid()


def test_milestone_completed_in_the_session_starts_its_dependents(
    tmp_path, hook_log, cli, fake_worker, monkeypatch, gsd_plugin_dir
):
    """M001 is the user's, in their own session (a plugin vetoes it here); M002 needs it.
    Once the session completes M001, the running supervisor starts M002 without a restart
    (M003 keeps the run busy and would, without the event, hold the re-plan off for ever)."""
    fake_worker(unit_seconds=0.02, hang_at="M003/S01/T01")
    veto = gsd_plugin_dir.write("session_veto", """
        from gsd_parallel_plugin import hookimpl

        @hookimpl
        def check_eligibility(milestone, project, preferences):
            return "the user runs it in their own GSD session" if milestone.id == "M001" else None
        """)  # fmt: skip
    monkeypatch.setenv("GSD_PARALLEL_PLUGINS", f"{session_hook_log.MODULE},{veto}")
    one = {"slices": {"S01": {"T01": ["a.py"]}}}
    project = build_project(
        tmp_path / "proj",
        {"M001": {"slices": {"S01": {"T01": ["m1.py"]}}},
         "M002": {"depends_on": ["M001"], "slices": {"S01": {"T01": ["m2.py"]}}},
         "M003": one},
        preferences={"enabled": True, "max_workers": 2},
    )  # fmt: skip
    assert cli("--project", project.root, "start").code == 0
    ids = lambda: {w["id"] for w in cli("--project", project.root, "--json", "status").json()["workers"]}  # noqa: E731
    wait_until(lambda: "M003" in ids(), timeout=60)
    assert "M002" not in ids()
    # The session completes M001 on main, as GSD does, and the extension spools it.
    write_milestone(project.gsd, "M001", {"slices": {"S01": {"T01": ["m1.py"]}}, "complete": True})
    for args in (["add", "-A"], ["commit", "-qm", "M001 done in the session"]):
        subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True)
    spool(project.root, {"event": "milestone_complete", "milestone": "M001"})
    wait_until(lambda: "M002" in ids(), timeout=60)
    # Once, from the session, on main (M002, quick, may have completed by now: not asked here).
    complete = [g for g in logged(hook_log) if g["hook"] == "complete" and g["mid"] == "M001"]
    assert [(g["mid"], g["branch"]) for g in complete] == [("M001", "main")]
    assert cli("--project", project.root, "stop").code == 0
