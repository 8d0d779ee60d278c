"""Worker processes for real: launching, exit codes, liveness, group signals, files shared with GSD."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from gsd_parallel_plugin.errors import ProjectError, WorkerLaunchError
from gsd_parallel_plugin.gsd.checkout import ensure_runtime_excludes, prepare_checkout
from gsd_parallel_plugin.gsd.output import infer_outcome, read_new_events, summarize
from gsd_parallel_plugin.gsd.status_files import (
    clear_signal,
    read_signal,
    read_status_file,
    status_path,
    write_signal,
    write_status_file,
)
from gsd_parallel_plugin.models import WorkerHandle, WorkerSpec
from gsd_parallel_plugin.processes import (
    exit_status,
    forget,
    is_alive,
    is_stopped,
    kill_tree,
    process_create_time,
    send_signal_group,
    wait_exit,
)
from gsd_parallel_plugin.run.workers import launch, read_stderr_tail
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env

PY = sys.executable
SLEEPER = (PY, "-c", "import time; time.sleep(60)")


def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll for a condition (never asserts how long it took)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.02)
    return value


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerHandle]]:
    """Launch workers through ``launch``; whatever is left is killed at the end."""
    handles: list[WorkerHandle] = []

    def run(
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        worktree: Path | None = None,
        logs: Path | None = None,
    ) -> WorkerHandle:
        wt = worktree or tmp_path
        log_dir = logs or tmp_path / "logs"
        spec = WorkerSpec(
            milestone_id="M001",
            title="Core",
            project_root=wt,
            worktree=wt,
            branch="gsd-parallel/M001",
            command=tuple(command),
            env=env or {},
            stdout_log=log_dir / "M001.stdout.log",
            stderr_log=log_dir / "M001.stderr.log",
        )
        handle = launch(spec)
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        kill_tree(handle)
        wait_exit(handle, 10)
        forget(handle)


def stdout_of(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "M001.stdout.log").read_text()


# --- launching ----------------------------------------------------------------------------


def test_launch_reports_the_exit_code_and_logs_ndjson(
    spawn: Callable[..., WorkerHandle], tmp_path: Path
) -> None:
    script = textwrap.dedent("""
        import json, sys
        print(json.dumps({"type": "agent_start"}))
        print(json.dumps({"type": "message_end", "message": {"usage": {"cost": {"total": 0.5}}}}))
        print("human text", file=sys.stderr)
        sys.exit(3)
    """)
    handle = spawn([PY, "-c", script])
    assert handle.create_time == process_create_time(handle.pid) or not is_alive(handle)
    assert wait_exit(handle, 15)
    assert exit_status(handle) == 3
    assert exit_status(handle) == 3  # asking again gives the same answer
    assert not is_alive(handle)
    chunk = read_new_events(tmp_path / "logs" / "M001.stdout.log", 0)
    assert summarize(chunk.events).cost_nanos == 500_000_000
    assert read_stderr_tail(tmp_path / "logs" / "M001.stderr.log") == ["human text"]


def test_missing_binary_is_one_clear_line(tmp_path: Path, spawn: Callable[..., WorkerHandle]) -> None:
    with pytest.raises(WorkerLaunchError) as info:
        spawn(["gsd-does-not-exist-7q", "headless", "--json", "auto"])
    assert str(info.value) == (
        "worker command not found: gsd-does-not-exist-7q — install GSD or set GSD_PARALLEL_WORKER_COMMAND"
    )
    with pytest.raises(WorkerLaunchError, match=r"^worker command not found: \./nope/gsd — "):
        spawn(["./nope/gsd"])
    with pytest.raises(WorkerLaunchError, match=r"^worker command is empty"):
        spawn([])


def test_program_is_found_on_the_workers_path_and_relative_to_the_worktree(
    tmp_path: Path, spawn: Callable[..., WorkerHandle]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "gsd-fake-tool"
    tool.write_text(f"#!{PY}\nimport sys\nprint('ran', sys.argv[1:])\nsys.exit(7)\n")
    tool.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    handle = spawn(["gsd-fake-tool", "a"], env={"PATH": path})  # only the worker's PATH has it
    assert wait_exit(handle, 15) and exit_status(handle) == 7
    handle = spawn(["./bin/gsd-fake-tool", "b"])  # relative to the worktree
    assert wait_exit(handle, 15) and exit_status(handle) == 7
    assert stdout_of(tmp_path) == "ran ['a']\nran ['b']\n"

    tool.chmod(0o644)
    with pytest.raises(WorkerLaunchError, match=r"^worker command is not executable: .*gsd-fake-tool"):
        spawn(["gsd-fake-tool"], env={"PATH": path})
    with pytest.raises(WorkerLaunchError, match=r"^worker command is not executable"):
        spawn(["./bin/gsd-fake-tool"])
    with pytest.raises(WorkerLaunchError, match=r"^worker directory does not exist"):
        spawn(SLEEPER, worktree=tmp_path / "missing")
    junk = bin_dir / "gsd-junk"
    junk.write_bytes(b"\x7fELF-not-really")
    junk.chmod(0o755)
    with pytest.raises(WorkerLaunchError, match=r"^cannot start worker command \./bin/gsd-junk: "):
        spawn(["./bin/gsd-junk"])


def test_env_cwd_and_stdin(
    tmp_path: Path, spawn: Callable[..., WorkerHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSD_TEST_OUTER", "outer")
    monkeypatch.setenv("GSD_TEST_BOTH", "outer")
    worktree = tmp_path / "wt"
    worktree.mkdir()
    script = textwrap.dedent("""
        import json, os, sys
        print(json.dumps({"cwd": os.getcwd(), "outer": os.environ.get("GSD_TEST_OUTER"),
                          "both": os.environ.get("GSD_TEST_BOTH"), "lock": os.environ.get("GSD_MILESTONE_LOCK"),
                          "stdin": sys.stdin.read(), "sid": os.getsid(0), "pid": os.getpid()}))
    """)
    handle = spawn(
        [PY, "-c", script], env={"GSD_TEST_BOTH": "inner", "GSD_MILESTONE_LOCK": "M001"}, worktree=worktree
    )
    assert wait_exit(handle, 15) and exit_status(handle) == 0
    seen = json.loads(stdout_of(tmp_path))
    assert Path(seen["cwd"]).resolve() == worktree.resolve()
    assert (seen["outer"], seen["both"], seen["lock"]) == ("outer", "inner", "M001")
    assert seen["stdin"] == ""  # /dev/null, never the coordinator's terminal
    assert seen["sid"] == seen["pid"] == handle.pid  # its own session and process group


def test_logs_are_appended_never_truncated(tmp_path: Path, spawn: Callable[..., WorkerHandle]) -> None:
    logs = tmp_path / "deep" / "parallel"  # parents are created
    for word in ("one", "two"):
        handle = spawn(
            [PY, "-c", f"import sys; print('{word}'); print('{word}-err', file=sys.stderr)"], logs=logs
        )
        assert wait_exit(handle, 15) and exit_status(handle) == 0
        if word == "one":
            with (logs / "M001.stdout.log").open("a") as fh:
                fh.write("between\n")
    assert (logs / "M001.stdout.log").read_text() == "one\nbetween\ntwo\n"
    assert (logs / "M001.stderr.log").read_text() == "one-err\ntwo-err\n"


def test_worker_outlives_the_process_that_launched_it(tmp_path: Path) -> None:
    launcher = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from gsd_parallel_plugin.models import WorkerSpec
        from gsd_parallel_plugin.run.workers import launch
        wt = Path(sys.argv[1])
        spec = WorkerSpec("M001", "Core", wt, wt, "gsd-parallel/M001",
                          (sys.executable, "-c", "import time; time.sleep(60)"), {},
                          wt / "out.log", wt / "err.log")
        handle = launch(spec)
        print(json.dumps([handle.pid, handle.create_time]))
    """)
    done = subprocess.run(
        [PY, "-c", launcher, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    pid, created = json.loads(done.stdout)
    handle = WorkerHandle(pid, created)
    try:
        assert is_alive(handle)  # the launcher is gone, the worker is not
        assert psutil.Process(pid).ppid() != os.getpid()
        assert exit_status(handle) is None  # not ours to reap: unknowable, never a guess
        assert not is_stopped(handle)
    finally:
        assert kill_tree(handle)
    assert wait_exit(handle, 15)
    assert exit_status(handle) is None


# --- liveness -----------------------------------------------------------------------------


def test_dead_after_kill_9(spawn: Callable[..., WorkerHandle]) -> None:
    handle = spawn(SLEEPER)
    assert is_alive(handle)
    assert exit_status(handle) is None
    os.kill(handle.pid, signal.SIGKILL)
    assert wait_exit(handle, 15)
    assert not is_alive(handle)
    assert exit_status(handle) == -signal.SIGKILL
    assert not send_signal_group(handle, signal.SIGTERM)
    assert not is_stopped(handle)


def test_a_wrong_create_time_is_another_process(spawn: Callable[..., WorkerHandle]) -> None:
    handle = spawn(SLEEPER)
    impostor = WorkerHandle(handle.pid, handle.create_time - 3600)  # same pid, other process
    assert not is_alive(impostor)
    assert exit_status(impostor) is None
    assert not send_signal_group(impostor, signal.SIGKILL)
    assert not kill_tree(impostor)  # the pid belongs to someone else: hands off
    assert is_alive(handle)


def test_a_process_we_did_not_launch_has_no_exit_code_and_a_zombie_is_dead() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        handle = WorkerHandle(proc.pid, psutil.Process(proc.pid).create_time())
        assert is_alive(handle) and exit_status(handle) is None
        proc.kill()  # not reaped yet: a zombie, which is dead for our purposes
        until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE)
        assert not is_alive(handle)
        assert not send_signal_group(handle, signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()
    assert not is_alive(handle)
    assert exit_status(handle) is None


# --- signals ------------------------------------------------------------------------------


FAMILY = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
    time.sleep(60)
""")


def test_sigstop_and_sigcont_reach_the_whole_group(
    tmp_path: Path, spawn: Callable[..., WorkerHandle]
) -> None:
    handle = spawn([PY, "-c", FAMILY])
    child_pid = int(until(lambda: stdout_of(tmp_path).strip()))
    child = psutil.Process(child_pid)

    assert send_signal_group(handle, signal.SIGSTOP)
    until(lambda: is_stopped(handle) and child.status() == psutil.STATUS_STOPPED)
    assert is_alive(handle)  # frozen is not dead

    assert send_signal_group(handle, signal.SIGCONT)
    until(lambda: not is_stopped(handle) and child.status() != psutil.STATUS_STOPPED)
    assert is_alive(handle)


STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('grandchild ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(60)
""")


def test_kill_tree_kills_children_that_ignore_sigterm_and_left_the_group(
    tmp_path: Path, spawn: Callable[..., WorkerHandle]
) -> None:
    handle = spawn([PY, "-c", STUBBORN])
    until(lambda: "grandchild ready" in stdout_of(tmp_path))
    child_pid = int(stdout_of(tmp_path).split()[0])
    child = WorkerHandle(child_pid, psutil.Process(child_pid).create_time())
    assert os.getsid(child_pid) == child_pid != handle.pid  # its own session: out of the group

    assert send_signal_group(handle, signal.SIGTERM)
    assert not wait_exit(handle, 0.3)  # ignored, as it said it would
    assert is_alive(child)

    assert kill_tree(handle)
    assert wait_exit(handle, 15)
    assert wait_exit(child, 15)
    assert exit_status(handle) == -signal.SIGKILL


# --- files shared with GSD ----------------------------------------------------------------


def test_signal_files(tmp_path: Path) -> None:
    parallel = tmp_path / ".gsd" / "parallel"
    before = int(time.time() * 1000)
    path = write_signal(parallel, "M002", "pause")
    assert path == parallel / "M002.signal.json"
    data = json.loads(path.read_text())
    assert data["signal"] == "pause" and data["from"] == "coordinator"
    assert isinstance(data["sentAt"], int) and data["sentAt"] >= before
    write_signal(parallel, "M002", "stop")  # replaces
    assert read_signal(parallel, "M002")["signal"] == "stop"  # type: ignore[index]
    assert sorted(p.name for p in parallel.iterdir()) == ["M002.signal.json"]  # no temp files left
    clear_signal(parallel, "M002")
    clear_signal(parallel, "M002")  # idempotent
    assert read_signal(parallel, "M002") is None
    with pytest.raises(ProjectError, match="invalid milestone ID"):
        write_signal(parallel, "../M002", "stop")
    with pytest.raises(ValueError):
        write_signal(parallel, "M002", "explode")  # type: ignore[arg-type]


def status_kwargs(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        pid=4242,
        state="running",
        current_unit="execute-task M002/S01/T03",
        completed_units=3,
        cost=0.125,
        last_heartbeat_ms=1_700_000_000_500,
        started_at_ms=1_700_000_000_000,
        worktree=Path("/w/M002"),
    )
    return {**base, **over}


def test_status_file_has_gsds_shape(tmp_path: Path) -> None:
    write_status_file(tmp_path, "M002", **status_kwargs(current_unit_started_ms=1_700_000_000_100))
    assert read_status_file(tmp_path, "M002") == {
        "milestoneId": "M002",
        "pid": 4242,
        "state": "running",
        "currentUnit": {"type": "execute-task", "id": "M002/S01/T03", "startedAt": 1_700_000_000_100},
        "completedUnits": 3,
        "cost": 0.125,
        "lastHeartbeat": 1_700_000_000_500,
        "startedAt": 1_700_000_000_000,
        "worktreePath": "/w/M002",
    }
    write_status_file(tmp_path, "M002", **status_kwargs(pid=None, current_unit=None, state="paused"))
    data = read_status_file(tmp_path, "M002")
    assert data is not None and data["pid"] == 0 and data["currentUnit"] is None
    assert read_status_file(tmp_path, "M009") is None
    (tmp_path / "workers" / "M003.status.json").write_text("{not json")
    assert read_status_file(tmp_path, "M003") is None


def test_status_file_readers_never_see_a_half_written_file(tmp_path: Path) -> None:
    errors: list[str] = []
    reads: list[int] = []
    stop = threading.Event()
    write_status_file(tmp_path, "M002", **status_kwargs(completed_units=0))
    path = status_path(tmp_path, "M002")

    def reader() -> None:
        while not stop.is_set():
            try:
                reads.append(json.loads(path.read_text())["completedUnits"])
            except (OSError, ValueError) as exc:  # a missing file is as wrong as a torn one
                errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            write_status_file(
                tmp_path, "M002", **status_kwargs(completed_units=i, current_unit="x " + "y" * (i * 50))
            )
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(reads) > 10 and reads == sorted(reads), reads[:20]  # it read, and in order
    assert read_status_file(tmp_path, "M002")["completedUnits"] == 299  # type: ignore[index]


def test_stderr_tail(tmp_path: Path) -> None:
    log = tmp_path / "M001.stderr.log"
    assert read_stderr_tail(log) == []
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "\n  \n\x1b[31mError: boom\x1b[0m\n")
    assert read_stderr_tail(log, lines=3) == ["line 98", "line 99", "Error: boom"]
    # the last 41 bytes are exactly "line 98\n" onwards; 40 cut "line 98" mid-line, so it goes
    assert read_stderr_tail(log, lines=50, max_bytes=41) == ["line 98", "line 99", "Error: boom"]
    assert read_stderr_tail(log, lines=50, max_bytes=40) == ["line 99", "Error: boom"]


# --- the fake GSD worker, end to end ------------------------------------------------------


def test_fake_worker_pause_then_resume_costs_exactly_units_times_cost(tmp_path: Path) -> None:
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Core", "slices": {"S01": {"T01": ["src/a.txt"], "T02": ["src/b.txt"]}}},
        },
    )
    units = 2 + 1 + 1  # two tasks, complete-slice, complete-milestone
    parallel = project.gsd / "parallel"
    env = {k: v for k, v in fake_worker_env(unit_cost=0.01).items() if k != "GSD_PARALLEL_WORKER_COMMAND"}
    env.update(GSD_MILESTONE_LOCK="M001", GSD_PARALLEL_WORKER="1", GSD_PROJECT_ROOT=str(project.root))
    spec = WorkerSpec(
        milestone_id="M001",
        title="Core",
        project_root=project.root,
        worktree=project.root,
        branch="main",
        command=(PY, "-m", "gsd_parallel_plugin.testing.fake_gsd", "headless", "--json", "auto"),
        env=env,
        stdout_log=parallel / "M001.stdout.log",
        stderr_log=parallel / "M001.stderr.log",
    )
    ensure_runtime_excludes(project.root)  # what the supervisor does first
    prepare_checkout(project.root, "M001", spec.command[:3], env)
    write_signal(parallel, "M001", "pause")  # honoured after the first unit
    first = launch(spec)
    try:
        assert wait_exit(first, 60)
    finally:
        kill_tree(first)
    assert exit_status(first) == 10, read_stderr_tail(spec.stderr_log)
    assert read_signal(parallel, "M001") is None  # the worker consumed it
    assert infer_outcome(spec.stdout_log, False) == "paused"
    paused_at = spec.stdout_log.stat().st_size

    second = launch(spec)
    try:
        assert wait_exit(second, 60)
    finally:
        kill_tree(second)
    assert exit_status(second) == 0, read_stderr_tail(spec.stderr_log)
    assert infer_outcome(spec.stdout_log, True, since_offset=paused_at) == "complete"
    assert infer_outcome(spec.stdout_log, False, since_offset=paused_at) == "stopped"

    offset, progress = 0, summarize([])
    while (chunk := read_new_events(spec.stdout_log, offset, max_bytes=512)).new_offset > offset:
        progress, offset = progress.then(summarize(chunk.events)), chunk.new_offset
    assert offset == spec.stdout_log.stat().st_size
    assert progress.cost_nanos == units * 10_000_000
    assert progress.units_finished == units
    assert progress.completed_announced and progress.current_unit is None
    assert progress.tokens["input"] == 2 * units * 1000  # two assistant messages a unit, as GSD
