"""Where a milestone's checkout lives, what its branch is called, and where our runtime
files are: one place for every path and ref name gsd-parallel writes.

Runtime files live in the project's ``.gsd/parallel/`` (:func:`parallel_dir`): the store
(``coordinator.db``), each worker's ``<MID>.stdout.log``/``<MID>.stderr.log``, our status
files in ``workers/``, merge checkouts in ``merging/``, the ``supervisor.lock``,
``merge.lock`` and ``start.lock`` flocks, the session-events spool, the overlap radar's
``radar.json`` and the integration preview's ``preview.json``, and ``scratch/`` (the running
supervisor's throwaway object directories and preview checkout, emptied when one starts). A checkout's own
``.gsd/parallel/`` holds its signal file. Cheap to import (os and pathlib only): read-only
commands use it.

Measured with the real GSD (docs/ARCHITECTURE.md, *The GSD adapter*), both names are load-bearing:

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

import os
from pathlib import Path

from ..milestone_ids import validate_milestone_id

PARALLEL_DIRNAME = "parallel"
"""``<project>/.gsd/parallel``: every runtime file of ours (kept out of git by info/exclude)."""
STORE_NAME = "coordinator.db"
WORKER_STATUS_DIRNAME = "workers"
MERGING_DIRNAME = "merging"
SUPERVISOR_LOCK_NAME = "supervisor.lock"
MERGE_LOCK_NAME = "merge.lock"
START_LOCK_NAME = "start.lock"
SESSION_EVENTS_SPOOL = "session-events.jsonl"
"""Also named in ``gsd_extension/index.js`` (JavaScript, which writes it)."""
SESSION_EVENTS_STATE = "session-events.state.json"
RADAR_NAME = "radar.json"
PREVIEW_NAME = "preview.json"
SCRATCH_DIRNAME = "scratch"
STDOUT_LOG_SUFFIX = ".stdout.log"
STDERR_LOG_SUFFIX = ".stderr.log"
MERGED_REF_PREFIX = "refs/gsd-parallel/merged/"
"""``refs/gsd-parallel/merged/<MID>``: the last slice point merged of a milestone."""

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


def parallel_dir(gsd_dir: Path | str) -> Path:
    """``<gsd_dir>/parallel``: our runtime directory in a project's (or a checkout's) ``.gsd``."""
    return Path(gsd_dir) / PARALLEL_DIRNAME


def store_path(parallel: Path | str) -> Path:
    """``.gsd/parallel/coordinator.db``: the coordination store."""
    return Path(parallel) / STORE_NAME


def nothing_ran(parallel: Path | str) -> bool:
    """Neither a store nor a worker's log in ``.gsd/parallel``: no run ever started here.

    ``status`` answers from this alone, without importing the store. A directory it cannot
    list is not "nothing": the caller goes on and reports what is wrong with it.
    """
    try:
        names = os.listdir(parallel)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return STORE_NAME not in names and not any(n.endswith(STDOUT_LOG_SUFFIX) for n in names)


def stdout_log(parallel: Path | str, mid: str) -> Path:
    """``.gsd/parallel/<MID>.stdout.log``: the worker's NDJSON output."""
    return Path(parallel) / f"{mid}{STDOUT_LOG_SUFFIX}"


def stderr_log(parallel: Path | str, mid: str) -> Path:
    """``.gsd/parallel/<MID>.stderr.log``: the worker's stderr."""
    return Path(parallel) / f"{mid}{STDERR_LOG_SUFFIX}"


def radar_path(parallel: Path | str) -> Path:
    """``.gsd/parallel/radar.json``: the overlap radar's last picture."""
    return Path(parallel) / RADAR_NAME


def preview_path(parallel: Path | str) -> Path:
    """``.gsd/parallel/preview.json``: the periodic integration preview's last verdicts."""
    return Path(parallel) / PREVIEW_NAME


def scratch_dir(parallel: Path | str) -> Path:
    """``.gsd/parallel/scratch``: the supervisor's throwaway git objects and checkouts."""
    return Path(parallel) / SCRATCH_DIRNAME


def has_loose_branch(root: Path, name: str) -> bool:
    """True when ``root/.git/refs/heads/<name>`` is a file: the branch exists, no git started
    (``status`` asks on every call, and need not even import the git layer). False means "ask
    git": packed refs, a linked worktree or submodule (``.git`` is a file), the reftable
    format, or ``root`` below the top."""
    return (root / ".git" / "refs" / "heads" / name).is_file()
