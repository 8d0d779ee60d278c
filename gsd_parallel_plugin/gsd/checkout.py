"""What a checkout needs before the real GSD can work in it, and what GSD says when it is done.

Everything here follows what the real ``gsd headless --json auto`` (GSD-2 3.0.0) was measured to
do (docs/ARCHITECTURE.md, *The GSD adapter*):

- GSD's SQLite DB (``<checkout>/.gsd/gsd.db``) is authoritative. A plan that exists only as
  markdown is not imported automatically: the worker then makes no model call and never exits.
  :func:`prepare_checkout` runs ``gsd headless recover`` in the checkout first.
- The worker needs ``git.isolation: none`` (``branch`` fails at the end, ``worktree`` never
  exits) and ``git.manage_gitignore: false`` (else it appends a block to ``.gitignore`` on the
  branch). Project preferences override global ones, so the only place that reliably sets them
  for the worker alone is the checkout's own ``.gsd/PREFERENCES.md``: we write them there and
  keep them out of every commit (``skip-worktree`` when the file is tracked; removed from the
  branch by :func:`finish_checkout` when GSD committed a file we created).
- GSD's runtime files must be ignored or completion is refused: :data:`RUNTIME_EXCLUDES` go to
  the repository's shared ``info/exclude`` (tracked by nothing; ``.gitignore`` is never edited).
- Completion is GSD's own state (the ``milestones`` row of the checkout's DB), never exit 0,
  and ``<MID>-SUMMARY.md`` is written after GSD's last commit: :func:`finish_checkout` commits it.

Only a worker command that runs GSD's ``headless`` mode is prepared (:func:`gsd_program`): a
plugin's own worker program is launched as it is.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import yaml

from ..errors import WorkerLaunchError
from ..workspace import layout
from ..workspace.git import Git, GitCommandError, add_exclude, skip_worktree, split_z
from ..workspace.layout import CHECKOUTS_DIRNAME
from .paths import GSD_RUNTIME_PATTERNS, WORKER_RUNTIME_FILES

RUNTIME_EXCLUDES: tuple[str, ...] = (
    f"/{CHECKOUTS_DIRNAME}/",
    *GSD_RUNTIME_PATTERNS,
    *WORKER_RUNTIME_FILES,
)
"""Patterns added to ``<common git dir>/info/exclude`` before any worker starts."""

WORKER_GIT_PREFERENCES: Mapping[str, Any] = {"isolation": "none", "manage_gitignore": False}
"""GSD's ``git:`` settings a worker in our layout needs (see the module docstring)."""

PREFERENCES_REL = ".gsd/PREFERENCES.md"
RECOVER_TIMEOUT = 180.0
_OVERLAY_MARK = "# gsd-parallel: worker settings (this checkout only; never committed)"
_FRONTMATTER_RE = re.compile(r"\A---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def gsd_program(worker_command: Sequence[str]) -> tuple[str, ...] | None:
    """The program part of a GSD worker command (``gsd`` of ``gsd headless --json auto``).

    None when the command does not run GSD's ``headless`` mode: then nothing here applies.
    """
    if "headless" not in worker_command:
        return None
    index = list(worker_command).index("headless")
    return tuple(worker_command[:index]) if index > 0 else None


def ensure_runtime_excludes(project_root: Path | str) -> list[str]:
    """Keep GSD's runtime files out of every checkout's commits; return the patterns added."""
    return add_exclude(project_root, RUNTIME_EXCLUDES)


# --------------------------------------------------------------------------- preferences


def _split_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    match = _FRONTMATTER_RE.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        data = {}
    return (data if isinstance(data, dict) else {}), text[match.end() :]


def worker_preferences_text(original: str | None) -> str:
    """``original`` (a PREFERENCES.md, or None) with the worker's ``git:`` settings forced."""
    data, body = _split_frontmatter(original or "")
    git_prefs = data.get("git")
    data["git"] = {**(git_prefs if isinstance(git_prefs, dict) else {}), **WORKER_GIT_PREFERENCES}
    data.setdefault("version", 1)
    front = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{_OVERLAY_MARK}\n{body.lstrip(chr(10)) if original else ''}"


def _write_worker_preferences(checkout: Path) -> None:
    path = checkout / PREFERENCES_REL
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        original = None
    if original is not None and _OVERLAY_MARK in original:
        return  # already ours (a relaunch)
    g = Git(checkout)
    tracked = bool(g.tracked_files(PREFERENCES_REL))
    path.parent.mkdir(parents=True, exist_ok=True)
    if original is not None and not tracked:  # a copied .gsd: keep the user's file to put back
        backup = _backup_path(checkout)
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, backup)
    path.write_text(worker_preferences_text(original), encoding="utf-8")
    if tracked:  # GSD's `git add` must never stage our settings
        g.run("update-index", "--skip-worktree", "--", PREFERENCES_REL)


def _backup_path(checkout: Path) -> Path:
    return layout.parallel_dir(checkout / ".gsd") / "PREFERENCES.md.user"


def restore_preferences(checkout: Path) -> None:
    """Put the checkout's PREFERENCES.md back as the branch has it (or remove ours)."""
    path = checkout / PREFERENCES_REL
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return
    if _OVERLAY_MARK not in text:
        return
    g = Git(checkout)
    backup = _backup_path(checkout)
    if _committed_overlay(g):  # GSD committed the file we created: take it out of the branch
        g.run("rm", "--cached", "--quiet", "--", PREFERENCES_REL)
        path.unlink()
    elif g.tracked_files(PREFERENCES_REL):
        g.run("update-index", "--no-skip-worktree", "--", PREFERENCES_REL)
        g.run("checkout", "--quiet", "--", PREFERENCES_REL)
    elif backup.is_file():
        os.replace(backup, path)  # copy2 kept its time: copying planning home sees no change
    else:
        path.unlink()


# --------------------------------------------------------------------------- GSD's state


def milestone_status(checkout: Path, mid: str) -> str | None:
    """The milestone's ``status`` in the checkout's GSD DB (``complete``, ``active``…), or None.

    None: no DB, no such row, or a DB that cannot be read right now. Read-only, never creates.
    """
    db = checkout / ".gsd" / "gsd.db"
    if not db.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2.0)) as conn:
            row = conn.execute("SELECT status FROM milestones WHERE id = ?", (mid,)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row and row[0] is not None else None


def gsd_says_complete(checkout: Path, mid: str) -> bool:
    return milestone_status(checkout, mid) == "complete"


# --------------------------------------------------------------------------- prepare / finish


def prepare_checkout(checkout: Path, mid: str, program: Sequence[str], env: Mapping[str, str]) -> None:
    """Make ``checkout`` a GSD project the worker can run in (settings, imported plan).

    Raises :class:`WorkerLaunchError` with GSD's own words when the import fails.
    """
    if not (checkout / ".gsd").is_dir():
        raise WorkerLaunchError(
            f"{checkout} has no .gsd directory: GSD cannot run there (is the plan committed?)"
        )
    _write_worker_preferences(checkout)
    if milestone_status(checkout, mid) is not None:
        _forget_met_dependencies(checkout, mid)
        _release_leases(checkout, mid)
        hide_merged_planning(checkout, mid)
        return  # imported already; GSD's DB now leads (a resume must not re-import)
    full_env = {**os.environ, **env}
    argv = [*program, "headless", "recover"]
    try:
        done = subprocess.run(
            argv, cwd=checkout, env=full_env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=RECOVER_TIMEOUT, check=False,
            start_new_session=True,
        )  # fmt: skip
    except FileNotFoundError:
        raise WorkerLaunchError(
            f"worker command not found: {argv[0]} — install GSD or set GSD_PARALLEL_WORKER_COMMAND"
        ) from None
    except subprocess.TimeoutExpired:
        raise WorkerLaunchError(
            f"`gsd headless recover` did not finish within {RECOVER_TIMEOUT:g}s in {checkout}"
        ) from None
    except OSError as exc:
        raise WorkerLaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0 or milestone_status(checkout, mid) is None:
        said = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        why = said[-1] if said else f"exit code {done.returncode}"
        raise WorkerLaunchError(
            f"GSD could not import the plan of {mid} in {checkout}: {why} "
            f"(run `gsd headless recover` there to see more)"
        )
    _forget_met_dependencies(checkout, mid)
    head = Git(checkout).rev_parse("HEAD^{commit}")
    if head is not None:
        marker = _imported_at_path(checkout)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(head + "\n", encoding="utf-8")


def _imported_at_path(checkout: Path) -> Path:
    """The commit the checkout's GSD DB was imported from (our runtime dir, never committed)."""
    return layout.parallel_dir(checkout / ".gsd") / "imported-at"


def other_planning(g: Git, mid: str, old: str, new: str) -> list[str]:
    """Other milestones' planning files (``.gsd/milestones/<other>/``) that differ between
    commits ``old`` and ``new``."""
    changed = split_z(g.run("diff", "--name-only", "--no-renames", "-z", old, new, "--", ".gsd/milestones/"))
    return [p for p in changed if not p.startswith(f".gsd/milestones/{mid}/")]


def hide_merged_planning(checkout: Path, mid: str) -> list[str]:
    """On a relaunch: mark skip-worktree the other milestones' planning files that the branch
    changed since GSD's DB was imported (a sibling's landed work merged in by hand, e.g. after
    a conflicting drift-guard update: ``git merge main``, resolve, commit, ``resume``).

    The real GSD renders every milestone's markdown from its own DB, which predates the
    sibling's merge: it writes those files back as they were, never stages them (other
    milestones' directories) and then refuses to complete (``uncommitted changes remain after
    the pre-completion commit``). Hidden, the branch keeps the merged versions and GSD's stale
    copies stay out of its commits, as the drift guard does for its own updates. A checkout
    imported before this marker existed is left as it is. Returns the paths marked."""
    try:
        since = _imported_at_path(checkout).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return []
    g = Git(checkout)
    if not since or not g.ok("cat-file", "-e", f"{since}^{{commit}}"):
        return []
    try:
        return skip_worktree(g, other_planning(g, mid, since, "HEAD"))
    except GitCommandError:
        return []


def _forget_met_dependencies(checkout: Path, mid: str) -> None:
    """Clear the milestone's ``depends_on`` in the checkout's own DB.

    With ``GSD_MILESTONE_LOCK`` set, GSD 3.0.0 derives completeness from the locked milestone
    alone (``deriveStateFromDb`` filters the milestones first), so every dependency reads as
    unmet: the worker reports ``blocked``, makes no model call and never exits. We start a
    milestone only once its dependencies are complete and merged into the branch it starts
    from, so in its checkout there is nothing left to wait for. The user's DB is not touched.
    """
    _update_db(checkout, "UPDATE milestones SET depends_on = '[]' WHERE id = ? AND depends_on != '[]'", mid)


def _release_leases(checkout: Path, mid: str) -> None:
    """Release the milestone's lease a previous worker in this checkout still holds.

    GSD's pause (``pauseAuto``) leaves its ``milestone_leases`` row ``held`` for 60 s, and a
    relaunched worker only reclaims leases of holders still marked ``active``: a resume soon
    after a pause prints ``Lost milestone lease for M001 …`` and exits 0 without working. We
    relaunch only when no worker of ours runs in the checkout, so the lease is stale by then
    (GSD's ``forceReleaseLeasesForWorker`` does the same).
    """
    _update_db(
        checkout,
        "UPDATE milestone_leases SET status = 'released' WHERE milestone_id = ? AND status = 'held'",
        mid,
        missing_table_ok=True,
    )


def _update_db(checkout: Path, sql: str, mid: str, *, missing_table_ok: bool = False) -> None:
    db = checkout / ".gsd" / "gsd.db"
    try:
        with closing(sqlite3.connect(db, timeout=5.0)) as conn, conn:
            conn.execute(sql, (mid,))
    except sqlite3.OperationalError as exc:
        if missing_table_ok and "no such table" in str(exc):
            return  # an older DB (or the fake's) without GSD's coordination tables
        raise WorkerLaunchError(f"cannot update GSD's database {db}: {exc}") from None
    except sqlite3.Error as exc:
        raise WorkerLaunchError(f"cannot update GSD's database {db}: {exc}") from None


def finish_checkout(checkout: Path, mid: str, branch: str) -> str | None:
    """After GSD completed ``mid``: commit everything GSD left uncommitted in the checkout,
    and take our worker settings back out of the branch. Returns the new commit or None.

    GSD writes ``<MID>-SUMMARY.md`` after its last commit, and a worker killed after a unit
    wrote its files (and billed for them) but before a commit leaves that work behind too:
    without this the checkout stays dirty and the integration branch misses it. Staged as
    GSD's own pre-completion commit does: everything but GSD's runtime files (ignored through
    ``info/exclude``) and the other milestones' directories.
    """
    g = Git(checkout)
    try:
        if g.current_branch() != branch:
            return None  # never commit on a branch that is not the milestone's
        restore_preferences(checkout)
        try:
            g.run("add", "-A", "--", ".", *_RUNTIME_PATHSPECS, *_other_milestones(checkout, mid))
        except GitCommandError as exc:
            # git exits 1 when an exclusion names an ignored path; the staging still happened.
            if "ignored by one of your .gitignore files" not in exc.stderr:
                raise
        if not g.run("diff", "--cached", "--name-only", "HEAD"):
            return None
        g.run(
            "commit", "--quiet", "--no-verify", "-m",
            f"chore: {mid} work left uncommitted after GSD's last commit\n\nGSD-Unit: {mid}",
        )  # fmt: skip
        return g.rev_parse("HEAD")
    except GitCommandError:
        return None


_RUNTIME_PATHSPECS = tuple(
    f":(exclude,glob){p.lstrip('/')}" + ("**" if p.endswith("/") else "") for p in RUNTIME_EXCLUDES
)
"""GSD's runtime files, never staged (also where ``info/exclude`` does not list them yet)."""


def _other_milestones(checkout: Path, mid: str) -> list[str]:
    """Pathspecs excluding every other milestone's planning directory (never this one's)."""
    base = checkout / ".gsd" / "milestones"
    if not base.is_dir() or base.is_symlink():
        return []
    return [
        f":(exclude).gsd/milestones/{d.name}/"
        for d in sorted(base.iterdir())
        if d.is_dir() and d.name != mid and not d.name.startswith(mid + "-")
    ]


def _committed_overlay(g: Git) -> bool:
    """True when GSD committed a PREFERENCES.md we created (an untracked one it picked up)."""
    with suppress(GitCommandError):
        text = g.run("show", f"HEAD:{PREFERENCES_REL}")
        return _OVERLAY_MARK in text
    return False
