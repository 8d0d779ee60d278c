"""A merge that did not land shows in ``status``; a checkout in the middle of the user's own
``git merge`` is named as such; a complete milestone is offered ``merge``, never ``resume``
(issue 13, item 16)."""

from __future__ import annotations

import sys

import pytest

from gsd_parallel_plugin.testing.builder import build_project, git
from gsd_parallel_plugin.testing.scenarios import PREFS


def _status(cli, project) -> tuple[dict[str, dict], str]:
    data = cli("--project", project.root, "status", "--json").json()
    return {w["id"]: w for w in data["workers"]}, cli("--project", project.root, "status").out


def test_conflict_shows_in_status_and_an_unfinished_merge_in_the_checkout_is_named(
    tmp_path, cli, fake_worker
):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "A", "slices": {"S01": {"T01": ["src/shared.py", "src/a.py"]}}},
            "M003": {"title": "B", "slices": {"S01": {"T01": ["src/shared.py", "src/b.py"]}}},
        },
        preferences={**PREFS, "auto_merge": "auto", "overlap": "warn", "merge_order": "sequential"},
    )
    done = cli("--project", project.root, "start", "--wait", "--json")
    workers, text = _status(cli, project)
    assert {mid: w["merged"] for mid, w in workers.items()} == {"M002": True, "M003": False}, done.err
    assert workers["M003"]["merge"] == {
        **workers["M003"]["merge"],
        "outcome": "conflict",
        "files": ["src/shared.py"],
    }
    assert "- **M003** (B) — complete — merge CONFLICT (1 file(s): src/shared.py)" in text
    assert "awaiting merge" not in text.split("**M003**")[1].splitlines()[0]
    assert "  last merge attempt:" in text

    checkout = project.root / ".gsd-parallel" / "M003"
    with pytest.raises(RuntimeError):
        git(checkout, "merge", "main")  # the user starts resolving, and stops half-way
    for args in (("merge", "M003", "--json"), ("merge", "--dry-run", "--json")):
        result = cli("--project", project.root, *args)
        [row] = result.json()["results"]
        assert result.code == 1 and row["outcome"] in {"failed", "refused"}, row
        assert "finish the merge in the checkout" in row["error"], row
        assert "src/shared.py" in row["error"] and "CONFLICT" not in row["error"]
    workers, text = _status(cli, project)
    assert "complete — merge failed: .gsd-parallel/M003 is in the middle of a merge" in text

    (checkout / "src/shared.py").write_text("both\n")
    git(checkout, "add", "src/shared.py")
    git(checkout, "commit", "-q", "--no-edit")
    landed = cli("--project", project.root, "merge", "M003")
    assert landed.code == 0, landed.out + landed.err
    workers, text = _status(cli, project)
    assert workers["M003"]["merged"] is True and workers["M003"]["merge"] is None
    assert "- **M003** (B) — complete — merged" in text


def test_failed_merge_check_shows_in_status(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    check = [sys.executable, "-c", "import sys; print('3 tests failed'); sys.exit(1)"]
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "A", "slices": {"S01": {"T01": ["src/a.py"]}}}},
        preferences={**PREFS, "auto_merge": "auto", "merge_check": check},
    )
    cli("--project", project.root, "start", "--wait")
    workers, text = _status(cli, project)
    assert workers["M002"]["merged"] is False
    assert workers["M002"]["merge"]["outcome"] == "failed"
    assert "- **M002** (A) — complete — merge failed: merge_check `" in text
    assert "3 tests failed" in text


def test_a_complete_milestone_is_offered_merge_not_resume(tmp_path, cli, fake_worker):
    fake_worker(unit_seconds=0.02)
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "A", "slices": {"S01": {"T01": ["src/a.py"]}}}},
        preferences={**PREFS, "auto_merge": "manual"},
    )
    assert cli("--project", project.root, "start", "--wait").code == 0
    again = cli("--project", project.root, "start", "--json")
    assert again.code == 0 and again.json()["awaiting_merge"] == ["M002"]
    text = cli("--project", project.root, "start").out
    assert "resume" not in text
    assert "Complete, awaiting merge (never started again): M002. Merge with `gsd-parallel merge`." in text
