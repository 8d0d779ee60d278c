"""Builtin plugin: merge order from ``parallel.merge_order``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import hookimpl

if TYPE_CHECKING:
    from ..models import Project


@hookimpl(trylast=True)
def choose_merge_order(
    candidates: Sequence[str], project: Project, preferences: Mapping[str, Any]
) -> Sequence[str] | None:
    """``sequential``: queue order. ``by-completion``: when each milestone really completed."""
    position = {mid: i for i, mid in enumerate(project.ids)}
    queue = sorted(candidates, key=lambda mid: position.get(mid, len(position)))
    if preferences.get("merge_order") != "by-completion":
        return queue
    from ..store import completion_times

    completed = completion_times(project.gsd_dir)
    return sorted(queue, key=lambda mid: (completed.get(mid, float("inf")), position.get(mid, 0)))
