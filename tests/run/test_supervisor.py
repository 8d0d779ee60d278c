"""Workers and the supervisor, end to end: real git, real processes, the shipped fake worker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import start_concurrently, worker_states

PREFS = {"enabled": True, "max_workers": 2}


def three_independent(tmp_path: Path, **prefs):
    return build_project(
        tmp_path / "proj",
        {
            f"M00{i}": {
                "title": f"Feature {i}",
                "slices": {"S01": {"T01": [f"src/f{i}.py"], "T02": [f"src/g{i}.py"]}},
            }
            for i in (1, 2, 3)
        },
        preferences={**PREFS, **prefs},
    )


def workers_by_id(status: dict) -> dict[str, dict]:
    return {w["id"]: w for w in status["workers"]}


def db_rows(project, sql: str) -> list[tuple]:
    con = sqlite3.connect(project.gsd / "parallel" / "coordinator.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_three_milestones_two_workers_backfill_exact_cost(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.05, unit_cost=0.125)
    project = three_independent(tmp_path)
    main_before = project.head("main")
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    status = result.json()
    states = {w["id"]: w["state"] for w in status["workers"]}
    assert states == {"M001": "complete", "M002": "complete", "M003": "complete"}
    # 1 slice x 2 tasks: plan? no (plan exists) -> 2 tasks + complete-slice + complete-milestone = 4 units
    assert status["total_cost"] == pytest.approx(3 * 4 * 0.125, abs=0)
    assert Decimal(str(status["total_cost"])) == Decimal("1.5")
    assert project.head("main") == main_before, "main must be untouched"
    for mid in ("M001", "M002", "M003"):
        log = project.git("log", "--format=%s", f"main..gsd-parallel/{mid}").splitlines()
        # GSD commits once, before completing; the SUMMARY it writes after that is ours to commit.
        assert log == [f"chore: {mid} work left uncommitted after GSD's last commit",
                       "chore: auto-commit after complete-milestone-preflight"]  # fmt: skip
    # The third started only when a slot freed: its start is after one of the first two completed.
    events = db_rows(project, "SELECT milestone_id, message FROM events WHERE kind='state' ORDER BY id")
    order = [(mid, msg.split("-> ")[-1]) for mid, msg in events]
    first_complete = next(i for i, (_m, s) in enumerate(order) if s == "complete")
    m3_running = order.index(("M003", "running"))
    assert m3_running > first_complete
    # GSD-compatible status files, one folder below where GSD's built-in parallel mode adopts
    # (and kills) the workers it finds.
    assert not list((project.gsd / "parallel").glob("*.status.json"))
    status_file = json.loads((project.gsd / "parallel" / "workers" / "M003.status.json").read_text())
    assert status_file["milestoneId"] == "M003" and status_file["state"] == "complete"
    assert {
        "pid",
        "currentUnit",
        "completedUnits",
        "cost",
        "lastHeartbeat",
        "startedAt",
        "worktreePath",
    } <= set(status_file)


def test_silent_hang_is_still_running(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02, hang_at="M001/S01/T01")
    project = three_independent(tmp_path, max_workers=1)
    result = cli("--project", project.root, "start")
    assert result.code == 0, result.err
    assert "Parallel orchestration started." in result.out
    time.sleep(3.5)  # silence well beyond any heartbeat window
    status = cli("--project", project.root, "status", "--json").json()
    assert workers_by_id(status)["M001"]["state"] == "running"
    assert cli("--project", project.root, "stop").code == 0
    status = cli("--project", project.root, "status", "--json").json()
    assert workers_by_id(status)["M001"]["state"] == "stopped"


def test_kill_9_worker_is_restarted_then_completes(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.4, unit_cost=0.125)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"], "T03": ["c.txt"]}}}},
        preferences={**PREFS, "max_restarts": 1},
    )
    assert cli("--project", project.root, "start").code == 0
    # Kill the worker hard in the middle of its run: right after its first task is done on
    # disk (GSD commits nothing before the end), well inside the next unit's 0.4 s of work
    # (before that unit reports any cost).
    pid = workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["pid"]
    t01 = project.root / ".gsd-parallel/M001/.gsd/milestones/M001/slices/S01/tasks/T01-SUMMARY.md"
    wait_until(t01.exists, timeout=30, interval=0.01)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(lambda: db_rows(project, "SELECT 1 FROM events WHERE message LIKE '%-> crashed%'"), timeout=5)
    assert time.monotonic() - t0 < 2.0, "a dead worker is noticed within 2 s"
    final = wait_until(
        lambda: (
            (s := cli("--project", project.root, "status", "--json").json())
            and workers_by_id(s)["M001"]["state"] == "complete"
            and s
        ),
        timeout=60,
    )
    worker = workers_by_id(final)["M001"]
    assert worker["restarts"] == 1
    assert worker["pid"] != pid
    # 3 tasks + complete-slice + complete-milestone; the unit cut by SIGKILL reported no cost.
    assert Decimal(str(final["total_cost"])) == Decimal("0.625")
    assert project.git("show", "gsd-parallel/M001:a.txt").splitlines() == ["M001/S01/T01"]


def test_crash_without_restarts_fails_with_stderr(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.01, fail_at="M001/S01/T01", fail_times=5)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"]}}}},
        preferences={**PREFS, "max_restarts": 0},
    )
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 1
    worker = workers_by_id(result.json())["M001"]
    assert worker["state"] == "failed"
    assert "exit code 1" in worker["last_error"]
    text = cli("--project", project.root, "status").out
    assert "failed" in text and "last error:" in text


def test_crash_restart_completes_with_fail_times_one(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.01, unit_cost=0.25, fail_at="M001/S01/T01", fail_times=1)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"]}}}},
        preferences={**PREFS, "max_restarts": 1},
    )
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    worker = workers_by_id(result.json())["M001"]
    assert worker["state"] == "complete" and worker["restarts"] == 1
    assert result.json()["total_cost"] == 0.75  # T01 + complete-slice + complete-milestone


def test_pause_resume_and_stop(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.3)
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {
                "title": "One",
                "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"], "T03": ["c.txt"]}},
            }
        },
        preferences=PREFS,
    )
    assert cli("--project", project.root, "start").code == 0
    paused = cli("--project", project.root, "pause", "M001")
    assert paused.code == 0, paused.err
    assert paused.out.startswith("Paused worker for M001.")
    status = wait_until(
        lambda: (
            workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["state"]
            == "paused"
        ),
        timeout=10,
    )
    assert status
    assert (project.root / ".gsd-parallel" / "M001").is_dir()
    w = workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]
    assert not psutil.pid_exists(w["pid"]) or psutil.Process(w["pid"]).status() == psutil.STATUS_ZOMBIE
    resumed = cli("--project", project.root, "resume", "M001")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("Resumed worker for M001.")
    wait_until(
        lambda: (
            workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["state"]
            == "complete"
        ),
        timeout=30,
    )


def test_pause_now_freezes_and_resume_thaws(tmp_path, cli, fake_worker):
    """(The pause waits for a running worker, and 2.5 s units outlast the `pause` command:
    with 0.3 s units a loaded machine saw the worker finish before it was paused.)"""
    fake_worker(unit_seconds=2.5)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}}}},
        preferences=PREFS,
    )
    assert cli("--project", project.root, "start").code == 0
    wait_until(lambda: worker_states(cli, project.root).get("M001") == "running", timeout=30)
    assert cli("--project", project.root, "pause", "M001", "--now").code == 0
    w = workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]
    assert w["state"] == "paused"
    assert psutil.Process(w["pid"]).status() == psutil.STATUS_STOPPED
    assert cli("--project", project.root, "resume", "M001").code == 0
    assert psutil.Process(w["pid"]).status() != psutil.STATUS_STOPPED
    wait_until(
        lambda: (
            workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["state"]
            == "complete"
        ),
        timeout=30,
    )


def test_stop_escalates_to_sigkill_for_a_worker_ignoring_sigterm(tmp_path, cli, fake_worker, monkeypatch):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        'print(\'{"type":"agent_start"}\', flush=True)\n'
        "while True: time.sleep(0.1)\n"
    )
    fake_worker()
    monkeypatch.setenv("GSD_PARALLEL_WORKER_COMMAND", f"{os.sys.executable} {script}")
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"]}}}},
        preferences={**PREFS, "stop_grace_seconds": 1},
    )
    assert cli("--project", project.root, "start").code == 0
    pid = workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["pid"]
    t0 = time.monotonic()
    stopped = cli("--project", project.root, "stop", "M001")
    assert stopped.code == 0 and stopped.out.strip() == "Stopped worker for M001."
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - t0 >= 1.0
    assert db_rows(project, "SELECT 1 FROM events WHERE kind='kill'")


def test_missing_worker_command(tmp_path, cli, fake_worker, monkeypatch):
    fake_worker()
    monkeypatch.setenv("GSD_PARALLEL_WORKER_COMMAND", "gsd-definitely-not-installed headless")
    project = three_independent(tmp_path, max_workers=1)
    result = cli("--project", project.root, "start", "--wait")
    assert result.code == 2
    assert result.err.strip() == (
        "gsd-parallel: worker command not found: gsd-definitely-not-installed — install GSD or set "
        "GSD_PARALLEL_WORKER_COMMAND"
    )
    assert "Traceback" not in result.err
    assert not (project.root / ".gsd-parallel").exists()  # nothing was started or created


def test_worktree_failure_fails_closed(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.01)
    project = three_independent(tmp_path, max_workers=1)
    # Check the milestone branch out elsewhere: its worktree cannot be created.
    project.git("branch", "gsd-parallel/M001")
    project.git("worktree", "add", "-q", str(tmp_path / "elsewhere"), "gsd-parallel/M001")
    result = cli("--project", project.root, "start", "--wait", "--json")
    status = result.json()
    m1 = workers_by_id(status)["M001"]
    assert m1["state"] == "failed" and "checked out" in m1["state_reason"]
    assert m1["pid"] is None  # no worker was ever spawned for it
    assert workers_by_id(status)["M002"]["state"] == "complete"


def test_nested_start_inside_a_worker_is_refused(tmp_path, cli, fake_worker):
    project = three_independent(tmp_path)
    result = cli("--project", project.root, "start", env={"GSD_PARALLEL_WORKER": "1"})
    assert result.code == 2
    assert "Cannot start parallel from within a parallel worker" in result.err


def test_two_concurrent_starts_make_one_supervisor(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.2)
    project = three_independent(tmp_path)
    procs, outs = start_concurrently(project.root, 2, timeout=60)
    assert all(p.returncode == 0 for p in procs), outs
    supervisors = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and "gsd_parallel_plugin.run.supervisor" in " ".join(p.info["cmdline"])
        and str(project.root) in " ".join(p.info["cmdline"])
    ]
    assert len([p for p in supervisors if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]) <= 1
    rows = db_rows(project, "SELECT milestone_id, COUNT(*) FROM workers GROUP BY milestone_id")
    assert all(count == 1 for _mid, count in rows)
    wait_until(
        lambda: (
            all(
                w["state"] == "complete"
                for w in cli("--project", project.root, "status", "--json").json()["workers"]
            )
            and len(cli("--project", project.root, "status", "--json").json()["workers"]) == 3
        ),
        timeout=60,
    )


def test_supervisor_kill_9_is_adopted_and_cost_exact(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.6, unit_cost=0.125)
    project = three_independent(tmp_path)
    assert cli("--project", project.root, "start").code == 0
    time.sleep(0.8)
    lock = json.loads((project.gsd / "parallel" / "supervisor.lock").read_text())
    os.kill(lock["pid"], signal.SIGKILL)
    time.sleep(0.5)
    live = [
        w
        for w in cli("--project", project.root, "status", "--json").json()["workers"]
        if w["state"] == "running"
    ]
    assert live and all(psutil.pid_exists(w["pid"]) for w in live)
    # status noticed the dead supervisor and started a new one, which adopted the workers
    status = wait_until(
        lambda: (
            (s := cli("--project", project.root, "status", "--json").json())
            and len(s["workers"]) == 3
            and all(w["state"] == "complete" for w in s["workers"])
            and s
        ),
        timeout=60,
    )
    assert Decimal(str(status["total_cost"])) == Decimal("1.5")
    assert all(w["restarts"] == 0 for w in status["workers"])


def test_garbage_partial_and_enormous_ndjson_lines(tmp_path, cli, fake_worker, monkeypatch):
    script = tmp_path / "noisy.py"
    script.write_text(
        "import json, sys, os\n"
        "w = sys.stdout.write\n"
        "w('not json\\n'); w('\\n'); w('[1,2]\\n'); w('{\"type\": \"message_end\"\\n')\n"
        "w('x' * (3 << 20) + '\\n')\n"
        "cost = {'type': 'message_end', 'message': {'usage': {'input': 1, 'output': 2, 'cost': {'total': 0.5}}}}\n"
        "w(json.dumps(cost) + '\\n'); sys.stdout.flush()\n"
        "w(json.dumps(cost)[:20]); sys.stdout.flush()\n"
        "sys.exit(1)\n"
    )
    fake_worker()
    monkeypatch.setenv("GSD_PARALLEL_WORKER_COMMAND", f"{os.sys.executable} {script}")
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"]}}}},
        preferences={**PREFS, "max_restarts": 0},
    )
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 1
    assert result.json()["total_cost"] == 0.5


def test_status_without_run_and_unknown_milestone(tmp_path, cli):
    project = three_independent(tmp_path)
    result = cli("--project", project.root, "status")
    assert result.code == 0 and result.out.strip() == "No parallel orchestration is currently active."
    bad = cli("--project", project.root, "pause", "M009")
    assert bad.code == 2 and "No parallel orchestration is currently active." in bad.err


def _untracked_gsd_project(tmp_path: Path, *, symlink: bool):
    from gsd_parallel_plugin.testing.builder import git

    root = tmp_path / "proj"
    build_project(
        root,
        {
            "M001": {"title": "One", "slices": {"S01": {"T01": ["src/one.py"]}}},
            "M002": {"title": "Two", "slices": {"S01": {"T01": ["src/two.py"]}}},
        },
        preferences=PREFS,
        files={"README.md": "hi\n", ".gitignore": ".gsd\n"},
        git_init=False,
    )
    if symlink:  # GSD's default layout: .gsd -> ~/.gsd/projects/<hash>/
        external = tmp_path / "home" / "projects" / "abc123def456"
        external.parent.mkdir(parents=True)
        (root / ".gsd").rename(external)
        (root / ".gsd").symlink_to(external)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.mark.parametrize("symlink", [True, False], ids=["symlinked-gsd", "untracked-gsd"])
def test_untracked_or_symlinked_gsd_runs_to_completion(tmp_path, cli, fake_worker, symlink):
    fake_worker(unit_seconds=0.01)
    root = _untracked_gsd_project(tmp_path, symlink=symlink)
    assert "M001" not in subprocess_git(root, "ls-files")  # planning files are not in git
    result = cli("--project", root, "start", "--wait", "--json")
    assert result.code == 0, result.err + result.out
    states = {w["id"]: w["state"] for w in result.json()["workers"]}
    assert states == {"M001": "complete", "M002": "complete"}
    # the code landed on the milestone branches; planning files were never committed
    assert "src/one.py" in subprocess_git(root, "ls-tree", "-r", "--name-only", "gsd-parallel/M001")
    assert ".gsd" not in subprocess_git(root, "ls-tree", "-r", "--name-only", "gsd-parallel/M001")
    # Either way the checkout has a copy of its own (GSD needs its own .gsd there): the root's
    # planning files are untouched until a merge brings the edits home.
    assert (root / ".gsd-parallel" / "M001" / ".gsd" / "milestones" / "M001" / "M001-SUMMARY.md").exists()
    assert not (root / ".gsd" / "milestones" / "M001" / "M001-SUMMARY.md").exists()


def subprocess_git(root: Path, *args: str) -> str:
    from gsd_parallel_plugin.testing.builder import git

    return git(root, *args)


def test_stop_a_paused_worker(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.3)
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"], "T03": ["c.txt"]}}}},
        preferences=PREFS,
    )
    assert cli("--project", project.root, "start").code == 0
    assert cli("--project", project.root, "pause", "M001").code == 0
    wait_until(
        lambda: (
            workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]["state"]
            == "paused"
        ),
        timeout=10,
    )
    t0 = time.monotonic()
    stopped = cli("--project", project.root, "stop")
    assert stopped.code == 0 and stopped.out.strip() == "All parallel workers stopped."
    assert time.monotonic() - t0 < 4  # nothing to wait for: there is no process
    worker = workers_by_id(cli("--project", project.root, "status", "--json").json())["M001"]
    assert worker["state"] == "stopped"
    assert (project.root / ".gsd-parallel" / "M001").is_dir()  # stopping never deletes a worktree
