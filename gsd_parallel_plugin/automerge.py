"""Automatic merging inside the supervisor (issue: merge). Placeholder: merges nothing yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supervisor import Supervisor


class AutoMerger:
    """Called by the supervisor when a milestone completes, and every tick."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def milestone_completed(self, milestone_id: str) -> None:
        """A worker finished its milestone (``parallel.auto_merge`` decides what happens)."""

    def tick(self) -> None:
        """Per-slice merging while workers run."""
