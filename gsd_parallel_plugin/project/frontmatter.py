"""YAML frontmatter: the block between a first line ``---`` and the next ``---`` line.

Two readers.  :func:`parse_frontmatter` is strict YAML and reports errors with the
file line, because dependencies (``depends_on`` in CONTEXT) decide what may run and
must not be guessed.  :func:`scan_frontmatter` mimics GSD's own line-based reader
(``key: value`` and ``- item`` lists, no YAML types), used where GSD's reading is the
truth we must match: a SUMMARY's ``status`` or a VALIDATION's ``verdict``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

try:  # libyaml is several times faster: 2,000 CONTEXT files per read_project.
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_KEY_RE = re.compile(r"^([A-Za-z_][\w.\-]*)[ \t]*:(?:[ \t]+(.*)|)$")
_ITEM_RE = re.compile(r"^[ \t]+-[ \t]+(.*)$")


def _normalise(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def split_frontmatter(text: str) -> tuple[list[str] | None, str, bool]:
    """Split ``text`` into (frontmatter lines or None, body, terminated).

    ``terminated`` is False when the file starts with ``---`` but no closing ``---``
    follows; then the lines are everything after the opening line and body is empty.
    """
    text = _normalise(text)
    if not text.startswith("---"):
        return None, text, True
    first, sep, rest = text.partition("\n")
    if first.rstrip() != "---":
        return None, text, True
    if not sep:
        return [], "", False
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        if line.rstrip() == "---":
            return lines[:i], "\n".join(lines[i + 1 :]), True
    return lines, "", False


def parse_frontmatter(text: str) -> tuple[dict[str, Any] | None, str, str | None]:
    """Parse YAML frontmatter strictly.  Never raises.

    Returns ``(data, body, error)``: ``data`` is None when there is no frontmatter or
    it is invalid; ``error`` (``"line N: ..."``, file line numbers) says why it is
    invalid.  An empty block gives ``{}``.
    """
    try:
        lines, body, terminated = split_frontmatter(text)
    except Exception as exc:  # pragma: no cover - defensive: str ops on str
        return None, "", f"unreadable frontmatter ({exc})"
    if lines is None:
        return None, body, None
    if not terminated:
        return None, _normalise(text), "line 1: frontmatter has no closing '---' line"
    block = "\n".join(lines)
    if not block.strip():
        return {}, body, None
    try:
        data = yaml.load(block, Loader=_Loader)  # a safe loader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 2
        what = exc.problem or exc.context or "syntax error"
        return None, body, f"line {line}: invalid YAML frontmatter ({what})"
    except Exception as exc:  # YAMLError, RecursionError on absurd nesting, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, body, f"line 2: invalid YAML frontmatter ({detail})"
    if data is None:
        return {}, body, None
    if not isinstance(data, dict):
        kind = type(data).__name__
        return None, body, f"line 2: frontmatter is not a 'key: value' mapping (got a {kind})"
    return data, body, None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def scan_frontmatter(text: str) -> dict[str, str | list[str]]:
    """GSD-style lenient reading of the frontmatter: top-level keys only, never fails.

    ``key: value`` gives a string (quotes stripped), ``key: [a, b]`` or a following
    ``  - item`` block gives a list.  An unterminated block is read to the end.
    """
    lines, _body, _terminated = split_frontmatter(text)
    result: dict[str, str | list[str]] = {}
    if not lines:
        return result
    key: str | None = None
    for line in lines:
        m = _KEY_RE.match(line)
        if m:
            key = m.group(1)
            value = (m.group(2) or "").strip()
            if value.startswith("[") and value.endswith("]"):
                items = [_unquote(v) for v in value[1:-1].split(",")]
                result[key] = [v for v in items if v]
            elif value:
                result[key] = _unquote(value)
            else:
                result[key] = []
            continue
        item = _ITEM_RE.match(line)
        if item and key is not None and isinstance(result.get(key), list):
            value = _unquote(item.group(1))
            if value:
                result[key].append(value)  # type: ignore[union-attr]
            continue
        if line and not line[0].isspace():
            key = None
    return result


def key_line(text: str, key: str) -> int | None:
    """The file line (1-based) of a top-level ``key:`` in the frontmatter, if any."""
    lines, _body, _terminated = split_frontmatter(text)
    if not lines:
        return None
    pattern = re.compile(rf"^{re.escape(key)}[ \t]*:")
    for i, line in enumerate(lines):
        if pattern.match(line):
            return i + 2
    return None
