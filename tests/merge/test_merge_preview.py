"""``merge --preview``: everything in flight stacked in merge order, merge_check after each,
and not one ref, index entry or working-tree file of the user's changed."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS, commit_in, complete, snapshot
from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

# Passes with either file alone; fails when both are in the tree (they "break the build together").
TOGETHER_FAILS = [
    sys.executable, "-c",
    "import pathlib, sys\n"
    "both = all(pathlib.Path(p).exists() for p in ('src/a.py', 'src/b.py'))\n"
    "[print(f'noise {i}') for i in range(30)]\n"
    "print('ImportError: a and b clash' if both else 'ok')\n"
    "sys.exit(1 if both else 0)",
]  # fmt: skip


def _project(tmp_path: Path, **prefs: object):
    return build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/a.py"]}}},
            "M002": {"title": "Beta", "slices": {"S01": {"T01": ["src/b.py"]}}},
        },
        preferences={**PREFS, **prefs},
    )


def _running(project, mid: str, files: dict[str, str]) -> Path:
    """A milestone still running: its checkout with some committed work, no SUMMARY."""
    wt = ensure_worktree(project.root, mid, "main").path
    commit_in(wt, f"{mid} work so far", files)
    return wt


def _previews_left() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("gsd-parallel-preview-*"))


def test_two_clean_merges_that_break_merge_check_together_are_reported_and_nothing_moves(tmp_path, cli):
    project = _project(tmp_path, merge_check=TOGETHER_FAILS)
    complete(project, "M001")
    _running(project, "M002", {"src/b.py": "b = 1\n"})
    leftovers = set(_previews_left())
    before = snapshot(project.root)
    worktrees = project.git("worktree", "list", "--porcelain")
    objects = project.git("count-objects", "-v")

    result = cli("--project", project.root, "merge", "--preview", "--json")

    assert result.code == 1, result.out + result.err
    data = result.json()
    assert data["preview"] is True
    rows = {r["id"]: r for r in data["results"]}
    assert [r["id"] for r in data["results"]] == ["M001", "M002"]  # merge order (queue order)
    assert rows["M001"]["outcome"] == "clean" and rows["M001"]["checked"] is True
    assert rows["M001"]["state"] == "complete" and rows["M002"]["state"] == "running"
    assert rows["M002"]["outcome"] == "check_failed"
    assert "ImportError: a and b clash" in rows["M002"]["output"]
    assert "(exit code 1)" in rows["M002"]["output"]
    assert "noise 5\n" not in rows["M002"]["output"]  # only the tail
    # Neither merged, no ref / HEAD / index / file of the user's changed, temp worktree gone.
    assert snapshot(project.root) == before
    assert project.git("worktree", "list", "--porcelain") == worktrees
    assert set(_previews_left()) == leftovers
    assert project.git("count-objects", "-v") == objects  # the stacked commits were thrown away

    text = cli("--project", project.root, "merge", "--preview")
    assert text.code == 1
    assert "- **M001** (complete) — clean, merge_check passed" in text.out
    assert "- **M002** (running) — FAILS merge_check with what is before it" in text.out
    assert "    ImportError: a and b clash" in text.out
    assert "gsd-parallel merge --preview` again" in text.err


def test_each_alone_passes_so_the_failure_is_the_combination(tmp_path, cli):
    """The control: with only M002 in flight, the same check passes."""
    project = _project(tmp_path, merge_check=TOGETHER_FAILS)
    _running(project, "M002", {"src/b.py": "b = 1\n"})
    result = cli("--project", project.root, "merge", "--preview", "--json")
    assert result.code == 0, result.out
    assert [(r["id"], r["outcome"]) for r in result.json()["results"]] == [("M002", "clean")]


def test_textual_conflict_names_the_files_and_the_rest_is_previewed_without_it(tmp_path, cli):
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/shared.py"]}}},
            "M002": {"title": "Beta", "slices": {"S01": {"T01": ["src/shared.py"]}}},
            "M003": {"title": "Gamma", "slices": {"S01": {"T01": ["src/c.py"]}}},
        },
        preferences=PREFS,
    )
    complete(project, "M001")  # writes src/shared.py
    _running(project, "M002", {"src/shared.py": "M002 version\n"})
    _running(project, "M003", {"src/c.py": "c\n"})
    before = snapshot(project.root)
    result = cli("--project", project.root, "merge", "--preview", "--json")
    assert result.code == 1
    got = [(r["id"], r["outcome"], r["files"]) for r in result.json()["results"]]
    assert got == [
        ("M001", "clean", []),
        ("M002", "conflict", ["src/shared.py"]),
        ("M003", "clean", []),
    ]
    assert result.json()["merge_check"] is None
    assert snapshot(project.root) == before


def test_nothing_in_flight_and_bad_arguments(tmp_path, cli):
    project = _project(tmp_path)
    empty = cli("--project", project.root, "merge", "--preview")
    assert empty.code == 0 and "nothing to preview" in empty.out
    bad = cli("--project", project.root, "merge", "--preview", "M001")
    assert bad.code == 2
    assert bad.err.strip().count("\n") == 0 and "without a milestone ID" in bad.err
    assert "Traceback" not in bad.err
