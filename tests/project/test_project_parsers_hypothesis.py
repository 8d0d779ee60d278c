"""Property tests: the GSD parsers and read_project never raise, whatever the input."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsd_parallel_plugin.project import (
    is_terminal_summary,
    normalize_file_entry,
    parse_frontmatter,
    parse_plan,
    parse_plan_info,
    parse_roadmap,
    read_project,
)

FRAGMENTS = [
    "---",
    "--- ",
    "----",
    "",
    " ",
    "# M001: Title",
    "# ",
    "#",
    "## Slices",
    "## Slice Overview",
    "## Tasks",
    "## Steps",
    "## Must-Haves",
    "## Files Likely Touched",
    "### S01 - Title ✓",
    "### S02: Other (Complete)",
    "### S01 → S02",
    "#### S03 — x",
    "**Depends on:** S01-S03",
    "Status: done",
    "- [ ] **S01: Login** `risk:high` `depends:[]`",
    "- [x] **S02: Profile** `depends:[S01,S02-S05]`",
    "- [X] S03 plain",
    "  > After this: x",
    "| ID | Slice | Depends | Done |",
    "|---|---|---|---|",
    "| S01 | A | S00 | ✅ |",
    "| **S02** | B | | [x] |",
    "| S03: C | not complete |",
    "|",
    "||",
    "| \\| |",
    "- [ ] **T01: Task** `est:1h`",
    "- [x] **T02: Done**",
    "* [ ] T03 plain",
    "  - Files: `src/a.py`, src/b.ts (new), ./c.md, and 26 other files",
    "  - Files:",
    "    - `src/nested.py`",
    "    - docs/",
    "- **Files:** none",
    "Files: (read-only — none)",
    "- src/likely.py — desc",
    "* `web/Ünï code/x.tsx`",
    "```",
    "~~~",
    "```python",
    "depends_on: [M001, M002]",
    "depends_on:",
    "  - M001",
    "depends_on: M003",
    "status: complete",
    "status: failed",
    "verdict: needs-attention",
    "title: a: b",
    "  bad: [indent",
    "\tdepends_on: x",
    "key: 'unterminated",
    "? complex",
    "- list item",
    "&a [*a]",
    "!!python/object:os.system",
    "# BLOCKER",
    "auto-mode recovery failed",
    "verification failed",
    "result = not complete",
    "S01-S99999",
    "depends:[S1..S3]",
    "\ufeff---",
    "\x00",
    "\r",
    "é",
    "`",
    "``",
    "(",
    ")",
    "[x]",
    "**",
    "__",
]

texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=40).map("\n".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("\r\n".join),
)

PARSER_SETTINGS = settings(max_examples=150, deadline=None)


@PARSER_SETTINGS
@given(texts)
def test_parse_frontmatter_never_raises(text: str) -> None:
    data, body, error = parse_frontmatter(text)
    assert isinstance(body, str)
    assert data is None or isinstance(data, dict)
    if error is not None:
        assert data is None and error.startswith("line ")


@PARSER_SETTINGS
@given(texts)
def test_parse_roadmap_never_raises(text: str) -> None:
    slices = parse_roadmap(text)
    ids = [s.id for s in slices]
    assert len(ids) == len(set(ids))
    for s in slices:
        assert s.id.startswith("S") and s.id[1:].isdigit()
        assert isinstance(s.done, bool) and s.title
        assert all(d.startswith("S") and d[1:].isdigit() for d in s.depends)


@PARSER_SETTINGS
@given(texts)
def test_parse_plan_never_raises(text: str) -> None:
    tasks = parse_plan(text)
    assert len({t.id for t in tasks}) == len(tasks)
    info = parse_plan_info(text)
    for f in info.files:
        assert f and f == f.strip() and not f.startswith("./") and "`" not in f
    assert set(info.files) >= {f for t in info.tasks for f in t.files}


@PARSER_SETTINGS
@given(texts)
def test_is_terminal_summary_never_raises(text: str) -> None:
    assert isinstance(is_terminal_summary(text), bool)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.sampled_from(FRAGMENTS)))
def test_normalize_file_entry_never_raises_and_is_stable(entry: str) -> None:
    got = normalize_file_entry(entry)
    if got is not None:
        assert got == got.strip() and got
        assert not got.startswith("./") and "`" not in got
        assert normalize_file_entry(got) == got


MILESTONE_FILES = [
    "{m}-CONTEXT.md",
    "{m}-CONTEXT-DRAFT.md",
    "{m}-ROADMAP.md",
    "{m}-SUMMARY.md",
    "{m}-PARKED.md",
    "{m}-VALIDATION.md",
    "{m}-META.json",
    "slices/S01/S01-PLAN.md",
    "slices/S01/tasks/T01-SUMMARY.md",
    "slices/S02-X/S02-X-PLAN.md",
    "ROADMAP.md",
    "junk.bin",
]
DIR_NAMES = st.one_of(
    st.sampled_from(
        [
            "M001",
            "M002",
            "M001-abc123",
            "M003-LEGACY",
            "M004-render-x",
            "M1-foo",
            "M0001",
            "_archived",
            "M006",
            "M006-item-palette",
        ]
    ),
    st.text(alphabet="Mabc0123456789-_", min_size=1, max_size=12),
)
CONTENTS = st.one_of(
    texts.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    st.binary(max_size=200),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(DIR_NAMES, st.lists(st.tuples(st.sampled_from(MILESTONE_FILES), CONTENTS), max_size=6)),
        max_size=5,
    ),
    st.one_of(st.none(), CONTENTS),
)
def test_read_project_never_raises(
    milestones: list[tuple[str, list[tuple[str, bytes]]]], queue: bytes | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / ".gsd" / "milestones"
        base.mkdir(parents=True)
        if queue is not None:
            (root / ".gsd" / "QUEUE-ORDER.json").write_bytes(queue)
        for dirname, files in milestones:
            if dirname in (".", ".."):
                continue
            for pattern, content in files:
                mid = dirname.split("-")[0] if dirname else "M"
                path = base / dirname / pattern.format(m=mid)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        project = read_project(root)
        for problem in project.problems:
            assert problem.startswith(".gsd/")
        for m in project.milestones:
            assert m.status in ("complete", "parked", "pending", "ghost")
            for problem in m.problems:
                assert problem.startswith(".gsd/milestones/"), problem
                assert "internal error" not in problem, problem


SIMPLE_LINES = [
    "depends_on: [M001, M002]",
    "depends_on: []",
    "depends_on:",
    "depends_on: M003",
    "  - M001",
    "  - M002-abc123",
    "    - M004",
    "- M005",
    "id: M001",
    "status: complete",
    "title: Auth",
    "a: yes",
    "b: No",
    "c: [a, null]",
    "yes: x",
    "_k: v",
    "k-2: v-2",
    "x: [a,b ,c]",
    "x: [a, ]",
    "x: [ ]",
    "",
    " ",
    "k: 1",
    "k: a b",
    "k:\ta",
    "k: 'q'",
    "  - Yes",
    "  -  M006",
    "k:  v  ",
    "true:",
    # PREFERENCES.md: one level of mapping with typed scalars
    "parallel:",
    "git:",
    "  enabled: true",
    "  enabled: false",
    "  enabled: True",
    "  max_workers: 2",
    "  budget_ceiling: 5.0",
    "  budget_ceiling: 0.10",
    "  k: -3",
    "  k: -0.5",
    "  k: 007",
    "  k: 010",
    "k: 08",
    "  k: 1_000",
    "  k: 1.5e3",
    "  k: .5",
    "  k: a.b",
    "  k: 5.",
    "  auto_merge: auto",
    "  merge_order: by-completion",
    "  main_branch: trunk",
    "  on: x",
    "  k: null",
    "  k: ~",
    "   k: v",
    "    k: v",
    "  k:",
    "  k: [a]",
    "  - M001",
    "k: 0",
    "k: 12",
    "k: 2.5",
    "k: -1",
    "k: true",
    "k: 0x1F",
    "k: 1.0.0",
    "version: 1",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(SIMPLE_LINES), max_size=8))
def test_frontmatter_fast_path_agrees_with_yaml(lines: list[str]) -> None:
    import yaml

    from gsd_parallel_plugin.project.frontmatter import _simple_block

    fast = _simple_block(lines)
    if fast is None:
        return
    try:
        expected = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError:
        raise AssertionError(f"fast path accepted invalid YAML: {lines!r}") from None
    assert fast == (expected if expected is not None else {})
