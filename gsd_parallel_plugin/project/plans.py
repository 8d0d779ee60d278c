"""Slice plans: tasks, their done marks, and the files they say they touch.

The files a milestone touches decide which milestones may run side by side, so this
parser errs towards keeping a path: an entry is dropped only when it is plainly
prose (``and 26 other files``, ``none``, a sentence in parentheses).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ..models import Task
from .lazy_re import lazy
from .markdown import body_lines

_TASK_RE = lazy(
    r"^[-*][ \t]+\[([ xX])\][ \t]+(?:\*\*|__)?[ \t]*(T\d+)(?![\dA-Za-z])"
    r"(?:\*\*|__)?[ \t]*(?:[:.\-—–][ \t]*)?(.*)$"
)
_FILES_RE = lazy(
    r"^([ \t]*)(?:[-*+][ \t]+)?(?:\*\*|__)?files[ \t]*(?:\*\*|__)?[ \t]*:"
    r"[ \t]*(?:\*\*|__)?[ \t]*(.*)$",
    re.IGNORECASE,
)
_BULLET_RE = lazy(r"^([ \t]*)[-*+][ \t]+(.*)$")
_HEADING_RE = lazy(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_LIKELY_RE = lazy(r"^[*_ ]*files\s+likely\s+touched\b", re.IGNORECASE)

_PROSE_WORDS = frozenset(
    {
        "none",
        "n/a",
        "na",
        "tbd",
        "todo",
        "nothing",
        "various",
        "multiple",
        "misc",
        "etc",
        "same",
        "unknown",
        "unchanged",
        "n.a.",
        "-",
        "—",
        "–",
        "...",
        "…",
        "no",
        "all",
        "any",
        "see",
        "and",
        "or",
        "plus",
        "other",
        "others",
        "more",
        "files",
        "file",
        "new",
    }
)
_PROSE_START_RE = lazy(
    r"^(?:and|or|plus|\+|see|no|none|all|any|various|other|others|same|every|"
    r"including|includes|etc|e\.g\.|i\.e\.|read-only|readonly|verification|verify|"
    r"update|updates|updated|modify|modifies|modified|create|creates|created|add|adds|"
    r"added|edit|edits|edited|check|checks|run|runs|only|just|possibly|maybe|tbd|n/a)\b",
    re.IGNORECASE,
)
_COUNT_PROSE_RE = lazy(r"\b\d+\s+(?:other|more|additional)?\s*files?\b", re.IGNORECASE)
_TRAILING_PAREN_RE = lazy(r"\s+\([^()]*\)\s*$")
_LINE_RANGE_RE = lazy(r"(?<=\S):\d+(?:[-:]\d+)?$")
_EXT_RE = lazy(r"\.[A-Za-z0-9_+-]{1,12}$")
_DESC_SEP_RE = lazy(r"\s+(?:—|–|--)\s+|\s+-\s+|:\s+")


def _strip_wrapping(entry: str) -> str:
    entry = entry.strip()
    for _ in range(4):
        before = entry
        for pair in ("**", "__", '"', "'", "*", "_"):
            if len(entry) > 2 * len(pair) and entry.startswith(pair) and entry.endswith(pair):
                entry = entry[len(pair) : -len(pair)].strip()
        if entry == before:
            break
    return entry


_CLEAN_PATH_RE = lazy(r"^[ \t]*`?(?:\./)*([\w@+~\-][\w@+~.\-/]*)`?[ \t]*$")


@functools.lru_cache(maxsize=65536)
def normalize_file_entry(entry: str) -> str | None:
    """One ``- Files:`` / ``Files Likely Touched`` entry as a path, or None for prose.

    Strips bullets, backticks, quotes/emphasis, a leading ``./``, a trailing
    parenthetical (`` (new)``), a trailing ``— description`` and ``:LINE`` suffix.
    Keeps directories (trailing ``/``), spaces and non-ASCII in names.  Idempotent:
    a normalised path normalises to itself.
    """
    clean = _CLEAN_PATH_RE.match(entry)
    if clean and not clean.group(1).startswith("-"):
        path = clean.group(1)
        if path.lower() not in _PROSE_WORDS and path.strip(".") and path[0] != "-":
            return path
    text = entry
    for _ in range(6):
        result = _normalize_once(text)
        if result is None or result == text:
            return result
        text = result
    return text


def _normalize_once(entry: str) -> str | None:
    text = entry.strip()
    text = re.sub(r"^[-*+][ \t]+", "", text)
    text = re.sub(r"^\[[ xX]\][ \t]+", "", text)
    if not text:
        return None
    if text.startswith("`") and "`" in text[1:]:
        text = text[1 : text.index("`", 1)]
    elif "`" in text:
        # Prose with code spans ("and `x.py`") is prose; a lone stray backtick is noise.
        spans = re.findall(r"`([^`]+)`", text)
        outside = re.sub(r"`[^`]*`", " ", text).strip()
        if spans and outside and not _looks_like_path(outside):
            return None
        text = text.replace("`", "")
    text = _strip_wrapping(text)
    text = _cut_description(text)
    text = _strip_trailing_parens(text)
    if text.startswith("(") or text.startswith("["):
        return None
    text = text.strip().rstrip(",;")
    text = _LINE_RANGE_RE.sub("", text)
    while text.startswith("./"):
        text = text[2:].lstrip("/") if text[2:].startswith("/") else text[2:]
    text = text.strip()
    if not text or text in (".", "/"):
        return None
    if _is_prose(text):
        return None
    return text


def _strip_trailing_parens(text: str) -> str:
    while True:
        cut = _TRAILING_PAREN_RE.sub("", text)
        if cut == text:
            return text.strip()
        text = cut


def _cut_description(text: str) -> str:
    """``src/a.py — adds the handler`` → ``src/a.py`` (only when the left side is a path)."""
    m = _DESC_SEP_RE.search(text)
    if not m or m.start() == 0:
        return text
    left = _strip_trailing_parens(text[: m.start()])
    strong = m.group(0).strip() in ("—", "–", "--")
    if _looks_like_path(left) and (strong or not re.search(r"\s", left)):
        return left
    return text


def _looks_like_path(text: str) -> bool:
    text = text.strip()
    return "/" in text or bool(_EXT_RE.search(text))


def _is_prose(text: str) -> bool:
    low = text.lower()
    if low in _PROSE_WORDS or low.rstrip(".") in _PROSE_WORDS:
        return True
    if _COUNT_PROSE_RE.search(low) and not _EXT_RE.search(text):
        return True
    if re.search(r"\s", text):
        if _PROSE_START_RE.match(text):
            return True
        # A path with spaces still looks like a path: a directory part or an extension.
        if not _looks_like_path(text) and not text.endswith("/"):
            return True
        if len(text.split()) > 6:
            return True
    return False


_ENTRY_RE = lazy(r"(?:`[^`]*`|\([^()]*\)|[^,;`(])+")
_NESTED_PAREN_RE = lazy(r"\([^)]*\(|\([^)]*$")


def split_file_entries(value: str) -> list[str]:
    """Split a ``Files:`` value on commas that are outside backticks and parentheses."""
    if "`" not in value and "(" not in value:
        return [e.strip() for e in re.split(r"[,;]", value) if e.strip()]
    if value.count("`") % 2 == 0 and not _NESTED_PAREN_RE.search(value):
        return [e.strip() for e in _ENTRY_RE.findall(value) if e.strip()]
    out: list[str] = []
    buf: list[str] = []
    in_code = False
    depth = 0
    for ch in value:
        if ch == "`":
            in_code = not in_code
        elif not in_code and ch == "(":
            depth += 1
        elif not in_code and ch == ")" and depth:
            depth -= 1
        if ch in ",;" and not in_code and depth == 0:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return [e.strip() for e in out if e.strip()]


def _files_from(value: str) -> list[str]:
    files: list[str] = []
    for raw in split_file_entries(value):
        norm = normalize_file_entry(raw)
        if norm is not None and norm not in files:
            files.append(norm)
    return files


@dataclass
class PlanInfo:
    """What a plan says: its tasks and every file it names (tasks + Files Likely Touched)."""

    tasks: list[Task] = field(default_factory=list)
    likely_touched: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """Union, in first-seen order, of all ``Files:`` entries and Files Likely Touched."""


@dataclass
class _TaskAcc:
    id: str
    title: str
    done: bool
    files: list[str] = field(default_factory=list)


def _task_title(rest: str, bold: bool) -> str:
    """``Title** `est:1h``` → ``Title`` (bold); ``Title `est:1h` — note`` → ``Title``."""
    rest = rest.strip()
    if bold and "**" in rest:
        rest = rest.split("**", 1)[0]
    else:
        rest = re.split(r"`|\*\*| [—–] ", rest, maxsplit=1)[0]
    return rest.strip().strip("*_").strip()


def parse_plan_info(text: str) -> PlanInfo:
    """Tasks and files of a slice plan.  Never raises on any text.

    A ``Files:`` line belongs to the task above it, even when the task has its own
    ``## Steps`` / ``## Must-Haves`` headings in between (GSD loses those; we do not).
    A ``Files:`` value may also be a list of indented bullets below the line.
    """
    lines = body_lines(text)
    tasks: dict[str, _TaskAcc] = {}
    order: list[str] = []
    current: _TaskAcc | None = None
    likely: list[str] = []
    loose: list[str] = []
    likely_level = 0  # heading level of the open "Files Likely Touched" section, 0 = none
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if not line:
            continue
        heading = _HEADING_RE.match(line) if line[0] == "#" else None
        if heading:
            level = len(heading.group(1))
            if _LIKELY_RE.match(heading.group(2)):
                likely_level, current = level, None
            elif likely_level and level <= likely_level:
                likely_level = 0
            continue
        if (
            not likely_level
            and "ouched" in line
            and _LIKELY_RE.match(line)
            and line.rstrip(" *_:").lower().endswith("touched")
        ):
            likely_level, current = 7, None  # "**Files Likely Touched:**" as a plain line
            continue
        if likely_level:
            bullet = _BULLET_RE.match(line)
            if bullet:
                for f in _files_from(bullet.group(2)):
                    if f not in likely:
                        likely.append(f)
            continue
        task = _TASK_RE.match(line) if line[0] in "-*" else None
        if task:
            tid = task.group(2)
            if tid in tasks:
                current = tasks[tid]
                current.done = current.done or task.group(1) in "xX"
            else:
                bold = "**" in line[: task.start(2)]
                title = _task_title(task.group(3), bold) or tid
                current = _TaskAcc(tid, title, task.group(1) in "xX")
                tasks[tid] = current
                order.append(tid)
            continue
        fm = _FILES_RE.match(line) if "iles" in line or "ILES" in line else None
        if fm is None:
            continue
        indent, value = len(fm.group(1).expandtabs(4)), fm.group(2).strip()
        found = _files_from(value) if value else []
        if not value.strip("*_ "):
            # "- Files:" followed by a nested bullet list
            while i < n:
                sub = _BULLET_RE.match(lines[i])
                if not sub or len(sub.group(1).expandtabs(4)) <= indent:
                    break
                found.extend(f for f in _files_from(sub.group(2)) if f not in found)
                i += 1
        target = current.files if current is not None else loose
        target.extend(f for f in found if f not in target)
    out_tasks = [
        Task(id=t.id, title=t.title, done=t.done, files=tuple(t.files)) for t in (tasks[tid] for tid in order)
    ]
    union: dict[str, None] = {}
    for t in out_tasks:
        union.update(dict.fromkeys(t.files))
    union.update(dict.fromkeys(loose))
    union.update(dict.fromkeys(likely))
    return PlanInfo(tasks=out_tasks, likely_touched=likely, files=list(union))


def parse_plan(text: str) -> list[Task]:
    """The tasks of a slice plan, with ``[x]`` done marks and their ``Files:`` entries."""
    return parse_plan_info(text).tasks
