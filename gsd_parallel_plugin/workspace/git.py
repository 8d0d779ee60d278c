"""A thin, typed layer over ``sh.git``.

Every git call in the package goes through :class:`Git` so that it runs with the same
non-interactive environment (no prompts, no pager, C locale, no optional locks) and fails
with one readable line. Arguments are passed as a list to the git binary, never through a
shell, so a milestone ID or a path can never become a command.

Needs git >= 2.36 (``worktree list --porcelain -z``).

``sh`` (which pulls in asyncio) is imported on the first call that reads git's output:
probes whose exit code is the answer (``ok``) run git through :mod:`subprocess`, imported by
the first probe, and ``default_branch`` in a repository with a loose ``refs/heads/main``
starts no git at all, so read-only commands such as ``status`` start quickly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GitError, OperationFailed, ProjectError
from .layout import has_loose_branch

# What sh's ``_new_group=True`` does in the child (``setpgid(0, 0)``), for subprocess.
_NEW_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)

_SCRUBBED_ENV = (
    # Set by git when it runs a hook or an alias; inherited, they would point every
    # command at the wrong repository.
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
)


def git_env() -> dict[str, str]:
    """The environment for every git call: the caller's, made non-interactive."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        LC_ALL="C",
        LANGUAGE="C",
        GIT_OPTIONAL_LOCKS="0",
        GIT_MERGE_AUTOEDIT="no",
    )
    return env


class GitCommandError(OperationFailed):
    """A git command exited non-zero; ``str()`` names the command and git's first stderr line."""

    def __init__(self, args: Sequence[str], cwd: Path, exit_code: int, stderr: str, stdout: str):
        self.git_args = tuple(args)
        self.cwd = cwd
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout
        first = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
        if not first:
            first = next((ln.strip() for ln in stdout.splitlines() if ln.strip()), "")
        cmd = " ".join(["git", *self.git_args])
        super().__init__(f"`{cmd}` failed (exit {exit_code}) in {cwd}: {first or 'no output'}")


class Git:
    """Run git in one directory.

    ``run`` returns stdout without its trailing newline and raises
    :class:`GitCommandError`; ``ok`` is for probes whose exit code is the answer.
    """

    def __init__(self, cwd: Path | str, *, env: Mapping[str, str] | None = None):
        self.cwd = Path(cwd)
        if not self.cwd.is_dir():
            raise ProjectError(f"not a directory: {self.cwd}")
        self._extra = dict(env or {})
        self._env = {**git_env(), **self._extra}  # extra env, e.g. a scratch GIT_INDEX_FILE
        self._baked: Any = None

    def with_env(self, extra: Mapping[str, str]) -> Git:
        """The same directory with ``extra`` added to this one's environment (a scratch index
        on top of a scratch object directory, say)."""
        return Git(self.cwd, env={**self._extra, **extra})

    @property
    def _git(self) -> Any:
        """``sh.git`` baked for this directory, made on first use (see the module docstring)."""
        if self._baked is None:
            import sh

            self._baked = sh.git.bake(
                "--no-pager",
                _tty_out=False,
                _cwd=str(self.cwd),
                _env=self._env,
                _decode_errors="surrogateescape",
                # its own process group: a terminal's Ctrl-C (sent to the foreground group)
                # must not kill a git that a foreground supervisor is in the middle of running
                _new_group=True,
            )
        return self._baked

    def run(self, *args: str, input: str | None = None) -> str:
        """Run ``git <args>`` (``input`` on stdin); stdout with trailing newlines removed."""
        import sh

        try:
            out = self._git(*args, _in=input) if input is not None else self._git(*args)
        except sh.ErrorReturnCode as exc:
            raise GitCommandError(
                args,
                self.cwd,
                exc.exit_code,
                _decode(exc.stderr),
                _decode(exc.stdout),
            ) from None
        return str(out).rstrip("\n")

    def ok(self, *args: str) -> bool:
        """True when ``git <args>`` exits 0 (any other exit is False, never an exception).

        Through :mod:`subprocess`, in its own process group like every call: the answer
        needs no output, and no ``sh`` import.
        """
        import subprocess  # here, not at the top: see the module docstring

        try:
            done = subprocess.run(
                ["git", "--no-pager", *args],
                cwd=self.cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                **_NEW_GROUP,
            )
        except FileNotFoundError:
            self._git  # noqa: B018 - no git on PATH: sh's CommandNotFound, as for every call
            raise
        return done.returncode == 0

    # -- refs -------------------------------------------------------------------------

    def current_branch(self) -> str | None:
        """Short name of the branch checked out here; None on a detached HEAD.

        An unborn branch (no commits yet) still has a name.
        """
        try:
            ref = self.run("symbolic-ref", "--quiet", "HEAD")
        except GitCommandError as exc:
            if exc.exit_code == 1:
                return None
            raise
        return ref.removeprefix("refs/heads/")

    def is_unborn(self) -> bool:
        """True when HEAD names a branch that has no commit yet."""
        return not self.ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}")

    def rev_parse(self, ref: str) -> str | None:
        """The full object name of *ref*, or None when it does not resolve."""
        try:
            out = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", ref)
        except GitCommandError:
            return None
        return out or None

    def branch_sha(self, name: str) -> str | None:
        """The commit ``refs/heads/<name>`` points at (unambiguous even if a tag shares it)."""
        return self.rev_parse(f"refs/heads/{name}^{{commit}}")

    def branch_exists(self, name: str) -> bool:
        """True when ``refs/heads/<name>`` exists."""
        return self.ok("show-ref", "--verify", "--quiet", f"refs/heads/{name}")

    def list_branches(self, prefix: str = "") -> list[str]:
        """Local branch names, optionally only those under *prefix* (e.g. ``gsd-parallel/``)."""
        out = self.run("for-each-ref", "--format=%(refname)", f"refs/heads/{prefix}")
        return [ln.removeprefix("refs/heads/") for ln in out.splitlines() if ln]

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when commit *a* is an ancestor of (or equal to) *b*."""
        return self.ok("merge-base", "--is-ancestor", a, b)

    def commits_ahead(self, base: str, branch: str) -> int:
        """Number of commits on *branch* that are not on *base*."""
        return int(self.run("rev-list", "--count", f"{base}..{branch}", "--") or "0")

    def common_dir(self) -> Path:
        """The repository's shared git directory (the same for every worktree)."""
        return Path(self.run("rev-parse", "--path-format=absolute", "--git-common-dir"))

    # -- worktrees --------------------------------------------------------------------

    def worktree_list(self) -> list[WorktreeInfo]:
        """All worktrees of the repository, the main one first."""
        return _parse_worktree_list(self.run("worktree", "list", "--porcelain", "-z"))

    def find_worktree(self, path: Path) -> WorktreeInfo | None:
        """The registered worktree at *path* (symlinks resolved), if any."""
        return next((wt for wt in self.worktree_list() if same_path(wt.path, path)), None)

    def branch_checked_out_at(self, branch: str) -> Path | None:
        """Where *branch* is checked out, if it is checked out in any worktree."""
        return next((wt.path for wt in self.worktree_list() if wt.branch == branch), None)

    # -- working tree -----------------------------------------------------------------

    def status_porcelain(
        self, paths: Iterable[str] | None = None, *, untracked: str = "normal"
    ) -> list[tuple[str, str]]:
        """``git status --porcelain -z`` as ``(XY, path)`` pairs.

        For renames and copies the path is the new name. *untracked* is passed to
        ``--untracked-files`` (``no``, ``normal`` or ``all``); ignored files never appear.
        """
        args = ["status", "--porcelain=v1", "-z", f"--untracked-files={untracked}"]
        if paths is not None:
            args += ["--", *paths]
        fields = split_z(self.run(*args))
        entries: list[tuple[str, str]] = []
        i = 0
        while i < len(fields):
            xy, path = fields[i][:2], fields[i][3:]
            entries.append((xy, path))
            i += 2 if ("R" in xy or "C" in xy) else 1  # a rename's old path follows
        return entries

    def is_ignored(self, path: str) -> bool:
        """True when git would ignore *path* (relative to this directory)."""
        return self.ok("check-ignore", "--quiet", "--no-index", "--", path)

    def tracked_files(self, path: str) -> list[str]:
        """Paths in the index at or under *path*."""
        return split_z(self.run("ls-files", "-z", "--cached", "--", path))


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


def split_z(out: str) -> list[str]:
    """git's ``-z`` output (NUL-terminated paths) as a list, the one splitter for all of it.

    Empty fields are dropped: the terminator after the last path leaves one, and git never
    writes an empty path (a status entry and a rename's old path are both non-empty).
    """
    return [p for p in out.split("\0") if p]


def skip_worktree(g: Git, paths: Sequence[str]) -> list[str]:
    """Mark ``paths`` skip-worktree where the index tracks them (others are left out, as
    ``update-index`` would refuse them); returns the paths marked, sorted."""
    tracked = sorted(set(split_z(g.run("ls-files", "-z", "--", *paths)))) if paths else []
    if tracked:
        g.run("update-index", "--skip-worktree", "--", *tracked)
    return tracked


def merge_tree(g: Git, ours: str, theirs: str) -> tuple[str, list[str]]:
    """``git merge-tree --write-tree`` (git >= 2.38): the result tree and the conflicted paths
    (empty when it merges cleanly). Nothing is checked out and no ref moves."""
    args = ("merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", ours, theirs)
    try:
        out = g.run(*args)
    except GitCommandError as exc:
        if exc.exit_code != 1:
            raise
        out = exc.stdout
    fields = split_z(out)
    return fields[0], list(dict.fromkeys(fields[1:]))


# --------------------------------------------------------------------------- scratch objects


class ScratchObjects:
    """A throwaway object directory for objects nothing will ever reference (the radar's
    snapshots, ``merge-tree`` results, the preview's stacked commits).

    Git calls made with :attr:`env` write new objects into a temporary directory
    (``GIT_OBJECT_DIRECTORY``) and still read every object of the repository (it is their
    ``GIT_ALTERNATE_OBJECT_DIRECTORIES``), so the repository gains no unreachable objects
    that would pile up until ``git gc``. :meth:`close` deletes the directory; a forgotten
    one goes when the object is collected or the interpreter exits.
    """

    def __init__(self, repo: Git, *, parent: Path | None = None, prefix: str = "gsd-parallel-objects-"):
        import shutil
        import tempfile
        import weakref

        where = repo.run("rev-parse", "--path-format=absolute", "--git-path", "objects")
        self.repository_objects = Path(where)
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.env: dict[str, str] = {
            "GIT_OBJECT_DIRECTORY": str(self.path),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": _alternate(self.repository_objects),
        }
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def __enter__(self) -> ScratchObjects:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the directory and every object in it."""
        self._finalizer()

    def size(self) -> int:
        """Bytes the objects written so far take (a walk of the directory)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.path):
            for name in files:
                with suppress(OSError):  # a file git just renamed or pruned
                    total += os.stat(os.path.join(dirpath, name)).st_size
        return total


def _alternate(path: Path) -> str:
    """``path`` as one entry of ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` (``:``-separated; git
    reads a C-quoted entry for a path that holds a colon or starts with a quote)."""
    text = str(path)
    if ":" not in text and not text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- worktree list


@dataclass(frozen=True)
class WorktreeInfo:
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None
    """Commit checked out; None for an unborn branch or a bare repository."""
    branch: str | None
    """Short branch name; None when detached (or bare)."""
    detached: bool
    locked: bool
    prunable: bool
    bare: bool = False
    lock_reason: str | None = None
    prunable_reason: str | None = None


def _parse_worktree_list(out: str) -> list[WorktreeInfo]:
    """Parse ``worktree list --porcelain -z``: NUL-ended attributes, an empty one ends a record."""
    result: list[WorktreeInfo] = []
    record: dict[str, str | None] = {}

    def flush() -> None:
        if record.get("worktree"):
            head = record.get("HEAD")
            branch = record.get("branch")
            result.append(
                WorktreeInfo(
                    path=Path(record["worktree"] or ""),
                    head=None if not head or set(head) == {"0"} else head,
                    branch=branch.removeprefix("refs/heads/") if branch else None,
                    detached="detached" in record,
                    locked="locked" in record,
                    prunable="prunable" in record,
                    bare="bare" in record,
                    lock_reason=record.get("locked") or None,
                    prunable_reason=record.get("prunable") or None,
                )
            )
        record.clear()

    for field in out.split("\0"):
        if field == "":
            flush()
            continue
        key, sep, value = field.partition(" ")
        record[key] = value if sep else None
    flush()
    return result


def same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


# --------------------------------------------------------------------------- functions
# Module-level forms of the probes, for callers holding a path rather than a Git.


def repo_root(path: Path | str) -> Path:
    """The top of the working tree holding *path*; ProjectError when there is none."""
    p = Path(path)
    if not p.is_dir():
        raise ProjectError(f"not a git repository: {p}")
    try:
        top = Git(p).run("rev-parse", "--show-toplevel")
    except GitCommandError:
        raise ProjectError(f"not a git repository: {p}") from None
    if not top:  # inside the .git directory or a bare repository
        raise ProjectError(f"not a git repository: {p}")
    return Path(top)


def git_common_dir(cwd: Path | str) -> Path:
    """The repository's shared git directory (the same for every worktree)."""
    return Git(cwd).common_dir()


def main_worktree_root(cwd: Path | str) -> Path:
    """The main working tree of the repository holding *cwd* (even from a linked worktree)."""
    wts = Git(cwd).worktree_list()
    if not wts or wts[0].bare:
        raise ProjectError(f"not a git repository with a working tree: {cwd}")
    return wts[0].path


def current_branch(cwd: Path | str) -> str | None:
    """Branch checked out in *cwd*; None on a detached HEAD."""
    return Git(cwd).current_branch()


def is_unborn(cwd: Path | str) -> bool:
    """True when *cwd*'s HEAD names a branch with no commit yet."""
    return Git(cwd).is_unborn()


def rev_parse(cwd: Path | str, ref: str) -> str | None:
    """The full object name of *ref*, or None."""
    return Git(cwd).rev_parse(ref)


def branch_exists(cwd: Path | str, name: str) -> bool:
    """True when ``refs/heads/<name>`` exists."""
    return Git(cwd).branch_exists(name)


def default_branch(cwd: Path | str) -> str:
    """The repository's main branch: ``main``, else ``master``, else the main checkout's branch.

    Raises GitError when none applies (no main/master and a detached main checkout).
    """
    if has_loose_branch(Path(cwd), "main"):
        return "main"
    g = Git(cwd)
    for name in ("main", "master"):
        if g.branch_exists(name):
            return name
    wts = g.worktree_list()
    if wts and wts[0].branch:
        return wts[0].branch
    raise GitError(
        "cannot tell the main branch: there is no main or master branch and the main "
        "checkout is on a detached HEAD; set git.main_branch in your preferences"
    )


def worktree_list(cwd: Path | str) -> list[WorktreeInfo]:
    """All worktrees of the repository, the main one first."""
    return Git(cwd).worktree_list()


def branch_checked_out_at(cwd: Path | str, branch: str) -> Path | None:
    """Where *branch* is checked out, if anywhere."""
    return Git(cwd).branch_checked_out_at(branch)


def is_ancestor(cwd: Path | str, a: str, b: str) -> bool:
    """True when *a* is an ancestor of (or equal to) *b*."""
    return Git(cwd).is_ancestor(a, b)


def status_porcelain(
    cwd: Path | str, paths: Iterable[str] | None = None, *, untracked: str = "normal"
) -> list[tuple[str, str]]:
    """``(XY, path)`` pairs of ``git status --porcelain -z`` in *cwd*."""
    return Git(cwd).status_porcelain(paths, untracked=untracked)


def commits_ahead(cwd: Path | str, base: str, branch: str) -> int:
    """Number of commits on *branch* not on *base*."""
    return Git(cwd).commits_ahead(base, branch)


def add_exclude(repo: Path | str, patterns: Sequence[str]) -> list[str]:
    """Append *patterns* missing from ``<common git dir>/info/exclude``; return those added.

    Idempotent. The file is shared by every worktree of the repository, and unlike
    ``.gitignore`` it is never committed, so the user's files stay untouched.
    """
    exclude = git_common_dir(repo) / "info" / "exclude"
    try:
        text = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    present = {ln.strip() for ln in text.splitlines()}
    missing = [p for p in dict.fromkeys(patterns) if p not in present]
    if not missing:
        return []
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{p}\n" for p in missing)
    exclude.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = exclude.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644

    import tempfile  # not at the top: status never writes, and tempfile pulls in shutil

    fd, tmp = tempfile.mkstemp(prefix=".exclude.", dir=exclude.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, exclude)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return missing
