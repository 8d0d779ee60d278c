"""The sh.git layer against real repositories in tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import GitError, OperationFailed, ProjectError
from gsd_parallel_plugin.milestone_ids import validate_milestone_id
from gsd_parallel_plugin.testing.builder import build_project, commit_file
from gsd_parallel_plugin.testing.builder import git as sh  # `git` is the module under test
from gsd_parallel_plugin.testing.scenarios import ONE
from gsd_parallel_plugin.workspace import git

pytestmark = pytest.mark.usefixtures("isolated_git")


def commit(repo: Path, name: str = "f.txt", text: str | None = None) -> str:
    return commit_file(repo, name, text)


# --------------------------------------------------------------------------- IDs


@pytest.mark.parametrize("mid", ["M001", "M999", "M012-x7k2pq", "M004-render"])
def test_valid_milestone_ids(mid: str) -> None:
    assert validate_milestone_id(mid) == mid


@pytest.mark.parametrize(
    "mid",
    [
        "M1",
        "M0001",
        "../M001",
        "M001; rm -rf /",
        "M001\n",
        "M001/../../x",
        "m001",
        "M001-ABCDEF",
        "M001-abc",
        "M\u0660\u0661\u0662",  # Arabic-Indic digits match \d, not [0-9]
        "",
    ],
)
def test_invalid_milestone_ids(mid: str) -> None:
    with pytest.raises(ProjectError, match="invalid milestone ID"):
        validate_milestone_id(mid)


# --------------------------------------------------------------------------- Git.run / ok


def test_run_strips_trailing_newline_only(repo: Path) -> None:
    out = git.Git(repo).run("rev-parse", "HEAD")
    assert out == sh(repo, "rev-parse", "HEAD")
    assert len(out) == 40


def test_run_failure_names_command_and_stderr(repo: Path) -> None:
    with pytest.raises(git.GitCommandError) as info:
        git.Git(repo).run("checkout", "no-such-branch")
    err = info.value
    assert isinstance(err, OperationFailed)
    assert err.exit_code != 0
    msg = str(err)
    assert "git checkout no-such-branch" in msg
    assert "no-such-branch" in err.stderr
    assert "\n" not in msg


def test_ok_probe(repo: Path) -> None:
    g = git.Git(repo)
    head = g.run("rev-parse", "HEAD")
    assert g.ok("merge-base", "--is-ancestor", head, "main")
    assert not g.ok("rev-parse", "--verify", "--quiet", "nope")


def test_env_is_non_interactive_and_scrubbed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray GIT_DIR (as inside a git hook) must not redirect our commands.
    monkeypatch.setenv("GIT_DIR", "/nonexistent")
    monkeypatch.setenv("LC_ALL", "fr_FR.UTF-8")
    env = git.Git(repo).run("-c", "alias.showenv=!env", "showenv")
    lines = set(env.splitlines())
    assert "GIT_TERMINAL_PROMPT=0" in lines
    assert "LC_ALL=C" in lines
    assert "GIT_PAGER=cat" in lines
    assert not any(ln.startswith("GIT_DIR=/nonexistent") for ln in lines)


def test_git_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a directory"):
        git.Git(tmp_path / "missing")


# --------------------------------------------------------------------------- repo probes


def test_repo_root_from_subdir_and_refusal(repo: Path, tmp_path: Path) -> None:
    sub = repo / "a" / "b"
    sub.mkdir(parents=True)
    assert git.repo_root(sub) == repo.resolve()
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(ProjectError, match=f"not a git repository: {outside}"):
        git.repo_root(outside)
    with pytest.raises(ProjectError, match="not a git repository"):
        git.repo_root(tmp_path / "missing")


def test_common_dir_and_main_root_from_linked_worktree(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    sh(repo, "worktree", "add", "-q", "-b", "side", str(wt))
    assert git.git_common_dir(wt) == (repo / ".git").resolve()
    assert git.main_worktree_root(wt) == repo.resolve()
    assert git.repo_root(wt) == wt.resolve()


def test_current_branch_detached_and_unborn(repo: Path, tmp_path: Path) -> None:
    assert git.current_branch(repo) == "main"
    assert not git.is_unborn(repo)
    sh(repo, "checkout", "-q", "--detach")
    assert git.current_branch(repo) is None
    unborn = tmp_path / "unborn"
    unborn.mkdir()
    sh(unborn, "init", "-q", "-b", "trunk")
    assert git.is_unborn(unborn)
    assert git.current_branch(unborn) == "trunk"


def test_rev_parse_and_branch_exists(repo: Path) -> None:
    head = sh(repo, "rev-parse", "HEAD")
    assert git.rev_parse(repo, "main") == head
    assert git.rev_parse(repo, "nope") is None
    assert git.rev_parse(repo, "--all") is None  # never taken as an option
    assert git.branch_exists(repo, "main")
    assert not git.branch_exists(repo, "nope")
    sh(repo, "tag", "only-a-tag")
    assert not git.branch_exists(repo, "only-a-tag")
    assert git.Git(repo).branch_sha("main") == head


def test_default_branch(repo: Path, tmp_path: Path) -> None:
    assert git.default_branch(repo) == "main"
    other = tmp_path / "other"
    other.mkdir()
    sh(other, "init", "-q", "-b", "trunk")
    commit(other)
    assert git.default_branch(other) == "trunk"
    sh(other, "branch", "master")
    assert git.default_branch(other) == "master"
    sh(other, "branch", "-q", "-D", "master")
    sh(other, "checkout", "-q", "--detach")
    sh(other, "branch", "-q", "-D", "trunk")
    with pytest.raises(GitError, match="cannot tell the main branch"):
        git.default_branch(other)


def test_ancestry_and_commits_ahead(repo: Path) -> None:
    base = sh(repo, "rev-parse", "HEAD")
    sh(repo, "checkout", "-q", "-b", "feature")
    commit(repo, "a.txt")
    commit(repo, "b.txt")
    assert git.is_ancestor(repo, base, "feature")
    assert git.is_ancestor(repo, "main", "feature")
    assert not git.is_ancestor(repo, "feature", "main")
    assert git.commits_ahead(repo, "main", "feature") == 2
    assert git.commits_ahead(repo, "feature", "main") == 0


# --------------------------------------------------------------------------- worktree list


def test_worktree_list_parses_all_states(repo: Path, tmp_path: Path) -> None:
    on_branch = tmp_path / "with space é"
    detached = tmp_path / "detached"
    locked = tmp_path / "locked"
    gone = tmp_path / "gone"
    sh(repo, "worktree", "add", "-q", "-b", "gsd-parallel/M001", str(on_branch))
    sh(repo, "worktree", "add", "-q", "--detach", str(detached))
    sh(repo, "worktree", "add", "-q", "-b", "l", str(locked))
    sh(repo, "worktree", "lock", "--reason", "on a usb stick", str(locked))
    sh(repo, "worktree", "add", "-q", "-b", "g", str(gone))
    subprocess.run(["rm", "-rf", str(gone)], check=True)

    wts = git.worktree_list(repo)
    by_path = {wt.path: wt for wt in wts}
    assert wts[0].path == repo.resolve() and wts[0].branch == "main"
    head = sh(repo, "rev-parse", "HEAD")
    b = by_path[on_branch.resolve()]
    assert (b.branch, b.head, b.detached, b.locked, b.prunable) == (
        "gsd-parallel/M001",
        head,
        False,
        False,
        False,
    )
    d = by_path[detached.resolve()]
    assert d.detached and d.branch is None and d.head == head
    lk = by_path[locked.resolve()]
    assert lk.locked and lk.lock_reason == "on a usb stick"
    gn = by_path[gone.resolve()]
    assert gn.prunable and gn.prunable_reason

    assert git.branch_checked_out_at(repo, "gsd-parallel/M001") == on_branch.resolve()
    assert git.branch_checked_out_at(repo, "main") == repo.resolve()
    assert git.branch_checked_out_at(repo, "nope") is None


def test_worktree_list_unborn_head_is_none(tmp_path: Path) -> None:
    r = tmp_path / "u"
    r.mkdir()
    sh(r, "init", "-q", "-b", "main")
    (wt,) = git.worktree_list(r)
    assert wt.head is None and wt.branch == "main"


# --------------------------------------------------------------------------- status, excludes


def test_status_porcelain(repo: Path) -> None:
    commit(repo, "old name.txt")
    commit(repo, "tracked.txt")
    sh(repo, "mv", "old name.txt", "new\nname.txt")
    (repo / "tracked.txt").write_text("changed\n")
    (repo / "untracked dir").mkdir()
    (repo / "untracked dir" / "x").write_text("x")
    (repo / ".gitignore").write_text("ignored.log\n")
    (repo / "ignored.log").write_text("x")

    entries = git.status_porcelain(repo)
    assert ("R ", "new\nname.txt") in entries
    assert (" M", "tracked.txt") in entries
    assert ("??", "untracked dir/") in entries
    assert ("??", ".gitignore") in entries
    assert all(p != "ignored.log" for _, p in entries)
    assert ("??", "untracked dir/x") in git.status_porcelain(repo, untracked="all")
    assert git.status_porcelain(repo, ["tracked.txt"]) == [(" M", "tracked.txt")]
    assert all(xy != "??" for xy, _ in git.status_porcelain(repo, untracked="no"))


def test_add_exclude_idempotent_and_shared(repo: Path, tmp_path: Path) -> None:
    exclude = repo / ".git" / "info" / "exclude"
    exclude.write_text("# mine\n*.swp")  # no trailing newline
    (repo / ".gitignore").write_text("node_modules/\n")
    wt = tmp_path / "wt"
    sh(repo, "worktree", "add", "-q", "-b", "side", str(wt))

    assert git.add_exclude(wt, ["a/", "b/"]) == ["a/", "b/"]  # from a linked worktree
    assert git.add_exclude(repo, ["a/", "b/", "c/"]) == ["c/"]
    assert git.add_exclude(repo, ["a/", "b/", "c/"]) == []
    assert exclude.read_text() == "# mine\n*.swp\na/\nb/\nc/\n"
    assert (repo / ".gitignore").read_text() == "node_modules/\n"
    assert list(exclude.parent.glob(".exclude.*")) == []


def test_add_exclude_creates_missing_info_dir(repo: Path) -> None:
    info = repo / ".git" / "info"
    subprocess.run(["rm", "-rf", str(info)], check=True)
    assert git.add_exclude(repo, ["x/"]) == ["x/"]
    assert (info / "exclude").read_text() == "x/\n"
    (repo / "x").mkdir()
    (repo / "x" / "f").write_text("f")
    assert git.status_porcelain(repo) == []


def test_git_runs_outside_our_process_group(tmp_path):
    """A terminal's Ctrl-C goes to the foreground process group: the git a foreground
    supervisor is running (a merge, a worktree) must finish, not die half-way."""
    from gsd_parallel_plugin.workspace.git import Git

    project = build_project(tmp_path / "p", ONE)
    probe = f"!{sys.executable} -c 'import os; print(os.getpgid(0))'"
    group = Git(project.root).run("-c", f"alias.pgid={probe}", "pgid")
    assert int(group) != os.getpgid(0)
