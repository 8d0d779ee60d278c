"""``watch``: frames from a real store, read-only, robust to a store that comes and goes,
and the live screen in a real terminal (tmux) during a real fake-worker run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gsd_parallel_plugin.preferences import load_preferences
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import (
    BuiltProject,
    build_project,
    fake_worker_env,
)
from gsd_parallel_plugin.testing.scenarios import ONE
from gsd_parallel_plugin.views.dashboard import render_text
from gsd_parallel_plugin.views.snapshot import NO_STORE, SnapshotReader, supervisor_status
from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

PREFS = {"enabled": True, "max_workers": 2, "budget_ceiling": 1.0}


def db_path(project: BuiltProject) -> Path:
    return project.gsd / "parallel" / "coordinator.db"


@pytest.fixture
def busy_run(tmp_path: Path) -> BuiltProject:
    """A run in every interesting state, written with the real Store API."""
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Core API", "slices": {"S01": {"T01": ["src/a.py"], "T02": ["src/b.py"]}}},
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/search.py"]}}},
            "M004": {
                "title": "Integration",
                "depends_on": ["M002"],
                "slices": {"S01": {"T01": ["src/i.py"]}},
            },
            "M005": {"title": "Billing", "slices": {"S01": {"T01": ["src/bill.py"]}}},
        },
        preferences=PREFS,
    )
    wt = ensure_worktree(project.root, "M001", "main").path
    tasks = wt / ".gsd" / "milestones" / "M001" / "slices" / "S01" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "T01-SUMMARY.md").write_text("# T01 done\n")  # the worker's progress, in its worktree
    with Store(db_path(project)) as store:
        run = store.create_run(1.0)
        store.add_worker(run.id, "M001", "Core API", wt, "gsd-parallel/M001")
        store.set_state("M001", run.id, "running")
        store.record_output(
            run.id, "M001", expected_offset=0, new_offset=100, cost_delta="0.25",
            units_delta=1, current_unit="execute-task M001/S01/T02",
        )  # fmt: skip
        store.add_worker(run.id, "M002", "Auth", project.root, "gsd-parallel/M002")
        store.set_state("M002", run.id, "running")
        store.update_worker("M002", run.id, last_error="exit code 1\nValueError: disk full")
        store.set_state("M002", run.id, "failed", "exit code 1 (after 1 restart(s))")
        for mid in ("M003", "M005"):
            store.add_worker(run.id, mid, "x", project.root, f"gsd-parallel/{mid}")
            store.set_state(mid, run.id, "running")
            store.set_state(mid, run.id, "complete")
        store.mark_merged("M003", "abc123")
        merge = store.begin_merge("M005", "gsd-parallel/M005", "main", "a", "b")
        store.finish_merge(merge, "conflict", files=["src/bill.py", "src/app.py"])
    return project


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", *map(str, args)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_once_shows_every_part_of_the_run_within_80_columns(busy_run: BuiltProject) -> None:
    done = run_cli("--project", busy_run.root, "watch", "--once")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("gsd-parallel watch · run 1 active · supervisor not running")
    row = {line.split()[0]: line for line in lines if re.match(r"M00\d ", line)}
    assert "running" in row["M001"] and "task M001/S01/T02" in row["M001"]
    assert "1/2" in row["M001"] and "$0.25" in row["M001"]  # task bar read from the worktree
    assert "failed" in row["M002"] and "ValueError: disk full" in row["M002"]
    assert "merged" in row["M003"] and "complete" in row["M005"]
    assert "Cost " in out and "$0.25 / $1.00 (25%)" in out
    assert "Waiting (1)" in out and "M004 Blocked by incomplete dependencies: M002." in out
    assert "merged M003" in out and "M005 CONFLICT (2 file(s))" in out
    # The failure event carries the worker's last stderr line.
    assert re.search(r"M002: running -> failed .*\n +↳ ValueError: disk full", out)


def test_narrow_terminal_keeps_one_line_per_worker(busy_run: BuiltProject) -> None:
    for width in (60, 40):
        done = run_cli("--project", busy_run.root, "watch", "--once", "--width", str(width))
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert max(len(line) for line in lines) <= width
        rows = [line for line in lines if re.match(r"M00\d ", line)]
        assert [r.split()[0] for r in rows] == ["M001", "M002", "M003", "M005"]


def test_json_frame(busy_run: BuiltProject) -> None:
    done = run_cli("--project", busy_run.root, "--json", "watch")
    assert done.returncode == 0, done.stderr

    data = json.loads(done.stdout)
    workers = {w["id"]: w for w in data["workers"]}
    assert workers["M001"]["tasks_done"] == 1 and workers["M001"]["tasks_planned"] == 2
    assert workers["M001"]["units_left"] == 3  # T02, complete-slice, complete-milestone
    assert workers["M003"]["label"] == "merged"
    assert data["merges"]["merged"] == ["M003"]
    assert data["merges"]["conflicted"] == [{"id": "M005", "detail": "CONFLICT (2 file(s))"}]
    assert data["waiting"] == [{"id": "M004", "reason": "Blocked by incomplete dependencies: M002."}]
    assert data["total_cost"] == 0.25 and data["budget_ceiling"] == 1.0


def test_watch_never_writes_the_store(busy_run: BuiltProject) -> None:
    def digest() -> dict[str, str]:
        files = sorted(db_path(busy_run).parent.glob("coordinator.db*"))
        return {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files if not f.name.endswith("-shm")
        }

    before = digest()
    assert run_cli("--project", busy_run.root, "watch", "--once").returncode == 0
    reader = SnapshotReader(busy_run.root, load_preferences(busy_run.gsd))
    for _ in range(3):
        reader.read()
    reader.close()
    assert digest() == before


def test_eta_from_observed_pace(busy_run: BuiltProject) -> None:
    reader = SnapshotReader(busy_run.root, load_preferences(busy_run.gsd))
    with Store.open_readonly(db_path(busy_run)) as store:  # type: ignore[union-attr]
        running = next(e for e in store.events(100, after_id=0) if e.milestone_id == "M001")
    snap = reader.read(now=running.at + 12.0)
    reader.close()
    m001 = next(w for w in snap.workers if w.id == "M001")
    # One unit in 12 s of running, three units left.
    assert m001.eta == pytest.approx(36.0)
    # M004 is queued behind failed M002: it starts in the free slot at once (2 units + 1 more).
    assert snap.run_eta is not None and snap.run_eta >= 36.0
    assert "~36s" in render_text(snap)


def test_no_store_then_a_store_then_a_replaced_store(tmp_path: Path) -> None:
    project = build_project(
        tmp_path / "proj", {"M001": {"slices": {"S01": {"T01": ["a"]}}}}, preferences=PREFS
    )
    done = run_cli("--project", project.root, "watch", "--once")
    assert done.returncode == 0 and NO_STORE in " ".join(done.stdout.split())
    reader = SnapshotReader(project.root, load_preferences(project.gsd))
    assert reader.read().notice == NO_STORE
    with Store(db_path(project)) as store:
        run = store.create_run()
        store.add_worker(run.id, "M001", "One", project.root, "gsd-parallel/M001")
    snap = reader.read()
    assert snap.notice is None and snap.run is not None and [w.id for w in snap.workers] == ["M001"]
    # The store disappears (a user cleans up .gsd/parallel) ...
    for f in db_path(project).parent.glob("coordinator.db*"):
        f.unlink()
    assert reader.read().notice == NO_STORE
    # ... and a new supervisor creates a fresh one: the reader follows.
    with Store(db_path(project)) as store:
        run = store.create_run()
        store.add_worker(run.id, "M001", "One", project.root, "gsd-parallel/M001")
        store.set_state("M001", run.id, "running")
    snap = reader.read()
    assert snap.notice is None and snap.workers[0].state == "running"
    reader.close()


def test_supervisor_status_follows_a_real_lock_holder(busy_run: BuiltProject) -> None:
    parallel = db_path(busy_run).parent
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path;"
         "from gsd_parallel_plugin.run.supervisor_lock import SupervisorLock;"
         "assert SupervisorLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)",
         str(parallel)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        info = supervisor_status(parallel)
        assert info is not None and info["pid"] == holder.pid
        done = run_cli("--project", busy_run.root, "watch", "--once")
        assert f"supervisor pid {holder.pid}" in done.stdout.splitlines()[0]
    finally:
        holder.kill()
        holder.wait()
    # Killed hard, its pid is still in the file: the dead process must not count.
    assert (parallel / "supervisor.lock").read_text()
    assert supervisor_status(parallel) is None


def test_bad_arguments_are_one_line_errors(busy_run: BuiltProject) -> None:
    done = run_cli("--project", busy_run.root, "watch", "--width", "5")
    assert done.returncode == 2 and "--width" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- tmux


class Tmux:
    """A private tmux server (own socket, no user config) with one 80-column pane."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.socket = f"gsdp-{os.getpid()}-{time.monotonic_ns()}"
        self.conf = tmp / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g status off\nset -g history-limit 0\n")
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args],
            capture_output=True, text=True, timeout=20, env=self.env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def capture(self) -> str:
        return self("capture-pane", "-p", "-t", "w")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)


# Runs a command and writes its exit code to a file: tmux 3.3 does not always report a
# dead pane's status. Ctrl-C reaches the command only (the recorder ignores SIGINT).
RECORDER = (
    "import signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    "rc = subprocess.call(sys.argv[2:], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL));"
    "open(sys.argv[1], 'w').write(str(rc))"
)


def recording_exit(rc_file: Path, cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", RECORDER, str(rc_file), *cmd]


def watch_cmd(project: BuiltProject) -> list[str]:
    return [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "watch"]


def needs_tmux() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: the live-screen test needs a real terminal")


def test_ctrl_c_leaves_watch_with_exit_code_0(tmp_path: Path) -> None:
    needs_tmux()
    project = build_project(tmp_path / "proj", {"M001": {"title": "One"}}, preferences=PREFS)
    tmux = Tmux(tmp_path, {**os.environ, "TERM": "xterm-256color"})
    rc_file = tmp_path / "watch.rc"
    try:
        tmux(
            "new-session",
            "-d",
            "-s",
            "w",
            "-x",
            "60",
            "-y",
            "20",
            *recording_exit(rc_file, watch_cmd(project)),
        )
        screen = wait_until(lambda: "q quit" in (s := tmux.capture()) and s, timeout=20)
        assert "No run yet" in screen and all(len(line) <= 60 for line in screen.splitlines())
        tmux("send-keys", "-t", "w", "C-c")
        wait_until(lambda: rc_file.exists() and rc_file.read_text(), timeout=10)
        assert rc_file.read_text() == "0"
    finally:
        tmux.kill()


def test_watch_in_a_real_terminal_during_a_real_run(tmp_path: Path) -> None:
    needs_tmux()
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {
                "title": "Core",
                "slices": {"S01": {"T01": ["a.py"], "T02": ["b.py"]}, "S02": {"T01": ["c.py"]}},
            },
            "M002": {"title": "Auth", "slices": {"S01": {"T01": ["d.py"], "T02": ["e.py"], "T03": ["f.py"]}}},
            "M003": {
                "title": "Search",
                "slices": {"S01": {"T01": ["g.py"], "T02": ["h.py"], "T03": ["i.py"]}},
            },
        },
        preferences={"enabled": True, "max_workers": 2, "budget_ceiling": 5.0},
    )
    env = {**os.environ, **fake_worker_env(unit_seconds=0.4, unit_cost=0.01), "TERM": "xterm-256color"}
    tmux = Tmux(tmp_path, env)
    try:
        rc_file = tmp_path / "watch.rc"
        tmux(
            "new-session",
            "-d",
            "-s",
            "w",
            "-x",
            "80",
            "-y",
            "40",
            *recording_exit(rc_file, watch_cmd(project)),
        )
        first = wait_until(lambda: "gsd-parallel watch" in (s := tmux.capture()) and s, timeout=20)
        assert "No run yet" in first
        started = run_cli("--project", project.root, "start", env=env)
        assert started.returncode == 0, started.stderr
        frames: list[str] = []
        seen: dict[str, list[str]] = {"M001": [], "M002": [], "M003": []}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = tmux.capture()
            frames.append(screen)
            for line in screen.splitlines():
                parts = line.split()
                known = parts[0] in seen if len(parts) > 1 else False
                if known and (not seen[parts[0]] or seen[parts[0]][-1] != parts[1]):
                    seen[parts[0]].append(parts[1])
            if all(s and s[-1] == "complete" for s in seen.values()):
                break
            time.sleep(0.25)
        for mid, states in seen.items():
            assert "running" in states and states[-1] == "complete", (mid, states, frames[-1])
            assert states.index("running") < len(states) - 1
        costs = [float(m.group(1)) for f in frames if (m := re.search(r"Cost \S* ?\$(\d+\.\d\d) /", f))]
        assert costs == sorted(costs) and costs[-1] > costs[0], costs
        assert costs[-1] == pytest.approx(0.16)  # (6 + 5 + 5) units x $0.01
        for frame in frames:
            assert frame.count("gsd-parallel watch") == 1  # one clean frame, no scroll or overdraw
            assert all(len(line) <= 80 for line in frame.splitlines())
        tmux("send-keys", "-t", "w", "q")
        wait_until(lambda: rc_file.exists() and rc_file.read_text().strip(), timeout=10)
        assert rc_file.read_text().strip() == "0", tmux.capture()
    finally:
        tmux.kill()
        holder = supervisor_status(project.gsd / "parallel")
        if holder is not None:  # never leave a supervisor behind
            os.kill(holder["pid"], signal.SIGTERM)


def test_watch_once_on_a_corrupt_store_exits_2(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    (project.gsd / "parallel").mkdir()
    (project.gsd / "parallel" / "coordinator.db").write_text("not a database\n")
    text = cli("--project", project.root, "watch", "--once")
    assert text.code == 2 and "coordination store unreadable" in text.out
    as_json = cli("--project", project.root, "watch", "--once", "--json")
    assert as_json.code == 2 and "not a gsd-parallel coordination store" in as_json.json()["notice"]
