"""Which milestones a project has and in which order, read from ``.gsd/`` alone.

The directory names under ``.gsd/milestones`` and ``.gsd/QUEUE-ORDER.json`` give the IDs,
their order and the project-wide problems (an unreadable directory, two directories for one
ID, a broken queue file), without opening a single plan. ``read_project`` starts from this
scan; ``status`` with no run asks only for its problems (reading the plans is most of what
a status costs: ``bench/bench_startup.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .paths import MILESTONE_DIR_RE, list_dir, milestone_sort_key, read_text

QUEUE_ORDER_LABEL = ".gsd/QUEUE-ORDER.json"


class MilestoneDirs:
    """The milestone directories of one ``.gsd``: by ID, in queue order, and the problems."""

    __slots__ = ("dirs", "order", "problems")

    def __init__(self, dirs: dict[str, list[str]], order: list[str], problems: list[str]) -> None:
        self.dirs = dirs
        """Directory names per ID, sorted (more than one is a clash)."""
        self.order = order
        """The IDs in GSD's order: ``QUEUE-ORDER.json`` first, then numeric."""
        self.problems = problems
        """Project-wide problems, each naming the file or directories."""


def scan_milestone_dirs(gsd_dir: Path) -> MilestoneDirs:
    """Scan ``gsd_dir`` (a resolved ``.gsd``); never raises on what the files contain."""
    problems: list[str] = []
    listing = list_dir(gsd_dir / "milestones")
    if listing.error and listing.error != "directory not found":
        problems.append(f".gsd/milestones: {listing.error}")
    dirs: dict[str, list[str]] = {}
    for name in sorted(listing.dirs):
        m = MILESTONE_DIR_RE.match(name)
        if m:
            dirs.setdefault(m.group(1), []).append(name)
    for mid, names in dirs.items():
        if len(names) > 1:
            problems.append(clash_message(mid, names))
    order = _ordered_ids(list(dirs), _queue_order(gsd_dir, problems))
    return MilestoneDirs(dirs, order, problems)


def clash_message(mid: str, dirs: list[str]) -> str:
    names = " and ".join(f".gsd/milestones/{d}/" for d in dirs)
    return f"{names} all map to milestone ID {mid}; rename all but one"


def _queue_order(gsd_dir: Path, problems: list[str]) -> list[str]:
    """IDs listed in ``.gsd/QUEUE-ORDER.json`` (``{"order": [...]}``); [] when absent/bad."""
    path = gsd_dir / "QUEUE-ORDER.json"
    label = QUEUE_ORDER_LABEL
    try:
        if not path.is_file():
            return []
    except OSError:
        return []
    read = read_text(path, label)
    problems.extend(p for p in read.problems if not p.endswith("file is empty"))
    if not read.text or not read.text.strip():
        return []
    try:
        data = json.loads(read.text)
    except json.JSONDecodeError as exc:
        problems.append(f"{label} line {exc.lineno}: invalid JSON ({exc.msg}); using numeric order")
        return []
    except RecursionError:
        problems.append(f"{label}: invalid JSON (nested too deeply); using numeric order")
        return []
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, list):
        problems.append(f'{label}: expected {{"order": ["M001", ...]}}; using numeric order')
        return []
    ids = [x for x in order if isinstance(x, str)]
    if len(ids) != len(order):
        problems.append(f"{label}: ignoring entries in 'order' that are not milestone IDs")
    return ids


def _ordered_ids(ids: list[str], custom: list[str]) -> list[str]:
    """GSD's order: custom order first (existing IDs only), then the rest numerically."""
    present = set(ids)
    ordered: list[str] = []
    for mid in custom:
        if mid in present:
            ordered.append(mid)
            present.discard(mid)
    return ordered + sorted(present, key=milestone_sort_key)
