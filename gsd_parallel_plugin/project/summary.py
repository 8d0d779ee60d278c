"""Is a milestone SUMMARY terminal?  GSD's rule, including its body heuristics.

GSD writes ``<MID>-SUMMARY.md`` with ``status: complete`` when a milestone finishes,
but also writes BLOCKER placeholders and hand-written summaries exist.  GSD reads the
``status`` with its lenient line reader, so we do too (a summary whose YAML is
slightly off is still what GSD considers it).
"""

from __future__ import annotations

import re
from pathlib import Path

from .frontmatter import scan_frontmatter
from .lazy_re import lazy

TERMINAL_STATUSES = frozenset({"complete", "done", "skipped", "closed"})
NON_TERMINAL_STATUSES = frozenset({"active", "pending", "blocked", "failed", "failure", "incomplete"})

_FAILURE_SIGNALS = (
    lazy(r"(?:^|\n)\s*#\s*BLOCKER\b", re.IGNORECASE),
    lazy(r"auto-mode recovery failed", re.IGNORECASE),
    lazy(r"verification\s+failed", re.IGNORECASE),
    lazy(r"(?:^|\n)\s*(?:status|verdict|outcome|result)\s*[:=-]\s*not complete\b", re.IGNORECASE),
)


def summary_status(text: str) -> str:
    """The frontmatter ``status`` of a summary, lower-cased ("" when absent)."""
    value = scan_frontmatter(text).get("status")
    return value.strip().lower() if isinstance(value, str) else ""


def is_terminal_summary(text: str) -> bool:
    """True when GSD would treat this SUMMARY as finishing its milestone.  Never raises.

    A known terminal status wins; a known non-terminal status loses; otherwise the
    file is terminal unless it carries a failure signal (a ``# BLOCKER`` line,
    ``auto-mode recovery failed``, ``verification failed``, or a line such as
    ``status: not complete`` / ``verdict = not complete``).
    """
    try:
        status = summary_status(text)
        if status in TERMINAL_STATUSES:
            return True
        if status in NON_TERMINAL_STATUSES:
            return False
        return not any(p.search(text) for p in _FAILURE_SIGNALS)
    except Exception:  # pragma: no cover - regexes on str do not raise
        return False


def validation_needs_attention(text: str) -> bool:
    """True when a VALIDATION file's frontmatter says ``verdict: needs-attention``."""
    value = scan_frontmatter(text).get("verdict")
    return isinstance(value, str) and value.strip().lower() == "needs-attention"


def milestone_complete_in(gsd_dir: Path, milestone_id: str) -> bool:
    """True when ``gsd_dir`` holds a terminal ``<MID>-SUMMARY.md`` for the milestone.

    ``gsd_dir`` is a project's ``.gsd`` or a checkout's: the planning files as GSD left them.
    """
    milestones = gsd_dir / "milestones"
    try:
        candidates = [d for d in milestones.iterdir() if d.name.startswith(milestone_id)]
    except OSError:
        return False
    want = f"{milestone_id}-summary.md".lower()
    for directory in candidates:
        rest = directory.name[len(milestone_id) :]
        if rest and not rest.startswith("-"):
            continue  # M0012 is not M001
        try:
            files = [f for f in directory.iterdir() if f.name.lower() == want]
        except OSError:
            continue
        for f in files:
            try:
                if is_terminal_summary(f.read_text(encoding="utf-8", errors="replace")):
                    return True
            except OSError:
                continue
    return False
