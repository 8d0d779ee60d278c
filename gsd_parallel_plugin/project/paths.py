"""Locating a GSD project and the files inside it, the way GSD resolves them.

GSD finds a milestone directory by ID prefix and a milestone file by
``<ID>-SUFFIX.md`` (case-insensitive), then a legacy ``<ID>-<anything>-SUFFIX.md``,
then a bare ``SUFFIX.md``.  The worker resolves its milestone with the same rules,
so we must too, or we would plan one file and GSD would run another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProjectError
from ..milestone_ids import MILESTONE_ID_RE

MILESTONE_DIR_RE = re.compile(r"^(M\d+(?:-[a-z0-9]{6})?)")
"""GSD's ID-from-directory-name prefix match (``M004-render-primitives`` → ``M004-render``)."""

SLICE_DIR_RE = re.compile(r"^(S\d+)(?=-|$)")

MAX_READ_BYTES = 2 * 1024 * 1024
"""Planning files larger than this are read only up to here (and the cut is reported)."""


def milestone_sort_key(milestone_id: str) -> tuple[int, str, str]:
    """Numeric order: by number, then unique suffix, then the ID itself (for stability)."""
    m = re.match(r"^M(\d+)(?:-([a-z0-9]{6}))?", milestone_id)
    if not m:
        return (10**12, "", milestone_id)
    return (int(m.group(1)), m.group(2) or "", milestone_id)


def gsd_home() -> Path:
    """GSD's global directory (``$GSD_HOME`` or ``~/.gsd``): never a project's ``.gsd``."""
    env = os.environ.get("GSD_HOME")
    return Path(env).expanduser() if env else Path.home() / ".gsd"


def find_project_root(start: Path | None = None) -> Path:
    """Walk up from ``start`` (default: cwd) to the first directory holding ``.gsd``.

    ``.gsd`` may be a symlink to a directory (followed).  GSD's global ``~/.gsd`` is
    skipped: running from somewhere under $HOME must not mistake $HOME for a project.
    """
    origin = Path.cwd() if start is None else Path(start)
    if start is not None:
        # A directory the user named (``--project``): a typo must not quietly fall back
        # to whatever project happens to enclose it.
        if not origin.exists():
            raise ProjectError(f"{origin} does not exist: give the project's directory")
        if not origin.is_dir():
            raise ProjectError(f"{origin} is not a directory: give the project's directory")
    try:
        here = origin.resolve()
    except OSError:
        here = origin.absolute()
    try:
        home = gsd_home().resolve()
    except OSError:
        home = None
    for directory in (here, *here.parents):
        candidate = directory / ".gsd"
        try:
            if not candidate.is_dir():
                continue
            if home is not None and candidate.resolve() == home:
                continue
        except OSError:
            continue
        return _owning_project(directory) or directory
    raise ProjectError(f"not a GSD project: no .gsd directory in {origin} or its parents")


def _owning_project(directory: Path) -> Path | None:
    """The project whose ``.gsd-parallel/<MID>`` checkout is ``directory``, if it is one.

    A milestone worktree checks out the project's ``.gsd`` too, so walking up from inside
    it stops there; commands run in it (say, ``merge M002`` after resolving a conflict the
    way the message says) must act on the project, not on a second store in the worktree.
    Read from the worktree's ``.git`` file (``gitdir: <main>/.git/worktrees/<name>``), no git
    call; holds when ``.gsd`` is a symlink too.
    """
    try:
        dot_git = directory / ".git"
        if not dot_git.is_file():
            return None
        line = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if not line.startswith("gitdir:"):
            return None
        gitdir = Path(line.removeprefix("gitdir:").strip())
        if not gitdir.is_absolute():
            gitdir = (directory / gitdir).resolve()
        if gitdir.parent.name != "worktrees":
            return None
        main_root = gitdir.parent.parent.parent  # <main>/.git/worktrees/<name> -> <main>
        candidate = main_root / ".gsd-parallel" / directory.name  # layout.CHECKOUTS_DIRNAME
        if MILESTONE_ID_RE.match(directory.name) and candidate.resolve() == directory.resolve():
            return main_root
    except OSError:
        return None
    return None


@dataclass
class Listing:
    """One directory's entries, listed once: regular files and subdirectories by name."""

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    error: str | None = None
    _upper: dict[str, str] | None = None

    def has_file(self, name: str) -> bool:
        return name.upper() in self.upper_index()

    def upper_index(self) -> dict[str, str]:
        if self._upper is None:
            index: dict[str, str] = {}
            for name in sorted(self.files):
                index.setdefault(name.upper(), name)
            self._upper = index
        return self._upper


def list_dir(path: Path) -> Listing:
    """List ``path`` once; errors (permissions, vanished) are returned, never raised."""
    listing = Listing()
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_dir():
                        listing.dirs.append(entry.name)
                    elif entry.is_file():
                        listing.files.append(entry.name)
                except OSError:
                    continue
    except FileNotFoundError:
        listing.error = "directory not found"
    except NotADirectoryError:
        listing.error = "not a directory"
    except PermissionError:
        listing.error = "cannot list directory (permission denied)"
    except OSError as exc:
        listing.error = f"cannot list directory ({exc.strerror or exc})"
    return listing


def resolve_file(listing: Listing, item_id: str, suffix: str, ext: str = "md") -> str | None:
    """GSD's file lookup: ``ID-SUFFIX.ext``, else ``ID-*-SUFFIX.ext``, else ``SUFFIX.ext``.

    All comparisons are case-insensitive, as in GSD.  Returns the name as on disk.
    """
    index = listing.upper_index()
    direct = index.get(f"{item_id}-{suffix}.{ext}".upper())
    if direct is not None:
        return direct
    head = f"{item_id}-".upper()
    tail = f"-{suffix}.{ext}".upper()
    legacy = [
        name
        for upper, name in index.items()
        if upper.startswith(head) and upper.endswith(tail) and len(upper) > len(head) + len(tail)
    ]
    if legacy:
        return sorted(legacy)[0]
    return index.get(f"{suffix}.{ext}".upper())


def resolve_dir(listing: Listing, item_id: str) -> str | None:
    """GSD's directory lookup: exact ``ID`` first, then the first ``ID-…`` (sorted)."""
    if item_id in listing.dirs:
        return item_id
    prefixed = sorted(d for d in listing.dirs if d.startswith(item_id + "-"))
    return prefixed[0] if prefixed else None


def rel_path(root: Path, path: Path) -> str:
    """``path`` relative to the project root, for messages (falls back to the full path)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass
class TextFile:
    """A planning file read defensively: its text (possibly partial) and what was wrong."""

    text: str | None
    problems: list[str]


def read_text(path: Path, label: str, *, max_bytes: int = MAX_READ_BYTES) -> TextFile:
    """Read a planning file as text without ever raising.

    Strips a UTF-8 BOM and normalises CRLF/CR to LF (neither is a problem).  Reports,
    naming ``label``: unreadable, empty, NUL bytes, invalid UTF-8 (with line), and
    files cut at ``max_bytes``.  Whatever text could be decoded is still returned.
    """
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return TextFile(None, [f"{label}: file vanished while reading"])
    except PermissionError:
        return TextFile(None, [f"{label}: cannot read file (permission denied)"])
    except OSError as exc:
        return TextFile(None, [f"{label}: cannot read file ({exc.strerror or exc})"])
    truncated = len(data) > max_bytes
    if truncated:
        data = data[:max_bytes]
        mib = max_bytes / (1024 * 1024)
        problems.append(f"{label}: file is larger than {mib:g} MiB; only the start was read")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        problems.append(f"{label}: file is empty")
        return TextFile("", problems)
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        problems.append(f"{label} line {line}: file contains NUL bytes (binary data?)")
        data = data.replace(b"\x00", b"")
    text = _decode(data, label, truncated, problems)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return TextFile(text, problems)


def _decode(data: bytes, label: str, truncated: bool, problems: list[str]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8", errors="replace")
        line = data[: exc.start].count(b"\n") + 1
        problems.append(f"{label} line {line}: file is not valid UTF-8 (byte offset {exc.start})")
        return data.decode("utf-8", errors="replace")
