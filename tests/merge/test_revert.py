"""``revert MID``: the milestone's squash commit(s) taken back off the integration branch the
way merges land (temporary worktree, atomic move, journal row), dependents refused or reverted
newest first, the milestone not complete any more, and a revert killed with ``kill -9`` at a
real point finished or undone by ``doctor --fix``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS, complete, journal, main_log, snapshot


def _project(tmp_path: Path, *, depends: bool = False, **prefs: object):
    beta: dict[str, object] = {"title": "Beta", "slices": {"S01": {"T01": ["src/b.py"]}}}
    if depends:
        beta["depends_on"] = ["M001"]
    return build_project(
        tmp_path / "proj",
        {"M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/a.py"]}}}, "M002": beta},
        preferences={**PREFS, **prefs},
    )


def _merge_both(project, cli) -> tuple[str, str, str]:
    """M001 then M002 completed and merged; (base, M001 squash, M002 squash)."""
    base = project.head("main")
    for mid in ("M001", "M002"):
        complete(project, mid)
        merged = cli("--project", project.root, "merge", mid)
        assert merged.code == 0, merged.out + merged.err
    m2, m1 = project.git("log", "-2", "--format=%H", "main").splitlines()
    return base, m1, m2


def _store(project) -> Store:
    return Store(project.gsd / "parallel" / "coordinator.db")


def _complete_in_plan(project, mid: str) -> bool:
    milestone = read_project(project.root).get(mid)
    assert milestone is not None
    return milestone.complete


def test_revert_restores_the_tree_without_the_milestone_and_it_is_not_complete(tmp_path, cli):
    project = _project(tmp_path)
    base, m1, m2 = _merge_both(project, cli)
    assert _complete_in_plan(project, "M001")

    result = cli("--project", project.root, "revert", "M001", "--json")

    assert result.code == 0, result.out + result.err
    data = result.json()
    assert data["outcome"] == "reverted" and data["commit"] == project.head("main")
    assert data["plan"]["revert"] == [{"id": "M001", "commits": [m1]}]
    # The tree is base + M002's changes only: every file M002 changed as M002 left it, the
    # rest as in base (M001's files gone again).
    changed = set(project.git("diff", "--name-only", base, "main").splitlines())
    assert changed == set(project.git("diff", "--name-only", f"{m2}^", m2).splitlines())
    for path in changed:
        assert project.git("show", f"main:{path}") == project.git("show", f"{m2}:{path}")
    assert not (project.root / "src/a.py").exists()
    assert (project.root / "src/b.py").exists()
    assert project.git("status", "--porcelain") == ""
    # One commit, with the trailers that make the squash commit count as reverted.
    body = project.git("log", "-1", "--format=%B", "main")
    assert body.startswith("revert: Alpha")
    assert f"GSD-Reverted-Milestone: M001\nGSD-Reverts: {m1}" in body
    # Not complete in the plan (SUMMARY and roadmap ticks gone with the revert) nor the store.
    assert not _complete_in_plan(project, "M001") and _complete_in_plan(project, "M002")
    with _store(project) as s:
        assert set(s.merged_milestones()) == {"M002"}
        assert "M001" not in s.completed_milestones()
        assert s.merges()[-1].outcome == "reverted" and s.unfinished_merges() == []
    assert not list((project.gsd / "parallel" / "merging").glob("*"))
    # Reverted now: a second revert is a user error, one line.
    again = cli("--project", project.root, "revert", "M001")
    assert again.code == 2 and "M001 is not merged" in again.err
    assert again.err.strip().count("\n") == 0


def test_refuses_with_a_merged_dependent_and_reverts_both_newest_first(tmp_path, cli):
    project = _project(tmp_path, depends=True)
    base, _m1, _m2 = _merge_both(project, cli)
    before = snapshot(project.root)

    refused = cli("--project", project.root, "revert", "M001")
    assert refused.code == 1
    assert "Refused: merged milestone(s) depend on M001: M002." in refused.out
    assert "`gsd-parallel revert M001 --with-dependents`" in refused.out
    assert snapshot(project.root) == before
    dry = cli("--project", project.root, "revert", "M001", "--with-dependents", "--dry-run")
    assert dry.code == 0 and "Nothing changed (dry run)" in dry.out
    assert snapshot(project.root) == before

    both = cli("--project", project.root, "revert", "M001", "--with-dependents", "--json")
    assert both.code == 0, both.out + both.err
    assert [r["id"] for r in both.json()["plan"]["revert"]] == ["M002", "M001"]
    assert main_log(project)[:2] == ["revert: Alpha", "revert: Beta"]  # M002 reverted first
    assert project.git("rev-parse", "main^{tree}") == project.git("rev-parse", f"{base}^{{tree}}")
    assert not _complete_in_plan(project, "M001") and not _complete_in_plan(project, "M002")
    with _store(project) as s:
        assert s.merged_milestones() == {}


def test_reverted_milestone_reruns_and_merges_again(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = _project(tmp_path, auto_merge="auto")
    assert cli("--project", project.root, "start", "--wait").code == 0
    with _store(project) as s:
        assert s.worker("M001").state == "complete"  # type: ignore[union-attr]
    reverted = cli("--project", project.root, "revert", "M001")
    assert reverted.code == 0, reverted.out + reverted.err
    assert "M001 can run again" in reverted.err
    with _store(project) as s:
        row = s.worker("M001")
        assert row is not None and (row.state, row.state_reason) == ("stopped", "reverted")
    assert not (project.root / "src/a.py").exists()

    rerun = cli("--project", project.root, "start", "--wait", "--json")
    assert rerun.code == 0, rerun.out + rerun.err
    assert (project.root / "src/a.py").read_text() == "M001/S01/T01\n"
    assert main_log(project)[0] == "feat: Alpha"
    with _store(project) as s:
        assert set(s.merged_milestones()) == {"M001", "M002"}


def test_unknown_or_unmerged_milestone_is_one_line_exit_2(tmp_path, cli):
    project = _project(tmp_path)
    unknown = cli("--project", project.root, "revert", "M009")
    assert unknown.code == 2 and "unknown milestone M009" in unknown.err
    unmerged = cli("--project", project.root, "revert", "M001")
    assert unmerged.code == 2
    assert unmerged.err.strip().endswith("no commit on main has the trailer `GSD-Milestone: M001`")
    assert "Traceback" not in unknown.err + unmerged.err


# --------------------------------------------------------------------------- kill -9


HOLD = (
    "import os, pathlib, time\n"
    "m = os.environ.get('REVERT_MARK')\n"
    "if m and not pathlib.Path(m).exists():\n"
    "    pathlib.Path(m).write_text(f'{os.getppid()} {os.getpid()}')\n"
    "    time.sleep(60)\n"
)


def _revert_in_background(project, mid: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "revert", mid],
        env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _kill(proc: subprocess.Popen[bytes], mark: Path) -> None:
    """kill -9 the revert (its process group) and the holding process (maybe in its own)."""
    _parent, holder = (int(x) for x in mark.read_text().split())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder, signal.SIGKILL)


def test_revert_killed_before_landing_is_undone_by_doctor_fix(tmp_path, cli):
    project = _project(tmp_path, merge_check=[sys.executable, "-c", HOLD])
    _merge_both(project, cli)
    before = snapshot(project.root)
    mark = tmp_path / "holding"
    proc = _revert_in_background(project, "M001", {"REVERT_MARK": str(mark)})
    wait_until(lambda: mark.exists() and len(mark.read_text().split()) == 2, timeout=30)
    _kill(proc, mark)  # inside merge_check: the revert commit is built, not landed

    assert snapshot(project.root) == before
    row = journal(project)[-1]
    assert row.outcome is None and row.step == "revert-committed" and row.worktree
    assert Path(row.worktree).is_dir()
    look = cli("--project", project.root, "doctor")
    assert "M001: revert #" in look.out and "did not land" in look.out, look.out
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert "undone, retry with `gsd-parallel revert M001`" in fixed.out, fixed.out + fixed.err
    assert journal(project)[-1].outcome == "aborted"
    assert not Path(row.worktree).exists()
    assert "merging" not in project.git("worktree", "list", "--porcelain")
    assert snapshot(project.root) == before
    with _store(project) as s:
        assert set(s.merged_milestones()) == {"M001", "M002"}
    # The retry (the mark exists now: merge_check passes) lands.
    retry = cli("--project", project.root, "revert", "M001", env={"REVERT_MARK": str(mark)})
    assert retry.code == 0, retry.out + retry.err
    assert main_log(project)[0] == "revert: Alpha"


def test_revert_killed_after_landing_is_finished_by_doctor_fix(tmp_path, cli):
    project = _project(tmp_path)
    _, m1, _ = _merge_both(project, cli)
    # git runs the user's post-merge hook after the fast-forward that lands the revert: the
    # branch has moved, the store does not know yet. Killed there.
    hook = project.root / ".git" / "hooks" / "post-merge"
    hook.write_text(f"#!{sys.executable}\n{HOLD}")
    hook.chmod(0o755)
    mark = tmp_path / "landed"
    proc = _revert_in_background(project, "M001", {"REVERT_MARK": str(mark)})
    wait_until(lambda: mark.exists() and len(mark.read_text().split()) == 2, timeout=30)
    _kill(proc, mark)

    assert main_log(project)[0] == "revert: Alpha"  # landed
    row = journal(project)[-1]
    assert row.outcome is None and row.step == "revert-landing"
    with _store(project) as s:
        assert "M001" in s.merged_milestones()  # not recorded yet
    fixed = cli("--project", project.root, "doctor", "--fix")
    assert "it had landed on main" in fixed.out and "finished it: M001 not complete any more" in (
        fixed.out
    ), fixed.out + fixed.err
    with _store(project) as s:
        assert set(s.merged_milestones()) == {"M002"} and s.unfinished_merges() == []
        assert s.merges()[-1].outcome == "reverted"
    assert not _complete_in_plan(project, "M001")
    assert "merging" not in project.git("worktree", "list", "--porcelain")
    assert not list((project.gsd / "parallel" / "merging").glob("*"))
    assert project.git("status", "--porcelain") == ""
    assert cli("--project", project.root, "doctor").code == 0
    assert f"GSD-Reverts: {m1}" in project.git("log", "-1", "--format=%B", "main")


def test_a_running_dependent_is_named(tmp_path, cli):
    """Not merged, so no refusal; but its branch started from the work being reverted."""
    from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

    project = _project(tmp_path, depends=True)
    complete(project, "M001")
    assert cli("--project", project.root, "merge", "M001").code == 0
    ensure_worktree(project.root, "M002", "main")
    result = cli("--project", project.root, "revert", "M001", "--json")
    assert result.code == 0, result.out + result.err
    assert result.json()["plan"]["unmerged_dependents"] == ["M002"]
    assert "M002 depend(s) on what is reverted" in result.err


def test_a_revert_that_conflicts_with_later_work_changes_nothing_and_names_the_files(tmp_path, cli):
    project = _project(tmp_path)
    complete(project, "M001")
    assert cli("--project", project.root, "merge", "M001").code == 0
    (project.root / "src/a.py").write_text("M001/S01/T01\nedited later on main\n")
    project.commit_all("later work on a.py")
    before = snapshot(project.root)
    result = cli("--project", project.root, "revert", "M001", "--json")
    assert result.code == 1
    data = result.json()
    assert data["outcome"] == "conflict" and data["files"] == ["src/a.py"]
    assert "nothing was changed" in data["error"] and "GSD-Reverts: <sha>" in data["error"]
    assert snapshot(project.root) == before
    with _store(project) as s:
        assert "M001" in s.merged_milestones() and s.unfinished_merges() == []
    assert not list((project.gsd / "parallel" / "merging").glob("*"))
