"""One protocol, two workers: everything the supervisor relies on, checked against the real GSD
(``gsd headless --json auto`` driven by the scripted model) and against the shipped fake worker.

Each test runs one worker by hand in a checkout prepared exactly as the supervisor prepares it
(:func:`gsd_checkout.prepare_checkout` in ``.gsd-parallel/<MID>`` on ``gsd-parallel/<MID>``).
The real half is marked ``real_gsd`` and skips, with the reason, where no real GSD is found.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gsd_parallel_plugin.gsd import checkout as gc
from gsd_parallel_plugin.gsd.output import read_new_events, summarize
from gsd_parallel_plugin.run.workers import write_signal
from gsd_parallel_plugin.testing.builder import GIT_IDENTITY
from gsd_parallel_plugin.testing.real_gsd import make_gsd_project
from gsd_parallel_plugin.workspace import worktrees as wtm

FAKE = (sys.executable, "-m", "gsd_parallel_plugin.testing.fake_gsd")
PREFLIGHT = "chore: auto-commit after complete-milestone-preflight"


@dataclass
class Worker:
    """One kind of worker: how to run it and how to make its provider fail."""

    kind: str
    program: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    model: Any = None

    def provider(self, mode: str) -> None:
        if self.model is not None:
            self.model.set_mode(mode)
        else:
            self.env["GSD_FAKE_PROVIDER"] = mode


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real_gsd)])
def worker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Worker:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    if request.param == "fake":
        return Worker("fake", FAKE, {"GSD_FAKE_UNIT_SECONDS": "0", "GSD_FAKE_UNIT_COST": "0.01"})
    gsd = request.getfixturevalue("real_gsd")
    model = request.getfixturevalue("scripted_model")
    return Worker("real", (str(gsd),), model=model)


@dataclass
class Run:
    code: int
    events: list[dict[str, Any]]
    stderr: str

    def notices(self) -> list[str]:
        return [
            str(e.get("message"))
            for e in self.events
            if e.get("type") == "extension_ui_request" and e.get("method") == "notify"
        ]


@pytest.fixture
def checkout(tmp_path: Path, worker: Worker) -> Path:
    root = make_gsd_project(tmp_path / "proj", ["M001"])
    gc.ensure_runtime_excludes(root)
    path = wtm.ensure_worktree(root, "M001", "main").path
    gc.prepare_checkout(path, "M001", worker.program, lock_env())
    return path


def lock_env() -> dict[str, str]:
    return {"GSD_MILESTONE_LOCK": "M001", "GSD_PARALLEL_WORKER": "1"}


def start(worker: Worker, checkout: Path, log: Path) -> subprocess.Popen[bytes]:
    import os

    env = {**os.environ, **worker.env, **lock_env()}
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [*worker.program, "headless", "--json", "auto"], cwd=checkout, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


def run(worker: Worker, checkout: Path, log: Path, timeout: float = 180) -> Run:
    proc = start(worker, checkout, log)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Run(proc.returncode, read_new_events(log, 0).events, err.decode(errors="replace"))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commits(checkout: Path) -> list[str]:
    return git(checkout, "log", "--format=%s", "main..HEAD").splitlines()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "M001.stdout.log"


# --------------------------------------------------------------------------- the protocol


def test_a_complete_run(worker: Worker, checkout: Path, log: Path) -> None:
    done = run(worker, checkout, log)
    assert done.code == 0, done.stderr
    kinds = [e.get("type") for e in done.events]
    assert kinds.count("extensions_ready") == 1  # once per process ...
    assert kinds.count("agent_start") >= 3  # ... and a fresh agent session per unit
    progress = summarize(done.events)
    assert progress.cost_nanos > 0 and progress.model_events > 0
    assistant = [e for e in done.events if e.get("type") == "message_end"
                 and e["message"].get("role") == "assistant"]  # fmt: skip
    assert all(e["message"]["usage"]["cost"]["total"] > 0 for e in assistant)
    tools = {e.get("toolName") for e in done.events if e.get("type") == "tool_execution_end"}
    assert {"gsd_task_complete", "gsd_slice_complete", "gsd_complete_milestone"} <= tools
    assert done.notices()[-1].startswith("Auto-mode stopped — all milestones complete.")
    # GSD's word is the DB, not the exit code; one commit; the SUMMARY comes after it.
    assert gc.milestone_status(checkout, "M001") == "complete"
    assert commits(checkout) == [PREFLIGHT]
    status = git(checkout, "status", "--porcelain").splitlines()
    assert status == ["?? .gsd/milestones/M001/M001-SUMMARY.md"]
    assert "gsd-parallel: worker settings" in (checkout / gc.PREFERENCES_REL).read_text()


def test_stop_signal_exits_0_without_completion(worker: Worker, checkout: Path, log: Path) -> None:
    write_signal(checkout / ".gsd" / "parallel", "M001", "stop")  # read after the first unit
    done = run(worker, checkout, log)
    assert done.code == 0, done.stderr
    assert gc.milestone_status(checkout, "M001") != "complete"
    assert done.notices()[-1].startswith("Auto-mode stopped.")
    assert not (checkout / ".gsd/parallel/M001.signal.json").exists()  # consumed
    assert commits(checkout) == []  # the unit's work is left uncommitted
    assert git(checkout, "status", "--porcelain").strip()


def test_pause_exits_10_and_a_rerun_resumes(worker: Worker, checkout: Path, log: Path) -> None:
    write_signal(checkout / ".gsd" / "parallel", "M001", "pause")
    paused = run(worker, checkout, log)
    assert paused.code == 10, paused.stderr
    assert paused.notices()[-1].startswith("Auto-mode paused")
    assert gc.milestone_status(checkout, "M001") != "complete"
    log.unlink()
    # As the supervisor relaunches: GSD's pause leaves its milestone lease held for 60 s and
    # the rerun would stop at once ("Lost milestone lease"); preparing releases it.
    gc.prepare_checkout(checkout, "M001", worker.program, lock_env())
    resumed = run(worker, checkout, log)
    assert resumed.code == 0, resumed.stderr
    assert any(n.startswith("Resuming paused session") for n in resumed.notices())
    assert gc.milestone_status(checkout, "M001") == "complete"
    assert commits(checkout) == [PREFLIGHT]


def test_provider_401_pauses_with_gsds_text(worker: Worker, checkout: Path, log: Path) -> None:
    worker.provider("error401")
    done = run(worker, checkout, log)
    assert done.code == 10, done.stderr
    assert any(n.startswith("Auto-mode paused due to provider error") and "401" in n
               for n in done.notices())  # fmt: skip
    assert summarize(done.events).cost_nanos == 0


def test_provider_500_gives_up_and_stays_silent(worker: Worker, checkout: Path, log: Path) -> None:
    worker.provider("error500")
    proc = start(worker, checkout, log)
    try:
        deadline = time.monotonic() + 90
        progress = summarize([])
        while time.monotonic() < deadline and progress.provider_failure is None:
            time.sleep(0.2)
            progress = summarize(read_new_events(log, 0).events)
            assert proc.poll() is None, "GSD exits on its own here: the watchdog would not be needed"
        assert progress.provider_failure is not None and "500" in progress.provider_failure
        retries = [e for e in read_new_events(log, 0).events if e.get("type") == "auto_retry_start"]
        assert len(retries) == 3
        size = log.stat().st_size
        time.sleep(2)
        assert proc.poll() is None  # alive ...
        after = read_new_events(log, size).events
        assert summarize(after).model_events == 0  # ... and no progress
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 11  # SIGTERM: GSD's "interrupted"


def test_the_checkout_stays_its_own_project(worker: Worker, checkout: Path, log: Path) -> None:
    """What the worker leaves in the main checkout: nothing (refs, index, files)."""
    root = checkout.parent.parent
    before = (git(root, "for-each-ref", "refs/heads/main"), git(root, "status", "--porcelain"))
    gitignore = (root / ".gitignore").read_bytes()
    done = run(worker, checkout, log)
    assert done.code == 0, done.stderr
    assert (git(root, "for-each-ref", "refs/heads/main"), git(root, "status", "--porcelain")) == before
    assert (root / ".gitignore").read_bytes() == gitignore
    assert (checkout / ".gitignore").read_bytes() == gitignore
    assert not (root / ".gsd" / "gsd.db").exists()
    assert json.loads(git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip().join('""')) == (
        "gsd-parallel/M001"
    )
