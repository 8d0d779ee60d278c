"""A worker killed after its last unit wrote its files (and billed for them) but before any
commit: what finishes the checkout commits those leftovers, so the checkout is clean and the
integration branch gets them (issue 13, item 21; the real worker: tests/real_gsd)."""

from __future__ import annotations

import os
import signal
import sqlite3
from contextlib import closing

from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import PREFS


def test_leftovers_of_a_killed_last_unit_are_committed_and_merged(tmp_path, cli, fake_worker):
    # The worker stops (alive, silent) at complete-milestone, after GSD's pre-completion commit.
    fake_worker(unit_seconds=0.02, hang_at="complete-milestone:M002")
    project = build_project(
        tmp_path / "proj",
        {"M002": {"title": "Auth", "slices": {"S01": {"T01": ["src/a.py"]}}}},
        preferences={**PREFS, "auto_merge": "auto"},
    )
    assert cli("--project", project.root, "start").code == 0
    checkout = project.root / ".gsd-parallel" / "M002"

    def hung_after_preflight():
        log = project.gsd / "parallel" / "M002.stdout.log"
        status = cli("--project", project.root, "status", "--json").json()
        [w] = status["workers"] or [None]
        return (
            w
            and w["pid"]
            and "Finished complete-slice M002/S01" in (log.read_text() if log.exists() else "")
            and w
        )

    worker = wait_until(hung_after_preflight, timeout=60)
    assert project.git("-C", str(checkout), "log", "-1", "--format=%s").startswith("chore: auto-commit")
    # The last unit's work, as GSD writes it: the milestone complete in its DB, the SUMMARY,
    # and files beside the milestone's directory, none of it committed; then kill -9.
    with closing(sqlite3.connect(checkout / ".gsd" / "gsd.db")) as db, db:
        db.execute("UPDATE milestones SET status = 'complete' WHERE id = 'M002'")
    summary = checkout / ".gsd/milestones/M002/M002-SUMMARY.md"
    summary.write_text('---\nid: M002\ntitle: "Auth"\nstatus: complete\n---\n\n# M002: Auth\n')
    (checkout / ".gsd/PROJECT.md").write_text("# Project\n\nM002 shipped.\n")
    (checkout / "src/a_extra.py").write_text("written by the last unit\n")
    os.killpg(worker["pid"], signal.SIGKILL)

    def merged():
        status = cli("--project", project.root, "status", "--json").json()
        return status["workers"][0]["merged"] and status

    status = wait_until(merged, timeout=60)
    assert status["workers"][0]["state"] == "complete"
    assert (project.root / "src/a_extra.py").read_text() == "written by the last unit\n"
    assert (project.root / ".gsd/PROJECT.md").read_text() == "# Project\n\nM002 shipped.\n"
    assert "status: complete" in (project.root / ".gsd/milestones/M002/M002-SUMMARY.md").read_text()
    assert not checkout.exists()  # clean, so removed after the merge
    assert project.git("status", "--porcelain") == ""
