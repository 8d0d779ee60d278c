"""The GSD project reader on real directory trees built in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import ProjectError
from gsd_parallel_plugin.project import (
    MILESTONE_DIR_RE,
    MILESTONE_ID_RE,
    find_project_root,
    is_terminal_summary,
    normalize_file_entry,
    parse_frontmatter,
    parse_plan,
    parse_roadmap,
    read_project,
)
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import ONE

# --------------------------------------------------------------------------- helpers


def write(root: Path, rel: str, text: str | bytes = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ms(root: Path, mid: str, files: dict[str, str | bytes], dirname: str | None = None) -> Path:
    """Write milestone files; keys are relative to ``.gsd/milestones/<dirname>/``."""
    base = root / ".gsd" / "milestones" / (dirname or mid)
    base.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        write(base, rel, text)
    return base


def roadmap(mid: str, title: str, *slices: tuple[str, str, bool, str]) -> str:
    lines = [f"# {mid}: {title}", "", "## Slices", ""]
    for sid, stitle, done, deps in slices:
        mark = "x" if done else " "
        lines.append(f"- [{mark}] **{sid}: {stitle}** `risk:low` `depends:[{deps}]`")
        lines.append("  > After this: something works.")
        lines.append("")
    return "\n".join(lines)


def plan(*tasks: tuple[str, bool, str], likely: tuple[str, ...] = ()) -> str:
    lines = ["# S01: Plan", "", "## Tasks", ""]
    for tid, done, files in tasks:
        lines.append(f"- [{'x' if done else ' '}] **{tid}: Task {tid}** `est:30m`")
        lines.append("  Do the thing.")
        if files:
            lines.append(f"  - Files: {files}")
        lines.append("  - Verify: pytest")
        lines.append("")
    if likely:
        lines += ["## Files Likely Touched", "", *[f"- {f}" for f in likely]]
    return "\n".join(lines)


SUMMARY_COMPLETE = """---
id: M001
title: "Core API"
status: complete
completed_at: 2026-05-06T17:42:10.512Z
---

# M001: Core API
"""


def example_project(root: Path) -> None:
    """A small example project: the shapes GSD writes, three milestones, one dependency."""
    write(root, ".gsd/PREFERENCES.md", "---\nparallel: {enabled: true, max_workers: 3}\n---\n")
    ms(
        root,
        "M001",
        {
            "M001-CONTEXT.md": "# M001: Core API\n",
            "M001-ROADMAP.md": roadmap("M001", "Core API", ("S01", "Skeleton", True, "")),
            "M001-SUMMARY.md": SUMMARY_COMPLETE,
        },
    )
    ms(
        root,
        "M002",
        {
            "M002-CONTEXT.md": "---\ndepends_on: [M001]\n---\n\n# M002: Auth System\n",
            "M002-ROADMAP.md": roadmap(
                "M002", "Auth System", ("S01", "Login", False, ""), ("S02", "Profile", False, "S01")
            ),
            "slices/S01/S01-PLAN.md": plan(("T01", False, "`src/auth/session.py`, `src/app.py`")),
        },
    )
    ms(
        root,
        "M003",
        {
            "M003-CONTEXT.md": "# M003: Search\n\nNo frontmatter here.\n",
            "M003-ROADMAP.md": roadmap("M003", "Search", ("S01", "Index", False, "")),
            "slices/S01/S01-PLAN.md": plan(("T01", False, "`src/search.py`, `src/app.py`")),
        },
    )
    ms(root, "M004", {"M004-CONTEXT.md": "---\ndepends_on: [M002, M003]\n---\n\n# M004: API\n"})
    ms(root, "M005", {"M005-CONTEXT.md": "# M005: Later\n", "M005-PARKED.md": "parked\n"})
    ms(root, "M006", {})


# --------------------------------------------------------------------------- example project


def test_example_project(tmp_path: Path) -> None:
    example_project(tmp_path)
    p = read_project(tmp_path)
    assert p.ids == ("M001", "M002", "M003", "M004", "M005", "M006")
    assert p.problems == ()
    assert p.gsd_dir == (tmp_path / ".gsd").resolve()
    assert p.integration_branch == "main"
    by = {m.id: m for m in p.milestones}
    assert {k: m.status for k, m in by.items()} == {
        "M001": "complete",
        "M002": "pending",
        "M003": "pending",
        "M004": "pending",
        "M005": "parked",
        "M006": "ghost",
    }
    assert {k: m.depends_on for k, m in by.items()} == {
        "M001": (),
        "M002": ("M001",),
        "M003": (),
        "M004": ("M002", "M003"),
        "M005": (),
        "M006": (),
    }
    assert by["M002"].files == {"src/auth/session.py", "src/app.py"}
    assert by["M003"].files == {"src/search.py", "src/app.py"}
    assert by["M002"].files & by["M003"].files == {"src/app.py"}
    assert [m.id for m in p.milestones if m.has_file_plan] == ["M002", "M003"]
    assert by["M002"].title == "Auth System"
    assert by["M001"].title == "Core API"
    assert by["M005"].title == "Later"
    assert by["M006"].title == "M006"
    assert all(m.problems == () for m in p.milestones)
    m2 = by["M002"]
    assert [s.id for s in m2.slices] == ["S01", "S02"]
    assert m2.slices[0].has_plan and not m2.slices[1].has_plan
    assert m2.slices[1].depends == ("S01",)
    assert [t.id for t in m2.tasks] == ["T01"] and m2.tasks_left == 1
    assert by["M001"].all_slices_done and not m2.all_slices_done
    assert m2.path == p.gsd_dir / "milestones" / "M002"


# --------------------------------------------------------------------------- locating


def test_find_project_root_walks_up(tmp_path: Path) -> None:
    (tmp_path / ".gsd").mkdir()
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == tmp_path.resolve()
    assert find_project_root(tmp_path) == tmp_path.resolve()


def test_find_project_root_uses_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".gsd").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert find_project_root() == tmp_path.resolve()


def test_find_project_root_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GSD_HOME", str(tmp_path / "nonexistent-home"))
    start = tmp_path / "x"
    start.mkdir()
    (tmp_path / ".gsd").write_text("a file, not a directory")
    with pytest.raises(ProjectError, match=r"^not a GSD project: no \.gsd directory in .*x or its parents$"):
        find_project_root(start)


def test_find_project_root_skips_global_gsd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".gsd").mkdir(parents=True)
    (home / "work").mkdir()
    monkeypatch.setenv("GSD_HOME", str(home / ".gsd"))
    with pytest.raises(ProjectError):
        find_project_root(home / "work")
    (home / "work" / ".gsd").mkdir()
    assert find_project_root(home / "work") == (home / "work").resolve()


def test_symlinked_gsd_dir_is_followed(tmp_path: Path) -> None:
    store = tmp_path / "store" / "projects" / "0123456789ab"
    repo = tmp_path / "repo"
    repo.mkdir()
    example_project(store.parent.parent / "tmp-build")
    (store.parent).mkdir(parents=True)
    os.rename(store.parent.parent / "tmp-build" / ".gsd", store)
    (repo / ".gsd").symlink_to(store, target_is_directory=True)
    (repo / "src").mkdir()
    assert find_project_root(repo / "src") == repo.resolve()
    p = read_project(repo)
    assert p.gsd_dir == store.resolve()
    assert p.root == repo
    assert p.ids == ("M001", "M002", "M003", "M004", "M005", "M006")
    assert p.get("M002").path == store.resolve() / "milestones" / "M002"  # type: ignore[union-attr]


def test_read_project_without_gsd_raises(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a GSD project"):
        read_project(tmp_path)


def test_project_without_milestones_dir(tmp_path: Path) -> None:
    (tmp_path / ".gsd").mkdir()
    p = read_project(tmp_path)
    assert p.milestones == () and p.problems == ()


def test_milestones_path_is_a_file(tmp_path: Path) -> None:
    write(tmp_path, ".gsd/milestones", "oops")
    p = read_project(tmp_path)
    assert p.milestones == ()
    assert p.problems == (".gsd/milestones: not a directory",)


# --------------------------------------------------------------------------- IDs and directories


def test_id_regexes() -> None:
    assert MILESTONE_ID_RE.match("M001") and MILESTONE_ID_RE.match("M012-x7k2pq")
    for bad in ("M1", "M0001", "M001-ABCDEF", "M001-abc12", "M001-abc1234", "m001"):
        assert not MILESTONE_ID_RE.match(bad), bad
    assert MILESTONE_DIR_RE.match("M004-render-primitives").group(1) == "M004-render"  # type: ignore[union-attr]
    assert MILESTONE_DIR_RE.match("M006-item-palette").group(1) == "M006"  # type: ignore[union-attr]


def test_unique_ids_and_numeric_order(tmp_path: Path) -> None:
    for mid in ("M002", "M001-zzz999", "M010", "M001-abc123", "M001"):
        ms(tmp_path, mid, {f"{mid}-CONTEXT.md": f"# {mid}: T {mid}\n"})
    p = read_project(tmp_path)
    assert p.ids == ("M001", "M001-abc123", "M001-zzz999", "M002", "M010")
    assert p.get("M001-abc123").title == "T M001-abc123"  # type: ignore[union-attr]
    assert all(m.problems == () for m in p.milestones)


def test_legacy_directory_and_file_names(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M001",
        {
            "M001-LEGACY-NAME-ROADMAP.md": roadmap("M001", "Legacy", ("S01", "A", False, "")),
            "m001-context.md": "---\ndepends_on: M002\n---\n",
        },
        dirname="M001-LEGACY-NAME",
    )
    ms(
        tmp_path,
        "M002",
        {
            "M002-wgpu-sprite-renderer-ROADMAP.md": "# M002: Sprites\n\n## Slices\n",
        },
        dirname="M002-wgpu-sprite-renderer",
    )
    p = read_project(tmp_path)
    assert p.ids == ("M001", "M002")
    m1, m2 = p.milestones
    assert m1.title == "Legacy" and m1.depends_on == ("M002",) and m1.status == "pending"
    assert m1.path.name == "M001-LEGACY-NAME"
    assert m2.title == "Sprites" and m2.status == "pending" and m2.slices == ()


def test_six_letter_words_look_like_unique_suffixes(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M004-render",
        {
            "M004-render-primitives-ROADMAP.md": "# M004: Render\n",
        },
        dirname="M004-render-primitives",
    )
    ms(tmp_path, "M006", {"M006-CONTEXT.md": "# M006: Palette\n"}, dirname="M006-item-palette")
    ms(tmp_path, "M007", {"M007-CONTEXT.md": "# a\n"})
    ms(tmp_path, "M007-trfeo8", {"M007-trfeo8-CONTEXT.md": "# b\n"})
    p = read_project(tmp_path)
    assert p.ids == ("M004-render", "M006", "M007", "M007-trfeo8")
    assert p.get("M004-render").title == "Render"  # type: ignore[union-attr]
    assert p.get("M004-render").status == "pending"  # type: ignore[union-attr]
    assert p.get("M007").title == "a" and p.get("M007-trfeo8").title == "b"  # type: ignore[union-attr]
    assert p.problems == ()


def test_suffix_like_directory_word_hides_bare_id_files(tmp_path: Path) -> None:
    ms(tmp_path, "M004-render", {"M004-ROADMAP.md": "# M004: Render\n"}, dirname="M004-render-primitives")
    ms(tmp_path, "M005-abc123", {"notes.md": "x"})
    p = read_project(tmp_path)
    m4, m5 = p.milestones
    assert m4.status == "ghost"
    assert m4.problems == (
        ".gsd/milestones/M004-render-primitives: GSD reads this directory as milestone "
        "M004-render ('-render' looks like a unique-ID suffix), so its M004-* files are not "
        "found; rename the directory",
    )
    assert m5.status == "ghost" and m5.problems == ()


def test_duplicate_directories_for_one_id(tmp_path: Path) -> None:
    ms(tmp_path, "M006", {"M006-CONTEXT.md": "# M006: Bare\n"})
    ms(tmp_path, "M006", {"M006-CONTEXT.md": "# M006: Palette\n"}, dirname="M006-item-palette")
    ms(tmp_path, "M007", {"M007-CONTEXT.md": "# M007: Fine\n"})
    p = read_project(tmp_path)
    assert p.ids == ("M006", "M007")
    assert len(p.problems) == 1
    assert ".gsd/milestones/M006/" in p.problems[0]
    assert ".gsd/milestones/M006-item-palette/" in p.problems[0]
    m6 = p.get("M006")
    assert m6 is not None and m6.problems == p.problems
    assert m6.path.name == "M006"  # GSD's pick: the exact name first
    assert p.get("M007").problems == ()  # type: ignore[union-attr]


def test_invalid_id_shapes_are_milestones_with_a_problem(tmp_path: Path) -> None:
    ms(tmp_path, "M1", {"M1-CONTEXT.md": "# M1: Short\n"}, dirname="M1-foo")
    ms(tmp_path, "M0001", {"M0001-CONTEXT.md": "# x\n"})
    p = read_project(tmp_path)
    assert set(p.ids) == {"M1", "M0001"}
    for m in p.milestones:
        assert len(m.problems) == 1 and "is not a valid milestone ID" in m.problems[0]


def test_non_milestone_entries_are_ignored(tmp_path: Path) -> None:
    ms(tmp_path, "M001", {"M001-CONTEXT.md": "# M001: A\n"})
    write(tmp_path, ".gsd/milestones/_archived/M009/M009-CONTEXT.md", "# M009\n")
    write(tmp_path, ".gsd/milestones/Mfoo/x.md", "x")
    write(tmp_path, ".gsd/milestones/M002-CONTEXT.md", "a file, not a directory")
    write(tmp_path, ".gsd/milestones/.hidden/M003-CONTEXT.md", "x")
    write(tmp_path, ".gsd/gsd.db.bak", b"SQLite format 3\x00" + bytes(range(256)) * 10)
    write(tmp_path, ".gsd/bench.json", "{not json")
    assert read_project(tmp_path).ids == ("M001",)


# --------------------------------------------------------------------------- queue order


@pytest.mark.parametrize(
    ("queue", "expected", "problem"),
    [
        ({"order": ["M003", "M001"]}, ("M003", "M001", "M002", "M004"), None),
        ({"order": []}, ("M001", "M002", "M003", "M004"), None),
        ({"order": ["M009", "M004", "M004", "M777"]}, ("M004", "M001", "M002", "M003"), None),
        ({"order": ["M002", 7]}, ("M002", "M001", "M003", "M004"), "not milestone IDs"),
        ({"order": "M002"}, ("M001", "M002", "M003", "M004"), "expected"),
        (["M002"], ("M001", "M002", "M003", "M004"), "expected"),
        ("{oops", ("M001", "M002", "M003", "M004"), "line 1: invalid JSON"),
    ],
)
def test_queue_order(tmp_path: Path, queue: object, expected: tuple[str, ...], problem: str | None) -> None:
    for mid in ("M004", "M002", "M003", "M001"):
        ms(tmp_path, mid, {f"{mid}-CONTEXT.md": "# x\n"})
    text = queue if isinstance(queue, str) else json.dumps(queue)
    write(tmp_path, ".gsd/QUEUE-ORDER.json", text)
    p = read_project(tmp_path)
    assert p.ids == expected
    if problem is None:
        assert p.problems == ()
    else:
        assert len(p.problems) == 1
        assert p.problems[0].startswith(".gsd/QUEUE-ORDER.json") and problem in p.problems[0]


def test_queue_order_with_unique_ids(tmp_path: Path) -> None:
    for mid in ("M002-bbbbbb", "M001-aaaaaa", "M003"):
        ms(tmp_path, mid, {f"{mid}-CONTEXT.md": "# x\n"})
    write(tmp_path, ".gsd/QUEUE-ORDER.json", json.dumps({"order": ["M003"], "updatedAt": "x"}))
    assert read_project(tmp_path).ids == ("M003", "M001-aaaaaa", "M002-bbbbbb")


# --------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        ("depends_on: [M001, M002]", ("M001", "M002")),
        ("depends_on:\n  - M001\n  - M002-abc123", ("M001", "M002-abc123")),
        ("depends_on: M001", ("M001",)),
        ("depends_on: M001, M002", ("M001", "M002")),
        ("depends_on: []", ()),
        ("depends_on:", ()),
        ("dependsOn: [M001]", ()),
        ("title: x", ()),
        ("depends_on: ['M001', \"M002\", M001]", ("M001", "M002")),
        ("depends_on:\n  - M001 (the core)", ("M001",)),
    ],
)
def test_depends_on_forms(tmp_path: Path, frontmatter: str, expected: tuple[str, ...]) -> None:
    ms(tmp_path, "M003", {"M003-CONTEXT.md": f"---\n{frontmatter}\n---\n\n# M003: X\n"})
    m = read_project(tmp_path).milestones[0]
    assert m.depends_on == expected
    assert m.problems == ()


def test_context_wins_over_draft_and_lists_are_not_merged(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M003",
        {
            "M003-CONTEXT.md": "---\ndepends_on: [M001]\n---\n# M003: Final\n",
            "M003-CONTEXT-DRAFT.md": "---\ndepends_on: [M002]\n---\n# M003: Draft\n",
        },
    )
    ms(tmp_path, "M004", {"M004-CONTEXT-DRAFT.md": "---\ndepends_on: [M002]\n---\n# M004: D\n"})
    ms(
        tmp_path,
        "M005",
        {
            "M005-CONTEXT-DRAFT.md": "# M005: D\n",
            "M005-ROADMAP.md": "# M005: Planned\n",
        },
    )
    p = read_project(tmp_path)
    m3, m4, m5 = p.milestones
    assert m3.depends_on == ("M001",) and m3.title == "Final" and not m3.draft_only
    assert m4.depends_on == ("M002",) and m4.draft_only and m4.status == "pending"
    assert m5.title == "Planned" and not m5.draft_only


def test_broken_context_yaml_is_a_problem_with_path_and_line(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M003",
        {
            "M003-CONTEXT.md": "---\ndepends_on: [M001, M002\ntitle: x\n---\n\n# M003: Checkout\n",
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert len(m.problems) == 1
    problem = m.problems[0]
    assert problem.startswith(".gsd/milestones/M003/M003-CONTEXT.md line ")
    assert "invalid YAML frontmatter" in problem
    assert m.title == "Checkout"


def test_yaml_error_line_points_into_the_file(tmp_path: Path) -> None:
    text = "---\nid: M003\ndepends_on: [M001]\ntitle: M003: Checkout: flow\n---\n"
    ms(tmp_path, "M003", {"M003-CONTEXT.md": text})
    m = read_project(tmp_path).milestones[0]
    assert len(m.problems) == 1
    assert m.problems[0].startswith(
        ".gsd/milestones/M003/M003-CONTEXT.md line 4: invalid YAML frontmatter "
        "(mapping values are not allowed"
    )
    assert m.depends_on == ("M001",)  # best effort, but the problem makes it ineligible


@pytest.mark.parametrize(
    ("frontmatter", "fragment"),
    [
        ("depends_on: {a: 1}", "line 2: depends_on must be a list of milestone IDs, not dict"),
        ("depends_on: 3", "line 2: depends_on must be a list of milestone IDs, not int"),
        ("x: 1\ndepends_on: [M001, [M002]]", "line 3: depends_on entry of type list"),
        ("- a\n- b", "line 2: frontmatter is not a 'key: value' mapping"),
    ],
)
def test_bad_depends_on_values_are_problems(tmp_path: Path, frontmatter: str, fragment: str) -> None:
    ms(tmp_path, "M003", {"M003-CONTEXT.md": f"---\n{frontmatter}\n---\n"})
    m = read_project(tmp_path).milestones[0]
    assert len(m.problems) == 1 and fragment in m.problems[0], m.problems
    assert m.problems[0].startswith(".gsd/milestones/M003/M003-CONTEXT.md line")


def test_unterminated_frontmatter_is_a_problem(tmp_path: Path) -> None:
    ms(tmp_path, "M003", {"M003-CONTEXT.md": "---\ndepends_on: [M001]\n\n# M003: X\n"})
    m = read_project(tmp_path).milestones[0]
    assert m.problems == (
        ".gsd/milestones/M003/M003-CONTEXT.md line 1: frontmatter has no closing '---' line",
    )


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize("status", ["complete", "done", "skipped", "closed", "Complete", '"done"'])
def test_terminal_summary_statuses(tmp_path: Path, status: str) -> None:
    ms(tmp_path, "M001", {"M001-SUMMARY.md": f"---\nstatus: {status}\n---\n# M001: X\n"})
    assert read_project(tmp_path).milestones[0].status == "complete"


@pytest.mark.parametrize("status", ["active", "pending", "blocked", "failed", "failure", "incomplete"])
def test_non_terminal_summary_statuses(tmp_path: Path, status: str) -> None:
    ms(tmp_path, "M001", {"M001-SUMMARY.md": f"---\nstatus: {status}\n---\n# M001: X\n"})
    m = read_project(tmp_path).milestones[0]
    assert m.status == "pending" and m.problems == ()


@pytest.mark.parametrize(
    ("text", "terminal"),
    [
        ("# M001: Done\n\nAll good.\n", True),
        ("---\nstatus: in-review\n---\nfine\n", True),
        ("---\nid: M001\n---\n# BLOCKER — auto-mode recovery failed\n", False),
        ("\n# BLOCKER\nsomething\n", False),
        ("Notes: auto-mode recovery failed after 1 attempt\n", False),
        ("The verification   failed twice.\n", False),
        ("status: not complete\n", False),
        ("Verdict = not complete yet\n", False),
        ("  outcome - not complete\n", False),
        ("result: not completed\n", True),  # GSD's \b: 'completed' is not 'complete'
        ("---\nstatus: complete\n---\n# BLOCKER\n", True),  # explicit status wins
        ("---\nstatus: failed\n---\nall good\n", False),
        ("---\nstatus: complete: really\ntitle: a: b\n---\n", True),  # unknown status
        ("", True),
    ],
)
def test_is_terminal_summary(text: str, terminal: bool) -> None:
    assert is_terminal_summary(text) is terminal


def test_summary_with_yaml_gsd_can_read_is_not_a_problem(tmp_path: Path) -> None:
    text = "---\nstatus: complete\none_liner: Added X: the thing\n---\n# M001: Core\n"
    ms(tmp_path, "M001", {"M001-SUMMARY.md": text})
    m = read_project(tmp_path).milestones[0]
    assert m.status == "complete" and m.problems == () and m.title == "Core"


def test_blocker_placeholder_summary_is_not_complete(tmp_path: Path) -> None:
    placeholder = (
        "# BLOCKER — auto-mode recovery failed\n\nUnit `complete-milestone` for `M001` failed "
        "to produce this artifact after idle recovery exhausted all retries.\n"
    )
    ms(
        tmp_path,
        "M001",
        {
            "M001-ROADMAP.md": roadmap("M001", "Core", ("S01", "A", True, "")),
            "M001-SUMMARY.md": placeholder,
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert m.status == "pending" and m.all_slices_done


def test_parked_wins(tmp_path: Path) -> None:
    ms(tmp_path, "M001", {"M001-SUMMARY.md": SUMMARY_COMPLETE, "M001-PARKED.md": ""})
    ms(tmp_path, "M002", {"m002-parked.md": "why"})
    p = read_project(tmp_path)
    assert [m.status for m in p.milestones] == ["parked", "parked"]
    assert all(m.problems == () for m in p.milestones)  # an empty PARKED file is fine


def test_needs_attention_validation(tmp_path: Path) -> None:
    done = roadmap("M001", "A", ("S01", "A", True, ""), ("S02", "B", True, "S01"))
    validation = "---\nverdict: needs-attention\nremediation_round: 1\n---\n# Validation\n"
    ms(tmp_path, "M001", {"M001-ROADMAP.md": done, "M001-VALIDATION.md": validation})
    ms(
        tmp_path,
        "M002",
        {
            "M002-ROADMAP.md": roadmap("M002", "B", ("S01", "A", True, ""), ("S02", "B", False, "")),
            "M002-VALIDATION.md": validation,
        },
    )
    ms(
        tmp_path,
        "M003",
        {
            "M003-ROADMAP.md": done,
            "M003-VALIDATION.md": "---\nverdict: pass\n---\n",
        },
    )
    ms(tmp_path, "M004", {"M004-ROADMAP.md": done})
    ms(
        tmp_path,
        "M005",
        {
            "M005-ROADMAP.md": done,
            "M005-VALIDATION.md": validation,
            "M005-SUMMARY.md": SUMMARY_COMPLETE,
        },
    )
    p = read_project(tmp_path)
    assert [(m.id, m.status, m.all_slices_done) for m in p.milestones] == [
        ("M001", "parked", True),
        ("M002", "pending", False),
        ("M003", "pending", True),
        ("M004", "pending", True),
        ("M005", "complete", True),
    ]


def test_ghost_and_zero_slice_roadmap(tmp_path: Path) -> None:
    ms(tmp_path, "M001", {"notes.txt": "hello", "slices/S01/S01-PLAN.md": plan()})
    ms(tmp_path, "M002", {"M002-ROADMAP.md": "# M002: Empty\n\n## Slices\n\n## Boundary Map\n"})
    ms(tmp_path, "M003", {"M003-RESEARCH.md": "# research\n"})
    p = read_project(tmp_path)
    assert [m.status for m in p.milestones] == ["ghost", "pending", "ghost"]
    m2 = p.milestones[1]
    assert m2.slices == () and not m2.all_slices_done and m2.problems == ()
    assert not m2.has_file_plan and m2.files == frozenset()


def test_summary_title_fallback(tmp_path: Path) -> None:
    ms(tmp_path, "M001", {"M001-SUMMARY.md": SUMMARY_COMPLETE})
    assert read_project(tmp_path).milestones[0].title == "Core API"


# --------------------------------------------------------------------------- roadmap shapes


TABLE_ROADMAP = """# M002: Tables

## Slice Overview

| ID | Slice | Risk | Depends | Done |
|----|-------|------|---------|:----:|
| S01 | Login | high | — | ✅ |
| **S02** | Profile | low | S01 | ⬜ |
| S03 | Export | low | S01-S02 | [x] |
| S04 | Search | low | S03 | done |
| S05 | Admin | low | | ☑ |
| S06 | Later | low | | not complete |
| S07 | Check | low | | ✔ |

## Boundary Map

### S01 → S02
"""


def test_table_roadmap() -> None:
    slices = parse_roadmap(TABLE_ROADMAP)
    assert [(s.id, s.title, s.done, s.depends) for s in slices] == [
        ("S01", "Login", True, ()),
        ("S02", "Profile", False, ("S01",)),
        ("S03", "Export", True, ("S01", "S02")),
        ("S04", "Search", True, ("S03",)),
        ("S05", "Admin", True, ()),
        ("S06", "Later", False, ()),
        ("S07", "Check", True, ()),
    ]


def test_table_roadmap_with_status_column_and_title_in_id_cell() -> None:
    text = (
        "## Slice Table\n\n| Slice | Status |\n|---|---|\n"
        "| S01: Core engine | Complete |\n| S02 — UI | In progress |\n| S03: Docs | ✓ |\n"
    )
    assert [(s.id, s.title, s.done) for s in parse_roadmap(text)] == [
        ("S01", "Core engine", True),
        ("S02", "UI", False),
        ("S03", "Docs", True),
    ]


HEADING_ROADMAP = """# M003: Headings

## Slices

### S01 - Foundations ✓
Some prose.

### S02: Renderer (Complete)
**Depends on:** S01

### S03 — Sprites
Depends on: S01-S02
Status: in progress

### S04: Audio ✅

## Boundary Map

### S01 → S02
- Produces: things
"""


def test_heading_roadmap(tmp_path: Path) -> None:
    slices = parse_roadmap(HEADING_ROADMAP)
    assert [(s.id, s.title, s.done, s.depends) for s in slices] == [
        ("S01", "Foundations", True, ()),
        ("S02", "Renderer", True, ("S01",)),
        ("S03", "Sprites", False, ("S01", "S02")),
        ("S04", "Audio", True, ()),
    ]
    ms(tmp_path, "M003", {"M003-ROADMAP.md": HEADING_ROADMAP})
    m = read_project(tmp_path).milestones[0]
    assert m.title == "Headings" and len(m.slices) == 4 and not m.all_slices_done


def test_checkbox_roadmap_details() -> None:
    text = (
        "---\nid: M001\n---\n# M001: X\n\n## Slices\n\n"
        "- [X] **S01: Upper X** `risk:high` `depends:[]`\n"
        "- [ ] **S02: Range** `risk:low` `depends:[S01-S01]`\n"
        "- [ ] **S03: Two** `depends:[S01,S02]`\n"
        "  - [ ] a sub item that is not a slice\n"
        "- [x] **S01: Duplicate keeps first**\n"
        "\n```\n- [x] **S09: in a code block**\n```\n"
    )
    assert [(s.id, s.title, s.done, s.depends) for s in parse_roadmap(text)] == [
        ("S01", "Upper X", True, ()),
        ("S02", "Range", False, ("S01",)),
        ("S03", "Two", False, ("S01", "S02")),
    ]


def test_roadmap_without_slice_section_is_scanned_whole() -> None:
    text = "# M001: X\n\n## Plan\n\n- [x] **S01: A**\n- [ ] **S02: B** `depends:[S01]`\n"
    assert [(s.id, s.done) for s in parse_roadmap(text)] == [("S01", True), ("S02", False)]


def test_plain_checkbox_lines_under_another_heading() -> None:
    text = (
        "# Project\n\n## Milestones\n\n- [x] M003: Conflict Resolution (2/2 slices)\n\n"
        "## M006 Roadmap\n\n"
        "- [x] S01: App Scaffold, Dashboard `risk:high` — binary fix (`assay-tui`). DONE.\n"
        "- [ ] S02: Wizard `risk:high` `depends:[S01]` — multi-step **PLANNED** (T01–T03)\n"
        "- [ ] **S03: Add `foo` command** `depends:[M003]`\n\n"
        "## Boundary Map\n\n### S01 produces\n\n- things\n\n### M003 -> S01\n"
        "### S04: Renderer — COMPLETE\n"
    )
    assert [(s.id, s.title, s.done, s.depends) for s in parse_roadmap(text)] == [
        ("S01", "App Scaffold, Dashboard", True, ()),
        ("S02", "Wizard", False, ("S01",)),
        ("S03", "Add `foo` command", False, ()),
        ("S04", "Renderer", True, ()),
    ]


def test_empty_slices_section() -> None:
    assert parse_roadmap("# M001: X\n\n## Slices\n\n## Boundary Map\n\n### S01 → S02\n") == []


# --------------------------------------------------------------------------- plans and files


STEPS_PLAN = """# S01: Steps plan

**Goal:** things

## Must-Haves

- a must-have at plan level

## Tasks

- [ ] **T01: First** `est:1h`

## Steps

1. Do a
2. Do b

## Must-Haves

- it works

  - Files: `src/first.py`, `./docs/guide.md` (new)

- [x] **T02: Second**
  - Files:
    - `src/second.py`
    - src/dir/
  - Verify: x

- [ ] **T03: Third**
  - **Files:** src/third.ts (new), and 26 other files
- [ ] **T04: Read only**
  - Files: (read-only verification — no files modified)

## Files Likely Touched

- `src/first.py`
- src/likely.py — main entry
* `web/Ünïcode Dir/page name.tsx`
"""


def test_plan_with_steps_headings_keeps_files_with_their_task() -> None:
    tasks = parse_plan(STEPS_PLAN)
    assert [(t.id, t.title, t.done, t.files) for t in tasks] == [
        ("T01", "First", False, ("src/first.py", "docs/guide.md")),
        ("T02", "Second", True, ("src/second.py", "src/dir/")),
        ("T03", "Third", False, ("src/third.ts",)),
        ("T04", "Read only", False, ()),
    ]


def test_plan_files_union_and_task_summaries(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M001",
        {
            "M001-ROADMAP.md": roadmap("M001", "A", ("S01", "Steps", False, ""), ("S02", "B", False, "")),
            "slices/S01/S01-PLAN.md": STEPS_PLAN,
            "slices/S01/tasks/T01-SUMMARY.md": "---\nstatus: done\n---\n",
            "slices/S01/tasks/T03-install-things-SUMMARY.md": "done",
            "slices/S01/tasks/SUMMARY.md": "belongs to no task",
            "slices/S02-LEGACY/S02-LEGACY-PLAN.md": plan(("T01", False, "`src/b.py`")),
            "slices/S09/S09-PLAN.md": plan(("T01", False, "src/unlisted.py")),
            "slices/S10/notes.md": "no plan here",
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert m.files == {
        "src/first.py",
        "docs/guide.md",
        "src/second.py",
        "src/dir/",
        "src/third.ts",
        "src/likely.py",
        "web/Ünïcode Dir/page name.tsx",
        "src/b.py",
        "src/unlisted.py",
    }
    assert m.has_file_plan
    s1, s2 = m.slices
    assert s1.has_plan and s2.has_plan
    assert [(t.id, t.done) for t in s1.tasks] == [
        ("T01", True),
        ("T02", True),
        ("T03", True),
        ("T04", False),
    ]
    assert m.tasks_left == 2
    assert m.problems == ()


def test_plan_without_files_means_no_file_plan(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M001",
        {
            "M001-ROADMAP.md": roadmap("M001", "A", ("S01", "A", False, "")),
            "slices/S01/S01-PLAN.md": plan(("T01", False, "none"), ("T02", False, "")),
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert m.slices[0].has_plan and not m.has_file_plan and m.files == frozenset()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("src/app.py", "src/app.py"),
        ("`src/app.py`", "src/app.py"),
        ("  `src/app.py`  ", "src/app.py"),
        ("src/a.ts (new)", "src/a.ts"),
        ("`src/a.ts` (new)", "src/a.ts"),
        ("src/a.ts (new) (modified)", "src/a.ts"),
        ("./AGENTS.md", "AGENTS.md"),
        ("`./src/x.py`", "src/x.py"),
        ("src/components/", "src/components/"),
        ("docs/My Notes.md", "docs/My Notes.md"),
        ("src/ünïcødé/файл.py", "src/ünïcødé/файл.py"),
        ("src/app/(auth)/page.tsx", "src/app/(auth)/page.tsx"),
        ("src/a.py:10-20", "src/a.py"),
        ("src/a.py — adds the handler", "src/a.py"),
        ("src/a.py - adds the handler", "src/a.py"),
        ("src/a.py: adds the handler", "src/a.py"),
        ("**src/b.py**", "src/b.py"),
        ('"src/quoted.py"', "src/quoted.py"),
        ("- src/bullet.py", "src/bullet.py"),
        ("Makefile", "Makefile"),
        ("package.json", "package.json"),
        ("src/**/*.ts", "src/**/*.ts"),
        ("and 26 other files", None),
        ("+ 3 more files", None),
        ("(read-only verification — no files modified)", None),
        ("none", None),
        ("None", None),
        ("N/A", None),
        ("n/a", None),
        ("TBD", None),
        ("", None),
        ("   ", None),
        ("`", None),
        ("./", None),
        ("update the tests accordingly", None),
        ("no files modified", None),
        ("various", None),
        ("see `src/a.py` for details", None),
    ],
)
def test_normalize_file_entry(entry: str, expected: str | None) -> None:
    assert normalize_file_entry(entry) == expected


# --------------------------------------------------------------------------- META.json


def test_integration_branch(tmp_path: Path) -> None:
    ms(tmp_path, "M001", {"M001-CONTEXT.md": "# a\n", "M001-META.json": '{"integrationBranch": "develop"}'})
    ms(tmp_path, "M002", {"M002-CONTEXT.md": "# b\n", "M002-META.json": "{}"})
    ms(tmp_path, "M003", {"M003-CONTEXT.md": "# c\n", "M003-META.json": "{broken"})
    ms(tmp_path, "M004", {"M004-CONTEXT.md": "# d\n", "M004-META.json": '{"integrationBranch": 3}'})
    ms(tmp_path, "M005", {"M005-CONTEXT.md": "# e\n", "M005-META.json": '{"integrationBranch": "a b"}'})
    ms(tmp_path, "M006", {"M006-CONTEXT.md": "# f\n", "M006-META.json": "[1]"})
    ms(tmp_path, "M007", {"M007-CONTEXT.md": "# g\n"})
    p = read_project(tmp_path, default_branch="master")
    assert p.integration_branch == "master"
    got = {m.id: (m.integration_branch, m.problems) for m in p.milestones}
    assert got["M001"] == ("develop", ())
    assert got["M002"] == (None, ())
    assert got["M007"] == (None, ())
    assert got["M003"][0] is None
    assert got["M003"][1] == (
        ".gsd/milestones/M003/M003-META.json line 1: invalid JSON "
        "(Expecting property name enclosed in double quotes)",
    )
    for mid in ("M004", "M005", "M006"):
        assert got[mid][0] is None and len(got[mid][1]) == 1
        assert got[mid][1][0].startswith(f".gsd/milestones/{mid}/{mid}-META.json: ")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "main"),
        ({"default_branch": "master"}, "master"),
        ({"default_branch": "master", "git_main_branch": "trunk"}, "trunk"),
        ({"git_main_branch": "trunk"}, "trunk"),
    ],
)
def test_project_integration_branch(tmp_path: Path, kwargs: dict[str, str], expected: str) -> None:
    (tmp_path / ".gsd").mkdir()
    assert read_project(tmp_path, **kwargs).integration_branch == expected


# --------------------------------------------------------------------------- malformed files


def test_crlf_and_bom_are_fine(tmp_path: Path) -> None:
    context = "\ufeff---\r\ndepends_on:\r\n  - M001\r\n---\r\n\r\n# M002: Windows\r\n"
    road = "\ufeff# M002: Windows\r\n\r\n## Slices\r\n\r\n- [x] **S01: A** `depends:[]`\r\n"
    ms(
        tmp_path,
        "M002",
        {
            "M002-CONTEXT.md": context.encode("utf-8"),
            "M002-ROADMAP.md": road.encode("utf-8"),
            "slices/S01/S01-PLAN.md": plan(("T01", True, "`src/a.py`")).replace("\n", "\r\n"),
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert m.problems == ()
    assert m.depends_on == ("M001",) and m.title == "Windows"
    assert m.all_slices_done and m.files == {"src/a.py"}


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [
        ("M001-CONTEXT.md", b"", "M001-CONTEXT.md: file is empty"),
        ("M001-CONTEXT.md", b"  \n\n", "M001-CONTEXT.md: file is empty"),
        ("M001-ROADMAP.md", b"# M001: X\n\x00\x01\x02binary", "M001-ROADMAP.md line 2: file contains NUL"),
        ("M001-CONTEXT.md", b"# M001: Caf\xe9\n", "M001-CONTEXT.md line 1: file is not valid UTF-8"),
        ("M001-ROADMAP.md", b"\xff\xfe#\x00 \x00M\x00", "M001-ROADMAP.md line 1: file contains NUL"),
        ("M001-SUMMARY.md", b"", "M001-SUMMARY.md: file is empty"),
        ("M001-CONTEXT.md", b"---\ndepends_on: [M002\n---\n", "M001-CONTEXT.md line 3: invalid YAML"),
        ("M001-CONTEXT.md", b"---\n\tdepends_on: M002\n---\n", "M001-CONTEXT.md line 2: invalid YAML"),
    ],
)
def test_malformed_files_are_named_problems(
    tmp_path: Path, filename: str, content: bytes, fragment: str
) -> None:
    ms(tmp_path, "M001", {filename: content})
    ms(tmp_path, "M002", {"M002-CONTEXT.md": "# M002: Fine\n"})
    p = read_project(tmp_path)
    m1, m2 = p.milestones
    assert any(fragment in problem for problem in m1.problems), m1.problems
    assert all(problem.startswith(".gsd/milestones/M001/") for problem in m1.problems)
    assert m2.problems == () and m2.title == "Fine"


def test_malformed_plan_is_named(tmp_path: Path) -> None:
    ms(
        tmp_path,
        "M001",
        {
            "M001-ROADMAP.md": roadmap("M001", "A", ("S01", "A", False, "")),
            "slices/S01/S01-PLAN.md": plan(("T01", False, "src/ok.py")).encode() + b"\n\xc3\x28 bad\n",
        },
    )
    m = read_project(tmp_path).milestones[0]
    assert len(m.problems) == 1
    assert m.problems[0].startswith(".gsd/milestones/M001/slices/S01/S01-PLAN.md line ")
    assert "not valid UTF-8" in m.problems[0]
    assert m.files == {"src/ok.py"} and m.slices[0].has_plan


def test_huge_file_is_truncated_and_reported(tmp_path: Path) -> None:
    head = roadmap("M001", "Huge", ("S01", "A", True, "")) + "\n"
    filler = ("x" * 99 + "\n") * (22 * 1024)  # ~2.2 MiB
    ms(tmp_path, "M001", {"M001-ROADMAP.md": head + filler})
    m = read_project(tmp_path).milestones[0]
    assert m.title == "Huge" and [s.id for s in m.slices] == ["S01"]
    assert m.problems == (
        ".gsd/milestones/M001/M001-ROADMAP.md: file is larger than 2 MiB; only the start was read",
    )


def test_truncation_inside_a_multibyte_character_is_not_an_encoding_problem(tmp_path: Path) -> None:
    data = b"# M001: X\n" + b"a" * (2 * 1024 * 1024 - 11) + "é".encode() + b"tail"
    ms(tmp_path, "M001", {"M001-ROADMAP.md": data})
    m = read_project(tmp_path).milestones[0]
    assert len(m.problems) == 1 and "larger than 2 MiB" in m.problems[0]


def test_special_entries_are_not_read(tmp_path: Path) -> None:
    base = ms(tmp_path, "M001", {"M001-CONTEXT.md": "# M001: A\n"})
    os.mkfifo(base / "M001-ROADMAP.md")  # opening a FIFO would block forever
    (base / "M001-SUMMARY.md").symlink_to(base / "missing")  # dangling
    (base / "slices").symlink_to(base / "slices")  # a loop
    m = read_project(tmp_path).milestones[0]
    assert m.status == "pending" and m.title == "A"


def _read_problems_as_unprivileged(root: Path) -> dict[str, tuple[str, ...]]:
    """read_project's problems per milestone, read without root's power to read anything.

    As root (CI containers) the read happens in a forked child that drops to ``nobody``;
    everything it needs is imported before the fork.
    """
    if os.geteuid() != 0:
        return {m.id: m.problems for m in read_project(root).milestones}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            got = {m.id: list(m.problems) for m in read_project(root).milestones}
            os.write(w, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return {k: tuple(v) for k, v in json.loads(b"".join(chunks)).items()}


def test_unreadable_directory_and_file() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the unprivileged reader must reach the project
        ms(root, "M001", {"M001-CONTEXT.md": "# a\n"})
        ms(root, "M002", {"M002-CONTEXT.md": "# b\n"})
        ms(root, "M003", {"M003-CONTEXT.md": "# c\n", "slices/S01/S01-PLAN.md": plan()})
        m1 = root / ".gsd/milestones/M001"
        f2 = root / ".gsd/milestones/M002/M002-CONTEXT.md"
        s3 = root / ".gsd/milestones/M003/slices"
        for path, mode in ((m1, 0), (f2, 0), (s3, 0)):
            path.chmod(mode)
        try:
            got = _read_problems_as_unprivileged(root)
        finally:
            m1.chmod(0o755)
            f2.chmod(0o644)
            s3.chmod(0o755)
    assert got == {
        "M001": (".gsd/milestones/M001: cannot list directory (permission denied)",),
        "M002": (".gsd/milestones/M002/M002-CONTEXT.md: cannot read file (permission denied)",),
        "M003": (".gsd/milestones/M003/slices: cannot list directory (permission denied)",),
    }


# --------------------------------------------------------------------------- frontmatter


@pytest.mark.parametrize(
    ("text", "data", "body", "error"),
    [
        ("# Title\n", None, "# Title\n", None),
        ("---\n---\nbody", {}, "body", None),
        ("---\na: 1\n---\nbody\n", {"a": 1}, "body\n", None),
        ("\ufeff---\r\na: [x, y]\r\n---\r\nbody\r\n", {"a": ["x", "y"]}, "body\n", None),
        ("---\na: [x\n---\n", None, "", "line 3: invalid YAML frontmatter"),
        ("---\na: 1\n", None, "---\na: 1\n", "line 1: frontmatter has no closing '---' line"),
        ("---\njust a string\n---\n", None, "", "line 2: frontmatter is not a 'key: value' mapping"),
        ("--- \na: 1\n---  \nb", {"a": 1}, "b", None),
        ("----\na: 1\n---\n", None, "----\na: 1\n---\n", None),
        (" ---\na: 1\n---\n", None, " ---\na: 1\n---\n", None),
    ],
)
def test_parse_frontmatter(text: str, data: object, body: str, error: str | None) -> None:
    got_data, got_body, got_error = parse_frontmatter(text)
    assert got_data == data
    assert got_body == body
    if error is None:
        assert got_error is None
    else:
        assert got_error is not None and got_error.startswith(error)


def test_project_level_problems_are_reported(tmp_path, cli):
    """A broken QUEUE-ORDER.json falls back to numeric order: the user is told, not left guessing."""
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    (project.gsd / "QUEUE-ORDER.json").write_text('{"order": ["M001"')
    result = cli("--project", project.root, "start", "--dry-run")
    assert result.code == 0
    assert "warning: .gsd/QUEUE-ORDER.json line 1: invalid JSON" in result.err
    assert "using numeric order" in result.err
    as_json = cli("--project", project.root, "--json", "start", "--dry-run")
    assert as_json.json()["project_problems"] == [result.err.strip().removeprefix("warning: ")]
