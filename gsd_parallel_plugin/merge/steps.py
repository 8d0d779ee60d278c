"""The pieces of a merge (see :mod:`.attempt` for the whole): the lock, git and filesystem
helpers, the commit message, ``merge_check``, and what happens after a milestone landed.

Kept apart so :mod:`.plan` (dry run, candidates) and :mod:`.recovery`
(``doctor --fix``) share them without importing the merge engine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Literal

from ..errors import GsdParallelError
from ..models import Milestone
from ..workspace import layout
from ..workspace.git import Git, GitCommandError, same_path, split_z
from ..workspace.layout import branch_name, checkout_display
from ..workspace.locks import PidLock

NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
"""For git calls inside the temporary worktree: the user's hooks run on their own checkout only."""
FALLBACK_IDENT = ("-c", "user.name=gsd-parallel", "-c", "user.email=gsd-parallel@localhost")
TAIL_LINES = 20
JUNK_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
JUNK_SUFFIXES = (".pyc", ".pyo")

Notify = Callable[[str, str], None]


def quiet(message: str, level: str) -> None:
    """Default notify: say nothing."""


def auto_resolvable(path: str) -> bool:
    """True for conflicts that take the milestone's side: ``.gsd/**`` and generated junk."""
    parts = path.split("/")
    if parts[0] == ".gsd":
        return True
    if any(p in JUNK_DIRS for p in parts[:-1]):
        return True
    return parts[-1] in JUNK_NAMES or parts[-1].endswith(JUNK_SUFFIXES)


def short(sha: str | None) -> str:
    return sha[:12] if sha else "none"


# --------------------------------------------------------------------------- lock


class MergeLock(PidLock):
    """``.gsd/parallel/merge.lock``: one merge at a time per repository (see :mod:`..workspace.locks`)."""

    def __init__(self, parallel_dir: Path) -> None:
        super().__init__(parallel_dir / layout.MERGE_LOCK_NAME)


# --------------------------------------------------------------------------- git helpers


def unmerged_paths(g: Git) -> list[str]:
    """Paths with conflict stages in the index, in order, once each."""
    entries = split_z(g.run("ls-files", "-u", "-z"))
    return list(dict.fromkeys(e.split("\t", 1)[1] for e in entries if "\t" in e))


def unfinished_checkout_merge(root: Path, mid: str) -> str | None:
    """Why the milestone's checkout cannot merge now: it is in the middle of a ``git merge``
    (the user resolving a conflict there), or None. Merging its branch would only report the
    old conflict again: the user has to finish (or abort) that merge first."""
    from ..workspace.worktrees import worktree_path

    wt = worktree_path(root, mid)
    if not wt.is_dir():
        return None
    wg = Git(wt)
    try:
        left = unmerged_paths(wg)
        in_merge = bool(left) or wg.ok("rev-parse", "-q", "--verify", "MERGE_HEAD")
    except GsdParallelError:
        return None
    if not in_merge:
        return None
    shown = ", ".join(left[:10]) + (f" (+{len(left) - 10} more)" if len(left) > 10 else "")
    still = f"still unmerged: {shown}; resolve them, `git add` them, then " if left else ""
    return (
        f"{checkout_display(mid)} is in the middle of a merge: finish the merge in the "
        f"checkout ({still}`git commit` there), then merge {mid} again"
    )


def take_side(g: Git, paths: Sequence[str], side: Literal["ours", "theirs"]) -> None:
    """Resolve conflicted ``paths`` to one side: ``theirs`` (stage 3) is what is being merged or
    reverted in, ``ours`` (stage 2) the integration branch; a path that side deleted is removed."""
    if not paths:
        return
    stage = "2" if side == "ours" else "3"
    stages: dict[str, set[str]] = {}
    for entry in split_z(g.run("ls-files", "-u", "-z", "--", *paths)):
        meta, path = entry.split("\t", 1)
        stages.setdefault(path, set()).add(meta.split()[2])
    kept = [p for p in paths if stage in stages.get(p, set())]
    gone = [p for p in paths if p not in kept]
    if kept:
        g.run("checkout", f"--{side}", "--", *kept)
        g.run("add", "--", *kept)
    if gone:
        g.run("rm", "-q", "-f", "--ignore-unmatch", "--", *gone)


def take_milestone_side(g: Git, paths: Sequence[str]) -> None:
    """Resolve ``paths`` to the milestone's version (its deletion when it deleted them)."""
    take_side(g, paths, "theirs")


def paths_in_the_way(wg: Git, changed: Sequence[str]) -> list[str]:
    """Uncommitted or untracked paths in a checkout that a merge changing ``changed`` would touch."""
    wanted = set(changed)
    parents = {"/".join(p.split("/")[:i]) for p in changed for i in range(1, p.count("/") + 1)}
    blocked = []
    for _xy, path in wg.status_porcelain(untracked="all"):
        p = path.rstrip("/")
        if p in wanted or p in parents or any(p.startswith(c + "/") for c in wanted):
            blocked.append(p)
    return sorted(set(blocked))


def land_on_branch(
    g: Git,
    integ: str,
    base: str,
    commit: str,
    changed: Sequence[str],
    *,
    reflog: str,
    retry: str,
    what: str = "merge",
) -> tuple[list[str], str | None]:
    """Move ``integ`` from ``base`` to ``commit`` (a descendant): a fast-forward of the checkout
    that has it (when the paths involved are clean there), else ``update-ref`` with the old
    value checked. Returns (blocking files, error) when it cannot; then nothing moved.
    ``retry`` is the command (words) the messages suggest; ``what`` names the operation."""
    from .. import hints

    again = hints.cmd(retry)
    now = g.branch_sha(integ)
    if now != base:
        return [], (f"{integ} moved while the {what} was being built (now {short(now)}); run {again} again")
    where = g.branch_checked_out_at(integ)
    if where is None:
        try:
            g.run("update-ref", "-m", reflog, f"refs/heads/{integ}", commit, base)
        except GitCommandError as exc:
            return [], f"could not move {integ}: {exc}"
        return [], None
    wg = Git(where)
    theirs = unmerged_paths(wg)
    if theirs or wg.ok("rev-parse", "-q", "--verify", "MERGE_HEAD"):
        shown = ", ".join(theirs[:10]) or "no conflicts left"
        return theirs, (
            f"{where} is in the middle of a merge of its own (unmerged: {shown}): finish it, or "
            f"run `git merge --abort` there, then run {again} again"
        )
    blocked = paths_in_the_way(wg, changed)
    if blocked:
        shown = ", ".join(blocked[:10]) + (f" (+{len(blocked) - 10} more)" if len(blocked) > 10 else "")
        return blocked, (
            f"uncommitted changes in {where} would be overwritten by the {what}: {shown}; "
            f"commit or move them, then run {again} again"
        )
    try:
        wg.run("merge", "--ff-only", "--quiet", commit)
    except GitCommandError as exc:
        first = next((ln for ln in exc.stderr.splitlines() if ln.strip()), str(exc))
        return [], f"could not fast-forward {integ} in {where}: {first.strip()}"
    if g.branch_sha(integ) != commit:
        return [], f"{integ} did not move to {short(commit)}; it is unchanged"
    return [], None


def set_slice_point(g: Git, mid: str, commit: str) -> None:
    g.run("update-ref", "-m", "gsd-parallel: per-slice merge", f"{layout.MERGED_REF_PREFIX}{mid}", commit)


def remove_temp_worktree(g: Git, path: Path, parallel_dir: Path, *, registered: bool | None = None) -> bool:
    """Remove a temporary merge worktree (registered or not); True if anything was there.

    ``registered`` None asks git; the merge itself knows and saves the call.
    """
    if registered is None:
        registered = g.find_worktree(path) is not None
    clean = False
    if registered:
        try:
            g.run("worktree", "remove", "--force", "--force", str(path))
            clean = True
        except GitCommandError:
            pass
    leftover = os.path.lexists(path) and same_path(path.parent, parallel_dir / layout.MERGING_DIRNAME)
    if leftover:
        shutil.rmtree(path, ignore_errors=True)
    if leftover or (registered and not clean):
        with suppress(GitCommandError):
            g.run("worktree", "prune")
    return registered or leftover


def slice_point(g: Git, mid: str, target: str) -> str | None:
    """The branch commit the last per-slice merge landed, when it is an ancestor of ``target``."""
    point = g.rev_parse(f"{layout.MERGED_REF_PREFIX}{mid}")
    if point is None or not g.is_ancestor(point, target):
        return None
    return point


# --------------------------------------------------------------------------- pieces


def commit_message(mid: str, milestone: Milestone | None, slices: Sequence[str] | None) -> str:
    """``feat: <title>``, the completed slices and tasks, and the GSD trailers."""
    title = milestone.title if milestone is not None else mid
    subject = f"feat: {title}" + (f" ({', '.join(slices)})" if slices else "")
    body: list[str] = []
    for s in milestone.slices if milestone is not None else ():
        if not s.done or (slices is not None and s.id not in slices):
            continue
        body.append(f"- {s.id}: {s.title}")
        body += [f"  - {t.id}: {t.title}" for t in s.tasks if t.done]
    trailers = [f"GSD-Milestone: {mid}"]
    if slices:
        trailers.append(f"GSD-Slice: {', '.join(slices)}")
    trailers.append(f"Branch: {branch_name(mid)}")
    parts = [subject]
    if body:
        parts.append("Completed slices:\n" + "\n".join(body))
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


class CheckCancelled(GsdParallelError):
    """``merge_check`` was killed because its caller no longer wants the answer."""


def run_merge_check(
    command: Sequence[str], cwd: Path, mid: str, *, cancel: threading.Event | None = None
) -> str | None:
    """Run ``parallel.merge_check`` on the merged tree; None when it passes, else the failure
    with the tail of its output. ``cancel`` set (the supervisor exits during a background
    preview): the check's process group is killed and :class:`CheckCancelled` raised."""
    env = {**os.environ, "GSD_MERGE_MILESTONE": mid}
    try:
        proc = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal must not kill the gate (a false failure)
        )  # fmt: skip
    except FileNotFoundError:
        return f"merge_check command not found: {command[0]}"
    except OSError as exc:
        return f"merge_check `{shlex.join(command)}` could not run: {exc}"
    try:
        out = _wait_for_check(proc, cancel)
    finally:
        if proc.returncode is None:  # cancelled, or interrupted: the check never outlives it
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    if out is None:
        raise CheckCancelled(f"merge_check `{shlex.join(command)}` cancelled")
    if proc.returncode == 0:
        return None
    code = proc.returncode
    how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
    tail = out.decode("utf-8", "replace").rstrip().splitlines()[-TAIL_LINES:]
    return f"merge_check `{shlex.join(command)}` failed ({how})" + (":\n" + "\n".join(tail) if tail else "")


def _wait_for_check(proc: subprocess.Popen[bytes], cancel: threading.Event | None) -> bytes | None:
    """The check's output once it exited; None when ``cancel`` was set first."""
    while True:
        try:
            out, _ = proc.communicate(timeout=None if cancel is None else 0.2)
            return out
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                return None


def cleanup_after_landing(root: Path, mid: str, merged_sha: str) -> list[str]:
    """After a milestone landed: bring untracked planning edits home, remove its worktree when
    clean, delete its branch when it still points at what landed. Returns notes for the user."""
    from ..workspace.worktrees import DirtyWorktreeError, remove_worktree, worktree_path

    notes: list[str] = []
    g = Git(root)
    wt = worktree_path(root, mid)
    if wt.is_dir():
        copy_back_planning(root, wt)
    with suppress(GitCommandError):
        g.run("update-ref", "-d", f"{layout.MERGED_REF_PREFIX}{mid}")
    now = g.branch_sha(branch_name(mid))
    delete = now is not None and now == merged_sha
    try:
        remove_worktree(root, mid, delete_branch=delete, force_branch=delete)
    except DirtyWorktreeError as exc:
        notes.append(
            f"{mid}: kept {checkout_display(mid)} and its branch: uncommitted changes in "
            f"{len(exc.files)} file(s) ({', '.join(exc.files[:5])})"
        )
        return notes
    except GsdParallelError as exc:
        notes.append(f"{mid}: {exc}")
        return notes
    if now is not None and not delete:
        notes.append(f"{mid}: kept branch {branch_name(mid)}: it has commits made after the merge")
    return notes


def copy_back_planning(root: Path, worktree: Path) -> int:
    """With an untracked ``.gsd`` (a directory or a symlink), copy the worker's planning edits
    (its SUMMARY among them) from the checkout's copy back to the project, never over a newer
    file."""
    from ..workspace.worktrees import copy_planning, planning_mode

    if planning_mode(root) not in {"untracked", "symlink"}:
        return 0
    src, dst = worktree / ".gsd", root / ".gsd"
    if not src.is_dir() or src.is_symlink():
        return 0
    return copy_planning(src, dst, overwrite="if-older")
