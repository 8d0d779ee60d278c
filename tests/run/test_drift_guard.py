"""The drift guard: a running worker merges the integration branch at its next unit boundary;
real git, real fake workers, the real supervisor."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

from gsd_parallel_plugin.run.drift import is_sync_pause, sync_checkout
from gsd_parallel_plugin.run.supervisor import Supervisor
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.rstrip()


def repo_with_checkout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "shared.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    wt = tmp_path / "wt"
    git(root, "worktree", "add", "-q", "-b", "gsd-parallel/M002", str(wt))
    return root, wt


def test_sync_merges_main_and_keeps_uncommitted_and_untracked_work_as_it_was(tmp_path):
    root, wt = repo_with_checkout(tmp_path)
    lines = (wt / "shared.txt").read_text().splitlines(keepends=True)
    (wt / "shared.txt").write_text("".join([*lines[:9], "MINE 10\n"]))  # uncommitted
    (wt / "mine.txt").write_text("new, untracked\n")
    (root / "shared.txt").write_text("".join(["MAIN 1\n", *lines[1:]]))
    (root / "theirs.txt").write_text("from main\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "M001 squash")
    head = git(wt, "rev-parse", "HEAD")
    result = sync_checkout(wt, "gsd-parallel/M002", "main")
    assert result.outcome == "updated", result
    assert git(wt, "rev-parse", "HEAD") == result.commit
    assert git(wt, "rev-parse", "HEAD^1") == head and git(wt, "rev-parse", "HEAD^2") == git(
        root, "rev-parse", "main"
    )
    assert (wt / "theirs.txt").read_text() == "from main\n"
    assert (wt / "shared.txt").read_text().splitlines()[0::9] == ["MAIN 1", "MINE 10"]
    assert git(wt, "status", "--porcelain").splitlines() == [" M shared.txt", "?? mine.txt"]
    assert git(wt, "show", "HEAD:shared.txt").splitlines()[0::9] == ["MAIN 1", "line 10"]
    assert sync_checkout(wt, "gsd-parallel/M002", "main").outcome == "current"


def test_a_conflicting_sync_names_the_files_and_changes_nothing(tmp_path):
    root, wt = repo_with_checkout(tmp_path)
    (wt / "shared.txt").write_text("mine\n")
    (root / "shared.txt").write_text("theirs\n")
    git(root, "commit", "-q", "-am", "M001 squash")
    head = git(wt, "rev-parse", "HEAD")
    objects = git(root, "count-objects", "-v")
    result = sync_checkout(wt, "gsd-parallel/M002", "main")
    assert result.outcome == "conflict" and result.files == ("shared.txt",)
    assert git(wt, "rev-parse", "HEAD") == head
    assert git(root, "count-objects", "-v") == objects  # the snapshot and its merge: thrown away
    assert (wt / "shared.txt").read_text() == "mine\n"
    assert git(wt, "status", "--porcelain") == " M shared.txt"


def project(tmp_path: Path, *, m2_extra: list[str] | None = None, **prefs):
    return build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Quick", "slices": {"S01": {"T01": ["src/a.py"]}}},
            "M002": {
                "title": "Long",
                "slices": {"S01": {f"T{i:02d}": [f"src/b{i}.py"] for i in range(1, 16)}},
            },
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "auto", **prefs},
        files={"src/shared.py": "shared = 1\n"},
    )


def contains_m001(sup: Supervisor, seen: dict[str, bool]) -> None:
    """While M002 runs: does its branch hold M001's squash commit yet?"""
    merged = sup.store.merged_milestones().get("M001")
    row = sup.store.worker("M002", sup.run_id)
    if merged and row is not None and row.state == "running" and "M002" in sup.tracked:
        ok = subprocess.run(
            ["git", "merge-base", "--is-ancestor", merged, "gsd-parallel/M002"], cwd=sup.root
        ).returncode
        seen["contains"] = seen.get("contains", False) or ok == 0
        seen.setdefault("units_at_first_look", row.units_done)


def test_m001_merges_while_m002_runs_m002_is_updated_and_still_lands_cleanly(tmp_path, fake_worker):
    fake_worker(unit_seconds=0.3, unit_cost=0.125)
    proj = project(tmp_path)
    main_before = proj.head("main")
    seen: dict[str, bool] = {}
    assert Supervisor(proj.root, tick_seconds=0.05, on_tick=lambda s: contains_m001(s, seen)).run() == 0
    assert seen.get("contains") is True, seen
    with Store(proj.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        assert run is not None
        syncs = [e for e in store.events_of_kind("sync", run.id)]
        assert [e.milestone_id for e in syncs] == ["M002"] and syncs[0].data["outcome"] == "updated"
        merged = store.merged_milestones()
        # 3 units for M001, 15 tasks + 2 for M002: every unit counted once, paused or not
        assert Decimal(str(store.run_total_cost(run.id))) == Decimal("2.5")
    assert set(merged) == {"M001", "M002"}
    # The integration branch: exactly the two squash commits, the second one holding only M002's work.
    assert proj.git("rev-list", "--count", f"{main_before}..main") == "2"
    assert proj.git("rev-list", "--count", "--merges", f"{main_before}..main") == "0"
    changed = proj.git("diff", "--name-only", merged["M001"], merged["M002"]).splitlines()
    assert [f for f in changed if not f.startswith(".gsd/")] == sorted(f"src/b{i}.py" for i in range(1, 16))


def test_never_leaves_the_branch_alone(tmp_path, fake_worker):
    fake_worker(unit_seconds=0.2, unit_cost=0.125)
    proj = project(tmp_path, sync_with_integration="never")
    seen: dict[str, bool] = {}
    assert Supervisor(proj.root, tick_seconds=0.05, on_tick=lambda s: contains_m001(s, seen)).run() == 0
    assert seen.get("contains") is False
    with Store(proj.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        assert run is not None and store.events_of_kind("sync", run.id) == []


def test_a_conflicting_update_pauses_only_m002_naming_the_files_and_resume_continues(
    tmp_path, fake_worker, cli
):
    """After the user's own ``git merge main`` the relaunched worker (which re-renders M001's
    planning from its DB, imported before M001 landed) must still complete: the relaunch hides
    those files (``hide_merged_planning``)."""
    fake_worker(unit_seconds=0.3, unit_cost=0.125,
                extra_files="M001/S01/T01=src/shared.py;M002/S01/T01=src/shared.py")  # fmt: skip
    proj = project(tmp_path, overlap="warn")
    assert Supervisor(proj.root, tick_seconds=0.05).run() == 1  # M002 did not complete
    status = cli("--project", proj.root, "status", "--json").json()
    workers = {w["id"]: w for w in status["workers"]}
    assert workers["M001"]["state"] == "complete" and workers["M001"]["merged"] is True
    assert workers["M002"]["state"] == "paused"
    reason = workers["M002"]["state_reason"]
    assert reason.startswith("updating from main conflicts in src/shared.py: in .gsd-parallel/M002")
    assert "resume M002" in reason
    text = cli("--project", proj.root, "status").out
    assert "paused — updating from main conflicts in src/shared.py" in text
    # The user resolves in the checkout as told, then resumes.
    wt = Path(workers["M002"]["worktree"])
    git(wt, "add", "-A", "--", "src")
    git(wt, "commit", "-q", "-m", "M002 work so far")
    subprocess.run(["git", "merge", "--no-edit", "main"], cwd=wt, capture_output=True, check=False)
    (wt / "src" / "shared.py").write_text("shared = 1\nM001/S01/T01\nM002/S01/T01\n")
    git(wt, "add", "src/shared.py")
    git(wt, "commit", "-q", "--no-edit")
    assert cli("--project", proj.root, "resume", "M002").code == 0
    done = cli("--project", proj.root, "start", "--wait", "--json")
    workers = {w["id"]: w for w in done.json()["workers"]}
    assert workers["M002"]["state"] == "complete" and workers["M002"]["merged"] is True, done.err
    assert proj.git("show", "main:src/shared.py").splitlines() == [
        "shared = 1",
        "M001/S01/T01",
        "M002/S01/T01",
    ]
    # The fake GSD wrote M001's roadmap back unticked from its stale DB (as the real one does):
    # hidden on the relaunch, so M002 completed and main keeps M001's ticked roadmap.
    assert "- [x] **S01" in proj.git("show", "main:.gsd/milestones/M001/M001-ROADMAP.md")


def test_a_milestone_is_not_synced_for_its_own_slice_merge(tmp_path, fake_worker):
    """``merge_strategy: per-slice``: the milestone's own slices landing moves the integration
    branch, but that is its own work: no pause, no update, it completes in one launch. A
    sibling still running is brought up to date (the integration branch really moved)."""
    fake_worker(unit_seconds=1.2, unit_cost=0.125)
    proj = build_project(
        tmp_path / "proj",
        {
            "M001": {
                "title": "Sliced",
                "slices": {"S01": {"T01": ["src/s1.py"]}, "S02": {"T01": ["src/s2.py"]}},
            },
            "M002": {
                "title": "Long",
                "slices": {"S01": {f"T{i:02d}": [f"src/b{i}.py"] for i in range(1, 6)}},
            },
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "auto", "merge_strategy": "per-slice"},
        files={"src/shared.py": "shared = 1\n"},
    )
    states: list[tuple[str, str | None]] = []

    def watch(sup: Supervisor) -> None:
        row = sup.store.worker("M001", sup.run_id)
        if row is not None and (not states or states[-1] != (row.state, row.state_reason)):
            states.append((row.state, row.state_reason))

    assert Supervisor(proj.root, tick_seconds=0.05, on_tick=watch).run() == 0
    with Store(proj.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        assert run is not None
        syncs = store.events_of_kind("sync", run.id)
        merges = [e.message for e in store.events_of_kind("merge", run.id)]
        m001 = store.worker("M001", run.id)
        assert m001 is not None
        # (2 tasks + 2 slices + 1) + (5 tasks + 1 + 1) units
        assert Decimal(str(store.run_total_cost(run.id))) == Decimal("1.5")
    assert any(m.startswith("M001/S01,S02 merged into main") for m in merges), merges
    assert [e.milestone_id for e in syncs] == ["M002"], [e.message for e in syncs]
    assert not any(state == "pausing" for state, _ in states), states
    assert m001.restarts == 0
    assert proj.git("show", "main:src/s2.py") and proj.git("show", "main:src/b5.py")


def test_a_user_pause_during_an_update_is_kept(tmp_path, fake_worker, cli):
    """``pause M002`` while the drift guard pauses M002 for an update: the update happens, but
    M002 is not launched again; it stays paused until the user resumes it."""
    fake_worker(unit_seconds=0.3, unit_cost=0.125)
    proj = project(tmp_path)
    asked: list[int] = []

    def pause_during_sync(sup: Supervisor) -> None:
        row = sup.store.worker("M002", sup.run_id)
        if not asked and row is not None and row.state == "pausing" and is_sync_pause(row.state_reason):
            asked.append(cli("--project", proj.root, "pause", "M002").code)

    assert Supervisor(proj.root, tick_seconds=0.05, on_tick=pause_during_sync).run() == 1
    assert asked == [0]
    status = cli("--project", proj.root, "status", "--json").json()
    workers = {w["id"]: w for w in status["workers"]}
    assert workers["M001"]["merged"] is True
    assert (workers["M002"]["state"], workers["M002"]["state_reason"]) == ("paused", None), workers["M002"]
    with Store(proj.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        assert run is not None
        (sync,) = store.events_of_kind("sync", run.id)
        merged = store.merged_milestones()
    assert sync.data["outcome"] == "updated"
    assert proj.git("merge-base", "--is-ancestor", merged["M001"], "gsd-parallel/M002") == ""
    assert cli("--project", proj.root, "resume", "M002").code == 0
    done = cli("--project", proj.root, "start", "--wait", "--json")
    workers = {w["id"]: w for w in done.json()["workers"]}
    assert workers["M002"]["state"] == "complete" and workers["M002"]["merged"] is True, done.err
    assert Decimal(str(done.json()["total_cost"])) == Decimal("2.5")


def test_sync_keeps_skip_worktree_files_out_of_the_index(tmp_path):
    """The worker's own GSD settings (a tracked PREFERENCES.md marked skip-worktree) stay
    hidden after an update: read-tree would drop the bit and GSD would commit them."""
    root, wt = repo_with_checkout(tmp_path)
    (root / "prefs.md").write_text("user's\n")
    git(root, "add", "prefs.md")
    git(root, "commit", "-q", "-m", "prefs")
    git(wt, "merge", "-q", "main")
    git(wt, "update-index", "--skip-worktree", "prefs.md")
    (wt / "prefs.md").write_text("worker's\n")
    (root / "theirs.txt").write_text("from main\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "M001 squash")
    assert sync_checkout(wt, "gsd-parallel/M002", "main").outcome == "updated"
    assert git(wt, "ls-files", "-v", "prefs.md") == "S prefs.md"
    assert git(wt, "status", "--porcelain") == ""
    assert (wt / "prefs.md").read_text() == "worker's\n"
