"""How a GSD worker's end reads, and the workers GSD leaves silent for ever: end to end with the
fake worker (which mirrors the real one: ``tests/test_worker_protocol.py``), real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gsd_parallel_plugin import processes
from gsd_parallel_plugin.models import WorkerHandle
from gsd_parallel_plugin.processes import _LAUNCHED, process_create_time
from gsd_parallel_plugin.run.core import Tracked
from gsd_parallel_plugin.run.supervisor import Supervisor
from gsd_parallel_plugin.testing.builder import build_project

ONE = {"M001": {"title": "Core", "slices": {"S01": {"T01": ["src/a.py"], "T02": ["src/b.py"]}}}}


def project_with(tmp_path: Path, **prefs):
    return build_project(tmp_path / "proj", ONE, preferences={"enabled": True, **prefs})


def worker_of(result) -> dict:
    (worker,) = result.json()["workers"]
    return worker


def test_a_401_reads_as_blocked_in_gsds_words(tmp_path, cli, fake_worker) -> None:
    fake_worker(provider="error401")
    project = project_with(tmp_path)
    done = cli("--project", project.root, "start", "--wait", "--json")
    assert done.code == 1
    worker = worker_of(done)
    assert worker["state"] == "blocked"
    assert worker["state_reason"].startswith("Auto-mode paused due to provider error")


def test_a_provider_gsd_gave_up_on_is_stopped_after_the_grace(tmp_path, cli, fake_worker) -> None:
    fake_worker(provider="error500")
    project = project_with(tmp_path, provider_grace_seconds=0.5)
    t0 = time.monotonic()
    done = cli("--project", project.root, "start", "--wait", "--json")
    assert done.code == 1, done.err
    assert time.monotonic() - t0 < 60
    worker = worker_of(done)
    assert worker["state"] == "blocked"
    assert worker["state_reason"].startswith("provider failed: 500")
    assert not (project.root / ".gsd-parallel" / "M001" / ".gsd" / "parallel" / "M001.signal.json").exists()


def test_no_model_call_after_the_start_is_reported_not_running(tmp_path, cli, fake_worker) -> None:
    fake_worker(hang_at="M001/S01/T01")  # alive, silent, never a model call
    project = project_with(tmp_path, startup_grace_seconds=1)
    done = cli("--project", project.root, "start", "--wait", "--json")
    assert done.code == 1, done.err
    worker = worker_of(done)
    assert worker["state"] == "blocked"
    assert worker["state_reason"].startswith("no model call within 1s of the start")


def test_a_quiet_worker_after_its_first_answer_is_never_stopped(tmp_path, cli, fake_worker) -> None:
    """Output silence alone never counts: a long test run after the model answered is fine."""
    fake_worker(unit_seconds=2.5)  # long silent stretches between a unit's events
    project = project_with(tmp_path, startup_grace_seconds=1, provider_grace_seconds=0.5)
    done = cli("--project", project.root, "start", "--wait", "--json")
    assert done.code == 0, done.err
    assert worker_of(done)["state"] == "complete"


def test_exit_0_without_completion_is_stopped_with_gsds_text(tmp_path, cli, fake_worker) -> None:
    """GSD exits 0 after a stop too: only its DB says complete. A stop the user did not ask
    for (here one left in the checkout's signal file) reads as stopped, in GSD's words."""
    fake_worker(unit_seconds=0.3)
    project = project_with(tmp_path)
    started = cli("--project", project.root, "start", "--json")
    assert started.code == 0, started.err
    signal_dir = project.root / ".gsd-parallel" / "M001" / ".gsd" / "parallel"
    signal_dir.mkdir(parents=True, exist_ok=True)
    (signal_dir / "M001.signal.json").write_text('{"signal": "stop", "sentAt": 1, "from": "user"}')
    from gsd_parallel_plugin.testing import wait_until

    wait_until(lambda: worker_of(cli("--project", project.root, "status", "--json"))["state"]
               == "stopped", timeout=60)  # fmt: skip
    worker = worker_of(cli("--project", project.root, "status", "--json"))
    assert worker["state_reason"].startswith(
        "GSD exited without completing the milestone: Auto-mode stopped."
    )


def test_the_exit_code_survives_a_reap_by_the_liveness_check(tmp_path, monkeypatch) -> None:
    """Regression: when the worker died between ``exit_status`` and ``is_alive``, is_alive
    reaped it and the code was lost (read as 'worker vanished'). A real child, really dead."""
    project = project_with(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(10)"])
    created = process_create_time(proc.pid)
    assert created is not None
    _LAUNCHED[proc.pid] = (proc, created)
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    calls = []
    real_exit_status = processes.exit_status

    def racy(handle: WorkerHandle) -> int | None:
        calls.append(handle)
        return None if len(calls) == 1 else real_exit_status(handle)  # it was running a moment ago

    monkeypatch.setattr(processes, "exit_status", racy)
    supervisor = Supervisor(project.root)
    tracked = Tracked(WorkerHandle(proc.pid, created), launched_here=True)
    assert supervisor._exit_code("M001", tracked) == (True, 10)
    _LAUNCHED.pop(proc.pid, None)


@pytest.fixture(autouse=True)
def _identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from gsd_parallel_plugin.testing.builder import GIT_IDENTITY

    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


BREACHING_WORKER = """\
import subprocess, sys, time
subprocess.run(["git", "checkout", "-q", "-b", "elsewhere"], check=True)  # leaves its own branch
time.sleep(60)
"""


def test_a_worker_leaving_its_branch_is_stopped_and_failed_loudly(tmp_path, cli) -> None:
    import shlex

    script = tmp_path / "breaching_worker.py"
    script.write_text(BREACHING_WORKER)
    project = project_with(tmp_path)
    env = {"GSD_PARALLEL_WORKER_COMMAND": shlex.join([sys.executable, str(script)])}
    t0 = time.monotonic()
    done = cli("--project", project.root, "start", "--wait", "--json", env=env)
    assert done.code == 1, done.err
    assert time.monotonic() - t0 < 50  # stopped, not waited out
    worker = worker_of(done)
    assert worker["state"] == "failed"
    assert worker["state_reason"].startswith("isolation breach: the worker switched its checkout")
    assert "elsewhere" in worker["state_reason"]
    assert "isolation breach" in done.err + done.out  # said loudly, not only in status
