"""What a demanding user runs into: odd input, odd states, Ctrl-C, and getting unstuck.

Every test drives the real ``gsd-parallel`` CLI (a subprocess) on a real git project; the
rule checked throughout is one clear line, exit 2 for a user error, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import wait_until

from gsd_parallel_plugin.run.supervisor_lock import SupervisorLock
from gsd_parallel_plugin.testing.builder import build_project, write_preferences

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
        ("stop_grace_seconds", "86400"),  # `stop` waits for the grace period: a day is no grace
        ("stall_minutes", ".inf"),
    ],
)
def test_unusable_numbers_in_preferences_are_refused(tmp_path, cli, key, value):
    project = build_project(tmp_path / "p", ONE)
    (project.gsd / "PREFERENCES.md").write_text(
        f"---\nparallel:\n  enabled: true\n  {key}: {value}\n---\n"
    )
    for command in (("start", "--dry-run"), ("start",)):
        one_line_error(cli("--project", project.root, *command), f"parallel.{key}", "invalid")
    # status only inspects: it warns, naming the file and key, and answers
    status = cli("--project", project.root, "status")
    assert status.code == 0, status.err
    assert f"PREFERENCES.md: parallel.{key}" in status.err and "invalid" in status.err


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


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_start_wait_hands_the_run_to_a_background_supervisor(
    gsd_project, cli, fake_worker
):
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


def test_ctrl_c_with_json_still_prints_one_json_document(gsd_project, fake_worker):
    fake_worker(unit_seconds=0.4)
    project = gsd_project(ONE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "--json",
         "start", "--wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (project.gsd / "parallel" / "M001.stdout.log").is_file(), timeout=30)
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


def test_ctrl_c_in_any_command_is_one_line_or_one_json_document(tmp_path, cli, gsd_plugin_dir):
    module = gsd_plugin_dir.write(
        "interrupting_plugin",
        """
        from gsd_parallel_plugin import hookimpl
        from gsd_parallel_plugin.models import SlashCommand

        def handler(ctx):
            raise KeyboardInterrupt

        @hookimpl
        def register_slash_commands(host):
            return [SlashCommand("slow", "a command the user interrupts", handler)]
        """,
    )
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    env = {"GSD_PARALLEL_PLUGINS": module}
    text = cli("--project", project.root, "slow", env=env)
    assert text.code == 130 and text.err.strip() == "gsd-parallel: interrupted"
    as_json = cli("--project", project.root, "--json", "slow", env=env)
    assert as_json.code == 130 and as_json.json() == {"error": "interrupted"}


def test_git_runs_outside_our_process_group(tmp_path):
    """A terminal's Ctrl-C goes to the foreground process group: the git a foreground
    supervisor is running (a merge, a worktree) must finish, not die half-way."""
    from gsd_parallel_plugin.workspace.git import Git

    project = build_project(tmp_path / "p", ONE)
    probe = f"!{sys.executable} -c 'import os; print(os.getpgid(0))'"
    group = Git(project.root).run("-c", f"alias.pgid={probe}", "pgid")
    assert int(group) != os.getpgid(0)


# --------------------------------------------------------------------------- where is the project


def test_demo_into_a_file_or_an_unwritable_place_is_a_user_error(tmp_path, cli):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    one_line_error(cli("demo", a_file), str(a_file), "not a directory")
    assert a_file.read_text() == "mine\n"
    one_line_error(cli("demo", a_file / "sub"), str(a_file / "sub"))


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_project_option_must_name_a_directory(tmp_path, cli, kind):
    """Inside a project, a mistyped --project must not quietly fall back to the enclosing one."""
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    target = project.root / "typo"
    if kind == "file":
        target.write_text("x")
    expected = "does not exist" if kind == "missing" else "not a directory"
    for command in (("status",), ("start", "--dry-run"), ("--json", "graph")):
        result = cli("--project", target, *command)
        one_line_error(result, str(target), expected)
    as_json = cli("--project", target, "--json", "status")
    assert set(as_json.json()) == {"error"}


def test_running_from_a_subdirectory_finds_the_project(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    sub = project.root / "src" / "deep"
    sub.mkdir(parents=True)
    result = cli("start", "--dry-run", cwd=sub)
    assert result.code == 0 and "Would start now: M001." in result.out


def test_project_level_problems_are_reported(tmp_path, cli):
    """A broken QUEUE-ORDER.json falls back to numeric order: the user is told, not left guessing."""
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    (project.gsd / "QUEUE-ORDER.json").write_text('{"order": ["M001"')
    result = cli("--project", project.root, "start", "--dry-run")
    assert result.code == 0
    assert "warning: .gsd/QUEUE-ORDER.json line 1: invalid JSON" in result.err
    assert "using numeric order" in result.err
    as_json = cli("--project", project.root, "--json", "start", "--dry-run")
    assert as_json.json()["project_problems"] == [result.err.strip().removeprefix("warning: ")]


# --------------------------------------------------------------------------- what the user is told


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


def test_unknown_subcommand_lists_every_subcommand(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    result = cli("--project", project.root, "stauts")
    one_line_error(result, 'Unknown parallel subcommand "stauts"')
    for name in ("start", "status", "graph", "logs", "doctor", "plugins", "demo"):
        assert name in result.err


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
    # (the gsd_project fixture stops the run; a `stop` here would race the run's own end)


def test_logs_with_an_enormous_line_count_shows_everything(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    parallel = project.gsd / "parallel"
    parallel.mkdir()
    (parallel / "M001.stderr.log").write_text("[fake-gsd] hello\n")
    result = cli("--project", project.root, "logs", "M001", "-n", "99999999999999999999")
    assert result.code == 0, result.err
    assert "[fake-gsd] hello" in result.out


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


def test_commands_run_inside_a_milestone_worktree_act_on_the_project(gsd_project, cli, fake_worker):
    """The conflict advice says: resolve in .gsd-parallel/M002, then merge M002. A user does
    that from inside the worktree, whose checkout has a .gsd of its own: the command must
    still act on the project (its store, its integration branch), not on the worktree."""
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "manual"})
    assert cli("--project", project.root, "start", "--wait").code == 0
    worktree = project.root / ".gsd-parallel" / "M001"
    merged = cli("merge", "M001", cwd=worktree / "src" if (worktree / "src").is_dir() else worktree)
    assert merged.code == 0, merged.err
    assert project.git("log", "-1", "--format=%s", "main") == "feat: One"
    status = cli("--project", project.root, "status", "--json").json()
    assert [(w["id"], w["merged"]) for w in status["workers"]] == [("M001", True)]
    assert not (worktree / ".gsd" / "parallel").exists(), "no second store inside the worktree"


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


def test_doctor_after_a_clean_run_finds_nothing(gsd_project, cli, fake_worker):
    """The status files of a finished run say what the store says: not stale, nothing to fix."""
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "auto"})
    assert cli("--project", project.root, "start", "--wait").code == 0
    doctor = cli("--project", project.root, "doctor")
    assert doctor.code == 0, doctor.out
    assert "No problems found." in doctor.out
    # A status file that disagrees with the finished run is still reported.
    status_file = project.gsd / "parallel" / "workers" / "M001.status.json"
    status_file.write_text(json.dumps({"milestoneId": "M001", "state": "running", "pid": 999999}))
    assert "stale status file M001.status.json" in cli("--project", project.root, "doctor").out


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("--json",), "no subcommand"), (("--json", "--project"), "--project needs a directory"),
     (("--project", "--json"), "--project needs a directory")],
)
def test_json_without_a_subcommand_or_a_project_value_is_one_json_error(cli, args, needle):
    result = cli(*args)
    assert result.code == 2, result.out
    assert needle in result.json()["error"]
    one_line_error(result, needle)


def test_a_project_path_with_spaces_and_non_ascii_runs_and_merges(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "auto"}, name="my proj ünï 日本")
    result = cli("start", "--wait", cwd=project.root)
    assert result.code == 0, result.err
    assert project.git("log", "-1", "--format=%s", "main") == "feat: One"
    assert cli("doctor", cwd=project.root).code == 0


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


def test_watch_once_on_a_corrupt_store_exits_2(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    (project.gsd / "parallel").mkdir()
    (project.gsd / "parallel" / "coordinator.db").write_text("not a database\n")
    text = cli("--project", project.root, "watch", "--once")
    assert text.code == 2 and "coordination store unreadable" in text.out
    as_json = cli("--project", project.root, "watch", "--once", "--json")
    assert as_json.code == 2 and "not a gsd-parallel coordination store" in as_json.json()["notice"]


def test_status_after_the_supervisor_died_adopts_and_does_not_say_not_running(
    gsd_project, cli, fake_worker
):
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


def _read_or_eof(fd: int) -> bytes:
    """A pty's master reads EIO once the other side is closed: that is its end of file."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


def test_typo_in_preferences_during_a_run_blocks_no_stop_or_inspection(gsd_project, cli, fake_worker):
    """Workers spend while PREFERENCES.md is broken: stop, pause, status, watch, doctor still
    work (a warning names the file); start refuses with one line."""
    fake_worker(unit_seconds=10.0)  # every unit outlasts the commands below
    project = gsd_project(
        {**ONE, "M002": {"title": "Two", "slices": {"S01": {"T01": ["c.txt"], "T02": ["d.txt"]}}}},
        preferences={"enabled": True, "max_workers": 2},
    )
    root = project.root
    assert cli("--project", root, "start").code == 0
    wait_until(lambda: worker_states(cli, root).get("M001") == "running", timeout=30)
    prefs = project.gsd / "PREFERENCES.md"
    prefs.write_text("---\nparallel:\n  enabled: true\n  max_workers: two\n---\n")
    for command in (("status",), ("status", "--json"), ("watch", "--once"), ("doctor",), ("logs", "M001")):
        result = cli("--project", root, *command)
        assert result.code == 0, (command, result.out, result.err)
        assert "Traceback" not in result.err
        assert f"{prefs}: parallel.max_workers = 'two' is invalid" in result.err, (command, result.err)
    one_line_error(cli("--project", root, "start"), str(prefs), "parallel.max_workers")
    paused = cli("--project", root, "pause", "M001", "--now")
    assert paused.code == 0, paused.err
    stopped = cli("--project", root, "stop")
    assert stopped.code == 0, stopped.err
    assert str(prefs) in stopped.err
    states = worker_states(cli, root)
    assert set(states.values()) <= {"stopped", "complete"}, states


def test_empty_worker_command_variable_blocks_only_what_launches_workers(gsd_project, cli):
    project = gsd_project(ONE, preferences={"enabled": True})
    env = {"GSD_PARALLEL_WORKER_COMMAND": ""}
    status = cli("--project", project.root, "status", env=env)
    assert status.code == 0 and status.err == "", status.err
    assert cli("--project", project.root, "doctor", env=env).code == 0
    one_line_error(cli("--project", project.root, "start", env=env), "GSD_PARALLEL_WORKER_COMMAND")


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


def test_ctrl_c_in_demo_does_not_say_finished(tmp_path, cli):
    target = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "demo", str(target), "--unit-seconds", "3"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        shop = target / "shop"
        wait_until(lambda: "running" in set(worker_states(cli, shop).values()), timeout=60)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        cli("--project", target / "shop", "stop", env={"GSD_HOME": str(target / "gsd-home")})
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "Finished" not in out, out
    assert "Interrupted after" in out, out


def test_concurrent_starts_only_one_says_started(gsd_project, cli, fake_worker):
    fake_worker(unit_seconds=3.0)
    project = gsd_project(ONE)
    command = [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "start"]
    procs = [
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    said = [out for out, _err in outs]
    assert sum("Parallel orchestration started." in out for out in said) == 1, said
    assert sum("already running" in out for out in said) == 2, said
    assert cli("--project", project.root, "stop").code == 0
