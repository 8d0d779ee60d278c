"""``merge --preview``: what merging everything in flight would give, before anything merges.

``merge --dry-run`` asks git whether each completed branch would merge; the preview goes
further: it stacks every milestone branch in flight (complete *and* still running, their
committed work) in merge order, exactly as :mod:`.plan` stacks the dry run (``git merge-tree
--write-tree``, each clean result an unreferenced commit on the previous one), and runs
``parallel.merge_check`` on the combined tree after each milestone is added. Two branches that
merge cleanly but break the build together show up here, while their workers can still fix it.

Nothing of the user's moves: no branch, no HEAD, no index, no working-tree file, and no object
is added to the repository: the stacked commits are written to a throwaway object directory
(:class:`..workspace.git.ScratchObjects`). The check runs in a checkout in a fresh temporary
directory: a repository of its own that reads the user's objects and the preview's through
``objects/info/alternates`` (so nothing is registered in the user's repository either; it sees
the user's global git configuration, not the repository's own). Both are removed before the
preview returns. A milestone that conflicts or fails the check is left out
of the stack, as the real merge would stop there; the ones after it are previewed without it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..milestone_ids import is_valid_milestone_id
from ..workspace.git import Git, ScratchObjects, merge_tree
from ..workspace.layout import BRANCH_PREFIX, branch_name
from .attempt import MergeEnv
from .plan import DRY_RUN_IDENT, _take_theirs, merge_candidates
from .steps import NO_HOOKS, auto_resolvable, run_merge_check, slice_point

if TYPE_CHECKING:
    from ..plugins import Hooks

OUTCOMES = ("clean", "conflict", "check_failed", "skipped")


@dataclass(frozen=True)
class PreviewResult:
    """One milestone in the preview, with everything before it in the stack."""

    id: str
    state: str
    """``complete`` (a merge candidate now) or ``running`` (its committed work so far)."""
    outcome: str
    """``clean``, ``conflict`` (``files``), ``check_failed`` (``output``) or ``skipped``."""
    files: tuple[str, ...] = ()
    output: str | None = None
    """The merge_check failure: its command, exit status and the last lines of its output."""
    error: str | None = None
    checked: bool = False
    """True when merge_check ran on the tree with this milestone in it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "outcome": self.outcome,
            "files": list(self.files),
            "output": self.output,
            "error": self.error,
            "checked": self.checked,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreviewResult:
        return cls(
            str(data["id"]),
            str(data.get("state") or "running"),
            str(data["outcome"]),
            tuple(data.get("files") or ()),
            data.get("output"),
            data.get("error"),
            bool(data.get("checked")),
        )

    @property
    def bad(self) -> bool:
        """A conflict or a failed check: the real merge would stop at this milestone."""
        return self.outcome in {"conflict", "check_failed"}

    def verdict(self) -> str:
        """One short line: ``clean``, ``CONFLICT (a.py, b.py)``, ``check failed: <last line>``."""
        if self.outcome == "clean":
            return "clean" + (", merge_check passed" if self.checked else "")
        if self.outcome == "conflict":
            more = f" +{len(self.files) - 3} more" if len(self.files) > 3 else ""
            return f"CONFLICT ({', '.join(self.files[:3])}{more})"
        if self.outcome == "check_failed":
            tail = self.check_tail(1)
            return "check FAILED" + (f": {tail[0].strip()}" if tail else "")
        return f"skipped: {self.error}"

    def check_tail(self, lines: int) -> list[str]:
        """The last ``lines`` non-blank lines merge_check printed (not the line naming the
        command, which may itself span lines)."""
        output = self.output or ""
        _cmd, failed, rest = output.partition("` failed (")
        printed = rest.partition("\n")[2] if failed else output
        return [ln for ln in printed.splitlines() if ln.strip()][-lines:]


def preview_order(env: MergeEnv, hooks: Hooks) -> tuple[list[str], list[str]]:
    """(order, running): every milestone in flight in merge order (the ``choose_merge_order``
    hook's, any it left out after), and which of them are still running."""
    complete, running = in_flight(env)
    everything = [*complete, *running]
    if not everything:
        return [], running
    order = list(hooks.choose_merge_order(everything, env.project, env.preferences.to_json()))
    order += [mid for mid in everything if mid not in order]  # a hook that forgot some
    return order, running


def in_flight(env: MergeEnv) -> tuple[list[str], list[str]]:
    """(complete, running): unmerged milestone branches, split by whether they can merge now."""
    complete, _notes = merge_candidates(env)
    merged = env.store.merged_milestones()
    g = Git(env.root)
    running = sorted(
        mid
        for b in g.list_branches(BRANCH_PREFIX)
        if is_valid_milestone_id(mid := b.removeprefix(BRANCH_PREFIX))
        and mid not in merged
        and mid not in complete
    )
    return complete, running


class _Checkout:
    """The checkout merge_check runs in, made on first use under ``base``: a repository of
    its own whose ``objects/info/alternates`` names the preview's objects and the user's."""

    def __init__(self, base: Path, objects: ScratchObjects, object_format: str) -> None:
        self.path = base / "tree"
        self.objects = objects
        self.object_format = object_format
        self.made = False

    def at(self, commit: str) -> Path:
        if not self.made:
            fmt = f"--object-format={self.object_format}"
            Git(self.path.parent).run("init", "--quiet", fmt, str(self.path))
            alternates = self.path / ".git" / "objects" / "info" / "alternates"
            both = f"{self.objects.path}\n{self.objects.repository_objects}\n"
            alternates.write_text(both, encoding="utf-8")
            self.made = True
        wg = Git(self.path)
        wg.run(*NO_HOOKS, "checkout", "--quiet", "--force", "--detach", commit)
        wg.run("clean", "-ffdq")  # what the last check left behind (ignored caches stay)
        return self.path


def preview(
    env: MergeEnv,
    order: Sequence[str],
    running: Sequence[str] = (),
    *,
    scratch_parent: Path | None = None,
    cancel: threading.Event | None = None,
) -> list[PreviewResult]:
    """Stack ``order`` onto the integration branch one by one, merge_check after each; no ref
    moves and no object is added to the repository. ``scratch_parent``: where its temporary
    directory goes (the system's by default); ``cancel``: a running check is killed
    (:class:`.steps.CheckCancelled`)."""
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="gsd-parallel-preview-", dir=scratch_parent))
    try:
        root = Git(env.root)
        with ScratchObjects(root, parent=base, prefix="objects-") as objects:
            fmt = root.run("rev-parse", "--show-object-format")
            checkout = _Checkout(base, objects, fmt)
            return _stack(env, order, running, Git(env.root, env={**DRY_RUN_IDENT, **objects.env}),
                          checkout, cancel)  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stack(
    env: MergeEnv,
    order: Sequence[str],
    running: Sequence[str],
    g: Git,
    checkout: _Checkout,
    cancel: threading.Event | None,
) -> list[PreviewResult]:
    """:func:`preview`'s work, with ``g`` writing to the throwaway object directory."""
    check = env.preferences.merge_check
    tips: dict[str, str] = {}
    results: list[PreviewResult] = []
    for mid in order:
        state = "running" if mid in running else "complete"
        integ = env.integration_branch(mid)
        if integ not in tips:
            sha = g.branch_sha(integ)
            if sha is None:
                results.append(PreviewResult(mid, state, "skipped", error=f"{integ} does not exist"))
                continue
            tips[integ] = sha
        tip = g.branch_sha(branch_name(mid))
        if tip is None:
            results.append(PreviewResult(mid, state, "skipped", error=f"no branch {branch_name(mid)}"))
            continue
        if g.is_ancestor(tip, tips[integ]):
            results.append(PreviewResult(mid, state, "skipped", error="nothing committed beyond "
                                         f"{integ} yet"))  # fmt: skip
            continue
        ours = tips[integ]
        point = slice_point(g, mid, tip)
        if point is not None:  # what already landed is the merge base, as in the real merge
            ours = g.run("commit-tree", f"{ours}^{{tree}}", "-p", point, "-m", "gsd preview")
        tree, conflicts = merge_tree(g, ours, tip)
        code = tuple(p for p in conflicts if not auto_resolvable(p))
        auto = tuple(p for p in conflicts if auto_resolvable(p))
        if code:
            results.append(PreviewResult(mid, state, "conflict", code))
            continue
        if auto:
            tree = _take_theirs(g, tree, tip, auto)
        landed = g.run("commit-tree", tree, "-p", tips[integ], "-m", f"gsd-parallel preview: {mid}")
        if check:
            failure = run_merge_check(check, checkout.at(landed), mid, cancel=cancel)
            if failure is not None:
                results.append(PreviewResult(mid, state, "check_failed", output=failure, checked=True))
                continue
        tips[integ] = landed
        results.append(PreviewResult(mid, state, "clean", checked=bool(check)))
    return results
