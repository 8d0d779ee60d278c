"""``merge --dry-run`` predicts every refusal ``merge`` then makes (issue 13, item 5):
a file in the way in the root checkout, a root checkout in the middle of its own merge, a
checkout whose only work is uncommitted. Each time the dry run and the merge agree."""

from __future__ import annotations

import pytest

from gsd_parallel_plugin.testing.scenarios import (
    commit_in,
    complete,
    complete_with_only_uncommitted_work,
    snapshot,
)
from gsd_parallel_plugin.testing.scenarios import two_milestones as two


def _file_in_the_way(project) -> None:
    complete(project, "M002")
    (project.root / "README.md").write_text("my local edit\n")


def _root_mid_merge(project) -> None:
    complete(project, "M002")
    project.git("checkout", "-q", "-b", "side")
    commit_in(project.root, "side", {"notes.md": "side\n"})
    project.git("checkout", "-q", "main")
    commit_in(project.root, "main", {"notes.md": "main\n"})
    with pytest.raises(RuntimeError, match="git merge side failed"):
        project.git("merge", "side")  # stops with a conflict in notes.md


def _only_uncommitted_work(project) -> None:
    complete_with_only_uncommitted_work(project, "M002")


@pytest.mark.parametrize(
    ("arrange", "says", "files"),
    [
        (_file_in_the_way, "would be overwritten by the merge: README.md", ["README.md"]),
        (_root_mid_merge, "in the middle of a merge of its own (unmerged: notes.md)", ["notes.md"]),
        (_only_uncommitted_work, "uncommitted changes in 1 file(s) (src/a.py)", []),
    ],
    ids=["file-in-the-way", "root-mid-merge", "only-uncommitted-work"],
)
def test_dry_run_predicts_the_refusal(tmp_path, cli, arrange, says, files):
    project = two(tmp_path, ["src/a.py", "README.md"], ["src/b.py"])
    arrange(project)
    before = snapshot(project.root)
    dry = cli("--project", project.root, "merge", "--dry-run", "--json")
    [row] = dry.json()["results"]
    assert (row["outcome"], dry.code) == ("refused", 1), row
    assert says in row["error"] and row["files"] == files
    text = cli("--project", project.root, "merge", "--dry-run")
    assert text.code == 1 and "- **M002** — would be refused: " in text.out
    assert snapshot(project.root) == before

    real = cli("--project", project.root, "merge", "--json")
    [done] = real.json()["results"]
    assert real.code == 1 and done["outcome"] in {"failed", "skipped"}, done
    assert done["files"] == files
    assert snapshot(project.root) == before


def test_dry_run_names_the_merge_check_gate(tmp_path, cli):
    project = two(tmp_path, ["src/a.py"], ["src/b.py"], merge_check=["true"])
    complete(project, "M002")
    dry = cli("--project", project.root, "merge", "--dry-run")
    assert dry.code == 0
    assert "- **M002** — clean; `true` (merge_check) runs before it lands" in dry.out
