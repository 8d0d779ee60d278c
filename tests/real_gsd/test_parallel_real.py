"""End to end with the real GSD: ``gsd-parallel`` run as a user runs it, one test per promise.

Every test drives the ``gsd-parallel`` CLI in a subprocess; the workers are the real
``gsd headless --json auto`` (found on PATH), talking to the scripted model. Preferences are
the user's global ``$GSD_HOME/PREFERENCES.md``; the plan is committed by ``make_gsd_project``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from e2e_support import (  # noqa: F401 - gsd_on_path, real_project are fixtures
    RealProject,
    events,
    gsd_on_path,
    leftover_branches,
    processes_in,
    real_project,
    squash_commits,
    status_file,
    supervisor_alive,
    worktrees,
)

from gsd_parallel_plugin.money import cost_to_nanos
from gsd_parallel_plugin.testing import wait_until

pytestmark = pytest.mark.real_gsd

WAIT = 240  # bounds a hang; the runs take seconds


def total_nanos(status: dict) -> int:
    """The run's recorded total cost in nano-USD, from ``status --json``."""
    assert isinstance(status["total_cost"], float | int)
    nanos = cost_to_nanos(status["total_cost"])
    assert nanos is not None
    return nanos


def assert_cost_exact(project: RealProject, billed: int) -> dict:
    status = project.status()
    per_worker = sum(cost_to_nanos(w["cost"]) or 0 for w in status["workers"])
    assert billed > 0
    assert total_nanos(status) == billed, project.diagnostics()
    assert per_worker == billed
    assert status["budget"]["spent"] == pytest.approx(billed / 1e9, abs=1e-9)
    return status


def assert_all_landed(project: RealProject, main_before: str, mids: list[str], gitignore: bytes) -> None:
    root = project.root
    commits = squash_commits(root, main_before)
    log = project.git("log", "--format=%h %s%n%b", f"{main_before}..main")
    assert [trailer for _sha, trailer in commits] == list(mids), log
    for sha, _ in commits:
        assert len(project.git("rev-list", "--parents", "-n1", sha).split()) == 2  # a squash, not a merge
    for mid in mids:
        path = f"src/{mid.lower()}.txt"
        assert project.git("show", f"main:{path}") == f"{mid}/S01/T01: Write greeting"
        assert (root / path).is_file()  # the root checkout (on main) has it too
    assert (root / ".gitignore").read_bytes() == gitignore
    assert project.git("rev-parse", "main:.gitignore") == project.git(
        "rev-parse", f"{main_before}:.gitignore"
    )
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    assert project.git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert leftover_branches(root) == []
    assert worktrees(root) == [str(root)]


def test_three_milestones_two_workers_auto_merge(real_project, scripted_model) -> None:
    """M001, M002 at once, M003 after M001 landed: three squash commits, clean repo, exact cost."""
    project = real_project(
        ["M001", "M002", "M003"], depends={"M003": ["M001"]}, max_workers=2, auto_merge="auto"
    )
    main_before = project.git("rev-parse", "main")
    gitignore = (project.root / ".gitignore").read_bytes()

    started = time.monotonic()
    result = project.run("start", "--wait", timeout=WAIT)
    assert result.code == 0, result.out + result.err + project.diagnostics()
    elapsed = time.monotonic() - started

    commits = squash_commits(project.root, main_before)
    order = [trailer for _sha, trailer in commits]
    assert sorted(order) == ["M001", "M002", "M003"], order
    assert order.index("M001") < order.index("M003")
    assert_all_landed(project, main_before, order, gitignore)

    status = assert_cost_exact(project, scripted_model.billed_nanos())
    assert {"active", "run", "supervisor", "workers", "waiting", "total_cost", "budget"} <= set(status)
    assert status["active"] is False and status["supervisor"] is None and status["waiting"] == []
    assert {w["id"]: (w["state"], w["merged"]) for w in status["workers"]} == {
        mid: ("complete", True) for mid in ("M001", "M002", "M003")
    }
    assert all(w["restarts"] == 0 for w in status["workers"])
    # GSD did each milestone once: four units each, nothing repeated.
    units = scripted_model.units()
    assert len(units) == 12 and len(set(units)) == 12, units

    dry = project.run("--json", "start", "--dry-run", timeout=60)
    assert dry.code == 0, dry.out + dry.err
    report = dry.json()
    assert report["eligible"] == [] and report["plan"]["start"] == []
    assert {v["id"]: v["reason"] for v in report["ineligible"]} == {
        mid: "Already complete." for mid in ("M001", "M002", "M003")
    }
    print(f"three milestones: {elapsed:.1f}s")


def test_a_project_that_ignores_gsd(real_project, scripted_model) -> None:
    """``.gsd`` ignored by the project: only code lands, the planning comes home untracked."""
    project = real_project(["M001", "M002"], track_gsd=False, max_workers=2, auto_merge="auto")
    assert project.git("ls-files").splitlines() == [".gitignore", "README.md"]
    main_before = project.git("rev-parse", "main")
    gitignore = (project.root / ".gitignore").read_bytes()

    result = project.run("start", "--wait", timeout=WAIT)
    assert result.code == 0, result.out + result.err + project.diagnostics()

    order = [trailer for _sha, trailer in squash_commits(project.root, main_before)]
    assert sorted(order) == ["M001", "M002"], order
    assert_all_landed(project, main_before, order, gitignore)
    # Only code lands: the planning stays untracked, as the project wants it.
    landed = project.git("diff", "--name-only", main_before, "main").splitlines()
    assert sorted(landed) == ["src/m001.txt", "src/m002.txt"]
    for mid in ("M001", "M002"):
        assert (project.root / ".gsd" / "milestones" / mid / f"{mid}-SUMMARY.md").is_file()  # copied home
    assert_cost_exact(project, scripted_model.billed_nanos())

    dry = project.run("--json", "start", "--dry-run", timeout=60)
    assert dry.code == 0, dry.out + dry.err
    assert {v["id"]: v["reason"] for v in dry.json()["ineligible"]} == {
        "M001": "Already complete.",
        "M002": "Already complete.",
    }


def wait_state(project: RealProject, mid: str, states: set[str], timeout: float = 90) -> dict:
    """The status file once the worker's state is one of *states*."""

    def reached() -> dict | None:
        data = status_file(project.root, mid)
        return data if data.get("state") in states else None

    try:
        return wait_until(reached, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(
            f"{mid} never reached {states}: {status_file(project.root, mid)}\n{project.diagnostics()}"
        ) from None


def wait_in_flight(model, timeout: float = 60) -> None:
    """Until a model request is waiting for its (delayed) answer: GSD is inside a unit."""
    wait_until(lambda: len(model.request_log) > model.requests, timeout=timeout, interval=0.05)


def wait_run_over(project: RealProject, main_before: str, count: int, timeout: float = WAIT) -> None:
    """Until *count* squash commits landed on main and no supervisor is left."""

    def over() -> bool:
        return len(squash_commits(project.root, main_before)) >= count and not supervisor_alive(project.root)

    try:
        wait_until(over, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(f"the run did not end with {count} merge(s)\n{project.diagnostics()}") from None


def test_pause_resume_stop_resume(real_project, scripted_model) -> None:
    """Pause mid-unit -> paused; resume -> goes on; stop -> stopped; resume -> done, merged.

    The stop is graceful (GSD ends its unit and reports its cost) within a grace long enough
    for a unit: a SIGTERM'd GSD would not report the call it was in, and the cost would not be
    exact."""
    project = real_project(["M001"], max_workers=1, auto_merge="auto", stop_grace_seconds=60)
    main_before = project.git("rev-parse", "main")
    scripted_model.set_delay(1.0)

    started = project.run("start")
    assert started.code == 0, started.out + started.err + project.diagnostics()
    wait_state(project, "M001", {"running"})
    wait_in_flight(scripted_model)  # inside the first unit, its model call unanswered

    paused = project.run("pause", "M001")
    assert paused.code == 0, paused.out + paused.err
    assert paused.out.startswith("Paused worker for M001."), paused.out
    wait_state(project, "M001", {"paused"})
    units_at_pause = scripted_model.units()
    assert units_at_pause == ["execute-task M001/S01/T01"], units_at_pause  # it finished that unit only
    requests_at_pause = len(scripted_model.request_log)
    time.sleep(2)
    assert len(scripted_model.request_log) == requests_at_pause  # really paused: no model calls
    assert status_file(project.root, "M001")["state"] == "paused"
    assert project.worker("M001")["state"] == "paused"

    resumed = project.run("resume", "M001")
    assert resumed.code == 0, resumed.out + resumed.err
    wait_until(  # it goes on to the next unit, or ends without doing so
        lambda: (
            len(scripted_model.units()) > 1
            or status_file(project.root, "M001").get("state") in {"stopped", "blocked", "failed", "crashed"}
        ),
        timeout=90,
        interval=0.2,
    )
    assert len(scripted_model.units()) > 1, (project.worker("M001"), project.diagnostics())
    assert status_file(project.root, "M001")["state"] == "running"
    wait_in_flight(scripted_model)

    stopped = project.run("stop", "M001")
    assert stopped.code == 0, stopped.out + stopped.err
    wait_state(project, "M001", {"stopped"})
    requests_at_stop = len(scripted_model.request_log)
    time.sleep(1)
    assert len(scripted_model.request_log) == requests_at_stop
    assert project.git("rev-parse", "main") == main_before  # nothing merged while unfinished
    assert project.worker("M001")["state"] == "stopped"

    scripted_model.set_delay(0)
    again = project.run("resume", "M001")
    assert again.code == 0, again.out + again.err
    wait_run_over(project, main_before, 1)

    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001"]
    assert project.git("show", "main:src/m001.txt") == "M001/S01/T01: Write greeting"
    status = assert_cost_exact(project, scripted_model.billed_nanos())
    (worker,) = status["workers"]
    assert (worker["state"], worker["merged"]) == ("complete", True)
    assert project.git("status", "--porcelain") == ""
    assert leftover_branches(project.root) == [] and worktrees(project.root) == [str(project.root)]


def test_a_killed_worker_is_restarted_and_finishes(real_project, scripted_model) -> None:
    """kill -9 of the worker's process group mid-request: restarted once, one squash commit."""
    project = real_project(["M001"], max_workers=1, auto_merge="auto", max_restarts=1)
    main_before = project.git("rev-parse", "main")
    scripted_model.set_delay(0.5)

    started = project.run("start")
    assert started.code == 0, started.out + started.err + project.diagnostics()
    wait_state(project, "M001", {"running"})
    wait_until(lambda: scripted_model.requests >= 2, timeout=60, interval=0.1)
    wait_in_flight(scripted_model)
    pid = project.worker("M001")["pid"]
    assert pid and pid == status_file(project.root, "M001")["pid"]
    assert os.getpgid(pid) == pid  # the worker leads its own process group
    os.killpg(pid, signal.SIGKILL)

    scripted_model.set_delay(0)
    wait_run_over(project, main_before, 1)

    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001"], project.diagnostics()
    assert project.git("rev-list", "--count", f"{main_before}..main") == "1"
    status = project.status()
    (worker,) = status["workers"]
    assert (worker["state"], worker["merged"], worker["restarts"]) == ("complete", True, 1), worker
    assert worker["pid"] != pid
    assert worker["last_error"], worker  # the crash is on record
    assert "M001: running -> crashed" in " ".join(m for _k, _mid, m in events(project.root))
    assert project.git("show", "main:src/m001.txt") == "M001/S01/T01: Write greeting"
    assert project.git("status", "--porcelain") == ""
    assert leftover_branches(project.root) == [] and worktrees(project.root) == [str(project.root)]
    # Both launches, nothing twice. The one answer the model may have sent into the killed
    # worker's socket is billed but never reported by GSD (no process is left to say so): the
    # record is exact or short by exactly that answer, never more.
    billed = scripted_model.billed_nanos()
    recorded = total_nanos(project.status())
    lost = billed - recorded
    answers = [r["cost_nanos"] for r in scripted_model.request_log if r["cost_nanos"]]
    assert lost == 0 or lost in answers, (billed, recorded, answers, project.diagnostics())


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("error500", "500 scripted error 500"),  # GSD's finalError after its own retries
        ("error401", "Auto-mode paused due to provider error: 401 scripted error 401"),  # GSD's notice
    ],
)
def test_a_failing_provider_blocks_the_milestone(real_project, scripted_model, mode, said) -> None:
    """5xx for ever (GSD goes silent) or 401 (GSD pauses, exit 10): blocked with GSD's words."""
    project = real_project(["M001"], max_workers=1, auto_merge="auto", provider_grace_seconds=5)
    main_before = project.git("rev-parse", "main")
    refs_before = project.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main")
    scripted_model.set_mode(mode)

    began = time.monotonic()
    result = project.run("start", "--wait", timeout=180)
    took = time.monotonic() - began
    assert result.code != 0, result.out + result.err
    assert took < 120, f"took {took:.0f}s"

    status = project.status()
    (worker,) = status["workers"]
    assert worker["state"] == "blocked", (worker, project.diagnostics())
    shown = " ".join(filter(None, [worker["state_reason"], worker["last_error"]]))
    assert said in shown, (worker, project.diagnostics())
    assert worker["merged"] is False
    assert processes_in(project.root / ".gsd-parallel") == []  # no silent worker left behind
    assert scripted_model.billed_nanos() == 0 and total_nanos(status) == 0
    assert project.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/main") == refs_before
    assert project.git("rev-parse", "main") == main_before
    assert project.git("status", "--porcelain") == ""
    text = project.run("status", timeout=60)
    assert "blocked" in text.out and said in text.out, text.out
    print(f"{mode}: blocked after {took:.1f}s")


def test_the_main_checkout_on_another_branch_is_left_alone(real_project, scripted_model) -> None:
    """Root checkout on ``dev``: dev untouched, main gains the squash commit and nothing else."""
    project = real_project(["M001"], max_workers=1, auto_merge="auto")
    main_before = project.git("rev-parse", "main")
    project.git("switch", "-q", "-c", "dev")
    (project.root / "notes.txt").write_text("work in progress on dev\n")
    project.git("add", "notes.txt")
    project.git("-c", "user.name=dev", "-c", "user.email=dev@test.invalid", "commit", "-q", "-m", "dev work")
    dev_before = project.git("rev-parse", "dev")

    result = project.run("start", "--wait", timeout=WAIT)
    assert result.code == 0, result.out + result.err + project.diagnostics()

    assert project.git("rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert project.git("rev-parse", "dev") == dev_before
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001"]
    assert project.git("rev-parse", "main^") == main_before  # exactly one commit on top
    landed = set(project.git("diff", "--name-only", main_before, "main").splitlines())
    assert "src/m001.txt" in landed and "notes.txt" not in landed
    assert not (project.root / "src" / "m001.txt").exists()  # dev's working tree did not change
    assert leftover_branches(project.root) == [] and worktrees(project.root) == [str(project.root)]
    assert_cost_exact(project, scripted_model.billed_nanos())


def test_a_worker_killed_after_a_units_writes_before_any_commit_finishes_clean(
    real_project, scripted_model
) -> None:
    """Issue 13, item 21: kill -9 once the task's file is written (and billed) but not yet
    committed; the restarted worker and the checkout's finish leave nothing behind: main has
    the code, the roadmap tick and the slice summary, the checkout is clean and removed."""
    project = real_project(["M001"], max_workers=1, auto_merge="auto", max_restarts=2)
    main_before = project.git("rev-parse", "main")
    checkout = project.root / ".gsd-parallel" / "M001"
    started = project.run("start")
    assert started.code == 0, started.out + started.err + project.diagnostics()
    wait_until(lambda: (checkout / "src/m001.txt").is_file(), timeout=120, interval=0.05)
    scripted_model.set_delay(0.5)  # hold the next unit, so the kill lands before any commit
    assert project.git("-C", str(checkout), "log", "--format=%s", "main..HEAD") == ""
    pid = project.worker("M001")["pid"]
    os.killpg(pid, signal.SIGKILL)
    scripted_model.set_delay(0)

    wait_run_over(project, main_before, 1)
    (worker,) = project.status()["workers"]
    assert (worker["state"], worker["merged"]) == ("complete", True), worker
    assert project.git("show", "main:src/m001.txt") == "M001/S01/T01: Write greeting"
    roadmap = project.git("show", "main:.gsd/milestones/M001/M001-ROADMAP.md")
    assert "- [x] **S01" in roadmap, roadmap
    files = project.git("ls-tree", "-r", "--name-only", "main", ".gsd/milestones/M001").splitlines()
    assert ".gsd/milestones/M001/slices/S01/S01-SUMMARY.md" in files, files
    assert ".gsd/milestones/M001/M001-SUMMARY.md" in files, files
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    assert leftover_branches(project.root) == [] and worktrees(project.root) == [str(project.root)]


def test_the_overlap_radar_sees_what_real_workers_changed(real_project, scripted_model) -> None:
    """Two real workers write the same file: the radar reports the pair and its conflict (issue 12)."""
    project = real_project(
        ["M001", "M002"],
        files={"M001": ["src/shared.txt", "src/m001.txt"], "M002": ["src/shared.txt", "src/m002.txt"]},
        max_workers=2,
        overlap="warn",  # let both run: the radar, not the plan check, is under test
        auto_merge="manual",
    )
    main_before = project.git("rev-parse", "main")
    result = project.run("start", "--wait", timeout=WAIT)
    assert result.code == 0, result.out + result.err + project.diagnostics()

    status = project.status()
    assert {w["id"]: w["state"] for w in status["workers"]} == {"M001": "complete", "M002": "complete"}
    pairs = {tuple(o["milestones"]): o for o in status["overlaps"]}
    assert set(pairs) == {("M001", "M002")}, status["overlaps"]
    pair = pairs["M001", "M002"]
    assert "src/shared.txt" in pair["files"] and "src/m001.txt" not in pair["files"], pair
    # Each worker wrote its own text into the new file: merging both is an add/add conflict.
    assert pair["conflict"] is True and pair["conflict_files"] == ["src/shared.txt"], pair
    text = project.run("status", timeout=60)
    assert "Overlaps (1)" in text.out and "src/shared.txt" in text.out, text.out
    assert project.git("rev-parse", "main") == main_before  # looking moved no ref


def assert_m002_landed_only_its_own(project: RealProject, m001: str, m002: str, code: list[str]) -> None:
    """M002's squash on top of M001's holds only its own ``code`` (outside ``.gsd/``) and none
    of M001's planning, which main keeps as M001 left it (its slice ticked)."""
    landed = project.git("diff", "--name-only", m001, m002).splitlines()
    assert [f for f in landed if not f.startswith(".gsd/")] == code
    assert not [f for f in landed if f.startswith(".gsd/milestones/M001/")], landed  # M001's planning kept
    assert "- [x] **S01" in project.git("show", "main:.gsd/milestones/M001/M001-ROADMAP.md")


def test_m001_merges_while_m002_runs_and_the_drift_guard_updates_m002(real_project, scripted_model) -> None:
    """Issue 12, drift guard: M001 lands while the slower M002 (three tasks, slow model) runs;
    M002 is paused after its unit, main merged into its branch, resumed (GSD resumes its
    paused session) and lands cleanly. Cost exact, each unit done once, main's tree right."""
    project = real_project(["M001", "M002"], tasks={"M002": 3}, max_workers=2, auto_merge="auto")
    main_before = project.git("rev-parse", "main")
    gitignore = (project.root / ".gitignore").read_bytes()
    scripted_model.set_delay(0.5, milestone="M002")

    started = time.monotonic()
    result = project.run("start", "--wait", timeout=WAIT)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.out + result.err + project.diagnostics()

    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001", "M002"], project.diagnostics()
    (m001, _), (m002, _) = commits
    syncs = [(mid, message) for kind, mid, message in events(project.root) if kind == "sync"]
    assert [mid for mid, _ in syncs] == ["M002"], (syncs, project.diagnostics())
    assert syncs[0][1].startswith("M002: merged main into gsd-parallel/M002 ("), syncs
    # The update commit on M002's branch: its second parent holds M001's squash commit.
    update = syncs[0][1].split("(")[1].split(")")[0]
    assert project.git("merge-base", "--is-ancestor", m001, update) == ""
    assert project.git("log", "-1", "--format=%P", update).split()[1] == m001
    # Then M002 went on: units after the update, none twice.
    units = scripted_model.units()
    assert len(units) == len(set(units)) and len(units) == 4 + 6, units
    assert_all_landed(project, main_before, ["M001", "M002"], gitignore)
    # The second squash holds only M002's own work on top of M001's.
    assert_m002_landed_only_its_own(
        project, m001, m002, ["src/m002.txt", "src/m002_t02.txt", "src/m002_t03.txt"]
    )
    assert project.git("rev-parse", "main:.gsd/PREFERENCES.md") == project.git(
        "rev-parse", f"{main_before}:.gsd/PREFERENCES.md"
    )  # the worker's GSD settings never reach a commit, updated or not
    for k in (2, 3):
        assert project.git("show", f"main:src/m002_t0{k}.txt") == f"M002/S01/T0{k}: Write greeting part {k}"
    status = assert_cost_exact(project, scripted_model.billed_nanos())
    assert {w["id"]: (w["state"], w["merged"], w["restarts"]) for w in status["workers"]} == {
        "M001": ("complete", True, 0),
        "M002": ("complete", True, 0),
    }
    print(f"drift guard, real workers: {elapsed:.1f}s")


def test_a_conflicting_drift_guard_update_pauses_only_m002_and_resume_after_resolving_lands_it(
    real_project, scripted_model
) -> None:
    """Issue 12: M001 and M002 both write ``src/shared.txt`` (different text, same line). M001
    lands while the slower M002 runs; the drift guard's update of M002 conflicts: only M002
    pauses, naming the file; main holds M001 and nothing half-merged; M002's checkout is as
    its worker left it. The user resolves as the README says (commit the work, ``git merge
    main``, resolve, commit) and resumes: the real GSD completes M002 and it lands cleanly."""
    project = real_project(
        ["M001", "M002"],
        files={"M001": ["src/shared.txt"], "M002": ["src/shared.txt"]},
        tasks={"M002": 3},
        max_workers=2,
        overlap="warn",  # both run: the drift guard, not the plan check, meets the conflict
        auto_merge="auto",
    )
    main_before = project.git("rev-parse", "main")
    gitignore = (project.root / ".gitignore").read_bytes()
    checkout = project.root / ".gsd-parallel" / "M002"

    def pace() -> None:
        """The order the scenario needs, however fast the machine: M002 writes its text
        first (M001 slowed), then M001 lands (M002 slowed), then M002 goes on."""
        try:
            wait_until(lambda: (checkout / "src" / "shared.txt").is_file(), timeout=WAIT, interval=0.05)
            scripted_model.set_delay(0, milestone="M001")
            scripted_model.set_delay(3.0, milestone="M002")
            wait_until(lambda: project.git("rev-parse", "main") != main_before, timeout=WAIT, interval=0.2)
        finally:
            scripted_model.set_delay(0.5, milestone="M002")
            scripted_model.set_delay(0, milestone="M001")

    scripted_model.set_delay(1.5, milestone="M001")
    pacer = threading.Thread(target=pace, daemon=True)
    pacer.start()
    began = time.monotonic()
    result = project.run("start", "--wait", timeout=WAIT)
    pacer.join(timeout=5)
    assert result.code != 0, result.out + result.err + project.diagnostics()  # M002 did not complete

    # Only M002 paused, and it says why, with the file and what to do.
    status = project.status()
    workers = {w["id"]: w for w in status["workers"]}
    assert (workers["M001"]["state"], workers["M001"]["merged"]) == ("complete", True), project.diagnostics()
    assert (workers["M002"]["state"], workers["M002"]["merged"]) == ("paused", False), project.diagnostics()
    reason = workers["M002"]["state_reason"]
    assert reason == (
        "updating from main conflicts in src/shared.txt: in .gsd-parallel/M002 commit the work, "
        "run `git merge main`, resolve, commit, then `gsd-parallel resume M002`"
    ), reason
    text = project.run("status", timeout=60)
    assert "paused — updating from main conflicts in src/shared.txt" in text.out, text.out
    syncs = [(mid, message) for kind, mid, message in events(project.root) if kind == "sync"]
    assert [mid for mid, _ in syncs] == ["M002"] and "conflicts in src/shared.txt" in syncs[0][1], syncs

    # Main: M001's squash commit and nothing else; the root checkout is clean, not mid-merge.
    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001"], project.diagnostics()
    ((m001, _),) = commits
    assert project.git("rev-parse", "main") == m001 and project.git("rev-parse", "main^") == main_before
    assert project.git("show", "main:src/shared.txt") == "M001/S01/T01: Write greeting"
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    assert not Path(project.git("rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD")).exists()

    # M002's checkout: untouched by the guard. Its branch still at the base, no merge begun,
    # its own (uncommitted) text in the file, no conflict markers, nothing unmerged.
    def co(*args: str) -> str:
        return project.git("-C", str(checkout), *args)

    assert co("rev-parse", "HEAD") == main_before
    assert project.git("rev-parse", "gsd-parallel/M002") == main_before
    assert not Path(co("rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD")).exists()
    assert co("diff", "--cached", "--name-only") == ""  # nothing staged either
    assert (checkout / "src" / "shared.txt").read_text() == "M002/S01/T01: Write greeting\n"
    assert co("diff", "--name-only", "--diff-filter=U") == ""
    assert processes_in(checkout) == []  # the worker is not running
    paused_after = time.monotonic() - began

    # The user resolves as told: in the checkout commit the work, merge main, resolve, commit.
    co("add", "-A")
    co("commit", "-q", "-m", "M002: work so far")
    merge = subprocess.run(
        ["git", "merge", "--no-edit", "main"], cwd=checkout, capture_output=True, text=True
    )
    assert merge.returncode != 0 and "src/shared.txt" in merge.stdout, merge.stdout + merge.stderr
    assert co("diff", "--name-only", "--diff-filter=U").splitlines() == ["src/shared.txt"]
    resolution = "M001/S01/T01: Write greeting\nM002/S01/T01: Write greeting\n"
    (checkout / "src" / "shared.txt").write_text(resolution)
    co("add", "src/shared.txt")
    co("commit", "-q", "--no-edit")
    resumed_at = time.monotonic()
    resumed = project.run("resume", "M002")
    assert resumed.code == 0, resumed.out + resumed.err
    # Until the run is over, landed or not (GSD refusing to complete M002 ends it too).
    wait_until(lambda: not supervisor_alive(project.root), timeout=WAIT, interval=0.5)

    # GSD re-renders M001's planning from its DB (imported before M001 landed): hidden on the
    # relaunch (skip-worktree), or GSD refuses to complete M002 over those changes.
    commits = squash_commits(project.root, main_before)
    assert [trailer for _sha, trailer in commits] == ["M001", "M002"], project.diagnostics()
    (_, _), (m002, _) = commits
    assert len(project.git("rev-list", "--parents", "-n1", m002).split()) == 2  # a squash
    assert project.git("show", "main:src/shared.txt") + "\n" == resolution
    assert (project.root / "src" / "shared.txt").read_text() == resolution
    for k in (2, 3):
        assert project.git("show", f"main:src/m002_t0{k}.txt") == f"M002/S01/T0{k}: Write greeting part {k}"
    assert_m002_landed_only_its_own(
        project, m001, m002, ["src/m002_t02.txt", "src/m002_t03.txt", "src/shared.txt"]
    )
    assert "- [x] **S01" in project.git("show", "main:.gsd/milestones/M002/M002-ROADMAP.md")
    assert (project.root / ".gitignore").read_bytes() == gitignore
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    assert leftover_branches(project.root) == [] and worktrees(project.root) == [str(project.root)]
    status = assert_cost_exact(project, scripted_model.billed_nanos())
    assert {w["id"]: (w["state"], w["merged"], w["restarts"]) for w in status["workers"]} == {
        "M001": ("complete", True, 0),
        "M002": ("complete", True, 0),
    }
    units = scripted_model.units()
    assert len(units) == len(set(units)) and len(units) == 4 + 6, units  # each unit once
    print(
        f"drift conflict, real workers: paused after {paused_after:.1f}s, "
        f"done {time.monotonic() - resumed_at:.1f}s after resume"
    )
