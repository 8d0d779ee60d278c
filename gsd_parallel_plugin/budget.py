"""Budget enforcement inside the supervisor (issue: budget). Placeholder: enforces nothing yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supervisor import Supervisor


class BudgetGuard:
    """Called by the supervisor every tick after cost was read."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def check(self) -> None:
        """Stop or pause workers whose spending must end."""

    def blocks_new_work(self) -> bool:
        """True when no worker may start or restart."""
        return False
