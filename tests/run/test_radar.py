"""The overlap radar: what running workers actually changed, pairs, conflicts; real git,
real fake workers, the real supervisor."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gsd_parallel_plugin.models import Milestone, Project
from gsd_parallel_plugin.project.eligibility import analyse
from gsd_parallel_plugin.run.radar import Radar, Subject, changed_lines, read_picture, snapshot
from gsd_parallel_plugin.run.supervisor import Supervisor
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.workspace.git import Git

PLUGIN = """
import json, os
from gsd_parallel_plugin import hookimpl

@hookimpl
def on_overlap_detected(milestone_ids, files, would_conflict, conflict_files):
    with open(os.environ["RADAR_SEEN"], "a") as f:
        f.write(json.dumps([list(milestone_ids), list(files), would_conflict, list(conflict_files)]) + "\\n")
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def two_checkouts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repo on main with a 10-line file, and two worktrees on their own branches."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "shared.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    (root / "logo.bin").write_bytes(b"\0\1\2")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    a, b = tmp_path / "a", tmp_path / "b"
    git(root, "worktree", "add", "-q", "-b", "gsd-parallel/M001", str(a))
    git(root, "worktree", "add", "-q", "-b", "gsd-parallel/M002", str(b))
    return root, a, b


def subject(mid: str, checkout: Path, key: int) -> Subject:
    return Subject(mid, f"gsd-parallel/{mid}", checkout, "main", (key,))


def test_uncommitted_edits_of_two_checkouts_overlap_by_file_and_lines_cached_by_content(tmp_path):
    root, a, b = two_checkouts(tmp_path)
    text = (a / "shared.txt").read_text().splitlines(keepends=True)
    (a / "shared.txt").write_text("".join(["LINE 1\n", *text[1:]]))  # line 1, uncommitted
    (b / "shared.txt").write_text("".join([*text[:8], "LINE 9\n", text[9]]))  # line 9
    (b / "new.txt").write_text("untracked\n")
    (a / "logo.bin").write_bytes(b"\0\1\3")
    (b / "logo.bin").write_bytes(b"\0\1\4")
    index_before = (root / ".git" / "worktrees" / "a" / "index").read_bytes()
    radar = Radar(root)
    assert radar.update([subject("M001", a, 1), subject("M002", b, 1)]) is True
    (pair,) = radar.overlaps
    assert pair.milestones == ("M001", "M002")
    assert pair.files == ("logo.bin", "shared.txt")
    assert pair.lines["shared.txt"] == {"M001": ((1, 1),), "M002": ((9, 9),)}
    assert pair.lines["logo.bin"] == {"M001": None, "M002": None}  # binary: no line ranges
    assert pair.conflict and pair.conflict_files == ("logo.bin",)  # the text edits merge
    assert set(radar.changes["M002"].files) == {"shared.txt", "new.txt", "logo.bin"}
    # Nothing of the checkouts changed: no ref, no index, the files still uncommitted.
    assert git(root, "rev-parse", "gsd-parallel/M001") == git(root, "rev-parse", "main")
    assert (root / ".git" / "worktrees" / "a" / "index").read_bytes() == index_before
    assert "?? new.txt" in git(b, "status", "--porcelain")
    # Same keys: nothing recomputed. A new key over the same content: same commits, no change.
    spent = radar.seconds
    assert radar.update([subject("M001", a, 1), subject("M002", b, 1)]) is False
    assert radar.seconds == spent
    assert radar.update([subject("M001", a, 2), subject("M002", b, 2)]) is False
    # M002 drops the binary edit: the pair no longer conflicts.
    git(b, "checkout", "--", "logo.bin")
    assert radar.update([subject("M001", a, 3), subject("M002", b, 3)]) is True
    (pair,) = radar.overlaps
    assert pair.files == ("shared.txt",) and not pair.conflict


def test_snapshot_of_a_clean_checkout_is_its_head_and_insertions_have_ranges(tmp_path):
    root, a, _b = two_checkouts(tmp_path)
    head = git(a, "rev-parse", "HEAD")
    assert snapshot(a) == (head, head)
    (a / "shared.txt").write_text((a / "shared.txt").read_text() + "line 11\n")
    commit, parent = snapshot(a)
    assert parent == head and commit != head
    assert changed_lines(Git(root), head, commit) == {"shared.txt": ((11, 10),)}  # after line 10


def test_serialize_holds_back_a_milestone_whose_plan_meets_what_a_running_one_changed(tmp_path):
    def ms(mid: str, files: set[str]) -> Milestone:
        return Milestone(mid, mid, tmp_path / mid, "pending", files=frozenset(files), has_file_plan=True)

    project = Project(
        tmp_path, tmp_path / ".gsd", (ms("M001", {"src/a.py"}), ms("M002", {"src/shared.py"})), "main"
    )
    plain = analyse(project, max_workers=2, running=["M001"])
    assert plain.plan.start == ("M002",)
    radar = analyse(project, max_workers=2, running=["M001"], actual_changes={"M001": {"src/shared.py"}})
    assert radar.plan.start == ()
    assert radar.plan.waiting[0].reason.startswith("overlaps M001 (src/shared.py)")
    warn = analyse(project, max_workers=2, running=["M001"], overlap_policy="warn",
                   actual_changes={"M001": {"src/shared.py"}})  # fmt: skip
    assert warn.plan.start == ("M002",)


def test_two_running_milestones_editing_an_unplanned_file_are_reported_once(
    tmp_path, cli, fake_worker, gsd_plugin_dir, monkeypatch
):
    seen = tmp_path / "seen.jsonl"
    monkeypatch.setenv("RADAR_SEEN", str(seen))
    monkeypatch.setenv("GSD_PARALLEL_PLUGINS", gsd_plugin_dir.write("radar_seen", PLUGIN))
    fake_worker(unit_seconds=0.8, unit_cost=0.01,
                extra_files="M001/S01/T01=src/shared.py;M002/S01/T01=src/shared.py")  # fmt: skip
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Left", "slices": {"S01": {"T01": ["src/a.py"], "T02": ["src/a2.py"]}}},
            "M002": {"title": "Right", "slices": {"S01": {"T01": ["src/b.py"], "T02": ["src/b2.py"]}}},
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "manual"},
        files={"src/shared.py": "shared = 1\n"},
    )
    first: dict[str, int] = {}

    def on_tick(sup: Supervisor) -> None:
        if not first and sup.radar.overlaps:
            first.update({w.milestone_id: w.units_done for w in sup.store.workers(sup.run_id)})
            first["running"] = len(sup.tracked)

    assert Supervisor(project.root, tick_seconds=0.05, on_tick=on_tick).run() == 0
    # Found while both ran, within one unit of the second edit (each edits in its unit 1).
    assert first["running"] == 2 and max(first["M001"], first["M002"]) <= 2, first
    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    assert calls == [[["M001", "M002"], ["src/shared.py"], True, ["src/shared.py"]]]

    status = cli("--project", project.root, "status")
    assert "## Overlaps (1)" in status.out
    assert "M001 <-> M002: src/shared.py — would CONFLICT (src/shared.py)" in status.out
    assert "src/shared.py: M001 lines 2; M002 lines 2" in status.out
    (overlap,) = cli("--project", project.root, "status", "--json").json()["overlaps"]
    assert overlap["milestones"] == ["M001", "M002"] and overlap["conflict"] is True
    watch = cli("--project", project.root, "watch", "--once", "--width", "100")
    assert "Overlaps (1)" in watch.out and "M001 <-> M002: src/shared.py — would CONFLICT" in watch.out
    assert cli("--project", project.root, "watch", "--json").json()["overlaps"][0]["files"] == [
        "src/shared.py"
    ]

    # A new supervisor of the same run sees the pair again and does not report it again.
    picture = read_picture(project.gsd / "parallel", None)
    assert [o.milestones for o in picture.overlaps] == [("M001", "M002")]
    (project.gsd / "parallel" / "radar.json").unlink()
    again = Supervisor(project.root, tick_seconds=0.05)
    again._open_run()
    again.radar.tick(wait=True)
    assert [o.key for o in again.radar.overlaps] == ["M001+M002"]
    assert len(seen.read_text().splitlines()) == 1


def loose_objects(root: Path) -> int:
    counts = dict(line.split(": ") for line in git(root, "count-objects", "-v").splitlines())
    return int(counts["count"]) + int(counts["in-pack"])


def test_radar_passes_write_no_object_into_the_repository(tmp_path, monkeypatch):
    """Snapshots and merge-tree results go to a throwaway object directory: before it they
    piled up in .git/objects, unreachable, until gc. Replacing that directory (here at every
    pass) measures everything again and keeps the verdicts right."""
    import gsd_parallel_plugin.run.radar as radar_module

    root, a, b = two_checkouts(tmp_path)
    before = loose_objects(root)
    radar = Radar(root)
    for n in range(3):
        (a / "shared.txt").write_text(f"left {n}\n")
        (b / "shared.txt").write_text(f"right {n}\n")
        (b / f"new{n}.txt").write_text(f"untracked {n}\n")
        assert radar.update([subject("M001", a, n), subject("M002", b, n)]) is True
        (pair,) = radar.overlaps
        assert pair.conflict and pair.conflict_files == ("shared.txt",)
    assert loose_objects(root) == before
    scratch = radar._objects.path if radar._objects else None
    assert scratch is not None and any(p.is_file() for p in scratch.rglob("*"))
    monkeypatch.setattr(radar_module, "SCRATCH_BYTES", 0)
    monkeypatch.setattr(radar_module, "SCRATCH_CHECK_EVERY", 1)
    (a / "shared.txt").write_text("right 2\n")  # now M001 agrees with M002: no conflict
    assert radar.update([subject("M001", a, 9), subject("M002", b, 9)]) is True
    assert not scratch.exists() and radar._objects is not None  # replaced
    (pair,) = radar.overlaps
    assert not pair.conflict
    (a / "shared.txt").write_text("left again\n")
    assert radar.update([subject("M001", a, 10), subject("M002", b, 9)]) is True
    assert radar.overlaps[0].conflict  # M002's snapshot measured again in the new directory
    assert loose_objects(root) == before
    current = radar._objects.path
    radar.close()
    assert not current.exists()
