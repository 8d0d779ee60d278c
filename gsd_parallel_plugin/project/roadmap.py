"""Roadmap parsing: which slices a milestone has and which are done.

Three shapes occur in real projects (public repositories that commit ``.gsd/``):
checkbox lines (GSD's renderer), Markdown tables, and ``### S01 - Title`` headings.
Slices are read from the ``## Slices`` section (or any level-2 heading naming
slices: ``## Slice Overview``, ``## Slice Table``, ...); when no such section yields a
slice, the whole roadmap is scanned, so a roadmap that put its slices elsewhere is
not mistaken for an empty one.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..models import Slice
from .lazy_re import lazy
from .markdown import (
    body_lines,
    expand_slice_ids,
    is_separator_row,
    split_table_row,
    strip_inline_markup,
)

_SECTION_RE = lazy(r"^##[ \t]+(.*)$")
_SLICE_SECTION_RE = lazy(r"\bslices?\b", re.IGNORECASE)
_H1_RE = lazy(r"^#[ \t]")
_CHECKBOX_RE = lazy(r"^\s*[-*+]\s+\[([ xX])\]\s+(.*)$")
_LEAD_ID_RE = lazy(r"^[*_`\[\s]*(S\d+)(?![\dA-Za-z])[*_`\]]*\s*(?:[:.\-—–]\s*)?(.*)$")
_HEADING_RE = lazy(r"^(#{2,4})[ \t]+(.*)$")
_DEPENDS_INLINE_RE = lazy(r"depends\s*:\s*\[([^\]]*)\]", re.IGNORECASE)
_DEPENDS_LINE_RE = lazy(r"^\W*(?:depends(?:\s+on)?|dependencies|deps)\W*:\W*(.*)$", re.IGNORECASE)
_STATUS_LINE_RE = lazy(r"^\W*(?:status|state)\W*:\W*(.*)$", re.IGNORECASE)
_DONE_MARKS = ("✅", "☑", "✓", "✔", "[x]", "[X]")
_DONE_WORD_RE = lazy(r"^(?:done|complete|completed|finished)\b", re.IGNORECASE)
_HEADING_DONE_RE = lazy(
    r"\((?:complete|completed|done)\)|[—–\-:]\s*(?:complete|completed|done)\s*$",
    re.IGNORECASE,
)
_BOUNDARY_WORD_RE = lazy(r"^(?:produces|consumes|provides|requires)\b", re.IGNORECASE)
_DONE_HEADERS = ("done", "status", "state", "complete", "progress", "✓", "✔", "✅", "☑")
_TITLE_HEADERS = ("title", "name", "description", "goal", "summary", "slice")
_DEPENDS_HEADERS = ("depend", "deps", "blocked by", "requires")


def is_done_marker(cell: str) -> bool:
    """A table cell or status text that says "done": ``[x]``, ✅ ☑ ✓ ✔, done/complete."""
    if any(mark in cell for mark in _DONE_MARKS):
        return True
    text = strip_inline_markup(cell).strip(" *_~:.-")
    return bool(_DONE_WORD_RE.match(text))


def _clean_title(text: str, bold: bool = False) -> str:
    """Title text: up to the closing ``**`` of a bold title, else up to the first
    inline code span, bold marker or `` — `` description."""
    text = text.strip()
    if bold and "**" in text:
        text = text.split("**", 1)[0]
    else:
        text = re.split(r"`|\*\*| [—–] ", text, maxsplit=1)[0]
    return text.strip().strip("*_").strip()


def _checkbox_slice(line: str) -> Slice | None:
    m = _CHECKBOX_RE.match(line)
    if not m:
        return None
    rest = m.group(2)
    lead = _LEAD_ID_RE.match(rest)
    if not lead:
        return None
    deps: tuple[str, ...] = ()
    inline = _DEPENDS_INLINE_RE.search(rest)
    if inline:
        deps = expand_slice_ids(inline.group(1))
    bold = rest.lstrip().startswith(("**", "__"))
    title = _clean_title(lead.group(2), bold=bold) or lead.group(1)
    return Slice(id=lead.group(1), title=title, done=m.group(1) in "xX", depends=deps)


def _heading_slice(text: str) -> Slice | None:
    lead = _LEAD_ID_RE.match(text)
    if not lead:
        return None
    raw = lead.group(2).strip()
    if raw.startswith(("→", "->", "<-", "↔", "&", "+", ",")) or _BOUNDARY_WORD_RE.match(raw):
        return None  # "### S01 → S02" / "### S01 produces" are boundary-map entries
    done = any(mark in raw for mark in _DONE_MARKS) or bool(_HEADING_DONE_RE.search(raw))
    title = raw
    for mark in _DONE_MARKS:
        title = title.replace(mark, "")
    title = re.sub(r"\((?:complete|completed|done)\)", "", title, flags=re.IGNORECASE)
    title = re.sub(r"\s[—–\-:]\s*(?:complete|completed|done)\s*$", "", title, flags=re.IGNORECASE)
    inline = _DEPENDS_INLINE_RE.search(title)
    deps = expand_slice_ids(inline.group(1)) if inline else ()
    title = _clean_title(title)
    title = title.rstrip(" —–-:").strip() or lead.group(1)
    return Slice(id=lead.group(1), title=title, done=done, depends=deps)


def _find_col(headers: list[str], names: tuple[str, ...], exclude: set[int]) -> int | None:
    for i, h in enumerate(headers):
        if i in exclude:
            continue
        low = strip_inline_markup(h).lower()
        if any(name in low for name in names):
            return i
    return None


def _table_slices(rows: list[list[str]]) -> list[Slice]:
    """Slices from one Markdown table: ID in a cell, a done column, optional depends."""
    headers: list[str] = []
    data = rows
    for i, cells in enumerate(rows):
        if is_separator_row(cells):
            headers = rows[i - 1] if i > 0 else []
            data = rows[i + 1 :]
            break
    out: list[Slice] = []
    for cells in data:
        if is_separator_row(cells):
            continue
        id_col = next((i for i, c in enumerate(cells) if _LEAD_ID_RE.match(c)), None)
        if id_col is None:
            continue
        lead = _LEAD_ID_RE.match(cells[id_col])
        assert lead is not None
        sid, inline_title = lead.group(1), _clean_title(lead.group(2))
        done_col = _find_col(headers, _DONE_HEADERS, {id_col})
        dep_col = _find_col(headers, _DEPENDS_HEADERS, {id_col})
        title_col = _find_col(headers, _TITLE_HEADERS, {id_col, done_col or -1, dep_col or -1})
        if inline_title:
            title = inline_title
        elif title_col is not None and title_col < len(cells):
            title = strip_inline_markup(cells[title_col])
        elif id_col + 1 < len(cells) and id_col + 1 not in (done_col, dep_col):
            title = strip_inline_markup(cells[id_col + 1])
        else:
            title = sid
        if done_col is not None:
            done = done_col < len(cells) and is_done_marker(cells[done_col])
        else:
            skip = {id_col, title_col}
            done = any(is_done_marker(c) for i, c in enumerate(cells) if i not in skip)
        deps: tuple[str, ...] = ()
        if dep_col is not None and dep_col < len(cells):
            deps = expand_slice_ids(cells[dep_col])
        else:
            inline = next((_DEPENDS_INLINE_RE.search(c) for c in cells if "depends" in c), None)
            deps = expand_slice_ids(inline.group(1)) if inline else ()
        out.append(Slice(id=sid, title=title or sid, done=done, depends=deps))
    return out


def _scan(lines: list[str]) -> list[Slice]:
    """Slices in ``lines`` in any of the three shapes, in document order."""
    found: list[Slice] = []
    table: list[list[str]] = []
    current_heading: int | None = None  # index in ``found`` of the open heading slice
    for line in [*lines, ""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            table.append(split_table_row(stripped))
            continue
        if table:
            found.extend(_table_slices(table))
            table = []
        heading = _HEADING_RE.match(line)
        if heading:
            current_heading = None
            sl = _heading_slice(heading.group(2))
            if sl is not None:
                found.append(sl)
                current_heading = len(found) - 1
            continue
        sl = _checkbox_slice(line)
        if sl is not None:
            found.append(sl)
            current_heading = None
            continue
        if current_heading is not None and stripped:
            found[current_heading] = _heading_detail(found[current_heading], stripped)
    return found


def _heading_detail(sl: Slice, line: str) -> Slice:
    """Status / depends lines under a ``### S01`` heading refine that slice."""
    status = _STATUS_LINE_RE.match(line)
    if status and is_done_marker(status.group(1)):
        return replace(sl, done=True)
    inline = _DEPENDS_INLINE_RE.search(line)
    if inline and not sl.depends:
        return replace(sl, depends=expand_slice_ids(inline.group(1)))
    dep = _DEPENDS_LINE_RE.match(line)
    if dep and not sl.depends:
        return replace(sl, depends=expand_slice_ids(dep.group(1)))
    return sl


def _slice_sections(lines: list[str]) -> list[list[str]]:
    sections: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        m = _SECTION_RE.match(line)
        if m or _H1_RE.match(line):
            current = None
            if m and _SLICE_SECTION_RE.search(m.group(1)):
                current = []
                sections.append(current)
            continue
        if current is not None:
            current.append(line)
    return sections


def _dedupe(slices: list[Slice]) -> list[Slice]:
    seen: dict[str, Slice] = {}
    for sl in slices:
        seen.setdefault(sl.id, sl)
    return list(seen.values())


def parse_roadmap(text: str) -> list[Slice]:
    """The slices of a roadmap, in order, with done flags and slice dependencies.

    Never raises.  Slices come back without tasks (``has_plan=False``): plans are read
    separately.  A slice ID listed twice keeps its first entry.
    """
    lines = body_lines(text)
    slices = [sl for section in _slice_sections(lines) for sl in _scan(section)]
    if not slices:
        slices = _scan(lines)
    return _dedupe(slices)
