"""The integration preview during a run (``parallel.preview_minutes``): the real supervisor,
real fake workers, real git and a real merge_check; nothing of the user's moves."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from gsd_parallel_plugin.run.preview_watch import read_preview
from gsd_parallel_plugin.run.supervisor import Supervisor
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import commit_in, git
from gsd_parallel_plugin.workspace import layout

# Passes with either file alone; fails when both are in the tree (they "break the build together").
TOGETHER_FAILS = [
    sys.executable, "-c",
    "import pathlib, sys\n"
    "both = all(pathlib.Path(p).exists() for p in ('src/left.py', 'src/right.py'))\n"
    "print('ImportError: left and right clash' if both else 'ok')\n"
    "sys.exit(1 if both else 0)",
]  # fmt: skip
SLOW_CHECK = [sys.executable, "-c", "import time; time.sleep(60)"]


def _project(tmp_path: Path, **prefs: Any):
    three = {"S01": {"T01": ["src/x1.py"], "T02": ["src/x2.py"], "T03": ["src/x3.py"]}}
    return build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Left", "slices": {"S01": {k: [f"a/{k}.py"] for k in three["S01"]}}},
            "M002": {"title": "Right", "slices": {"S01": {k: [f"b/{k}.py"] for k in three["S01"]}}},
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "manual", **prefs},
    )


def refs(root: Path) -> str:
    return git(root, "for-each-ref", "--format=%(refname) %(objectname)")


def worktree_paths(porcelain: str) -> list[str]:
    """The registered checkouts (their HEADs move as the workers commit)."""
    return [line for line in porcelain.splitlines() if line.startswith("worktree ")]


def assert_only_workers_moved(root: Path, before: str, after: str) -> None:
    """No ref was created, deleted or moved by the preview. The workers go on committing on
    their own branches meanwhile: a branch that moved moved forward, by commits of the
    worker's (the preview's stacked merges are merge commits, never on a branch)."""
    was = dict(line.split() for line in before.splitlines())
    now = dict(line.split() for line in after.splitlines())
    assert set(now) == set(was), (was, now)
    for ref, sha in now.items():
        if sha == was[ref]:
            continue
        assert ref.startswith("refs/heads/" + layout.BRANCH_PREFIX), (ref, was[ref], sha)
        git(root, "merge-base", "--is-ancestor", was[ref], sha)  # raises unless it moved forward
        assert git(root, "rev-list", "--merges", f"{was[ref]}..{sha}") == "", ref


def test_a_check_failure_of_two_running_branches_is_reported_while_both_run_and_no_ref_moves(
    tmp_path, cli, fake_worker
):
    fake_worker(unit_seconds=0.7, unit_cost=0.01)
    project = _project(tmp_path, merge_check=TOGETHER_FAILS, preview_minutes=0.02)  # every 1.2 s
    root = project.root
    seen: dict[str, Any] = {}

    def on_tick(sup: Supervisor) -> None:
        rows = {w.milestone_id: w for w in sup.store.workers(sup.run_id)}
        both = len(sup.tracked) == 2 and all(r.state == "running" for r in rows.values()) and len(rows) == 2
        if "committed" not in seen and both and all(r.units_done >= 1 for r in rows.values()):
            # Each worker's branch gets a commit the other's breaks merge_check with.
            commit_in(Path(rows["M001"].worktree), "left", {"src/left.py": "left = 1\n"})
            commit_in(Path(rows["M002"].worktree), "right", {"src/right.py": "right = 1\n"})
            sup.radar.refs(fresh=True)
            seen["committed"] = refs(root)
            seen["worktrees"] = git(root, "worktree", "list", "--porcelain")
            seen["previews"] = sup.preview.previews
            return
        verdicts = {r.id: r.outcome for r in sup.preview.results}
        if "committed" in seen and "failed" not in seen and verdicts.get("M002") == "check_failed":
            seen["failed"] = verdicts
            seen["both_running"] = both
            seen["refs"] = refs(root)
            seen["worktrees_now"] = git(root, "worktree", "list", "--porcelain")
            seen["status"] = cli("--project", root, "status", "--json").json()["preview"]
            seen["text"] = cli("--project", root, "status").out

    assert Supervisor(root, tick_seconds=0.05, on_tick=on_tick).run() == 0
    assert "failed" in seen, seen
    # Found while both still ran, with nothing moved: the refs are the ones the commits made,
    # no worktree was registered for the check.
    assert seen["both_running"] is True
    assert seen["failed"] == {"M001": "clean", "M002": "check_failed"}
    assert_only_workers_moved(root, seen["committed"], seen["refs"])
    assert worktree_paths(seen["worktrees_now"]) == worktree_paths(seen["worktrees"])
    rows = {r["id"]: r for r in seen["status"]["results"]}
    assert rows["M001"]["state"] == "running" and rows["M001"]["outcome"] == "clean"
    assert rows["M002"]["outcome"] == "check_failed"
    assert "ImportError: left and right clash" in rows["M002"]["output"]
    assert "## Preview (" in seen["text"]
    assert "- **M001** (running) — clean, merge_check passed" in seen["text"]
    assert "- **M002** (running) — check FAILED: ImportError: left and right clash" in seen["text"]

    # After the run: main never moved; the verdict is still there for status, watch and --json.
    main_line = next(ln for ln in seen["committed"].splitlines() if ln.startswith("refs/heads/main "))
    assert main_line in refs(root).splitlines()
    final = cli("--project", root, "status", "--json").json()["preview"]
    assert {r["id"]: r["outcome"] for r in final["results"]}["M002"] == "check_failed"
    watch = cli("--project", root, "watch", "--once", "--width", "120").out
    assert "Preview: M001 clean · M002 check FAILED" in watch
    assert "preview: M002 check FAILED: ImportError" in watch  # the event line
    # The verdict turned bad once: one event (the workers' final commits did not change it).
    bad = [e for e in _events(root) if e.milestone_id == "M002" and e.data["outcome"] == "check_failed"]
    assert len(bad) == 1, [e.message for e in _events(root)]
    assert not list(layout.scratch_dir(project.gsd / "parallel").iterdir()), "scratch left behind"


def _events(root: Path) -> list[Any]:
    from gsd_parallel_plugin.store import Store

    with Store(layout.store_path(layout.parallel_dir(root / ".gsd"))) as store:
        return store.events_of_kind("preview", None)


def _supervisor_with_a_branch(tmp_path: Path, check: list[str]) -> tuple[Supervisor, Path]:
    """A supervisor (not looping) of a project whose M001 branch has a commit beyond main."""
    from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

    project = _project(tmp_path, merge_check=check, preview_minutes=0.001)  # due at every tick
    sup = Supervisor(project.root, tick_seconds=0.05)
    sup._open_run()
    wt = ensure_worktree(project.root, "M001", "main").path
    commit_in(wt, "work", {"src/left.py": "left = 1\n"})
    return sup, wt


def test_a_preview_runs_again_only_when_a_branch_moved(tmp_path):
    sup, wt = _supervisor_with_a_branch(tmp_path, TOGETHER_FAILS)
    sup.preview.tick()
    assert sup.preview._thread is not None
    sup.preview._thread.join()
    sup.preview.tick()  # publishes, and nothing moved since: nothing new starts
    assert sup.preview.previews == 1 and sup.preview._thread is None
    assert [(r.id, r.outcome) for r in sup.preview.results] == [("M001", "clean")]
    time.sleep(0.1)  # past the interval
    sup.preview.tick()
    assert sup.preview._thread is None
    commit_in(wt, "more", {"src/right.py": "right = 1\n"})  # now M001 alone breaks the check
    sup.radar.refs(fresh=True)
    sup.preview.tick()
    assert sup.preview._thread is not None
    sup.preview._thread.join()
    sup.preview.tick()
    assert [(r.id, r.outcome) for r in sup.preview.results] == [("M001", "check_failed")]
    assert read_preview(sup.parallel_dir, sup.run_id).results == tuple(sup.preview.results)
    assert [e.message.split(":")[1].strip() for e in sup.store.events_of_kind("preview", sup.run_id)] == [
        "M001 clean, merge_check passed",
        "M001 check FAILED",
    ]
    sup.preview.close()
    sup.radar.close()


def test_the_supervisors_exit_kills_a_running_check_and_removes_its_checkout(tmp_path):
    """A check still running at exit is killed (not waited for), its directory removed."""
    sup, _wt = _supervisor_with_a_branch(tmp_path, SLOW_CHECK)
    sup.preview.tick()
    thread = sup.preview._thread
    assert thread is not None
    scratch = layout.scratch_dir(sup.parallel_dir)
    deadline = time.monotonic() + 20
    while not any(scratch.glob("gsd-parallel-preview-*/tree")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(scratch.glob("gsd-parallel-preview-*/tree")), "the check never started"
    sup.preview.tick()  # still running: nothing new starts, nothing waits
    assert sup.preview._thread is thread
    started = time.monotonic()
    sup.preview.close()
    assert time.monotonic() - started < 10  # the check sleeps 60 s
    assert not thread.is_alive() and sup.preview.previews == 0
    assert not any(scratch.glob("gsd-parallel-preview-*"))
    sup.radar.close()
