"""Reading GSD's ``.gsd/`` planning files: roadmaps, slice plans, summaries, as GSD reads them.

``read_project`` is the entry point; the parsers are public for plugins and tests.
``preferences`` (a sibling module) reads PREFERENCES.md and is not re-exported here.
"""

from __future__ import annotations

from ..milestone_ids import MILESTONE_ID_RE, is_valid_milestone_id
from .frontmatter import parse_frontmatter, scan_frontmatter
from .paths import (
    MAX_READ_BYTES,
    MILESTONE_DIR_RE,
    find_project_root,
    gsd_home,
    milestone_sort_key,
)
from .plans import normalize_file_entry, parse_plan, parse_plan_info, split_file_entries
from .reader import read_project
from .roadmap import parse_roadmap
from .summary import is_terminal_summary, validation_needs_attention

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
