"""``start``: what the user is told, concurrent starts, ``--wait`` and its exit codes, and
Ctrl-C during ``start --wait`` (the run goes on in a background supervisor).

Every test drives the real ``gsd-parallel`` CLI (a subprocess) on a real git project.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil

from gsd_parallel_plugin.run.supervisor import SupervisorLock
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import write_preferences
from gsd_parallel_plugin.testing.scenarios import ONE, one_line_error, start_concurrently, worker_states


def test_a_second_start_says_the_run_is_already_going(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=1.5)
    project = gsd_project(ONE)
    first = cli("--project", project.root, "start")
    assert first.code == 0 and "Parallel orchestration started." in first.out
    second = cli("--project", project.root, "start")
    assert second.code == 0, second.err
    assert "Parallel orchestration started." not in second.out
    assert "Parallel orchestration is already running" in second.out
    assert "Workers: M001" in second.out
    assert cli("--project", project.root, "stop").code == 0


def test_concurrent_starts_only_one_says_started(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=3.0)
    project = gsd_project(ONE)
    procs, outs = start_concurrently(project.root, 3, timeout=120)
    assert all(p.returncode == 0 for p in procs), outs
    said = [out for out, _err in outs]
    assert sum("Parallel orchestration started." in out for out in said) == 1, said
    assert sum("already running" in out for out in said) == 2, said
    assert cli("--project", project.root, "stop").code == 0


def test_start_wait_prints_the_report_and_plan_then_the_run(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0.0)
    project = gsd_project(ONE)
    result = cli("--project", project.root, "start", "--wait")
    assert result.code == 0, result.err
    report_at = result.out.index("# Parallel Eligibility Report")
    assert "Start plan" in result.out or "start" in result.out[report_at:].lower()
    assert "# Parallel Workers" in result.out[report_at:], result.out
    dry = cli("--project", project.root, "merge", "--dry-run", "--json")
    merged = cli("--project", project.root, "merge")
    assert merged.code == 0, merged.err
    nothing = cli("--project", project.root, "merge", "--dry-run", "--json").json()
    assert nothing["dry_run"] is True and nothing["results"] == []
    assert dry.json()["dry_run"] is True
    again = cli("--project", project.root, "merge", "M001", "--dry-run", "--json").json()
    assert again["dry_run"] is True


def test_start_wait_fails_when_an_automatic_merge_did_not_land(gsd_project, cli, fake_worker):
    """README: exit 1 when an operation ran and failed, e.g. a merge conflict."""
    fake_worker(unit_seconds=0)
    project = gsd_project(
        {
            "M001": {"title": "A", "slices": {"S01": {"T01": ["src/app.py"]}}},
            "M002": {"title": "B", "slices": {"S01": {"T01": ["src/app.py"]}}},
        },
        preferences={"enabled": True, "overlap": "warn", "auto_merge": "auto"},
        files={"src/app.py": "# app\n"},
    )
    result = cli("--project", project.root, "start", "--wait")
    assert result.code == 1, (result.out, result.err)
    assert "merge CONFLICT in 1 file(s): src/app.py" in result.err
    assert result.out.count("complete — merged") == 1
    assert result.out.count("complete — merge CONFLICT (1 file(s): src/app.py)") == 1


def test_start_after_raising_the_ceiling_lists_the_workers_it_continued(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=1.5, unit_cost=0.01)
    project = gsd_project(ONE, preferences={"enabled": True, "budget_ceiling": 0.015})
    stopped = cli("--project", project.root, "start", "--wait")
    assert stopped.code == 1 and "Budget ceiling ($0.01) reached" in stopped.out + stopped.err
    write_preferences(project.gsd, {"enabled": True, "budget_ceiling": 1.0})
    again = cli("--project", project.root, "start")
    assert again.code == 0, again.err
    assert "Workers: M001" in again.out, again.out
    assert cli("--project", project.root, "stop").code == 0


def test_dry_run_on_a_detached_head_says_start_would_refuse(gsd_project, cli, fake_worker):
    fake_worker()
    project = gsd_project(ONE)
    project.git("checkout", "-q", "--detach")
    dry = cli("--project", project.root, "start", "--dry-run")
    assert dry.code == 0, dry.err
    assert "`start` would refuse: the main checkout is on a detached HEAD" in dry.out
    data = cli("--project", project.root, "start", "--dry-run", "--json").json()
    assert "detached HEAD" in data["would_refuse"]
    one_line_error(cli("--project", project.root, "start"), "detached HEAD")
    project.git("checkout", "-q", "main")
    assert cli("--project", project.root, "start", "--dry-run", "--json").json()["would_refuse"] is None


def test_a_project_path_with_spaces_and_non_ascii_runs_and_merges(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "auto"}, name="my proj ünï 日本")
    result = cli("start", "--wait", cwd=project.root)
    assert result.code == 0, result.err
    assert project.git("log", "-1", "--format=%s", "main") == "feat: One"
    assert cli("doctor", cwd=project.root).code == 0


def test_ctrl_c_during_start_wait_hands_the_run_to_a_background_supervisor(gsd_project, cli, fake_worker):
    """Ctrl-C (SIGINT to the foreground process group, as a terminal sends it): the
    workers keep running, a background supervisor takes over and finishes the run, the
    user is told so in one line, and the exit code is 130. (Units of 1.5 s: at 0.4 s a loaded
    machine saw the worker finish before the check, a race in the test.)"""
    fake_worker(unit_seconds=1.5)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "auto"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "start", "--wait"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    try:
        wait_until(lambda: worker_states(cli, project.root).get("M001") == "running", timeout=30)
        worker_pid = cli("--project", project.root, "status", "--json").json()["workers"][0]["pid"]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "keep running" in out and "gsd-parallel stop" in out, out
    assert psutil.pid_exists(worker_pid), "Ctrl-C must not kill the workers"
    holder = wait_until(lambda: SupervisorLock.holder(project.gsd / "parallel"), timeout=20)
    assert holder["pid"] != proc.pid
    # The background supervisor finishes the run: the milestone completes and lands.
    wait_until(lambda: project.git("log", "--format=%s", "main").startswith("feat: One"), timeout=90)


def test_ctrl_c_with_json_still_prints_one_json_document(gsd_project, cli, fake_worker):
    """(Ctrl-C comes once the worker runs, and 1.5 s units outlast it: with 0.4 s units a
    loaded machine saw the run end before the Ctrl-C, exit 0 instead of 130.)"""
    fake_worker(unit_seconds=1.5)
    project = gsd_project(ONE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "--json",
         "start", "--wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: worker_states(cli, project.root).get("M001") == "running", timeout=30)
        os.killpg(proc.pid, signal.SIGINT)
        out, _err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    # (the teardown stops the background supervisor: wait until it holds the lock)
    wait_until(lambda: SupervisorLock.holder(project.gsd / "parallel"), timeout=20)
    document = json.loads(out)
    assert document["interrupted"] is True
    assert [w["id"] for w in document["workers"]] == ["M001"]


def _read_or_eof(fd: int) -> bytes:
    """A pty's master reads EIO once the other side is closed: that is its end of file."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


def test_ctrl_c_at_the_merge_prompt_leaves_it_awaiting_merge(gsd_project, cli, fake_worker):
    """On a terminal, auto_merge: confirm asks; Ctrl-C at that prompt must not hang on input()."""
    import pty

    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "confirm"})
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "start", "--wait"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        while b"into main? [y/N]" not in seen:
            chunk = os.read(master, 4096)  # the prompt comes, or EOF fails the test
            assert chunk, seen.decode(errors="replace")
            seen += chunk
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        while chunk := _read_or_eof(master):
            seen += chunk
        assert b"Interrupted. No worker is running" in seen, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    status = cli("--project", project.root, "status", "--json").json()
    assert [(w["id"], w["state"], w["merged"]) for w in status["workers"]] == [("M001", "complete", False)]
    assert project.git("log", "-1", "--format=%s", "main") == "initial project"
