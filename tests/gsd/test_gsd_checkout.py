"""Preparing a checkout for GSD and reading GSD's word on it: real git, real SQLite, the fake
worker's ``headless recover`` (the real one is covered by the real-GSD tier)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import WorkerLaunchError
from gsd_parallel_plugin.gsd import checkout as gc
from gsd_parallel_plugin.testing.builder import git
from gsd_parallel_plugin.workspace import worktrees as wtm

pytestmark = pytest.mark.usefixtures("isolated_git")

FAKE = (sys.executable, "-m", "gsd_parallel_plugin.testing.fake_gsd")
LOCK = {"GSD_MILESTONE_LOCK": "M001", "GSD_PARALLEL_WORKER": "1"}
USER_PREFS = "---\nversion: 1\nbudget_ceiling: 40\ngit:\n  isolation: worktree\n---\n\n# Mine\n"


def make_repo(root: Path, *, prefs: str | None = USER_PREFS, track_gsd: bool = True) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    mdir = root / ".gsd" / "milestones" / "M001"
    (mdir / "slices" / "S01").mkdir(parents=True)
    (mdir / "M001-CONTEXT.md").write_text("---\ndepends_on: [M000]\n---\n\n# M001: First\n")
    (mdir / "M001-ROADMAP.md").write_text(
        "# M001: First\n\n## Slices\n\n- [ ] **S01: One** `risk:low` `depends:[]`\n"
    )
    (mdir / "slices" / "S01" / "S01-PLAN.md").write_text(
        "# S01: One\n\n## Tasks\n\n- [ ] **T01: Do** `est:5m`\n  - Files: `src/a.txt`\n"
    )
    if prefs is not None:
        (root / ".gsd" / "PREFERENCES.md").write_text(prefs)
    (root / ".gitignore").write_text(".gsd/\n" if not track_gsd else ".gsd/gsd.db*\n")
    (root / "README.md").write_text("# r\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def test_gsd_program_is_what_comes_before_headless() -> None:
    assert gc.gsd_program(["gsd", "headless", "--json", "auto"]) == ("gsd",)
    assert gc.gsd_program([*FAKE, "headless", "auto"]) == FAKE
    assert gc.gsd_program(["my-agent", "--run"]) is None  # not GSD: launched as it is
    assert gc.gsd_program(["headless"]) is None


def test_worker_settings_keep_the_users_preferences_and_force_only_git() -> None:
    text = gc.worker_preferences_text(USER_PREFS)
    data, body = gc._split_frontmatter(text)
    assert data["git"] == {"isolation": "none", "manage_gitignore": False}
    assert data["budget_ceiling"] == 40 and data["version"] == 1
    assert "# Mine" in body
    fresh, _ = gc._split_frontmatter(gc.worker_preferences_text(None))
    assert fresh["git"]["isolation"] == "none"


def test_prepare_imports_the_plan_and_scopes_the_settings_to_the_checkout(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    assert gc.milestone_status(checkout, "M001") is None  # nothing imported yet
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)
    assert gc.milestone_status(checkout, "M001") == "active"
    db = sqlite3.connect(checkout / ".gsd" / "gsd.db")
    assert db.execute("SELECT depends_on FROM milestones WHERE id='M001'").fetchone() == ("[]",)
    # The worker sees git.isolation: none; git sees nothing changed; the user's file is as it was.
    assert "isolation: none" in (checkout / gc.PREFERENCES_REL).read_text()
    assert git(checkout, "status", "--porcelain") == ""
    assert (root / gc.PREFERENCES_REL).read_text() == USER_PREFS
    assert not (root / ".gsd" / "gsd.db").exists()  # the user's own DB is never made or touched
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)  # a relaunch: nothing re-imported, same file
    gc.restore_preferences(checkout)
    assert (checkout / gc.PREFERENCES_REL).read_text() == USER_PREFS
    assert git(checkout, "status", "--porcelain") == ""


def test_a_preferences_file_gsd_committed_is_taken_back_out(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p", prefs=None)
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)
    git(checkout, "add", "-A")  # what GSD's own commit does with an untracked file
    git(checkout, "commit", "-q", "-m", "chore: auto-commit after complete-milestone-preflight")
    (checkout / ".gsd/milestones/M001/M001-SUMMARY.md").write_text("---\nstatus: complete\n---\n")
    assert gc.finish_checkout(checkout, "M001", "gsd-parallel/M001") is not None
    files = git(root, "ls-tree", "-r", "--name-only", "gsd-parallel/M001").splitlines()
    assert gc.PREFERENCES_REL not in files
    assert ".gsd/milestones/M001/M001-SUMMARY.md" in files
    assert git(checkout, "status", "--porcelain") == ""


def test_an_untracked_gsd_gets_the_users_file_back_with_its_time(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p", track_gsd=False)
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    copied = checkout / gc.PREFERENCES_REL
    mtime = copied.stat().st_mtime
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)
    assert "isolation: none" in copied.read_text()
    gc.restore_preferences(checkout)
    assert copied.read_text() == USER_PREFS and copied.stat().st_mtime == mtime


def test_finish_commits_what_gsd_left_only_on_the_milestone_branch(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)
    (checkout / ".gsd/milestones/M001/M001-SUMMARY.md").write_text("---\nstatus: complete\n---\n")
    (checkout / "stray.txt").write_text("a unit's file, written before the worker was killed\n")
    (checkout / ".gsd/milestones/M002").mkdir()
    (checkout / ".gsd/milestones/M002/M002-CONTEXT.md").write_text("another milestone's\n")
    (checkout / ".gsd/STATE.md").write_text("GSD runtime\n")
    assert gc.finish_checkout(checkout, "M001", "somewhere-else") is None  # wrong branch: nothing
    sha = gc.finish_checkout(checkout, "M001", "gsd-parallel/M001")
    assert sha == git(root, "rev-parse", "gsd-parallel/M001")
    changed = git(checkout, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert changed == [".gsd/milestones/M001/M001-SUMMARY.md", "stray.txt"]
    assert gc.finish_checkout(checkout, "M001", "gsd-parallel/M001") is None  # nothing left


def test_a_failed_import_is_one_line_with_gsds_words(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "p")
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    failing = (sys.executable, "-c", "import sys; print('boom: DB locked', file=sys.stderr); sys.exit(3)")
    with pytest.raises(WorkerLaunchError, match=r"could not import the plan of M001.*boom: DB locked"):
        gc.prepare_checkout(checkout, "M001", (*failing, "--"), LOCK)
    with pytest.raises(WorkerLaunchError, match="worker command not found: no-such-gsd"):
        gc.prepare_checkout(checkout, "M001", ("no-such-gsd",), LOCK)


def test_milestone_status_reads_gsds_db_and_never_creates_one(tmp_path: Path) -> None:
    (tmp_path / ".gsd").mkdir()
    assert gc.milestone_status(tmp_path, "M001") is None
    assert not (tmp_path / ".gsd" / "gsd.db").exists()
    db = sqlite3.connect(tmp_path / ".gsd" / "gsd.db")
    db.execute("CREATE TABLE milestones (id TEXT PRIMARY KEY, status TEXT)")
    db.execute("INSERT INTO milestones VALUES ('M001', 'complete')")
    db.commit()
    assert gc.gsd_says_complete(tmp_path, "M001")
    assert gc.milestone_status(tmp_path, "M002") is None
    (tmp_path / ".gsd" / "gsd.db").write_bytes(b"not a database")
    assert gc.milestone_status(tmp_path, "M001") is None


def test_a_relaunch_hides_siblings_planning_merged_in_by_hand(tmp_path: Path) -> None:
    """After the user's own ``git merge main`` (a conflicting drift-guard update resolved by
    hand) the relaunch marks the sibling's planning files skip-worktree: GSD writes them back
    from its older DB and must not see that as uncommitted work. Its own files stay visible."""
    root = make_repo(tmp_path / "p")
    checkout = wtm.ensure_worktree(root, "M001", "main").path
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)
    sibling = root / ".gsd/milestones/M002/M002-ROADMAP.md"
    sibling.parent.mkdir(parents=True)
    sibling.write_text("# M002: Second\n\n## Slices\n\n- [x] **S01: Two** `risk:low` `depends:[]`\n")
    (root / ".gsd/milestones/M001/M001-CONTEXT.md").write_text("# M001: First, edited on main\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "M002 landed")
    git(checkout, "merge", "-q", "--no-edit", "main")
    assert gc.hide_merged_planning(checkout, "M001") == [".gsd/milestones/M002/M002-ROADMAP.md"]
    gc.prepare_checkout(checkout, "M001", FAKE, LOCK)  # the relaunch (idempotent)
    flags = dict(
        line.split(" ", 1)[::-1] for line in git(checkout, "ls-files", "-v", ".gsd/milestones").splitlines()
    )
    assert flags[".gsd/milestones/M002/M002-ROADMAP.md"] == "S"
    assert flags[".gsd/milestones/M001/M001-CONTEXT.md"] == "H"  # its own: never hidden
    (checkout / ".gsd/milestones/M002/M002-ROADMAP.md").write_text("# M002: stale, from GSD's DB\n")
    assert git(checkout, "status", "--porcelain") == ""
    merged = git(checkout, "show", "HEAD:.gsd/milestones/M002/M002-ROADMAP.md")
    assert merged == sibling.read_text().rstrip("\n")  # the branch keeps main's version
