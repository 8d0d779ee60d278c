"""Merge reconciliation end to end: real git repositories, the real CLI, the shipped fake worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import (
    PREFS,
    commit_in,
    complete,
    complete_with_only_uncommitted_work,
    journal,
    main_log,
    snapshot,
    write_plugin,
)
from gsd_parallel_plugin.testing.scenarios import two_milestones as two


def trailers(project, ref: str) -> dict[str, str]:
    body = project.git("log", "-1", "--format=%B", ref)
    return dict(line.split(": ", 1) for line in body.splitlines() if line.startswith(("GSD-", "Branch:")))


# --------------------------------------------------------------------------- done-when


def test_auto_merge_lands_each_milestone_as_one_commit(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = two(tmp_path, ["src/auth.py"], ["src/search.py"], auto_merge="auto")
    base = project.head("main")
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    assert {w["id"]: w["merged"] for w in result.json()["workers"]} == {"M002": True, "M003": True}
    log = project.git("log", "--format=%H %s", f"{base}..main").splitlines()
    assert sorted(line.split(" ", 1)[1] for line in log) == ["feat: Auth System", "feat: Search"]
    for line in log:
        sha = line.split()[0]
        mid = "M002" if "Auth" in line else "M003"
        assert trailers(project, sha) == {"GSD-Milestone": mid, "Branch": f"gsd-parallel/{mid}"}
        assert len(project.git("rev-list", "--parents", "-n1", sha).split()) == 2  # one parent
    assert (project.root / "src/auth.py").read_text() == "M002/S01/T01\n"
    assert (project.root / "src/search.py").read_text() == "M003/S01/T01\n"
    assert project.git("branch", "--list", "gsd-parallel/*") == ""
    assert len(project.git("worktree", "list").splitlines()) == 1
    assert project.git("status", "--porcelain", "--untracked-files=all") == ""
    status = cli("--project", project.root, "status").out
    assert "complete — merged" in status


def test_conflict_changes_nothing_then_resolved_retry_lands(tmp_path, cli):
    project = two(tmp_path, ["src/shared.py", "src/a.py"], ["src/shared.py", "src/b.py"])
    complete(project, "M002")
    wt3 = complete(project, "M003")
    first = cli("--project", project.root, "merge", "M002")
    assert first.code == 0 and "- **M002** — merged successfully" in first.out
    before = snapshot(project.root)
    result = cli("--project", project.root, "merge", "M003")
    assert result.code == 1
    assert result.out == (
        "# Merge Results\n\n"
        "- **M003** — CONFLICT (1 file(s)):\n"
        "  - `src/shared.py`\n"
        "  Resolve conflicts manually and run `gsd-parallel merge M003` to retry.\n"
    )
    assert "git merge main" in result.err
    after = snapshot(project.root)
    assert after == before
    assert after["merge_state"] == []
    assert "<<<<<<<" not in (project.root / "src/shared.py").read_text()
    assert journal(project)[-1].outcome == "conflict"
    assert not list((project.gsd / "parallel" / "merging").iterdir())
    # Resolve where the message says, then retry.
    subprocess.run(["git", "merge", "-q", "main"], cwd=wt3, capture_output=True, check=False)
    commit_in(wt3, "resolve", {"src/shared.py": "M002/S01/T01\nM003/S01/T01\n"})
    retry = cli("--project", project.root, "merge", "M003", "--json")
    assert retry.code == 0, retry.out + retry.err
    [row] = retry.json()["results"]
    assert row["outcome"] == "merged" and row["commit"] == project.head("main")
    assert (project.root / "src/shared.py").read_text() == "M002/S01/T01\nM003/S01/T01\n"
    assert project.git("status", "--porcelain") == ""


def test_gsd_and_junk_conflicts_resolve_to_the_milestone_side(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    for mid in ("M002", "M003"):
        wt = complete(project, mid)
        commit_in(wt, f"{mid} notes", {
            ".gsd/PROJECT.md": f"# Project\n\nEdited by {mid}\n",
            "src/__pycache__/mod.cpython-311.pyc": f"bytecode {mid}",
            ".DS_Store": mid,
        })  # fmt: skip
    result = cli("--project", project.root, "merge", "--json")
    assert result.code == 0, result.out + result.err
    assert [r["outcome"] for r in result.json()["results"]] == ["merged", "merged"]
    assert (project.gsd / "PROJECT.md").read_text() == "# Project\n\nEdited by M003\n"
    assert (project.root / ".DS_Store").read_text() == "M003"
    assert main_log(project)[:2] == ["feat: Search", "feat: Auth System"]


def test_failing_merge_check_blocks_and_shows_the_tail(tmp_path, cli):
    check = [sys.executable, "-c",
             "import sys; [print(f'line {i}') for i in range(40)]; print('FAILED test_x');"
             " sys.exit(3)"]  # fmt: skip
    project = two(tmp_path, ["src/a.py"], ["src/b.py"], merge_check=check)
    complete(project, "M002")
    before = snapshot(project.root)
    result = cli("--project", project.root, "merge")
    assert result.code == 1
    assert "- **M002** — failed: merge_check" in result.out and "(exit code 3)" in result.out
    assert "  FAILED test_x" in result.out and "line 39" in result.out
    assert "line 5\n" not in result.out  # only the tail
    assert snapshot(project.root) == before
    assert project.git("branch", "--list", "gsd-parallel/M002") != ""


def test_passing_merge_check_runs_in_the_merged_tree(tmp_path, cli):
    check = [sys.executable, "-c",
             "import os, pathlib, sys; sys.exit(0 if pathlib.Path('src/a.py').exists()"
             " and os.environ['GSD_MERGE_MILESTONE'] == 'M002' else 1)"]  # fmt: skip
    project = two(tmp_path, ["src/a.py"], ["src/b.py"], merge_check=check)
    complete(project, "M002")
    result = cli("--project", project.root, "merge")
    assert result.code == 0, result.out


def test_uncommitted_user_work_is_kept_or_stops_the_merge(tmp_path, cli):
    project = two(tmp_path, ["src/a.py", "README.md"], ["src/b.py"])
    complete(project, "M002")
    complete(project, "M003")
    (project.root / "notes.txt").write_text("mine, untracked\n")
    (project.root / "src").mkdir(exist_ok=True)
    (project.root / "src/local.py").write_text("staged\n")
    project.git("add", "src/local.py")
    (project.root / ".gsd/PREFERENCES.md").write_text(
        (project.root / ".gsd/PREFERENCES.md").read_text() + "\n<!-- unstaged edit -->\n"
    )
    status_before = project.git("status", "--porcelain")
    result = cli("--project", project.root, "merge", "M003")
    assert result.code == 0, result.out
    assert project.git("status", "--porcelain") == status_before
    assert (project.root / "notes.txt").read_text() == "mine, untracked\n"
    assert "<!-- unstaged edit -->" in (project.root / ".gsd/PREFERENCES.md").read_text()
    # An edit to a file M002 touches is in the way: nothing moves, the file is named.
    (project.root / "README.md").write_text("my local edit\n")
    before = snapshot(project.root)
    blocked = cli("--project", project.root, "merge", "M002", "--json")
    assert blocked.code == 1
    [row] = blocked.json()["results"]
    assert row["outcome"] == "failed" and row["files"] == ["README.md"]
    assert "README.md" in row["error"] and "would be overwritten" in row["error"]
    assert snapshot(project.root) == before
    assert (project.root / "README.md").read_text() == "my local edit\n"


@pytest.mark.parametrize(("order", "expected"), [
    ("by-completion", ["feat: Auth System", "feat: Search"]),
    ("sequential", ["feat: Search", "feat: Auth System"]),
])  # fmt: skip
def test_merge_order(tmp_path, cli, order, expected):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"], merge_order=order)
    complete(project, "M003")  # the later-numbered milestone finishes first
    time.sleep(0.01)
    complete(project, "M002")
    result = cli("--project", project.root, "merge")
    assert result.code == 0, result.out
    assert main_log(project)[:2] == expected


def test_dry_run_predicts_the_conflict_and_changes_nothing(tmp_path, cli):
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "A", "slices": {"S01": {"T01": ["src/shared.py"]}}},
            "M003": {"title": "B", "slices": {"S01": {"T01": ["src/b.py"]}}},
            "M004": {"title": "C", "slices": {"S01": {"T01": ["src/shared.py", "src/c.py"]}}},
        },
        preferences=PREFS,
    )
    for mid in ("M002", "M003", "M004"):
        wt = complete(project, mid)
        commit_in(wt, "notes", {".gsd/PROJECT.md": mid})  # resolves itself
    before = snapshot(project.root)
    objects = project.git("count-objects")
    dry = cli("--project", project.root, "merge", "--dry-run", "--json")
    assert dry.code == 1
    rows = {r["id"]: r for r in dry.json()["results"]}
    assert rows["M002"]["outcome"] == "clean" and rows["M003"]["outcome"] == "clean"
    assert rows["M003"]["resolved"] == [".gsd/PROJECT.md"]
    assert rows["M004"] == {**rows["M004"], "outcome": "conflict", "files": ["src/shared.py"]}
    text = cli("--project", project.root, "merge", "--dry-run").out
    assert "- **M004** — CONFLICT (1 file(s)):\n  - `src/shared.py`" in text
    assert snapshot(project.root) == before
    assert objects  # (loose objects may be written; no ref, index or file changes)
    real = cli("--project", project.root, "merge", "--json").json()["results"]
    assert [(r["id"], r["outcome"], r["files"]) for r in real] == [
        ("M002", "merged", []), ("M003", "merged", []), ("M004", "conflict", ["src/shared.py"]),
    ]  # fmt: skip


def test_no_commits_is_skipped_not_merged(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    wt = complete_with_only_uncommitted_work(project, "M002")
    result = cli("--project", project.root, "merge", "--json")
    assert result.code == 1
    [row] = result.json()["results"]
    assert row["outcome"] == "skipped" and "no commits beyond main" in row["error"]
    assert "uncommitted changes" in row["error"] and "src/a.py" in row["error"]
    assert (wt / "src/a.py").exists()


def test_nothing_to_merge_and_not_complete(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    result = cli("--project", project.root, "merge")
    assert (result.code, result.out) == (0, "No completed milestones to merge.\n")
    assert cli("--project", project.root, "merge", "--json").json() == {"results": []}
    from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

    ensure_worktree(project.root, "M002", "main")
    refused = cli("--project", project.root, "merge", "M002")
    assert refused.code == 2 and "M002 is not complete yet" in refused.err
    assert cli("--project", project.root, "merge", "M0x2").code == 2


def test_update_ref_when_main_is_not_checked_out(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    complete(project, "M002")
    project.git("checkout", "-q", "-b", "feature")
    (project.root / "wip.txt").write_text("wip\n")
    result = cli("--project", project.root, "merge")
    assert result.code == 0, result.out
    assert project.git("log", "-1", "--format=%s", "main") == "feat: Auth System"
    assert project.git("rev-parse", "--abbrev-ref", "HEAD") == "feature"
    assert project.git("status", "--porcelain") == "?? wip.txt"


# --------------------------------------------------------------------------- plugins


def test_before_merge_veto_and_resolve_conflict_plugin(tmp_path, cli):
    source = """
import subprocess
from gsd_parallel_plugin import hookimpl

@hookimpl
def before_merge(milestone_id, worktree, changed_files, commit):
    if milestone_id == "M002" and (worktree / "VETO").exists() is False:
        return f"policy says no ({len(changed_files)} changed)"

@hookimpl
def on_merge_complete(milestone_id, commit, branch):
    with open(__import__("os").environ["MERGED_LOG"], "a") as fh:
        fh.write(f"{milestone_id} {commit} {branch}\\n")

@hookimpl
def resolve_merge_conflict(milestone_id, files, worktree):
    for f in files:
        (worktree / f).write_text("resolved by plugin\\n")
    subprocess.run(["git", "add", "--", *files], cwd=worktree, check=True)
    return True
"""
    env = write_plugin(tmp_path, "merge_policy", source)
    env["MERGED_LOG"] = str(tmp_path / "merged.log")
    project = two(tmp_path, ["src/shared.py"], ["src/shared.py"])
    complete(project, "M002")
    complete(project, "M003")
    before = snapshot(project.root)
    vetoed = cli("--project", project.root, "merge", "M002", env=env)
    assert vetoed.code == 1
    assert "- **M002** — failed: refused by before_merge: policy says no" in vetoed.out
    assert snapshot(project.root) == before
    # M003 first, then M002 conflicts on src/shared.py and the plugin resolves it.
    assert cli("--project", project.root, "merge", "M003", env=env).code == 0
    env_no_veto = {**env}
    (tmp_path / "merge_policy.py").write_text(source.replace('milestone_id == "M002"', "False"))
    result = cli("--project", project.root, "merge", "M002", env=env_no_veto)
    assert result.code == 0, result.out + result.err
    assert (project.root / "src/shared.py").read_text() == "resolved by plugin\n"
    m3, m2 = project.git("log", "-2", "--format=%H", "main").splitlines()[::-1]
    assert (tmp_path / "merged.log").read_text() == f"M003 {m3} main\nM002 {m2} main\n"


# --------------------------------------------------------------------------- crash recovery


def _merge_in_background(project, mid, env):
    return subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "merge", mid],
        env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_kill_9_before_landing_then_doctor_fix_and_retry(tmp_path, cli):
    check = [sys.executable, "-c",
             "import os, pathlib, time\nm = os.environ.get('MERGE_MARK')\n"
             "if m:\n    pathlib.Path(m).touch()\n    time.sleep(60)"]  # fmt: skip
    project = two(tmp_path, ["src/a.py"], ["src/b.py"], merge_check=check)
    complete(project, "M002")
    before = snapshot(project.root)
    mark = tmp_path / "checking"
    proc = _merge_in_background(project, "M002", {"MERGE_MARK": str(mark)})
    wait_until(mark.exists, timeout=30)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot(project.root) == before
    [row] = journal(project)
    assert row.outcome is None and row.step == "checking" and row.worktree
    assert len(project.git("worktree", "list").splitlines()) == 3  # root, M002, temporary
    doctor = cli("--project", project.root, "doctor", "--fix")
    assert "did not land" in doctor.out, doctor.out + doctor.err
    assert journal(project)[0].outcome == "aborted"
    assert len(project.git("worktree", "list").splitlines()) == 2
    assert snapshot(project.root) == before
    retry = cli("--project", project.root, "merge", "M002")
    assert retry.code == 0, retry.out
    assert main_log(project)[0] == "feat: Auth System"


def test_kill_9_after_landing_is_recorded_by_doctor(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    complete(project, "M002")
    mark = tmp_path / "landed"
    hook = project.root / ".git/hooks/reference-transaction"
    hook.write_text(
        '#!/bin/sh\n[ "$1" = committed ] || exit 0\n'
        'if grep -q " refs/heads/main$"; then touch "$MERGE_MARK"; sleep 60; fi\nexit 0\n'
    )
    hook.chmod(0o755)
    proc = _merge_in_background(project, "M002", {"MERGE_MARK": str(mark)})
    wait_until(mark.exists, timeout=30)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    hook.unlink()
    [row] = journal(project)
    assert row.outcome is None and row.step == "landing"
    assert project.head("main") == row.commit_sha  # it landed; the journal does not know yet
    assert project.git("status", "--porcelain") == ""
    doctor = cli("--project", project.root, "doctor", "--fix")
    assert "had landed on main" in doctor.out, doctor.out + doctor.err
    assert journal(project)[0].outcome == "merged"
    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        assert store.merged_milestones() == {"M002": row.commit_sha}
    assert project.git("branch", "--list", "gsd-parallel/*") == ""
    assert len(project.git("worktree", "list").splitlines()) == 1
    again = cli("--project", project.root, "merge")
    assert again.out == "No completed milestones to merge.\n"


def test_candidates_found_on_branches_when_the_store_lost_them(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])
    complete(project, "M002", record=False)
    complete(project, "M003", record=False)
    assert not (project.gsd / "parallel" / "coordinator.db").exists()
    result = cli("--project", project.root, "merge", "--json")
    assert result.code == 0, result.out + result.err
    assert [(r["id"], r["outcome"]) for r in result.json()["results"]] == [
        ("M002", "merged"), ("M003", "merged"),
    ]  # fmt: skip


def test_confirm_without_anyone_to_ask_leaves_it_awaiting_merge(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = two(tmp_path, ["src/a.py"], ["src/b.py"])  # auto_merge defaults to confirm
    main_before = project.head("main")
    result = cli("--project", project.root, "start", "--wait")
    assert result.code == 0, result.err
    assert "M002 complete — awaiting merge (auto_merge is confirm and nobody" in result.err
    assert result.out.count("complete — awaiting merge") == 2
    assert project.head("main") == main_before
