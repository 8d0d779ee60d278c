"""The live overlap radar: what the running workers have *actually* changed, and which pairs
of milestones touch the same files (and whether they would conflict), while they run.

Plans name files, but real plans are incomplete and agents touch files no plan names. After
each unit (the store's ``units_done`` moved) or a new commit on a milestone branch, the
radar snapshots that milestone's checkout: its working tree as a commit object built in a
scratch index (GSD commits only at the end, so the work is mostly uncommitted; no ref, index
or file of the checkout changes). Against its base (the merge-base with the integration
branch) it lists the changed files and, for text files, the changed line ranges of the base.
For each pair that shares a file, ``git merge-tree --write-tree`` says whether they conflict,
with nothing checked out. Snapshots and pair verdicts are cached by content (tree ids), so a
tick in which no unit ended costs one dictionary comparison.

Every object those calls write (snapshot blobs, trees and commits, ``merge-tree`` results) goes
to a throwaway object directory (:class:`..workspace.git.ScratchObjects`), never into the
user's repository, where nothing would reference them until ``git gc``. The radar keeps one
for its cache's sake (a cached snapshot must still exist when a new pair needs it) and starts a
fresh one, measuring everything again, when it has grown past :data:`SCRATCH_BYTES`.

The picture is written to ``.gsd/parallel/radar.json`` for ``status`` and ``watch``; each new
pair is an ``overlap`` event (so a restarted supervisor does not report it again) and fires
``on_overlap_detected`` once.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GsdParallelError
from ..gsd.status_files import write_json_atomic
from ..workspace import layout
from ..workspace.git import Git, GitCommandError, ScratchObjects, merge_tree

if TYPE_CHECKING:
    from .supervisor import Supervisor

REFS_SECONDS = 1.0
"""How often the branch tips are read (one ``git for-each-ref``) to notice commits."""
SNAPSHOT_IDENT = {
    "GIT_AUTHOR_NAME": "gsd-parallel radar",
    "GIT_AUTHOR_EMAIL": "gsd-parallel@localhost",
    "GIT_AUTHOR_DATE": "1700000000 +0000",
    "GIT_COMMITTER_NAME": "gsd-parallel radar",
    "GIT_COMMITTER_EMAIL": "gsd-parallel@localhost",
    "GIT_COMMITTER_DATE": "1700000000 +0000",
}
"""Fixed identity and dates: the same tree on the same parent is the same commit (cacheable)."""
SCRATCH_BYTES = 64 * 1024 * 1024
"""The radar's throwaway object directory is replaced (and its cache emptied) past this size."""
SCRATCH_CHECK_EVERY = 16
"""Computing updates between two measurements of that size (a walk of the directory)."""
IGNORED_PREFIXES = (".gsd/", ".gsd-parallel/")
"""Planning files are per milestone by construction: never reported as overlaps."""
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")

Ranges = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------- git


_INDEX_PATHS: dict[Path, Path] = {}


def snapshot(
    checkout: Path, *, everything: bool = False, objects: ScratchObjects | None = None
) -> tuple[str, str]:
    """``(commit, head)``: the checkout's working tree as a commit on its HEAD, built in a
    scratch index seeded from the real one (so unchanged files are not re-read). No ref, no
    index and no file of the checkout changes; with ``objects`` no object of the repository's
    is written either (the snapshot lives as long as that directory). ``everything`` keeps
    ``.gsd`` in the tree (the drift guard needs the whole working tree); the radar leaves it
    as committed. Clean checkouts give HEAD itself."""
    g = Git(checkout, env=objects.env if objects is not None else None)
    try:
        head, head_tree = g.run("rev-parse", "HEAD^{commit}", "HEAD^{tree}").split()
    except (GitCommandError, ValueError):
        raise GsdParallelError(f"{checkout}: no commit checked out") from None
    real = _INDEX_PATHS.get(checkout)
    if real is None:
        real = Path(g.run("rev-parse", "--path-format=absolute", "--git-path", "index"))
        _INDEX_PATHS[checkout] = real
    scratch = Path(tempfile.mkdtemp(prefix="gsd-parallel-snap-"))
    try:
        index = scratch / "index"
        gi = g.with_env({**SNAPSHOT_IDENT, "GIT_INDEX_FILE": str(index)})
        try:
            # copy2 keeps the index's mtime: git's racy-clean check then works as it does on
            # the real one (a fresh mtime would trust a same-size edit made in the same second)
            shutil.copy2(real, index)
        except OSError:
            gi.run("read-tree", head)
        pathspec = ["--", "."] if everything else ["--", ".", ":(exclude).gsd", ":(exclude).gsd-parallel"]
        gi.run("add", "-A", "--ignore-errors", *pathspec)
        tree = gi.run("write-tree")
        if tree == head_tree:
            return head, head
        commit = gi.run("commit-tree", tree, "-p", head, "-m", "gsd-parallel snapshot")
        return commit, head
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def changed_lines(g: Git, base: str, commit: str) -> dict[str, Ranges | None]:
    """Files ``commit`` changed against ``base`` (planning files left out), each with the
    line ranges of ``base`` it changed (``(n, n-1)`` for an insertion after line ``n-1``);
    None for a binary file or a mode-only change. One ``git diff -U0``."""
    spec = ("--", ".", *(f":(exclude){p.rstrip('/')}" for p in IGNORED_PREFIXES))
    out = g.run("-c", "core.quotePath=false", "diff", "--no-renames", "--no-color", "--no-ext-diff",
                "-U0", base, commit, *spec)  # fmt: skip
    files: dict[str, Ranges | None] = {}
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    current: str | None = None
    for line in out.splitlines():
        if line.startswith("diff --git "):
            rest = line[len("diff --git a/") :]
            half = (len(rest) - len(" b/")) // 2  # "a/X b/X": X is the same on both sides
            current = rest[:half] if rest[half : half + 3] == " b/" else rest.split(" b/", 1)[0]
            files[current] = None
        elif line.startswith("+++ b/") and current is not None:
            current = line[6:]
            files.setdefault(current, None)
        elif line.startswith("@@") and current is not None:
            m = _HUNK.match(line)
            if m:
                start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
                ranges[current].append((start, start + count - 1) if count else (start + 1, start))
    for path, found in ranges.items():
        files[path] = tuple(found)
    return files


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Subject:
    """A milestone the radar watches: running, or finished but not merged yet."""

    mid: str
    branch: str
    checkout: Path | None
    """Its checkout when it exists (the working tree counts), else the branch tip does."""
    integration_branch: str
    key: tuple[Any, ...]
    """Changes whenever its work may have changed (units done, state, branch tip, base)."""
    integration_tip: str | None = None


@dataclass(frozen=True)
class Changes:
    mid: str
    commit: str
    base: str
    files: Mapping[str, Ranges | None]


@dataclass(frozen=True)
class PairOverlap:
    milestones: tuple[str, str]
    files: tuple[str, ...]
    conflict: bool
    conflict_files: tuple[str, ...] = ()
    lines: Mapping[str, Mapping[str, Ranges | None]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "+".join(self.milestones)

    def to_json(self) -> dict[str, Any]:
        return {
            "milestones": list(self.milestones),
            "files": list(self.files),
            "conflict": self.conflict,
            "conflict_files": list(self.conflict_files),
            "lines": {
                f: {mid: None if r is None else [list(x) for x in r] for mid, r in by.items()}
                for f, by in self.lines.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairOverlap:
        a, b = data["milestones"]
        return cls(
            (str(a), str(b)),
            tuple(data.get("files", ())),
            bool(data.get("conflict")),
            tuple(data.get("conflict_files", ())),
            {
                f: {m: None if r is None else tuple(tuple(x) for x in r) for m, r in by.items()}
                for f, by in (data.get("lines") or {}).items()
            },
        )

    def summary(self) -> str:
        """One line: ``M001 <-> M002: src/a.py, src/b.py — would CONFLICT (src/a.py)``."""
        a, b = self.milestones
        shown = ", ".join(self.files[:3]) + (f" +{len(self.files) - 3} more" if len(self.files) > 3 else "")
        verdict = (
            f"would CONFLICT ({', '.join(self.conflict_files[:3])})" if self.conflict
            else "merge cleanly"
        )  # fmt: skip
        return f"{a} <-> {b}: {shown} — {verdict}"


def format_ranges(ranges: Ranges | None) -> str:
    if ranges is None:
        return "binary"
    return ",".join(f"{s}" if s >= e else f"{s}-{e}" for s, e in ranges)


# --------------------------------------------------------------------------- the radar


class Radar:
    """Pure computation over git, given what to watch; caches by content."""

    def __init__(self, root: Path, *, scratch_parent: Path | None = None) -> None:
        self.root = root
        self.scratch_parent = scratch_parent
        """Where its throwaway object directories go (the system's temporary directory by default)."""
        self._objects: ScratchObjects | None = None
        self.g = Git(root)
        self.changes: dict[str, Changes] = {}
        self._keys: dict[str, tuple[Any, ...]] = {}
        self._verdicts: dict[tuple[str, str], tuple[str, ...]] = {}
        self._changed: dict[tuple[str, str], Changes] = {}
        self.overlaps: list[PairOverlap] = []
        self.seconds = 0.0
        """Time spent computing (not on cached ticks), for the bench."""
        self.updates = 0

    def stale(self, subjects: Sequence[Subject]) -> bool:
        """Whether :meth:`update` has anything to do (a dictionary comparison)."""
        return any(self._keys.get(s.mid) != s.key for s in subjects) or bool(
            set(self.changes) - {s.mid for s in subjects}
        )

    def update(self, subjects: Sequence[Subject]) -> bool:
        """Bring the picture up to date; True when it changed."""
        wanted = {s.mid: s for s in subjects}
        stale = [s for s in subjects if self._keys.get(s.mid) != s.key]
        gone = [mid for mid in self.changes if mid not in wanted]
        if not stale and not gone:
            return False
        t0 = time.perf_counter()
        self._scratch(stale, subjects)
        for mid in gone:
            self.changes.pop(mid, None)
            self._keys.pop(mid, None)
        changed = bool(gone)
        for s in stale:
            found = self._measure(s)
            self._keys[s.mid] = s.key
            if found is None:
                changed |= self.changes.pop(s.mid, None) is not None
                continue
            before = self.changes.get(s.mid)
            self.changes[s.mid] = found
            changed |= before is None or before.commit != found.commit or before.base != found.base
        if changed:
            self.overlaps = self._pairs()
        self.seconds += time.perf_counter() - t0
        self.updates += 1
        return changed

    def _scratch(self, stale: list[Subject], subjects: Sequence[Subject]) -> None:
        """Make the throwaway object directory (first use), or replace one grown too big:
        then every snapshot in the cache is gone with it, so everything is measured again
        (the same work gives the same commit ids: the picture does not change)."""
        objects = self._objects
        if objects is not None and self.updates % SCRATCH_CHECK_EVERY == 0 and objects.size() > SCRATCH_BYTES:
            objects.close()
            self._objects = objects = None
            self._changed.clear()
            self._verdicts.clear()
            stale[:] = list(subjects)
        if objects is None:
            objects = ScratchObjects(Git(self.root), parent=self.scratch_parent, prefix="radar-")
            self._objects = objects
            self.g = Git(self.root, env=objects.env)

    def close(self) -> None:
        """Delete the throwaway object directory (the cache goes with it)."""
        if self._objects is not None:
            self._objects.close()
            self._objects = None
        self.g = Git(self.root)
        self._changed.clear()
        self._verdicts.clear()
        self._keys.clear()

    def _measure(self, s: Subject) -> Changes | None:
        try:
            if s.checkout is not None and s.checkout.is_dir():
                commit, _head = snapshot(s.checkout, objects=self._objects)
            else:
                tip = self.g.branch_sha(s.branch)
                if tip is None:
                    return None
                commit = tip
            integ = s.integration_tip or self.g.branch_sha(s.integration_branch)
            if integ is None:
                return None
            if (commit, integ) not in self._changed:
                if len(self._changed) > 1000:  # a long run: forget old snapshots
                    self._changed.clear()
                base = self.g.run("merge-base", commit, integ)
                files = changed_lines(self.g, base, commit)
                self._changed[(commit, integ)] = Changes(s.mid, commit, base, files)
            found = self._changed[(commit, integ)]
            return found if found.mid == s.mid else Changes(s.mid, found.commit, found.base, found.files)
        except GsdParallelError:
            return None  # a checkout being removed, a branch gone: not watched this time

    def _pairs(self) -> list[PairOverlap]:
        by_file: dict[str, list[str]] = defaultdict(list)
        for mid in sorted(self.changes):
            for path in self.changes[mid].files:
                by_file[path].append(mid)
        shared: dict[tuple[str, str], list[str]] = defaultdict(list)
        for path, owners in by_file.items():
            for a, b in combinations(owners, 2):
                shared[(a, b)].append(path)
        pairs = []
        for (a, b), files in sorted(shared.items()):
            ca, cb = self.changes[a], self.changes[b]
            conflicts = self._verdict(ca.commit, cb.commit)
            lines = {f: {a: ca.files[f], b: cb.files[f]} for f in sorted(files)}
            pairs.append(PairOverlap((a, b), tuple(sorted(files)), bool(conflicts), conflicts, lines))
        return pairs

    def _verdict(self, a: str, b: str) -> tuple[str, ...]:
        key = (a, b)
        if key not in self._verdicts:
            try:
                _tree, files = merge_tree(self.g, a, b)
            except GsdParallelError:
                files = []
            self._verdicts[key] = tuple(f for f in files if not f.startswith(IGNORED_PREFIXES))
        return self._verdicts[key]

    def actual_files(self) -> dict[str, frozenset[str]]:
        """milestone -> the files it has actually changed (for ``overlap: serialize``)."""
        return {mid: frozenset(c.files) for mid, c in self.changes.items()}


# --------------------------------------------------------------------------- persistence


def write_picture(parallel_dir: Path, run_id: int, radar: Radar) -> None:
    """``radar.json``, replaced atomically (readers never see half of it)."""
    data = {
        "run_id": run_id,
        "updated_at": time.time(),
        "changes": {
            mid: {"base": c.base, "files": sorted(c.files)} for mid, c in sorted(radar.changes.items())
        },
        "overlaps": [o.to_json() for o in radar.overlaps],
    }
    write_json_atomic(layout.radar_path(parallel_dir), data)


@dataclass(frozen=True)
class Picture:
    """What ``status`` and ``watch`` show: the last picture the supervisor wrote."""

    overlaps: tuple[PairOverlap, ...] = ()
    changes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    updated_at: float | None = None


def read_picture(parallel_dir: Path, run_id: int | None) -> Picture:
    """The radar picture of run ``run_id``; empty when there is none (or it is another run's)."""
    try:
        data = json.loads(layout.radar_path(parallel_dir).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or (run_id is not None and data.get("run_id") != run_id):
            return Picture()
        return Picture(
            tuple(PairOverlap.from_json(o) for o in data.get("overlaps", ())),
            {mid: frozenset(c.get("files", ())) for mid, c in (data.get("changes") or {}).items()},
            float(data.get("updated_at") or 0) or None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Picture()


def overlap_lines(picture: Picture) -> list[str]:
    """``status``'s "Overlaps" section body, one pair a line plus its line ranges."""
    out = []
    for o in picture.overlaps:
        out.append(f"- {o.summary()}")
        for f in o.files[:5]:
            by = o.lines.get(f, {})
            where = "; ".join(f"{mid} lines {format_ranges(r)}" for mid, r in by.items())
            out.append(f"  {f}: {where}")
    return out


# --------------------------------------------------------------------------- in the supervisor


class RadarWatch:
    """The supervisor's side: what to watch, when to look, what to report (once per pair)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.radar = Radar(supervisor.root, scratch_parent=layout.scratch_dir(supervisor.parallel_dir))
        self._g = Git(supervisor.root)
        self._refs: dict[str, str] = {}
        self._refs_at = 0.0
        self._reported: set[str] | None = None
        self._run_id = -1
        self._thread: threading.Thread | None = None
        self._changed = False
        self._error: str | None = None
        self.overlaps: list[PairOverlap] = []
        self._actual: dict[str, frozenset[str]] = {}

    def refs(self, *, fresh: bool = False) -> dict[str, str]:
        """Every local branch's tip, read at most once a second (one git call)."""
        now = time.monotonic()
        if fresh or now - self._refs_at >= REFS_SECONDS:
            self._refs_at = now
            with suppress(GsdParallelError):
                out = self._g.run("for-each-ref", "--format=%(refname:short) %(objectname)",
                                       "refs/heads/")  # fmt: skip
                self._refs = dict(ln.rsplit(" ", 1) for ln in out.splitlines() if " " in ln)
        return self._refs

    def subjects(self) -> list[Subject]:
        sup = self.sup
        project = sup.project()
        merged = sup.store.merged_milestones()
        refs = self.refs()
        found = []
        for row in sup.store.workers(sup.run_id):
            mid = row.milestone_id
            if mid in merged or row.branch not in refs:
                continue
            milestone = project.get(mid)
            integ = (milestone.integration_branch if milestone else None) or project.integration_branch
            key = (row.units_done, row.state, refs.get(row.branch), refs.get(integ))
            checkout = Path(row.worktree) if row.worktree else None
            found.append(Subject(mid, row.branch, checkout, integ, key, refs.get(integ)))
        return found

    def tick(self, *, wait: bool = False) -> None:
        """After a unit or a commit: recompute (in a thread: a snapshot takes git calls, and
        the tick must keep reading output and enforcing the budget meanwhile), then persist
        and report new pairs. ``wait``: compute now, in this thread."""
        sup = self.sup
        if self._run_id != sup.run_id:
            self._run_id, self._reported = sup.run_id, None
        if self._thread is not None:
            if self._thread.is_alive() and not wait:
                return
            self._thread.join()
            self._thread = None
            self._publish()
        subjects = self.subjects()
        if not self.radar.stale(subjects):
            return
        if wait:
            self._changed = self.radar.update(subjects)
            self._publish()
            return
        self._thread = threading.Thread(target=self._compute, args=(subjects,), name="radar", daemon=True)
        self._thread.start()

    def _compute(self, subjects: Sequence[Subject]) -> None:
        try:
            self._changed = self.radar.update(subjects)
        except Exception as exc:  # a bug must not kill the radar silently
            self._changed = False
            self._error = f"overlap radar failed: {type(exc).__name__}: {exc}"

    def _publish(self) -> None:
        """In the supervisor's thread, with the computation finished."""
        sup = self.sup
        if self._error is not None:
            sup.store.add_event("error", self._error, run_id=sup.run_id)
            self._error = None
        if not self._changed:
            return
        self._changed = False
        self.overlaps = list(self.radar.overlaps)
        self._actual = self.radar.actual_files()
        with suppress(OSError):
            write_picture(sup.parallel_dir, sup.run_id, self.radar)
        if sup.prefs.overlap == "serialize":
            sup.request_replan()  # what runs has changed more than its plan said
        self._report()

    def _report(self) -> None:
        sup = self.sup
        assert sup.hooks is not None
        if self._reported is None:
            self._reported = {
                str(e.data.get("pair"))
                for e in sup.store.events_of_kind("overlap", sup.run_id)
                if isinstance(e.data, dict)
            }
        for o in self.overlaps:
            if o.key in self._reported:
                continue
            self._reported.add(o.key)
            message = f"overlap: {o.summary()}"
            sup.store.add_event("overlap", message, None, {"pair": o.key, **o.to_json()},
                                run_id=sup.run_id)  # fmt: skip
            sup.notify(message, "warning" if o.conflict else "info")
            sup.hooks.on_overlap_detected(list(o.milestones), list(o.files), o.conflict,
                                          list(o.conflict_files))  # fmt: skip

    def actual_files(self) -> dict[str, frozenset[str]]:
        """What the last finished computation found (never a half-updated picture)."""
        return dict(self._actual)

    def close(self) -> None:
        """At the supervisor's exit, after the last picture: the throwaway objects go."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.radar.close()
