"""The isolation guard: notice a worker that reaches outside its own checkout and branch.

The layout (:mod:`..workspace.layout`, :mod:`..gsd.checkout`) keeps the real GSD in its checkout; this is
the alarm for when something still goes wrong (a GSD upgrade, an agent running ``git``
itself). A worker breaches isolation when:

- its checkout's HEAD no longer names its own branch (it checked out another one there);
- its process, or one of its direct children (GSD's agent process), changed its working
  directory out of the checkout (GSD's ``escapeStaleWorktree`` does exactly that);
- a branch other than the milestone branches, or ``refs/stash``, moved to a commit that
  carries the worker's own work (its branch tip is now in that ref's history and was not
  before), or a stash was made on its branch (``WIP on gsd-parallel/<MID>: …``).

A user committing on ``main``, or our own squash merges, never match the last rule: a
squash commit does not contain the branch's commits, and a user's commit does not contain
work the user never saw. Checks cost one ``git for-each-ref`` and a few file reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..models import WorkerHandle
from ..workspace.git import Git, GitCommandError
from ..workspace.layout import BRANCH_PREFIX, branch_ref

WATCHED_REFS = ("refs/heads/", "refs/stash")


@dataclass(frozen=True)
class WatchedWorker:
    mid: str
    checkout: Path
    handle: WorkerHandle


@dataclass(frozen=True)
class Breach:
    mid: str
    what: str
    """One line for the user: what the worker did."""


def checkout_head(checkout: Path) -> str | None:
    """The content of the checkout's HEAD (``ref: refs/heads/…`` or a sha), read without git."""
    try:
        dot_git = checkout / ".git"
        if dot_git.is_file():
            line = dot_git.read_text(encoding="utf-8").strip()
            gitdir = Path(line.removeprefix("gitdir:").strip())
            if not gitdir.is_absolute():
                gitdir = checkout / gitdir
        else:
            gitdir = dot_git
        return (gitdir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _inside(path: str, checkout: Path) -> bool:
    try:
        real, top = os.path.realpath(path), os.path.realpath(checkout)
    except OSError:
        return True
    return real == top or real.startswith(top + os.sep)


def _escaped_cwd(handle: WorkerHandle, checkout: Path) -> str | None:
    """A working directory outside the checkout, of the worker or a direct child; else None."""
    try:
        proc = psutil.Process(handle.pid)
        if abs(proc.create_time() - handle.create_time) > 0.01:
            return None
        procs = [proc, *proc.children(recursive=False)]
    except psutil.Error:
        return None
    for p in procs:
        try:
            cwd = p.cwd()
        except psutil.Error:
            continue
        if cwd and not _inside(cwd, checkout):
            return cwd
    return None


class IsolationGuard:
    """Remembers the repository's refs between checks; :meth:`check` returns new breaches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.g = Git(root)
        self.refs: dict[str, str] | None = None

    def snapshot(self) -> dict[str, str]:
        try:
            out = self.g.run("for-each-ref", "--format=%(refname) %(objectname)", *WATCHED_REFS)
        except GitCommandError:
            return dict(self.refs or {})
        refs = {}
        for line in out.splitlines():
            name, _, sha = line.partition(" ")
            if not name.startswith(f"refs/heads/{BRANCH_PREFIX}"):
                refs[name] = sha
        return refs

    def rebase(self) -> None:
        """Accept the refs as they are now (after our own merges moved them)."""
        self.refs = self.snapshot()

    def check(self, workers: Iterable[WatchedWorker]) -> list[Breach]:
        workers = list(workers)
        before = self.refs
        after = self.snapshot()
        self.refs = after
        breaches: list[Breach] = []
        for w in workers:
            head = checkout_head(w.checkout)
            if head is not None and head != f"ref: {branch_ref(w.mid)}":
                shown = head.removeprefix("ref: refs/heads/")
                breaches.append(Breach(w.mid, f"switched its checkout {w.checkout} to {shown}"))
                continue
            cwd = _escaped_cwd(w.handle, w.checkout)
            if cwd is not None:
                breaches.append(Breach(w.mid, f"left its checkout {w.checkout} for {cwd}"))
        if before is None:
            return breaches
        moved = {n: (before.get(n), sha) for n, sha in after.items() if before.get(n) != sha}
        for name, (old, new) in moved.items():
            for w in workers:
                if any(b.mid == w.mid for b in breaches):
                    continue
                if self._carries_work_of(w.mid, name, old, new, before):
                    shown = name.removeprefix("refs/heads/")
                    was = old[:10] if old else "nothing"
                    breaches.append(Breach(w.mid, f"moved {shown} ({was} -> {new[:10]})"))
        return breaches

    def _carries_work_of(self, mid: str, ref: str, old: str | None, new: str, before: dict[str, str]) -> bool:
        if ref == "refs/stash":
            try:
                subject = self.g.run("log", "-1", "--format=%s", new)
            except GitCommandError:
                return False
            branch = f"{BRANCH_PREFIX}{mid}:"
            return subject.startswith((f"WIP on {branch}", f"On {branch}"))
        tip = self.g.rev_parse(branch_ref(mid))
        if tip is None or not self.g.is_ancestor(tip, new):
            return False
        # Only work no other ref had before is the worker's (a branch made from main is not).
        return not any(self.g.is_ancestor(tip, sha) for sha in before.values())
