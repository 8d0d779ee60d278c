"""``/parallel …`` inside a real GSD session, through the extension the package installs.

The session is the real ``gsd --mode rpc`` (the way an editor drives GSD): prompts go in on
stdin, and what GSD shows the user (notifications, session messages) comes out as events.
The workers are the real ``gsd headless --json auto``; the model is the scripted one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import (  # noqa: F401 - gsd_on_path, real_project are fixtures
    gsd_on_path,
    processes_in,
    real_project,
    squash_commits,
    supervisor_alive,
)

from gsd_parallel_plugin.money import cost_to_nanos
from gsd_parallel_plugin.testing import session_hook_log, wait_until
from gsd_parallel_plugin.testing.real_gsd import GsdRpcSession, make_gsd_project

pytestmark = pytest.mark.real_gsd

WAIT = 240


def eventually(predicate, why, timeout: float = WAIT) -> None:
    """``wait_until`` that says what it saw when it gives up."""
    try:
        wait_until(predicate, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(why()) from None


def install(cli, root: Path, *scope: str) -> None:
    done = cli("--project", root, "gsd-extension", "install", *scope, timeout=60)
    assert done.code == 0, done.out + done.err


def session(real_gsd: Path, cwd: Path) -> GsdRpcSession:
    return GsdRpcSession(real_gsd, cwd, os.environ)


def test_parallel_start_status_and_merge_from_a_gsd_session(real_gsd, real_project, cli, scripted_model):
    """Acceptance: /parallel status before a run; /parallel start starts workers the CLI sees;
    closing that session leaves them running; they merge; a new session's status lists them."""
    project = real_project(["M001", "M002"], max_workers=2, auto_merge="auto")
    main_before = project.git("rev-parse", "main")
    install(cli, project.root, "--project")
    assert (project.root / ".gsd" / "extensions" / "gsd-parallel" / "index.js").is_file()

    with session(real_gsd, project.root) as gsd:
        mark = gsd.prompt("/parallel status")
        kind, _text = gsd.wait_for_text("No parallel orchestration is currently active.", since=mark)
        assert kind == "notify:info"
        assert scripted_model.requests == 0  # a command, not a prompt for the model

        mark = gsd.prompt("/parallel start")
        gsd.wait_for_text("Parallel orchestration started.", since=mark, timeout=WAIT)
        ids = {w["id"] for w in project.status()["workers"]}
        assert ids == {"M001", "M002"}, project.diagnostics()
        assert gsd.close() == 0  # GSD's session_shutdown ran

    # The session is gone; the run is not: nothing was stopped with it.
    assert not [w for w in project.status()["workers"] if w["state"] in {"stopped", "failed", "crashed"}]
    assert supervisor_alive(project.root) or len(squash_commits(project.root, main_before)) == 2
    eventually(lambda: len(squash_commits(project.root, main_before)) == 2 and not supervisor_alive(project.root),
               project.diagnostics)  # fmt: skip
    status = project.status()
    assert {w["id"]: (w["state"], w["merged"]) for w in status["workers"]} == {
        "M001": ("complete", True),
        "M002": ("complete", True),
    }
    assert cost_to_nanos(status["total_cost"]) == scripted_model.billed_nanos()

    with session(real_gsd, project.root) as gsd:
        mark = gsd.prompt("/parallel status")
        kind, report = gsd.wait_for_text("M002", since=mark)
        assert kind == "message:gsd-parallel" and "M001" in report, gsd.texts(mark)
        gsd.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed to drive GSD's interactive session")
def test_global_install_answers_in_any_project(real_gsd, real_project, cli, tmp_path):
    """Acceptance: after the global install, the interactive GSD session of any project has
    /parallel. (GSD loads ``~/.pi/agent/extensions`` in its interactive session only; its RPC,
    print and headless modes do not, so this drives the real terminal UI through tmux.)"""
    project = real_project(["M001", "M002"])
    install(cli, project.root)  # global: $HOME/.pi/agent/extensions/gsd-parallel
    home = Path(os.environ["HOME"])
    assert (home / ".pi" / "agent" / "extensions" / "gsd-parallel" / "config.json").is_file()
    assert not (project.root / ".gsd" / "extensions").exists()
    sock = f"gsdp-{os.getpid()}-{tmp_path.name}"
    tmux = ["tmux", "-L", sock]
    env = [f"{k}={v}" for k, v in os.environ.items() if k.startswith(("GSD_", "PI_", "RTK_", "OLLAMA_"))]
    env.append(f"HOME={home}")
    subprocess.run([*tmux, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50", "-c", str(project.root),
                    *[a for e in env for a in ("-e", e)], str(real_gsd)], check=True)  # fmt: skip

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-J"], capture_output=True, text=True).stdout

    try:
        eventually(lambda: "/gsd help" in screen(), screen, timeout=120)  # the session is up
        subprocess.run([*tmux, "send-keys", "-l", "/parallel start --dry-run"], check=True)
        eventually(lambda: "/parallel start --dry-run" in screen(), screen, timeout=30)
        subprocess.run([*tmux, "send-keys", "Enter"], check=True)
        eventually(lambda: "Would start now: M001, M002." in screen(), screen, timeout=120)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
    assert project.status()["workers"] == []  # a dry run starts nothing


def test_the_users_own_session_reaches_plugins(real_gsd, cli, gsd_on_path, scripted_model, gsd_home, tmp_path,
                                              hook_log_plugin):  # fmt: skip
    """Acceptance: a milestone completed in the user's own GSD session reaches a plugin's
    on_milestone_complete; the session's spend reaches on_cost_update, to the nano-dollar."""
    log = hook_log_plugin(session_hook_log.MODULE, session_hook_log.LOG_VARIABLE)
    (gsd_home / "PREFERENCES.md").write_text("---\nparallel:\n  enabled: true\n---\n")
    root = make_gsd_project(tmp_path / "proj", ["M001"])
    install(cli, root, "--project")

    # The user runs M001 in their own GSD session (headless auto: the same extension loads).
    env = dict(os.environ)
    for args in (["headless", "recover"], ["headless", "--json", "auto"]):
        done = subprocess.run([str(real_gsd), *args], cwd=root, env=env, capture_output=True, text=True,
                              timeout=WAIT, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    def hooks() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    billed = scripted_model.billed_nanos()
    eventually(lambda: any(h["hook"] == "complete" for h in hooks()) and
               sum(cost_to_nanos(h["delta"]) or 0 for h in hooks() if h["hook"] == "cost") == billed,
               lambda: f"{hooks()}\nbilled {billed}", timeout=60)  # fmt: skip
    got = hooks()
    assert [(h["mid"], h["branch"], h["worktree"]) for h in got if h["hook"] == "complete"] == [
        ("M001", "main", str(root))
    ]
    costs = [h for h in got if h["hook"] == "cost"]
    assert costs and all(h["source"] == "session" and h["mid"].startswith("session:") for h in costs)
    assert any(h["hook"] == "start" for h in got)
    # Nothing of this is a worker: no run was started, none is recorded.
    assert not (root / ".gsd" / "parallel" / "coordinator.db").exists()
    # The last drain GSD started without waiting may still be on its way out; a supervisor
    # (or anything else that stays) would still be here after this wait.
    eventually(lambda: processes_in(root) == [], lambda: processes_in(root), timeout=30)


def test_a_worker_forwards_nothing(real_project, cli, scripted_model) -> None:
    """Inside a worker (GSD_PARALLEL_WORKER=1) the extension, installed in the project and so
    in each checkout's .gsd, spools nothing: the supervisor reads worker events itself."""
    project = real_project(["M001"], auto_merge="manual")
    install(cli, project.root, "--project")
    for args in (["add", "-A"], ["commit", "-qm", "extension"]):
        project.git(*args)
    result = project.run("start", "--wait", timeout=WAIT)
    assert result.code == 0, result.out + result.err + project.diagnostics()
    checkout = project.root / ".gsd-parallel" / "M001"
    assert (checkout / ".gsd" / "extensions" / "gsd-parallel" / "index.js").is_file()  # GSD loaded it there
    spools = list(project.root.rglob("session-events.jsonl"))
    assert spools == [], [p.read_text()[:500] for p in spools]
    assert cost_to_nanos(project.status()["total_cost"]) == scripted_model.billed_nanos()


def test_gsds_built_in_parallel_commands_cannot_stop_our_workers(real_gsd, real_project, cli, scripted_model):
    """GSD's /gsd parallel status|stop and the end of its session stop every worker whose
    status file it finds in .gsd/parallel/: ours are one folder down, so they run on."""
    project = real_project(["M001"], auto_merge="auto")
    main_before = project.git("rev-parse", "main")
    install(cli, project.root, "--project")
    scripted_model.set_delay(1.5)  # the worker is mid-unit through the whole session
    assert project.run("start", timeout=WAIT).code == 0
    eventually(
        lambda: (project.worker("M001") or {}).get("state") == "running", project.diagnostics, timeout=120
    )
    pid = project.worker("M001")["pid"]
    assert pid and not list((project.root / ".gsd" / "parallel").glob("*.status.json"))
    with session(real_gsd, project.root) as gsd:
        mark = gsd.prompt("/gsd parallel status")
        gsd.wait_for_text("No parallel orchestration is currently active.", since=mark)
        mark = gsd.prompt("/gsd parallel stop")
        gsd.wait_for_text("stopped", since=mark)
        assert gsd.close() == 0
    worker = project.worker("M001")
    assert worker["pid"] == pid and worker["state"] == "running", project.diagnostics()
    os.kill(pid, 0)  # alive
    scripted_model.set_delay(0)
    eventually(lambda: len(squash_commits(project.root, main_before)) == 1 and not supervisor_alive(project.root),
               project.diagnostics)  # fmt: skip
    assert project.worker("M001")["restarts"] == 0
