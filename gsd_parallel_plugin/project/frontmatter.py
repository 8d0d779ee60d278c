"""YAML frontmatter: the block between a first line ``---`` and the next ``---`` line.

Two readers.  :func:`parse_frontmatter` is strict YAML and reports errors with the
file line, because dependencies (``depends_on`` in CONTEXT) decide what may run and
must not be guessed.  :func:`scan_frontmatter` mimics GSD's own line-based reader
(``key: value`` and ``- item`` lists, no YAML types), used where GSD's reading is the
truth we must match: a SUMMARY's ``status`` or a VALIDATION's ``verdict``.

PyYAML is imported only when a block falls outside the trivial subset :func:`_simple_block`
reads itself: importing it costs more than the rest of ``gsd-parallel status``.
"""

from __future__ import annotations

import re
from typing import Any

from .lazy_re import lazy

_YAML_WORDS = frozenset(
    ["yes", "no", "true", "false", "on", "off", "null", "y", "n"]
)  # scalars YAML would not read as strings (case-insensitive match below)
_SIMPLE_SCALAR = r"[A-Za-z][A-Za-z0-9_\-]*"
_SIMPLE_VALUE = r"[A-Za-z0-9_.\-]+"  # a candidate for _typed, which decides
_SIMPLE_KEY_RE = lazy(
    rf"^({_SIMPLE_SCALAR}|_[A-Za-z0-9_\-]*):(?: +(?:({_SIMPLE_VALUE})|\[ *((?:{_SIMPLE_SCALAR})"
    rf"(?: *, *{_SIMPLE_SCALAR})*)? *\]))? *$"
)
_SIMPLE_ITEM_RE = lazy(rf"^( +)- +({_SIMPLE_SCALAR}) *$")
_SIMPLE_ENTRY_RE = lazy(rf"^( +)({_SIMPLE_SCALAR}|_[A-Za-z0-9_\-]*): +({_SIMPLE_VALUE}) *$")
_SIMPLE_NUMBER_RE = lazy(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?")
_NOT_SIMPLE = object()
_KEY_RE = lazy(r"^([A-Za-z_][\w.\-]*)[ \t]*:(?:[ \t]+(.*)|)$")
_ITEM_RE = lazy(r"^[ \t]+-[ \t]+(.*)$")


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


def _typed(word: str) -> Any:
    """``word`` as YAML reads it when that is certain (``true``/``false``, a plain decimal
    integer or ``1.5``-style float, a word that is no YAML keyword), else ``_NOT_SIMPLE``."""
    if word in ("true", "false"):
        return word == "true"
    number = _SIMPLE_NUMBER_RE.fullmatch(word)
    if number:
        return float(word) if number.group(1) else int(word)
    if re.fullmatch(_SIMPLE_SCALAR, word) and word.lower() not in _YAML_WORDS:
        return word
    return _NOT_SIMPLE


def _simple_block(lines: list[str]) -> dict[str, Any] | None:
    """Parse the trivial YAML GSD writes (``key: word``, ``key: [a, b]``, ``- item``, and
    one level of ``key:`` / ``  sub: value`` as in PREFERENCES.md).

    Returns None as soon as a line falls outside that subset, and the caller uses
    the full YAML parser.  Inside the subset the result equals ``yaml.safe_load``'s
    (words start with a letter and are not yes/no/null/...; the only typed scalars are
    ``true``, ``false`` and plain decimal numbers); skipping YAML here keeps
    2,000-milestone projects, and every command's start, fast.
    """
    data: dict[str, Any] = {}
    key: str | None = None  # the top-level key whose indented block is open
    indent: str | None = None  # that block's indentation, once its first line is seen
    for line in lines:
        if not line.strip():
            continue
        m = _SIMPLE_KEY_RE.match(line)
        if m:
            key, scalar, items = m.group(1), m.group(2), m.group(3)
            if key.lower() in _YAML_WORDS:
                return None
            if scalar is not None:
                value = _typed(scalar)
                if value is _NOT_SIMPLE:
                    return None
                data[key], key = value, None
            elif "[" in line:
                values = [v.strip() for v in items.split(",")] if items else []
                if any(v.lower() in _YAML_WORDS for v in values):
                    return None
                data[key], key = values, None
            else:
                data[key], indent = None, None
            continue
        item = _SIMPLE_ITEM_RE.match(line)
        entry = None if item else _SIMPLE_ENTRY_RE.match(line)
        found = item or entry
        if found is None or key is None:
            return None
        if indent is None:
            indent, data[key] = found.group(1), [] if item else {}
        elif found.group(1) != indent:
            return None
        block = data[key]
        if item is not None:
            if not isinstance(block, list) or item.group(2).lower() in _YAML_WORDS:
                return None
            block.append(item.group(2))
        elif entry is not None:
            sub, value = entry.group(2), _typed(entry.group(3))
            if not isinstance(block, dict) or sub.lower() in _YAML_WORDS or value is _NOT_SIMPLE:
                return None
            block[sub] = value
    return data


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
    simple = _simple_block(lines)
    if simple is not None:
        return simple, body, None
    import yaml

    # libyaml is several times faster: 2,000 CONTEXT files per read_project.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a safe loader: no arbitrary objects
    block = "\n".join(lines)
    try:
        data = yaml.load(block, Loader=loader)
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
