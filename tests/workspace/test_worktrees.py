"""Milestone worktrees against real git repositories in tmp dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import GitError, GsdParallelError, ProjectError
from gsd_parallel_plugin.testing.builder import commit_file, git
from gsd_parallel_plugin.workspace import worktrees as wtm

pytestmark = pytest.mark.usefixtures("isolated_git")


def head(cwd: Path, ref: str = "HEAD") -> str:
    return git(cwd, "rev-parse", ref)


@pytest.fixture
def repo(repo: Path) -> Path:
    """The plain repository, plus a milestone roadmap to check out."""
    commit_file(repo, ".gsd/milestones/M001/M001-ROADMAP.md", "# M001: First\n")
    return repo


def registered(repo: Path) -> set[Path]:
    out = git(repo, "worktree", "list", "--porcelain")
    return {Path(ln[len("worktree ") :]) for ln in out.splitlines() if ln.startswith("worktree ")}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("bad", ["M1", "../M001", "M001; rm -rf /", "M001/..", ""])
def test_invalid_ids_never_reach_git(repo: Path, bad: str) -> None:
    before = git(repo, "for-each-ref")
    with pytest.raises(ProjectError, match="invalid milestone ID"):
        wtm.ensure_worktree(repo, bad, "main")
    with pytest.raises(ProjectError):
        wtm.worktree_path(repo, bad)
    with pytest.raises(ProjectError):
        wtm.branch_name(bad)
    with pytest.raises(ProjectError):
        wtm.remove_worktree(repo, bad, delete_branch=True)
    assert git(repo, "for-each-ref") == before
    assert not (repo / ".gsd-parallel").exists()


def test_names() -> None:
    assert wtm.branch_name("M002") == "gsd-parallel/M002"
    assert wtm.worktree_path(Path("/p"), "M012-x7k2pq") == Path("/p/.gsd-parallel/M012-x7k2pq")


# --------------------------------------------------------------------------- create / reuse


def test_create_then_reuse(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    assert res.path == repo / ".gsd-parallel" / "M002"
    assert (res.branch, res.created, res.fast_forwarded) == ("gsd-parallel/M002", True, False)
    assert res.planning == "checkout"
    assert git(res.path, "symbolic-ref", "--short", "HEAD") == "gsd-parallel/M002"
    assert head(res.path) == head(repo, "main")
    assert (res.path / ".gsd" / "milestones" / "M001" / "M001-ROADMAP.md").is_file()
    # the new branch does not track anything
    assert (
        subprocess.run(
            ["git", "config", "branch.gsd-parallel/M002.merge"], cwd=repo, capture_output=True
        ).returncode
        == 1
    )

    commit_file(res.path, "work.txt")
    again = wtm.ensure_worktree(repo, "M002", "main")
    assert (again.created, again.fast_forwarded) == (False, False)
    assert (again.path / "work.txt").is_file()
    assert git(repo, "status", "--porcelain") == ""  # .gsd/worktrees is excluded


def test_reused_clean_worktree_fast_forwards(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    new_main = commit_file(repo, "dep.txt")
    again = wtm.ensure_worktree(repo, "M002", "main")
    assert (again.created, again.fast_forwarded) == (False, True)
    assert head(res.path) == new_main
    assert (res.path / "dep.txt").is_file()


def test_reused_dirty_worktree_is_not_fast_forwarded(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    old = head(res.path)
    (res.path / "README.md").write_text("edited by the worker\n")
    commit_file(repo, "dep.txt")
    again = wtm.ensure_worktree(repo, "M002", "main")
    assert again.fast_forwarded is False
    assert head(res.path) == old
    assert (res.path / "README.md").read_text() == "edited by the worker\n"


def test_existing_ancestor_branch_is_fast_forwarded(repo: Path) -> None:
    git(repo, "branch", "gsd-parallel/M003")
    new_main = commit_file(repo, "more.txt")
    res = wtm.ensure_worktree(repo, "M003", "main")
    assert (res.created, res.fast_forwarded) == (True, True)
    assert head(repo, "gsd-parallel/M003") == new_main
    assert head(res.path) == new_main
    reflog = git(repo, "reflog", "show", "--format=%gs", "gsd-parallel/M003")
    assert "gsd-parallel: fast-forward" in reflog


def test_diverged_branch_is_left_alone(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "gsd-parallel/M004")
    own = commit_file(repo, "m4.txt", "milestone work\n")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "main-only.txt")
    res = wtm.ensure_worktree(repo, "M004", "main")
    assert (res.created, res.fast_forwarded) == (True, False)
    assert head(repo, "gsd-parallel/M004") == own
    assert (res.path / "m4.txt").read_text() == "milestone work\n"
    assert not (res.path / "main-only.txt").exists()
    # reusing it does not merge main in either
    again = wtm.ensure_worktree(repo, "M004", "main")
    assert again.fast_forwarded is False and head(res.path) == own


def test_branch_ahead_of_integration_is_kept(repo: Path) -> None:
    git(repo, "branch", "gsd-parallel/M005")
    tip = commit_file(repo, "x.txt")
    git(repo, "branch", "-f", "gsd-parallel/M005", tip)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    res = wtm.ensure_worktree(repo, "M005", "main")
    assert res.fast_forwarded is False
    assert head(repo, "gsd-parallel/M005") == tip


# --------------------------------------------------------------------------- refusals


def test_branch_checked_out_elsewhere_is_refused(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    git(repo, "worktree", "add", "-q", "-b", "gsd-parallel/M002", str(elsewhere))
    with pytest.raises(GitError) as info:
        wtm.ensure_worktree(repo, "M002", "main")
    msg = str(info.value)
    assert msg == (
        f"branch gsd-parallel/M002 is checked out at {elsewhere.resolve()}; "
        "remove that worktree or check out another branch there"
    )
    assert not (repo / ".gsd-parallel" / "M002").exists()


def test_branch_checked_out_in_main_checkout_is_refused(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "gsd-parallel/M002")
    git(repo, "branch", "-q", "-f", "main", "HEAD")
    with pytest.raises(GitError, match="is checked out at"):
        wtm.ensure_worktree(repo, "M002", "main")


def test_unborn_repository_is_refused(tmp_path: Path) -> None:
    r = tmp_path / "empty"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    with pytest.raises(GitError) as info:
        wtm.ensure_worktree(r, "M001", "main")
    assert str(info.value) == "repository has no commits yet: commit something on main first"
    assert git(r, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_detached_root_is_refused(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(GitError) as info:
        wtm.ensure_worktree(repo, "M001", "main")
    assert str(info.value) == "the main checkout is on a detached HEAD: check out main first"


def test_missing_integration_branch_is_refused(repo: Path) -> None:
    with pytest.raises(GitError, match="integration branch develop does not exist"):
        wtm.ensure_worktree(repo, "M001", "develop")


def test_not_a_repo_or_not_its_top(repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ProjectError, match="not a git repository"):
        wtm.ensure_worktree(plain, "M001", "main")
    with pytest.raises(ProjectError, match="not the top of its git repository"):
        wtm.ensure_worktree(repo / ".gsd", "M001", "main")


def test_unregistered_leftover_directory_is_refused(repo: Path) -> None:
    leftover = repo / ".gsd-parallel" / "M002"
    leftover.mkdir(parents=True)
    (leftover / "notes.txt").write_text("mine")
    with pytest.raises(GitError, match="exists but is not a worktree"):
        wtm.ensure_worktree(repo, "M002", "main")
    assert (leftover / "notes.txt").read_text() == "mine"


def test_refusals_are_one_line_user_errors(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(GsdParallelError) as info:
        wtm.ensure_worktree(repo, "M001", "main")
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


# --------------------------------------------------------------------------- stale registration


def test_stale_registration_is_pruned_and_recreated(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    commit_file(res.path, "kept.txt")
    shutil.rmtree(res.path)
    again = wtm.ensure_worktree(repo, "M002", "main")
    assert again.created is True
    assert (again.path / "kept.txt").is_file()  # the branch, with its commit, survived
    assert git(again.path, "status", "--porcelain") == ""


# --------------------------------------------------------------------------- excludes


def test_excludes_idempotent_and_gitignore_untouched(repo: Path) -> None:
    (repo / ".gitignore").write_text("node_modules/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    wtm.ensure_worktree(repo, "M002", "main")
    wtm.ensure_worktree(repo, "M003", "main")
    assert wtm.ensure_excludes(repo) == []
    lines = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert lines.count("/.gsd-parallel/") == 1
    assert lines.count(".gsd/parallel/") == 1
    assert (repo / ".gitignore").read_text() == "node_modules/\n"
    (repo / ".gsd" / "parallel").mkdir()
    (repo / ".gsd" / "parallel" / "M002.status.json").write_text("{}")
    assert git(repo, "status", "--porcelain") == ""


# --------------------------------------------------------------------------- planning files


@pytest.fixture
def symlinked(tmp_path: Path) -> tuple[Path, Path]:
    """A repo whose untracked .gsd is a symlink to a directory outside it."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    commit_file(r, "README.md")
    shared = tmp_path / "home" / ".gsd" / "projects" / "abc123def456"
    (shared / "milestones" / "M002").mkdir(parents=True)
    (shared / "milestones" / "M002" / "M002-ROADMAP.md").write_text("# M002: Auth\n")
    (shared / "PREFERENCES.md").write_text("---\nparallel:\n  enabled: true\n---\n")
    os.symlink(shared, r / ".gsd")
    return r, shared


def test_symlinked_gsd_is_copied_into_the_worktree(symlinked: tuple[Path, Path]) -> None:
    """The real GSD needs a .gsd of its own in its checkout (its own gsd.db): a symlinked
    .gsd is copied, never linked, so the checkout is not the same GSD project as the root."""
    repo, shared = symlinked
    res = wtm.ensure_worktree(repo, "M002", "main")
    assert res.planning == "copied"
    assert res.path == repo / ".gsd-parallel" / "M002"
    assert res.path.resolve() in registered(repo)
    wt_gsd = res.path / ".gsd"
    assert wt_gsd.is_dir() and not wt_gsd.is_symlink()
    assert (wt_gsd / "milestones" / "M002" / "M002-ROADMAP.md").read_text() == "# M002: Auth\n"
    # A worker's edit stays in the checkout until the merge copies it home.
    (wt_gsd / "milestones" / "M002" / "M002-SUMMARY.md").write_text("done")
    assert not (shared / "milestones" / "M002" / "M002-SUMMARY.md").exists()
    # Neither the link nor its copy can be committed by `git add -A`.
    assert git(res.path, "status", "--porcelain") == ""
    assert git(repo, "status", "--porcelain") == ""
    assert wtm.ensure_worktree(repo, "M002", "main").created is False


def test_removing_symlinked_worktree_keeps_shared_gsd(symlinked: tuple[Path, Path]) -> None:
    repo, shared = symlinked
    wtm.ensure_worktree(repo, "M002", "main")
    assert wtm.remove_worktree(repo, "M002", delete_branch=False) is True
    assert not (repo / ".gsd-parallel" / "M002").exists()
    assert (shared / "milestones" / "M002" / "M002-ROADMAP.md").is_file()
    assert (shared / "PREFERENCES.md").is_file()
    assert git(repo, "branch", "--list", "gsd-parallel/M002") != ""


@pytest.fixture
def untracked_dir(tmp_path: Path) -> Path:
    """A repo whose .gsd is a real directory git does not track."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    commit_file(r, "README.md")
    gsd = r / ".gsd"
    (gsd / "milestones" / "M002" / "slices" / "S01").mkdir(parents=True)
    (gsd / "milestones" / "M002" / "M002-ROADMAP.md").write_text("# M002: Auth\n")
    (gsd / "milestones" / "M002" / "slices" / "S01" / "S01-PLAN.md").write_text("plan v1\n")
    (gsd / "QUEUE-ORDER.json").write_text('{"order": []}')
    (gsd / "PROJECT.md").write_text("project\n")
    for runtime in ("STATE.md", "gsd.db", "gsd.db-wal", "metrics.json", "auto.lock"):
        (gsd / runtime).write_text("runtime")
    for runtime_dir in ("activity", "runtime", "journal", "parallel"):
        (gsd / runtime_dir).mkdir()
        (gsd / runtime_dir / "x.log").write_text("runtime")
    return r


def test_untracked_gsd_is_copied_additively(untracked_dir: Path) -> None:
    repo = untracked_dir
    res = wtm.ensure_worktree(repo, "M002", "main")
    assert res.planning == "copied"
    wt_gsd = res.path / ".gsd"
    assert not wt_gsd.is_symlink()
    assert (wt_gsd / "milestones" / "M002" / "M002-ROADMAP.md").read_text() == "# M002: Auth\n"
    assert (wt_gsd / "QUEUE-ORDER.json").is_file() and (wt_gsd / "PROJECT.md").is_file()
    plan = wt_gsd / "milestones" / "M002" / "slices" / "S01" / "S01-PLAN.md"
    assert plan.read_text() == "plan v1\n"
    for runtime in ("STATE.md", "gsd.db", "gsd.db-wal", "metrics.json", "auto.lock"):
        assert not (wt_gsd / runtime).exists(), runtime
    for runtime_dir in ("activity", "runtime", "journal", "parallel", "worktrees"):
        assert not (wt_gsd / runtime_dir).exists(), runtime_dir

    # The worker edits its plan; the root gains a new file and changes the plan.
    plan.write_text("plan v2, worker's\n")
    root_gsd = repo / ".gsd"
    (root_gsd / "milestones" / "M002" / "slices" / "S01" / "S01-PLAN.md").write_text("root v3\n")
    (root_gsd / "milestones" / "M002" / "M002-CONTEXT.md").write_text("context\n")
    again = wtm.ensure_worktree(repo, "M002", "main")
    assert again.created is False
    assert plan.read_text() == "plan v2, worker's\n"  # never overwritten
    assert (wt_gsd / "milestones" / "M002" / "M002-CONTEXT.md").read_text() == "context\n"


def test_remove_with_untouched_copy_succeeds(untracked_dir: Path) -> None:
    res = wtm.ensure_worktree(untracked_dir, "M002", "main")
    (res.path / ".gsd" / "STATE.md").write_text("runtime written by the worker")
    assert wtm.remove_worktree(untracked_dir, "M002", delete_branch=False) is True
    assert not res.path.exists()
    assert (untracked_dir / ".gsd" / "PROJECT.md").read_text() == "project\n"


def test_remove_refuses_when_copy_holds_worker_edits(untracked_dir: Path) -> None:
    res = wtm.ensure_worktree(untracked_dir, "M002", "main")
    summary = res.path / ".gsd" / "milestones" / "M002" / "M002-SUMMARY.md"
    summary.write_text("---\nstatus: complete\n---\n")
    with pytest.raises(wtm.DirtyWorktreeError) as info:
        wtm.remove_worktree(untracked_dir, "M002", delete_branch=True)
    assert info.value.files == [".gsd/milestones/M002/M002-SUMMARY.md"]
    assert summary.is_file()
    assert git(untracked_dir, "branch", "--list", "gsd-parallel/M002") != ""


# --------------------------------------------------------------------------- remove


def planning_tree(gsd: Path) -> Path:
    """A ``.gsd`` with planning files, runtime entries, links, and names the tests make clash."""
    (gsd / "milestones" / "M001").mkdir(parents=True)
    (gsd / "milestones" / "M001" / "M001-ROADMAP.md").write_text("roadmap\n")
    (gsd / "PROJECT.md").write_text("project\n")
    (gsd / "STATE.md").write_text("runtime\n")
    (gsd / "activity").mkdir()
    (gsd / "activity" / "a.log").write_text("runtime\n")
    (gsd / "notes").mkdir()
    (gsd / "notes" / "n.md").write_text("notes\n")
    (gsd / "DECISIONS.md").write_text("decisions\n")
    os.symlink("PROJECT.md", gsd / "LINK.md")
    outside = gsd.parent / "outside"
    outside.mkdir()
    (outside / "o.md").write_text("outside\n")
    os.symlink(outside, gsd / "shared", target_is_directory=True)
    return outside


def clashing_destination(dst: Path) -> None:
    """A file where the source has a directory, and a directory where it has a file."""
    dst.mkdir()
    (dst / "notes").write_text("a file, not a directory\n")
    (dst / "DECISIONS.md").mkdir()


def test_copy_planning_never_overwrites_and_copies_links(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    outside = planning_tree(src)
    clashing_destination(dst)
    (dst / "PROJECT.md").write_text("the worker's\n")
    assert wtm.copy_planning(src, dst, overwrite="never") == 3  # ROADMAP and the two links
    assert (dst / "milestones" / "M001" / "M001-ROADMAP.md").read_text() == "roadmap\n"
    assert (dst / "PROJECT.md").read_text() == "the worker's\n"
    assert os.readlink(dst / "LINK.md") == "PROJECT.md"
    assert os.readlink(dst / "shared") == str(outside)
    assert (dst / "notes").read_text() == "a file, not a directory\n"
    assert (dst / "DECISIONS.md").is_dir() and not any((dst / "DECISIONS.md").iterdir())
    assert not (dst / "STATE.md").exists() and not (dst / "activity").exists()
    assert wtm.copy_planning(src, dst, overwrite="never") == 0


def test_copy_planning_if_older_replaces_only_older_different_files(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    planning_tree(src)
    clashing_destination(dst)
    (dst / "milestones" / "M001").mkdir(parents=True)
    older = (src / "PROJECT.md").stat().st_mtime - 60
    for name, text in [("milestones/M001/M001-ROADMAP.md", "old roadmap\n"), ("PROJECT.md", "project\n")]:
        (dst / name).write_text(text)
        os.utime(dst / name, (older, older))
    (src / "milestones" / "M001" / "NEW.md").write_text("new\n")
    newer = dst / "milestones" / "M001" / "M001-CONTEXT.md"
    (src / "milestones" / "M001" / "M001-CONTEXT.md").write_text("the worker's\n")
    newer.write_text("edited at home meanwhile\n")
    os.utime(newer, (older + 120, older + 120))
    # ROADMAP (older, different) and NEW.md; not PROJECT.md (same bytes), CONTEXT (newer),
    # links, runtime entries, or anything where a file and a directory clash.
    assert wtm.copy_planning(src, dst, overwrite="if-older") == 2
    assert (dst / "milestones" / "M001" / "M001-ROADMAP.md").read_text() == "roadmap\n"
    assert (dst / "milestones" / "M001" / "NEW.md").read_text() == "new\n"
    assert newer.read_text() == "edited at home meanwhile\n"
    assert (dst / "PROJECT.md").stat().st_mtime == older
    assert not (dst / "LINK.md").exists() and not os.path.lexists(dst / "shared")
    assert (dst / "notes").read_text() == "a file, not a directory\n"
    assert (dst / "DECISIONS.md").is_dir() and not any((dst / "DECISIONS.md").iterdir())
    assert not (dst / "STATE.md").exists() and not (dst / "activity").exists()
    assert not list(dst.rglob("*.gsd-parallel.tmp"))


def test_remove_refuses_dirty_worktree(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    (res.path / "README.md").write_text("uncommitted\n")
    (res.path / "new file.txt").write_text("untracked\n")
    with pytest.raises(wtm.DirtyWorktreeError) as info:
        wtm.remove_worktree(repo, "M002", delete_branch=True)
    assert sorted(info.value.files) == ["README.md", "new file.txt"]
    assert "README.md" in str(info.value) and "\n" not in str(info.value)
    assert res.path.is_dir() and (res.path / "new file.txt").is_file()
    assert git(repo, "branch", "--list", "gsd-parallel/M002") != ""


def test_remove_clean_worktree_and_merged_branch(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    (res.path / "build.log").write_text("ignored")
    (res.path / ".gitignore").write_text("*.log\n")
    git(res.path, "add", ".gitignore")
    git(res.path, "commit", "-q", "-m", "ignore logs")
    git(repo, "merge", "-q", "--ff-only", "gsd-parallel/M002")
    assert wtm.remove_worktree(repo, "M002", delete_branch=True) is True
    assert not res.path.exists()
    assert res.path.resolve() not in registered(repo)
    assert git(repo, "branch", "--list", "gsd-parallel/M002") == ""
    assert wtm.remove_worktree(repo, "M002", delete_branch=True) is False  # nothing left


def test_remove_keeps_unmerged_branch_unless_forced(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    tip = commit_file(res.path, "work.txt")
    with pytest.raises(GitError, match="not fully merged; it was kept"):
        wtm.remove_worktree(repo, "M002", delete_branch=True)
    assert not res.path.exists()  # the clean worktree went; the branch stayed
    assert head(repo, "gsd-parallel/M002") == tip
    with pytest.raises(GitError, match="not merged into main"):
        wtm.remove_worktree(repo, "M002", delete_branch=True, integration_branch="main")
    wtm.remove_worktree(repo, "M002", delete_branch=True, force_branch=True)
    assert git(repo, "branch", "--list", "gsd-parallel/M002") == ""


def test_remove_prunes_stale_registration(repo: Path) -> None:
    res = wtm.ensure_worktree(repo, "M002", "main")
    shutil.rmtree(res.path)
    assert wtm.remove_worktree(repo, "M002", delete_branch=False) is True
    assert res.path.resolve() not in registered(repo)


# --------------------------------------------------------------------------- doctor listing


def test_list_milestone_worktrees_reports_orphans(repo: Path, tmp_path: Path) -> None:
    wtm.ensure_worktree(repo, "M002", "main")
    stale = wtm.ensure_worktree(repo, "M003", "main")
    shutil.rmtree(stale.path)
    git(repo, "branch", "gsd-parallel/M004")
    (repo / ".gsd-parallel" / "junk").mkdir()
    git(repo, "worktree", "add", "-q", "-b", "gsd-parallel/M005", str(tmp_path / "outside"))

    found = {m.name: m for m in wtm.list_milestone_worktrees(repo)}
    assert set(found) == {"M002", "M003", "M004", "M005", "junk"}
    ok = found["M002"]
    assert ok.registered and ok.dir_exists and ok.branch_exists and ok.problems == ()
    assert ok.checked_out == "gsd-parallel/M002"
    assert any("missing" in p for p in found["M003"].problems)
    assert found["M004"].problems == ("branch gsd-parallel/M004 has no worktree",)
    assert not found["M004"].registered
    junk = found["junk"].problems
    assert any("not a valid milestone ID" in p for p in junk)
    assert any("not a registered git worktree" in p for p in junk)
    assert any("outside .gsd-parallel" in p for p in found["M005"].problems)


def test_relative_project_root(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    res = wtm.ensure_worktree(Path("."), "M002", "main")
    assert res.path == repo / ".gsd-parallel" / "M002"
    assert res.path.is_absolute() and res.created
