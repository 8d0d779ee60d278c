"""Small Markdown helpers shared by the roadmap and plan parsers."""

from __future__ import annotations

import re

from .frontmatter import split_frontmatter
from .lazy_re import lazy

_FENCE_RE = lazy(r"^\s{0,3}(```|~~~)")
_H1_RE = lazy(r"^#[ \t]+(.+?)[ \t#]*$")
_TITLE_ID_RE = lazy(r"^M\d+(?:-[a-z0-9]{6})?\b\s*(?:[:\-—–.]\s*)?")
_SLICE_REF_RE = lazy(r"(?<![A-Za-z0-9])S(\d+)(?:\s*(?:-|–|—|\.\.)\s*S?(\d+))?(?![\dA-Za-z])")

MAX_RANGE = 500
"""A range like ``S01-S99999`` is a typo, not 99,999 dependencies: keep the endpoints."""


def body_lines(text: str) -> list[str]:
    """The lines after any frontmatter, with fenced code blocks blanked out.

    Blanking (rather than removing) keeps indices meaningful.  When fences are
    unbalanced nothing is blanked: an unclosed fence must not swallow the document.
    """
    _fm, body, terminated = split_frontmatter(text)
    lines = body.split("\n") if terminated else text.split("\n")
    fences = [i for i, line in enumerate(lines) if _FENCE_RE.match(line)]
    if not fences or len(fences) % 2:
        return lines
    out = list(lines)
    inside = False
    for i, line in enumerate(lines):
        if _FENCE_RE.match(line):
            out[i] = ""
            inside = not inside
        elif inside:
            out[i] = ""
    return out


def first_h1_title(text: str) -> str | None:
    """Title from the first ``# `` heading outside code fences, without a leading ID.

    ``# M002: Auth System`` → ``Auth System``.  None when there is no usable heading.
    Scans lazily: the heading is nearly always at the top of a large file.
    """
    _fm, body, terminated = split_frontmatter(text)
    if not terminated:
        body = text
    in_fence = False
    start = 0
    while start <= len(body):
        end = body.find("\n", start)
        if end < 0:
            end = len(body)
        line = body[start:end]
        start = end + 1
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if in_fence or not line.startswith("#"):
            continue
        m = _H1_RE.match(line)
        if m:
            title = _TITLE_ID_RE.sub("", m.group(1).strip(), count=1).strip()
            title = title.strip("*_ ").strip()
            return title or None
    return None


def expand_slice_ids(text: str) -> tuple[str, ...]:
    """Slice IDs mentioned in ``text``, with ranges (``S01-S03``) expanded, in order."""
    found: dict[str, None] = {}
    for m in _SLICE_REF_RE.finditer(text):
        start_digits, end_digits = m.group(1), m.group(2)
        if end_digits is None:
            found.setdefault(f"S{start_digits}")
            continue
        start, end = int(start_digits), int(end_digits)
        width = len(start_digits)
        if start <= end and end - start <= MAX_RANGE:
            for n in range(start, end + 1):
                found.setdefault(f"S{n:0{width}d}")
        else:
            found.setdefault(f"S{start_digits}")
            found.setdefault(f"S{end:0{width}d}")
    return tuple(found)


def split_table_row(line: str) -> list[str]:
    """Cells of a Markdown table row (outer pipes removed, ``\\|`` kept inside a cell)."""
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    cells = re.split(r"(?<!\\)\|", row)
    return [c.strip().replace("\\|", "|") for c in cells]


_SEPARATOR_CELL = lazy(r"^:?-{1,}:?$")


def is_separator_row(cells: list[str]) -> bool:
    return bool(cells) and all(_SEPARATOR_CELL.match(c.replace(" ", "")) for c in cells if c)


def strip_inline_markup(text: str) -> str:
    """Remove emphasis/code markers and link syntax: ``**[S01](x)**`` → ``S01``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return text.replace("**", "").replace("`", "").replace("__", "").strip()
