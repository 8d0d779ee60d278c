"""Eligibility rules, overlaps, cycles and the start plan, on hand-built models."""

from __future__ import annotations

from pathlib import Path

from gsd_parallel_plugin.models import Milestone, Project, Waiting
from gsd_parallel_plugin.project.eligibility import (
    analyse,
    file_overlaps,
    find_cycles,
    render_report,
    report_json,
)


def ms(
    mid: str, status: str = "pending", deps: tuple[str, ...] = (), files: tuple[str, ...] = (), **kw
) -> Milestone:
    return Milestone(
        id=mid,
        title=f"Title {mid}",
        path=Path("/x") / mid,
        status=status,  # type: ignore[arg-type]
        depends_on=deps,
        files=frozenset(files),
        has_file_plan=bool(files),
        **kw,
    )


def project(*milestones: Milestone) -> Project:
    return Project(Path("/x"), Path("/x/.gsd"), tuple(milestones), "main")


def test_gsd_rules_and_reasons():
    p = project(
        ms("M001", "complete"),
        ms("M002", deps=("M001",), files=("src/a.py",)),
        ms("M003", deps=("M002", "M009")),
        ms("M004", "parked"),
        ms("M005", "ghost"),
        ms("M006", problems=("M006-CONTEXT.md line 2: invalid YAML frontmatter",)),
        ms("M007", all_slices_done=True),
    )
    report = analyse(p, max_workers=2)
    reasons = {v.id: v.reason for v in (*report.eligible, *report.ineligible)}
    assert reasons == {
        "M001": "Already complete.",
        "M002": "All dependencies satisfied.",
        "M003": "Blocked by incomplete dependencies: M002, M009 (unknown milestone M009).",
        "M004": "Milestone is parked.",
        "M005": "Milestone has no planning data — cannot determine eligibility.",
        "M006": "M006-CONTEXT.md line 2: invalid YAML frontmatter",
        "M007": "All dependencies satisfied. (all slices done — awaiting completion)",
    }
    assert [v.id for v in report.eligible] == ["M002", "M007"]
    assert report.plan.start == ("M002", "M007")


def test_parked_dependency_never_satisfies():
    p = project(ms("M001", "parked"), ms("M002", deps=("M001",)))
    assert analyse(p, max_workers=2).ineligible[-1].reason == ("Blocked by incomplete dependencies: M001.")


def test_cycles_are_named():
    p = project(
        ms("M001", deps=("M003",)),
        ms("M002"),
        ms("M003", deps=("M001",)),
        ms("M004", deps=("M004",)),
        ms("M005", deps=("M001",)),
    )
    assert find_cycles(p) == [("M001", "M003"), ("M004",)]
    reasons = {v.id: v.reason for v in analyse(p, max_workers=2).ineligible}
    assert reasons["M001"] == "Dependency cycle: M001 -> M003 -> M001."
    assert reasons["M004"] == "Dependency cycle: M004 -> M004."
    assert reasons["M005"] == "Blocked by incomplete dependencies: M001."


def test_long_chain_cycle_detection_is_iterative():
    chain = [ms(f"M{i:03d}", deps=(f"M{i + 1:03d}",)) for i in range(1, 999)]
    chain.append(ms("M999", deps=("M001",)))
    # 999 deep: a recursive search would hit Python's recursion limit here.
    assert len(find_cycles(project(*chain))[0]) == 999


def test_overlaps_exact_and_directories():
    a = ms("M001", files=("src/app.py", "docs/"))
    b = ms("M002", files=("src/app.py", "src/b.py"))
    c = ms("M003", files=("docs/guide/intro.md",))
    d = ms("M004", files=("lib/x.py",))
    overlaps = file_overlaps([a, b, c, d])
    assert [(o.milestones, o.files) for o in overlaps] == [
        (("M001", "M002"), ("src/app.py",)),
        (("M001", "M003"), ("docs/guide/intro.md",)),
    ]


def test_plan_serializes_overlaps_and_respects_slots():
    p = project(
        ms("M001", files=("src/app.py",)),
        ms("M002", files=("src/app.py",)),
        ms("M003", files=("src/c.py",)),
        ms("M004", files=("src/d.py",)),
    )
    report = analyse(p, max_workers=2)
    assert report.plan.start == ("M001", "M003")
    waiting = {w.id: w.reason for w in report.plan.waiting}
    assert waiting["M002"] == "overlaps M001 (src/app.py); starts after M001 finishes"
    assert waiting["M004"] == "waiting for a free worker slot (max_workers: 2)"
    assert report.eligible[0].reason.endswith(" WARNING: has file overlap with another eligible milestone.")

    warn = analyse(p, max_workers=4, overlap_policy="warn")
    assert warn.plan.start == ("M001", "M002", "M003", "M004")
    running = analyse(p, max_workers=2, running=("M003",))
    assert running.plan.start == ("M001",)


def test_veto_accumulates_reasons():
    p = project(ms("M001"), ms("M002"))
    report = analyse(p, max_workers=2, veto=lambda m: ["no", "nope"] if m.id == "M002" else [])
    assert report.ineligible[0].reason == "no; nope"
    assert report.plan.start == ("M001",)


def test_awaiting_merge_blocks_dependents():
    p = project(ms("M001", "complete"), ms("M002", deps=("M001",)))
    report = analyse(p, max_workers=2, awaiting_merge={"M001"})
    assert report.ineligible[-1].reason == "Waiting for M001 to merge."


def test_report_text_matches_gsd():
    p = project(
        ms("M002", files=("src/server.ts", "a")),
        ms("M003", files=("src/server.ts",)),
        ms("M004", deps=("M002",)),
    )
    text = render_report(analyse(p, max_workers=2), p)
    assert text.startswith(
        "# Parallel Eligibility Report\n\n## Eligible for Parallel Execution (2)\n\n"
        "- **M002** — Title M002\n  All dependencies satisfied. WARNING: has file overlap with "
        "another eligible milestone.\n"
    )
    assert (
        "## Ineligible (1)\n\n- **M004** — Title M004\n  Blocked by incomplete dependencies: M002.\n" in text
    )
    assert (
        "## File Overlap Warnings (1)\n\n- **M002** <-> **M003** — 1 shared file(s):\n  - `src/server.ts`\n"
        in text
    )
    data = report_json(analyse(p, max_workers=2))
    assert data["overlaps"] == [{"milestones": ["M002", "M003"], "files": ["src/server.ts"]}]
    assert data["plan"] == {
        "start": ["M002"],
        "waiting": [{"id": "M003", "reason": "overlaps M002 (src/server.ts); starts after M002 finishes"}],
    }


def test_overlap_with_a_milestone_awaiting_merge_waits_for_the_merge():
    p = project(
        ms("M001", files=("src/app.py",)),
        ms("M002", files=("src/app.py", "src/b.py")),
        ms("M003", files=("src/c.py",)),
    )
    # M001 completed (its worktree says so) but has not merged yet.
    report = analyse(p, max_workers=2, held={"M001"}, awaiting_merge={"M001"})
    assert report.plan.start == ("M003",)
    assert report.plan.waiting == (
        Waiting("M002", "overlaps M001 (src/app.py); starts after M001 is merged"),
    )
    # Once it landed, nothing holds M002 back.
    assert analyse(p, max_workers=2, held={"M001"}).plan.start == ("M002", "M003")
