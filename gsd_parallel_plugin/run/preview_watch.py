"""The integration preview during a run (``parallel.preview_minutes``): every N minutes, when a
milestone branch or the integration branch moved since the last one, the supervisor computes
what ``merge --preview`` would say (:mod:`..merge.preview`) in a background thread.

Like the overlap radar (:mod:`.radar`): the supervisor's tick only reads branch tips (the
radar's, read once a second) and compares them with the last preview's; the preview itself
(``merge-tree``, ``merge_check`` in a throwaway checkout) runs in a thread, so the tick keeps
reading output and enforcing budgets. It touches no ref, checkout or object of the user's and
never takes the merge lock: a real merge never waits for it (one that lands meanwhile moves
the integration branch, and the next preview sees it). Its verdicts are written to
``.gsd/parallel/preview.json`` for ``status`` and ``watch``; a milestone whose verdict changes
is a ``preview`` event (one line in ``watch``), and one that turns bad (a conflict, a failed
check) is also said to the user, once per change (a restarted supervisor reads the last
verdicts back and does not say it again). At exit a running check is killed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import hints
from ..errors import GsdParallelError
from ..gsd.status_files import write_json_atomic
from ..workspace import layout
from ..workspace.layout import BRANCH_PREFIX, checkout_display

if TYPE_CHECKING:
    from pathlib import Path

    from ..merge.attempt import MergeEnv
    from ..merge.preview import PreviewResult
    from .supervisor import Supervisor

Key = tuple[Any, ...]


# --------------------------------------------------------------------------- persistence


def write_preview(parallel_dir: Path, run_id: int, check: Sequence[str] | None,
                  results: Sequence[PreviewResult]) -> None:  # fmt: skip
    """``preview.json``, replaced atomically (readers never see half of it)."""
    data = {
        "run_id": run_id,
        "updated_at": time.time(),
        "merge_check": list(check) if check else None,
        "results": [r.to_json() for r in results],
    }
    write_json_atomic(layout.preview_path(parallel_dir), data)


@dataclass(frozen=True)
class PreviewPicture:
    """What ``status`` and ``watch`` show: the last preview the supervisor wrote."""

    results: tuple[PreviewResult, ...] = ()
    merge_check: tuple[str, ...] | None = None
    updated_at: float | None = None

    def to_json(self) -> dict[str, Any] | None:
        if self.updated_at is None:
            return None
        return {
            "updated_at": self.updated_at,
            "merge_check": list(self.merge_check) if self.merge_check else None,
            "results": [r.to_json() for r in self.results],
        }

    def compact(self) -> str:
        """``watch``'s one line: ``M001 clean · M002 check FAILED · M003 CONFLICT (2)``."""
        parts = []
        for r in self.results:
            if r.outcome == "conflict":
                parts.append(f"{r.id} CONFLICT ({len(r.files)})")
            elif r.outcome == "check_failed":
                parts.append(f"{r.id} check FAILED")
            elif r.outcome == "clean":
                parts.append(f"{r.id} clean")
        return " · ".join(parts) or "nothing committed to preview yet"


def read_preview(parallel_dir: Path, run_id: int | None) -> PreviewPicture:
    """The last preview of run ``run_id``; empty when there is none (or it is another run's)."""
    from ..merge.preview import PreviewResult

    try:
        data = json.loads(layout.preview_path(parallel_dir).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or (run_id is not None and data.get("run_id") != run_id):
            return PreviewPicture()
        check = data.get("merge_check")
        return PreviewPicture(
            tuple(PreviewResult.from_json(r) for r in data.get("results", ())),
            tuple(check) if check else None,
            float(data.get("updated_at") or 0) or None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return PreviewPicture()


def preview_lines(picture: PreviewPicture) -> list[str]:
    """``status``'s "Preview" section body: one milestone a line, a failed check's tail under it."""
    out = []
    for r in picture.results:
        out.append(f"- **{r.id}** ({r.state}) — {r.verdict()}")
        tail = r.check_tail(3) if r.outcome == "check_failed" else []
        if len(tail) > 1:  # one line is already the verdict's
            out += [f"    {ln}" for ln in tail]
    return out


# --------------------------------------------------------------------------- in the supervisor


@dataclass
class _Done:
    key: Key
    results: list[PreviewResult] = field(default_factory=list)


class PreviewWatch:
    """The supervisor's side: when to preview, the thread, what to persist and report."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._key: Key | None = None
        """What the last preview was computed on (branch tips, merged and completed sets)."""
        self._next_at = 0.0
        self._done: _Done | None = None
        self._error: str | None = None
        self._verdicts: dict[str, tuple[str, tuple[str, ...]]] | None = None
        self._run_id = -1
        self.results: list[PreviewResult] = []
        self.previews = 0
        """Previews computed (for tests and the bench)."""

    @property
    def minutes(self) -> float | None:
        return self.sup.prefs.preview_minutes

    def key(self) -> Key:
        """What the preview depends on, from what the supervisor already reads: the tips of
        the milestone and integration branches (the radar's, once a second), what merged and
        what completed, and the check."""
        sup = self.sup
        project = sup.project()
        integration = {project.integration_branch, *(m.integration_branch for m in project.milestones)}
        tips = sorted(
            (b, sha) for b, sha in sup.radar.refs().items() if b.startswith(BRANCH_PREFIX) or b in integration
        )
        merged = tuple(sorted(sup.store.merged_milestones()))
        completed = tuple(sorted(sup.store.completed_milestones()))
        return (tuple(tips), merged, completed, sup.prefs.merge_check)

    def tick(self) -> None:
        """Publish a finished preview; start the next one when it is due and something moved."""
        if self.minutes is None:
            return
        if self._thread is not None:
            if self._thread.is_alive():
                return
            self._thread.join()
            self._thread = None
            self._publish()
        now = time.monotonic()
        if now < self._next_at:
            return
        key = self.key()
        if key == self._key:
            return  # nothing moved since the last preview: look again at the next tick
        from ..merge.attempt import MergeEnv
        from ..merge.preview import preview_order

        sup = self.sup
        assert sup.hooks is not None
        env = MergeEnv(sup.root, sup.project(), sup.store, sup.hooks, sup.prefs)
        try:
            order, running = preview_order(env, sup.hooks)  # the store and hooks: this thread
        except GsdParallelError:
            return
        self._next_at = now + self.minutes * 60
        self._key = key
        if not order:
            self._done = _Done(key)
            self._publish()
            return
        self._thread = threading.Thread(target=self._compute, args=(env, order, running, key),
                                        name="preview", daemon=True)  # fmt: skip
        self._thread.start()

    def _compute(self, env: MergeEnv, order: list[str], running: list[str], key: Key) -> None:
        """In the thread: git and merge_check only (``env.store`` is the supervisor's: unused)."""
        from ..merge.preview import preview
        from ..merge.steps import CheckCancelled

        try:
            results = preview(env, order, running, scratch_parent=layout.scratch_dir(self.sup.parallel_dir),
                              cancel=self._cancel)  # fmt: skip
            self._done = _Done(key, results)
        except CheckCancelled:
            self._done, self._key = None, None
        except GsdParallelError:
            self._done, self._key = None, None  # a branch moved under it (a merge): try again
        except Exception as exc:  # a bug must not kill the preview silently
            self._done = None
            self._error = f"integration preview failed: {type(exc).__name__}: {exc}"

    def _publish(self) -> None:
        """In the supervisor's thread, with the computation finished."""
        sup = self.sup
        if self._error is not None:
            sup.store.add_event("error", self._error, run_id=sup.run_id)
            self._error = None
        done, self._done = self._done, None
        if done is None:
            return
        self.previews += 1
        self.results = done.results
        self._seen()  # the last verdicts written, read before this preview replaces them
        with suppress(OSError):
            write_preview(sup.parallel_dir, sup.run_id, sup.prefs.merge_check, done.results)
        self._report(done.results)

    def _seen(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each milestone's last verdict: this supervisor's, or the last one written in this run."""
        if self._verdicts is None or self._run_id != self.sup.run_id:
            self._run_id = self.sup.run_id
            last = read_preview(self.sup.parallel_dir, self.sup.run_id)
            self._verdicts = {r.id: (r.outcome, r.files) for r in last.results}
        return self._verdicts

    def _report(self, results: Sequence[PreviewResult]) -> None:
        sup = self.sup
        seen = self._seen()
        for r in results:
            verdict = (r.outcome, r.files)
            before = seen.get(r.id)
            seen[r.id] = verdict
            if before == verdict or (r.outcome == "skipped" and (before is None or before[0] == "skipped")):
                continue
            message = f"preview: {r.id} {r.verdict()}"
            sup.store.add_event("preview", message, r.id, r.to_json(), run_id=sup.run_id)
            if r.bad:
                what = "conflicts with" if r.outcome == "conflict" else "breaks merge_check with"
                sup.notify(f"integration preview: {r.id} {what} the milestones merged before it; "
                           f"fix it on its branch in {checkout_display(r.id)} "
                           f"(details: {hints.cmd('status')})", "warning")  # fmt: skip

    def close(self) -> None:
        """At the supervisor's exit: a running check is killed, its checkout removed."""
        if self._thread is not None:
            self._cancel.set()
            self._thread.join()
            self._thread = None
            self._cancel.clear()
        self._done = None
