"""Where a milestone's checkout lives and what its branch is called: one place for both.

Measured with the real GSD (``shared/real-gsd/FINDINGS.md``), both names are load-bearing:

- A checkout anywhere under ``/.gsd/worktrees/`` is moved by GSD to the project root at start
  (``escapeStaleWorktree``): the worker then commits on the main checkout's branch. Ours live
  at ``<root>/.gsd-parallel/<MID>``, outside that path, so GSD's project-root lookup stops at the
  checkout's own ``.gsd`` and the checkout is a GSD project of its own.
- With ``git.isolation: none`` GSD checks out the integration branch at start when the current
  branch starts with ``milestone/`` (``resolveIsolationNoneBranchCheckout``); when the main
  checkout is not on that branch, the switch succeeds and the worker commits the milestone on
  ``main``. GSD's orphaned-branch audit also deletes merged ``milestone/*`` branches. Our
  branches are ``gsd-parallel/<MID>``: none of GSD's ``milestone/`` logic ever touches them.
"""

from __future__ import annotations

from pathlib import Path

from ..milestone_ids import validate_milestone_id

BRANCH_PREFIX = "gsd-parallel/"
"""Every milestone branch is ``gsd-parallel/<MID>``."""

CHECKOUTS_DIRNAME = ".gsd-parallel"
"""Milestone checkouts are ``<root>/.gsd-parallel/<MID>`` (kept out of git by info/exclude)."""


def branch_name(mid: str) -> str:
    """``gsd-parallel/<MID>`` (the ID is validated first)."""
    return f"{BRANCH_PREFIX}{validate_milestone_id(mid)}"


def branch_ref(mid: str) -> str:
    """``refs/heads/gsd-parallel/<MID>``."""
    return f"refs/heads/{branch_name(mid)}"


def checkouts_dir(project_root: Path | str) -> Path:
    """``<root>/.gsd-parallel``: the directory holding every milestone checkout."""
    return Path(project_root) / CHECKOUTS_DIRNAME


def checkout_path(project_root: Path | str, mid: str) -> Path:
    """``<root>/.gsd-parallel/<MID>`` (the ID is validated first)."""
    return checkouts_dir(project_root) / validate_milestone_id(mid)


def checkout_display(mid: str) -> str:
    """The checkout as messages name it, relative to the project: ``.gsd-parallel/<MID>``."""
    return f"{CHECKOUTS_DIRNAME}/{mid}"
