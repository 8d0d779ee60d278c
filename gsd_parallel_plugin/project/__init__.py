"""Reading GSD's ``.gsd/`` planning files: roadmaps, slice plans, summaries, as GSD reads them.

``read_project`` is the entry point; the parsers are public for plugins and tests.
``preferences`` (a sibling module) reads PREFERENCES.md and is not re-exported here.

The names below load their module on first use (PEP 562): finding the project root, which
every command does, must not build the plan parsers, which ``status`` with no run never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..milestone_ids import MILESTONE_ID_RE, is_valid_milestone_id
    from .frontmatter import parse_frontmatter, scan_frontmatter
    from .paths import MAX_READ_BYTES, MILESTONE_DIR_RE, find_project_root, gsd_home, milestone_sort_key
    from .plans import normalize_file_entry, parse_plan, parse_plan_info, split_file_entries
    from .reader import read_project
    from .roadmap import parse_roadmap
    from .summary import is_terminal_summary, validation_needs_attention

_HOME = {
    "MAX_READ_BYTES": ".paths",
    "MILESTONE_DIR_RE": ".paths",
    "MILESTONE_ID_RE": "..milestone_ids",
    "find_project_root": ".paths",
    "gsd_home": ".paths",
    "is_terminal_summary": ".summary",
    "is_valid_milestone_id": "..milestone_ids",
    "milestone_sort_key": ".paths",
    "normalize_file_entry": ".plans",
    "parse_frontmatter": ".frontmatter",
    "parse_plan": ".plans",
    "parse_plan_info": ".plans",
    "parse_roadmap": ".roadmap",
    "read_project": ".reader",
    "scan_frontmatter": ".frontmatter",
    "split_file_entries": ".plans",
    "validation_needs_attention": ".summary",
}
"""Each public name and the module it lives in."""

__all__ = [
    "MAX_READ_BYTES",
    "MILESTONE_DIR_RE",
    "MILESTONE_ID_RE",
    "find_project_root",
    "gsd_home",
    "is_terminal_summary",
    "is_valid_milestone_id",
    "milestone_sort_key",
    "normalize_file_entry",
    "parse_frontmatter",
    "parse_plan",
    "parse_plan_info",
    "parse_roadmap",
    "read_project",
    "scan_frontmatter",
    "split_file_entries",
    "validation_needs_attention",
]


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
