"""Merging inside the supervisor: auto_merge modes, dependency chaining, per-slice merges."""

from __future__ import annotations

import json
import sqlite3

from gsd_parallel_plugin.host import HostSession
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS, journal, main_log, write_plugin


def events(project, kind: str | None = None) -> list[tuple[int, str, str]]:
    con = sqlite3.connect(project.gsd / "parallel" / "coordinator.db")
    try:
        sql = "SELECT id, kind, message FROM events ORDER BY id"
        return [r for r in con.execute(sql).fetchall() if kind is None or r[1] == kind]
    finally:
        con.close()


def first_event(project, text: str) -> int:
    return next(i for i, _k, message in events(project) if text in message)


PROBE = """
import json, os
from pathlib import Path
from gsd_parallel_plugin import hookimpl

@hookimpl
def spawn_worker(spec):
    src = spec.worktree / "src"
    files = sorted(p.name for p in src.iterdir()) if src.is_dir() else []
    with open(os.environ["PROBE_OUT"], "a") as fh:
        fh.write(json.dumps({"id": spec.milestone_id, "files": files}) + "\\n")
    return None  # the builtin launches the worker
"""


def test_dependent_starts_after_its_dependency_merged(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    env = write_plugin(tmp_path, "chain_probe", PROBE)
    env["PROBE_OUT"] = str(tmp_path / "spawned.jsonl")
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/search.py"]}}},
            "M004": {"title": "API", "depends_on": ["M002"], "slices": {"S01": {"T01": ["src/api.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "auto"},
    )
    result = cli("--project", project.root, "start", "--wait", "--json", env=env)
    assert result.code == 0, result.err
    assert {w["id"]: (w["state"], w["merged"]) for w in result.json()["workers"]} == {
        mid: ("complete", True) for mid in ("M002", "M003", "M004")
    }
    spawned = {
        row["id"]: row["files"]
        for row in map(json.loads, (tmp_path / "spawned.jsonl").read_text().splitlines())
    }
    assert spawned["M002"] == [] and "auth.py" in spawned["M004"]
    assert first_event(project, "M002 merged into main") < first_event(project, "M004: starting -> running")
    assert set(main_log(project)[:3]) == {"feat: Auth", "feat: Search", "feat: API"}
    assert main_log(project).index("feat: API") < main_log(project).index("feat: Auth")
    assert project.git("status", "--porcelain") == ""


def test_manual_waits_for_the_user_and_status_says_so(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M004": {"title": "API", "depends_on": ["M002"], "slices": {"S01": {"T01": ["src/api.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "manual"},
    )
    main_before = project.head("main")
    result = cli("--project", project.root, "start", "--wait")
    assert result.code == 0, result.err
    assert "M002 complete — awaiting merge (auto_merge is manual)" in result.err
    assert "complete — awaiting merge" in result.out
    assert project.head("main") == main_before
    status = cli("--project", project.root, "status", "--json").json()
    merged = cli("--project", project.root, "merge")
    assert merged.code == 0 and "M004 can start now" in merged.err
    assert status["workers"][0]["merged"] is False
    again = cli("--project", project.root, "start", "--wait", "--json")
    assert again.code == 0, again.err
    assert main_log(project)[0] == "feat: Auth"  # manual: M004 waits for the user's merge
    assert project.git("branch", "--list", "gsd-parallel/M004") != ""


def test_status_lists_what_a_dependent_waits_for(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M003": {"title": "Slow", "slices": {"S01": {"T01": ["src/slow.py"]}}},
            "M004": {"title": "API", "depends_on": ["M002"], "slices": {"S01": {"T01": ["src/api.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "manual"},
    )
    fake_worker(unit_seconds=0.02, hang_at="M003/S01/T01")
    assert cli("--project", project.root, "start").code == 0
    from gsd_parallel_plugin.testing import wait_until

    def m002_done():
        status = cli("--project", project.root, "status", "--json").json()
        states = {w["id"]: w["state"] for w in status["workers"]}
        return states.get("M002") == "complete" and status

    status = wait_until(m002_done, timeout=30)
    assert {"id": "M004", "reason": "Waiting for M002 to merge."} in status["waiting"]
    text = cli("--project", project.root, "status").out
    assert "- **M004** — Waiting for M002 to merge." in text
    assert "complete — awaiting merge" in text
    cli("--project", project.root, "stop")


def test_confirm_asks_the_host_in_the_foreground(tmp_path, monkeypatch, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth System", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/search.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "confirm"},
    )
    asked: list[str] = []

    def answer(question: str) -> bool:
        asked.append(question)
        return "M002" in question

    host = HostSession(project.root, interactive=False, confirm_fn=answer)
    result = host.dispatch("parallel start --wait --json")
    assert result.exit_code == 0, result.text
    assert sorted(asked) == ["Merge M002 (Auth System) into main?", "Merge M003 (Search) into main?"]
    assert main_log(project)[0] == "feat: Auth System"
    assert project.git("branch", "--list", "gsd-parallel/M003") != ""
    assert any("M003 complete — awaiting merge (merge declined)" in m for _l, m in host.notices)


def test_per_slice_with_a_worker_that_commits_once_lands_at_completion(tmp_path, cli, fake_worker):
    """GSD 3.0.0 (``git.isolation: none``) commits nothing until its pre-completion commit, so
    no slice is on the branch before then: per-slice merging lands all the slices together
    once that commit is there, never one alone (README, "With GSD").

    The units are long enough (1.5 s) that the slice check (every 0.5 s) sees the
    pre-completion commit before the milestone completes; at 0.3 s a loaded machine missed
    that window and M002 merged whole at completion (correct, but not what this tests)."""
    fake_worker(unit_seconds=1.5)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {
                "title": "Auth",
                "slices": {
                    "S01": {"T01": ["src/s1.py", "src/shared.py"]},
                    "S02": {"T01": ["src/s2.py", "src/shared.py"]},
                },
            },
            "M003": {"title": "Other", "slices": {"S01": {"T01": ["src/other.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "auto", "merge_strategy": "per-slice"},
    )
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    rows = journal(project)
    assert [r.outcome for r in rows] == ["merged"] * len(rows) and len(rows) >= 2
    landed = [m for _i, _k, m in events(project) if "merged into main" in m]
    slices = [m for m in landed if m.startswith("M002/")]
    assert slices and all(m.startswith("M002/S01,S02 ") for m in slices), landed  # never one alone
    assert "feat: Auth" in main_log(project) and "feat: Other" in main_log(project)
    assert main_log(project)[0] == "feat: Auth" and "feat: Other" in main_log(project)
    assert (project.root / "src/shared.py").read_text() == "M002/S01/T01\nM002/S02/T01\n"
    assert project.git("for-each-ref", "refs/gsd-parallel/") == ""
    assert project.git("branch", "--list", "gsd-parallel/*") == ""
