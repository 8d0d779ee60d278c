"""Builtin plugin: merge order from ``parallel.merge_order``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import hookimpl
from ..workspace import layout

if TYPE_CHECKING:
    from ..models import Project


def completion_times(gsd_dir: Path) -> dict[str, float]:
    """When each milestone really completed, from the coordination store (read-only);
    empty when nothing has run here yet."""
    from ..store import Store

    store = Store.open_readonly(layout.store_path(layout.parallel_dir(gsd_dir)))
    if store is None:
        return {}
    with store:
        return store.completed_milestones()


@hookimpl(trylast=True)
def choose_merge_order(
    candidates: Sequence[str], project: Project, preferences: Mapping[str, Any]
) -> Sequence[str] | None:
    """``sequential``: queue order. ``by-completion``: when each milestone really completed
    (milestones with no recorded completion go last, in queue order)."""
    position = {mid: i for i, mid in enumerate(project.ids)}
    queue = sorted(candidates, key=lambda mid: position.get(mid, len(position)))
    if preferences.get("merge_order") != "by-completion":
        return queue
    completed = completion_times(project.gsd_dir)
    rank = {mid: i for i, mid in enumerate(queue)}
    return sorted(queue, key=lambda mid: (completed.get(mid, float("inf")), rank[mid]))
