"""One checkout per milestone: ``.gsd-parallel/<MID>`` on ``gsd-parallel/<MID>`` (:mod:`.layout`).

Why one module: creating, refreshing, removing and auditing a milestone checkout all apply the same
layout and the same planning-file rules (what is runtime, what is copied, what is never
overwritten); apart, each half would need the other's private rules.

Safety rules, because a worktree holds a worker's unmerged work:

- A worktree is reused when it is registered on the right branch. A reused branch is
  fast-forwarded only when it is a strict ancestor of the integration branch (and, when
  checked out, only when its tracked files are clean). A diverged branch is never reset.
- We refuse, with one line, an unborn repository, a detached HEAD in the main checkout, a
  missing integration branch, and a milestone branch checked out in another worktree.
- ``/.gsd-parallel/``, ``.gsd/parallel/`` and GSD's runtime files are ignored through
  ``info/exclude`` of the common git dir; the user's ``.gitignore`` is never edited.
- A worktree is removed only when it holds nothing that would be lost.

Planning files. The real GSD needs a real ``.gsd`` directory in its checkout (its own
``gsd.db`` lives there; a shared one would make every checkout the same GSD project):

- ``.gsd`` tracked in git: the checkout has it; nothing to do.
- ``.gsd`` untracked (a real directory, or a symlink to ``~/.gsd/projects/<hash>/``): an
  additive copy of the planning files (everything but the runtime entries in
  :data:`RUNTIME_ENTRIES`) that never overwrites a file already in the checkout, repeated on
  every ``ensure_worktree`` so new planning files arrive. The copy's edits stay in the
  checkout; the merge brings them home (:func:`..merge.steps.copy_back_planning`).
"""

from __future__ import annotations

import filecmp
import fnmatch
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import GitError, GsdParallelError, OperationFailed, ProjectError
from ..milestone_ids import validate_milestone_id
from .git import (
    Git,
    GitCommandError,
    WorktreeInfo,
    add_exclude,
    repo_root,
    same_path,
)
from .layout import BRANCH_PREFIX, CHECKOUTS_DIRNAME, branch_name, checkout_path, checkouts_dir

if TYPE_CHECKING:
    from ..models import Project

EXCLUDE_PATTERNS = (".gsd/worktrees/", ".gsd/parallel/")
"""Added to ``<common git dir>/info/exclude`` by :func:`ensure_excludes`."""

RUNTIME_ENTRIES = (
    "worktrees",
    "parallel",
    "activity",
    "runtime",
    "journal",
    "gsd.db*",
    "STATE.md",
    "auto*.lock",
    "metrics.json",
    "orchestrator.json",
)
"""Top-level ``.gsd`` entries (fnmatch patterns) that are runtime state, never planning."""

PlanningMode = Literal["tracked", "symlink", "untracked", "absent"]


@dataclass(frozen=True)
class WorktreeResult:
    path: Path
    """``<root>/.gsd/worktrees/<MID>`` as the user sees it (through a ``.gsd`` symlink)."""
    branch: str
    created: bool
    """True when the worktree was added now (the branch may have existed before)."""
    fast_forwarded: bool
    """True when the milestone branch was moved forward to the integration branch."""
    planning: str = "checkout"
    """How the worktree sees ``.gsd``: ``checkout``, ``symlink``, ``copied`` or ``none``."""


@dataclass(frozen=True)
class MilestoneWorktree:
    """What doctor needs to know about one milestone's worktree and branch."""

    name: str
    """Directory or branch suffix as found; may be an invalid milestone ID."""
    path: Path
    """Where the worktree is: the registered path, else ``<root>/.gsd/worktrees/<name>``."""
    branch: str
    dir_exists: bool
    registered: bool
    branch_exists: bool
    checked_out: str | None
    """Branch the registered worktree has checked out (None: detached or unregistered)."""
    head: str | None
    locked: bool
    problems: tuple[str, ...]


class DirtyWorktreeError(GitError):
    """The worktree holds uncommitted work; ``files`` lists it."""

    def __init__(self, path: Path, files: list[str]):
        self.path = path
        self.files = files
        shown = ", ".join(files[:5]) + (f" (+{len(files) - 5} more)" if len(files) > 5 else "")
        super().__init__(
            f"worktree {path} has uncommitted changes in {len(files)} file(s): {shown}; "
            "commit or discard them first"
        )


# --------------------------------------------------------------------------- names


worktree_path = checkout_path
"""``<root>/.gsd-parallel/<MID>`` (see :mod:`.layout`)."""


def _worktrees_dir(root: Path) -> Path:
    """``<root>/.gsd-parallel``, refusing a ``.gsd`` symlink whose target is gone."""
    gsd = root / ".gsd"
    if gsd.is_symlink() and not gsd.exists():
        raise ProjectError(f"{gsd} is a symlink to a missing directory: {os.readlink(gsd)}")
    return checkouts_dir(root)


def _is_runtime(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in RUNTIME_ENTRIES)


def planning_mode(project_root: Path | str) -> PlanningMode:
    """How the project keeps ``.gsd``: tracked, an untracked symlink or directory, or absent."""
    root = Path(os.path.abspath(project_root))
    gsd = root / ".gsd"
    if not os.path.lexists(gsd):
        return "absent"
    if Git(root).tracked_files(".gsd"):
        return "tracked"
    if gsd.is_symlink():
        return "symlink"
    return "untracked" if gsd.is_dir() else "absent"


def ensure_excludes(project_root: Path | str) -> list[str]:
    """Ignore our checkouts and GSD's runtime files via ``info/exclude``; return additions."""
    from ..gsd.checkout import RUNTIME_EXCLUDES

    return add_exclude(project_root, (*EXCLUDE_PATTERNS, *RUNTIME_EXCLUDES))


# --------------------------------------------------------------------------- ensure


def ensure_worktree(project_root: Path | str, milestone_id: str, integration_branch: str) -> WorktreeResult:
    """Create or reuse the milestone's worktree, starting from *integration_branch*.

    Raises GitError / ProjectError (something the user must fix) or OperationFailed
    (a git command or the filesystem failed). Either way no worktree is half-made into
    something a worker should run in: the caller must not start a worker (fail closed).
    """
    mid = validate_milestone_id(milestone_id)
    root = Path(os.path.abspath(project_root))
    top = repo_root(root)
    if not same_path(top, root):
        raise ProjectError(f"{root} is not the top of its git repository ({top})")
    g = Git(root)
    head_branch = g.current_branch()
    if g.is_unborn():
        raise GitError(
            f"repository has no commits yet: commit something on {head_branch or integration_branch} first"
        )
    if head_branch is None:
        raise GitError(f"the main checkout is on a detached HEAD: check out {integration_branch} first")
    integ_sha = g.branch_sha(integration_branch)
    if integ_sha is None:
        raise GitError(f"integration branch {integration_branch} does not exist")

    ensure_excludes(root)
    branch = branch_name(mid)
    path = worktree_path(root, mid)
    try:
        real = _worktrees_dir(root) / mid
        real.parent.mkdir(parents=True, exist_ok=True)
        created, ff = _ensure_registered(g, real, path, branch, integ_sha)
        planning = _share_planning(g, root, real)
    except OSError as exc:
        raise OperationFailed(f"cannot prepare the worktree for {mid} at {path}: {exc}") from exc
    return WorktreeResult(path, branch, created, ff, planning)


def _ensure_registered(g: Git, real: Path, path: Path, branch: str, integ_sha: str) -> tuple[bool, bool]:
    """Make *real* a registered worktree on *branch*; return (created, fast_forwarded)."""
    wt = g.find_worktree(real)
    if wt is not None and not real.exists():
        if wt.locked:
            raise GitError(f"worktree {path} is missing but locked; run `git worktree unlock {wt.path}`")
        g.run("worktree", "prune")
        wt = g.find_worktree(real)
    if wt is not None:
        if wt.branch != branch:
            where = f"branch {wt.branch}" if wt.branch else "a detached HEAD"
            raise GitError(f"worktree {path} is on {where}, not {branch}: check out {branch} there")
        return False, _fast_forward_checkout(Git(real), integ_sha)

    if os.path.lexists(real) and (not real.is_dir() or real.is_symlink() or any(real.iterdir())):
        raise GitError(f"{path} exists but is not a worktree of this repository: move it away")
    ff = False
    if g.branch_exists(branch):
        where_path = g.branch_checked_out_at(branch)
        if where_path is not None:
            raise GitError(
                f"branch {branch} is checked out at {where_path}; "
                "remove that worktree or check out another branch there"
            )
        ff = _fast_forward_ref(g, branch, integ_sha)
        g.run("worktree", "add", "--quiet", str(real), branch)
    else:
        g.run("worktree", "add", "--quiet", "-b", branch, str(real), integ_sha)
    return True, ff


def _fast_forward_ref(g: Git, branch: str, integ_sha: str) -> bool:
    """Move a branch nobody has checked out to *integ_sha* when it is a strict ancestor."""
    old = g.branch_sha(branch)
    if old is None or old == integ_sha or not g.is_ancestor(old, integ_sha):
        return False
    # The old value makes update-ref refuse if the branch moved since we looked.
    g.run(
        "update-ref",
        "-m",
        "gsd-parallel: fast-forward to the integration branch",
        f"refs/heads/{branch}",
        integ_sha,
        old,
    )
    return True


def _fast_forward_checkout(wg: Git, integ_sha: str) -> bool:
    """Fast-forward a reused worktree whose tracked files are clean; never touch a diverged one."""
    old = wg.rev_parse("HEAD")
    if old is None or old == integ_sha or not wg.is_ancestor(old, integ_sha):
        return False
    if wg.status_porcelain(untracked="no"):
        return False
    wg.run("merge", "--ff-only", "--quiet", integ_sha)
    return True


# --------------------------------------------------------------------------- planning files


def _share_planning(g: Git, root: Path, real: Path) -> str:
    """Give the checkout at *real* a real ``.gsd`` of its own (see the module doc)."""
    mode = planning_mode(root)
    if mode == "symlink" and not g.is_ignored(".gsd"):
        add_exclude(root, ["/.gsd"])  # the absolute link, or its copy, must never be committed
    if mode in {"symlink", "untracked"}:
        wt_gsd = real / ".gsd"
        if wt_gsd.is_symlink():  # an older layout linked the shared .gsd: GSD needs its own
            wt_gsd.unlink()
        copy_planning(root / ".gsd", wt_gsd, overwrite="never")
        return "copied"
    return "checkout" if mode == "tracked" else "none"


PlanningOverwrite = Literal["never", "if-older"]


def copy_planning(src: Path, dst: Path, *, overwrite: PlanningOverwrite) -> int:
    """Copy the planning files of the ``.gsd`` at *src* into *dst*; return how many were written.

    One walk both ways. Left out: the top-level :data:`RUNTIME_ENTRIES`, anything under a
    *dst* path that is not a directory, a file whose *dst* path is a directory, and the
    insides of symlinked directories. ``"never"`` seeds a worktree: what *dst* has (even a
    dangling link) is kept; symlinks are copied as links. ``"if-older"`` brings a worktree's
    edits home: a *dst* file is replaced (atomically) only when older than the source and
    different; symlinks are skipped (a link made in a worktree is no planning edit).
    """
    if overwrite == "never":
        return sum(_copy_if_absent(s, d) for s, d in _planning_pairs(src, dst, links=True))
    return sum(_copy_if_older(s, d) for s, d in _planning_pairs(src, dst, links=False))


def _planning_pairs(src: Path, dst: Path, *, links: bool) -> Iterator[tuple[Path, Path]]:
    """(source, destination) for each planning file (and, with *links*, symlink) under *src*."""
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        rel = here.relative_to(src)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if not _is_runtime(d)]
            filenames = [f for f in filenames if not _is_runtime(f)]
        target_dir = dst / rel
        if os.path.lexists(target_dir) and not target_dir.is_dir():
            dirnames[:] = []  # a file where the directory would go: leave this subtree
            continue
        linked = [d for d in dirnames if (here / d).is_symlink()]  # never descended into
        dirnames[:] = [d for d in dirnames if d not in linked]
        for name in [*filenames, *linked]:
            s, d = here / name, target_dir / name
            wanted = links if s.is_symlink() else s.is_file()  # no fifos, sockets, devices
            if wanted and not d.is_dir():  # a directory where the file would go: leave it
                yield s, d


def _copy_if_absent(s: Path, d: Path) -> bool:
    """Copy *s* (a link as a link) to *d* unless anything is there, even a dangling link."""
    if os.path.lexists(d):
        return False
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        if s.is_symlink():
            os.symlink(os.readlink(s), d)
        else:
            with open(s, "rb") as fi, open(d, "xb") as fo:  # "x": never overwrite
                shutil.copyfileobj(fi, fo)
            shutil.copystat(s, d)
    except FileExistsError:
        return False
    return True


def _copy_if_older(s: Path, d: Path) -> bool:
    """Replace *d* by *s* atomically unless *d* is as new as *s* or holds the same bytes."""
    if d.exists() and (d.stat().st_mtime >= s.stat().st_mtime or d.read_bytes() == s.read_bytes()):
        return False
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(f".{d.name}.gsd-parallel.tmp")
    shutil.copy2(s, tmp)
    os.replace(tmp, d)
    return True


def _own_planning_entry(rel: str, real: Path, root_gsd: Path) -> bool:
    """True when an untracked path in the worktree is our planning link/copy or runtime state."""
    if rel.rstrip("/") == ".gsd":
        wt_gsd = real / ".gsd"
        return wt_gsd.is_symlink() and same_path(wt_gsd, root_gsd)
    if not rel.startswith(".gsd/"):
        return False
    inner = rel[len(".gsd/") :]
    if _is_runtime(inner.split("/", 1)[0]):
        return True
    src, copy = root_gsd / inner, real / rel
    return src.is_file() and copy.is_file() and filecmp.cmp(src, copy, shallow=False)


# --------------------------------------------------------------------------- remove


def remove_worktree(
    project_root: Path | str,
    mid: str,
    *,
    delete_branch: bool,
    force_branch: bool = False,
    integration_branch: str | None = None,
) -> bool:
    """Remove the milestone's worktree if it holds nothing to lose; return True if one was removed.

    Raises DirtyWorktreeError (listing the files) when there are tracked changes or
    untracked, non-ignored files other than our planning link/copy and runtime state.
    With *delete_branch* the branch is deleted too, only when merged: into
    *integration_branch* when given, else ``git branch -d`` semantics (upstream or HEAD).
    A squash-merged branch is not "merged" to git; pass *force_branch* once the caller has
    verified its work landed.
    """
    validate_milestone_id(mid)
    root = Path(os.path.abspath(project_root))
    g = Git(root)
    path = worktree_path(root, mid)
    branch = branch_name(mid)
    real = _worktrees_dir(root) / mid
    wt = g.find_worktree(real)
    removed = False
    if wt is not None and not real.exists():
        g.run("worktree", "prune")
        removed = True
    elif wt is not None:
        if wt.locked:
            raise GitError(f"worktree {path} is locked; run `git worktree unlock {wt.path}` first")
        wg = Git(real)
        root_gsd = root / ".gsd"
        dirty = [
            p
            for xy, p in wg.status_porcelain(untracked="all")
            if not (xy == "??" and _own_planning_entry(p, real, root_gsd))
        ]
        if dirty:
            raise DirtyWorktreeError(path, dirty)
        wt_gsd = real / ".gsd"
        if wt_gsd.is_symlink() and not wg.tracked_files(".gsd"):
            wt_gsd.unlink()  # our link to the shared .gsd: removal must not go near it
        # --force: what is left untracked is our planning copy or runtime state (checked above).
        g.run("worktree", "remove", "--force", str(real))
        removed = True

    if delete_branch and g.branch_exists(branch):
        where = g.branch_checked_out_at(branch)
        if where is not None:
            raise GitError(f"branch {branch} is checked out at {where}; it was kept")
        if force_branch:
            g.run("branch", "-D", branch)
        elif integration_branch is not None:
            if not g.is_ancestor(f"refs/heads/{branch}", f"refs/heads/{integration_branch}"):
                raise GitError(f"branch {branch} is not merged into {integration_branch}; it was kept")
            g.run("branch", "-D", branch)
        else:
            try:
                g.run("branch", "-d", branch)
            except GitCommandError:
                raise GitError(f"branch {branch} is not fully merged; it was kept") from None
    return removed


# --------------------------------------------------------------------------- doctor


def list_milestone_worktrees(project_root: Path | str) -> list[MilestoneWorktree]:
    """Every milestone worktree directory, registration and ``gsd-parallel/*`` branch, with problems.

    Doctor decides what to do; this only reports facts and inconsistencies.
    """
    root = Path(os.path.abspath(project_root))
    g = Git(root)
    wt_dir = _worktrees_dir(root)
    registered: dict[str, WorktreeInfo] = {}
    for info in g.worktree_list():
        if info.bare:
            continue
        if same_path(info.path.parent, wt_dir):
            registered[info.path.name] = info
        elif info.branch and info.branch.startswith(BRANCH_PREFIX):
            registered.setdefault(info.branch.removeprefix(BRANCH_PREFIX), info)
    dirs = {p.name for p in wt_dir.iterdir() if p.is_dir()} if wt_dir.is_dir() else set()
    branches = {b.removeprefix(BRANCH_PREFIX) for b in g.list_branches(BRANCH_PREFIX)}

    result: list[MilestoneWorktree] = []
    for name in sorted(registered.keys() | dirs | branches):
        wt = registered.get(name)
        branch = f"{BRANCH_PREFIX}{name}"
        logical = wt_dir / name
        path = wt.path if wt is not None else logical
        dir_exists = path.is_dir()
        problems: list[str] = []
        try:
            validate_milestone_id(name)
        except ProjectError:
            problems.append(f"{name!r} is not a valid milestone ID")
        if wt is None and dir_exists:
            problems.append(f"{logical} is not a registered git worktree")
        if wt is not None and not dir_exists:
            problems.append(f"registered worktree {path} is missing (git worktree prune)")
        if wt is not None and wt.branch != branch:
            where = f"branch {wt.branch}" if wt.branch else "a detached HEAD"
            problems.append(f"worktree {path} is on {where}, not {branch}")
        if wt is not None and not same_path(wt.path.parent, wt_dir):
            problems.append(f"{branch} is checked out outside {CHECKOUTS_DIRNAME}, at {wt.path}")
        if name in branches and wt is None:
            problems.append(f"branch {branch} has no worktree")
        result.append(
            MilestoneWorktree(
                name=name,
                path=path,
                branch=branch,
                dir_exists=dir_exists,
                registered=wt is not None,
                branch_exists=name in branches,
                checked_out=wt.branch if wt is not None else None,
                head=wt.head if wt is not None else None,
                locked=wt.locked if wt is not None else False,
                problems=tuple(problems),
            )
        )
    return result


# --------------------------------------------------------------------------- planning files


def uncommitted_plans(project_root: Path | str, project: Project) -> dict[str, str]:
    """Milestones whose planning files in the root checkout are not on the integration branch
    their checkout starts from (a new milestone, an edited plan, not committed yet).

    A worker started there would run without them (or on the old plan), fail and be restarted
    for nothing: such a milestone is held back with what to commit. Only when ``.gsd`` is
    tracked: an untracked or symlinked ``.gsd`` is copied into the checkout, plans included.
    """
    root = Path(project_root)
    try:
        if planning_mode(root) != "tracked":
            return {}
        g = Git(root)
        changed = [p for _xy, p in g.status_porcelain([".gsd/milestones"], untracked="all")]
        here = g.current_branch()
        targets = {m.integration_branch or project.integration_branch for m in project.milestones}
        against: dict[str, list[str]] = {}
        for target in targets:
            if target == here or g.branch_sha(target) is None:
                against[target] = changed
                continue
            diff = g.run("diff", "--name-only", "-z", "--no-renames", target, "--", ".gsd/milestones")
            against[target] = [*changed, *(p for p in diff.split("\0") if p)]
    except GsdParallelError:
        return {}
    held: dict[str, str] = {}
    for m in project.milestones:
        if m.complete:
            continue
        target = m.integration_branch or project.integration_branch
        rel = f".gsd/milestones/{m.path.name}"
        files = sorted(
            {
                p
                for p in against.get(target, [])
                if (p == rel or p.startswith(rel + "/"))
                and not p.lower().endswith(("-continue.md", "/continue.md"))
            }
        )
        if files:
            shown = ", ".join(f.removeprefix(rel + "/") for f in files[:3])
            more = f" and {len(files) - 3} more" if len(files) > 3 else ""
            held[m.id] = (
                f"Blocked by uncommitted plan files ({shown}{more}): its checkout starts from "
                f"{target}, which lacks them. Commit {rel} first."
            )
    return held
