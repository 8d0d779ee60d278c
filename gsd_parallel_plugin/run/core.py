"""What the supervisor's parts share: the workers it tracks and the state every part reads.

:class:`SupervisorCore` is the base of :class:`.spawning.Spawning` (launching, adoption),
:class:`.worker_control.WorkerControl` (output, exits, commands, stops) and
:class:`.supervisor.Supervisor` (the loop); the attributes are set by ``Supervisor``.
Collaborators outside this family (the budget guard, the auto-merger) never see it: they
get the narrow ports they declare (:class:`.budget.BudgetHost`, :class:`.automerge.MergeHost`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Project, WorkerHandle, WorkerState

if TYPE_CHECKING:
    from ..plugins import Hooks
    from ..preferences import ParallelPreferences, Preferences
    from ..store import Store
    from .automerge import AutoMerger
    from .budget import BudgetGuard
    from .drift import DriftGuard
    from .isolation import IsolationGuard
    from .preview_watch import PreviewWatch
    from .radar import RadarWatch

GUARD_SECONDS = 1.0

Notify = Callable[[str, str], None]
Confirm = Callable[[str], "bool | None"]
"""Asks the user a yes/no question; None when nobody can answer."""


class RunPort(Protocol):
    """What every collaborator of the supervisor may read of it: the run, its project and
    preferences, the hooks and the user. Each collaborator's own port adds what it may do."""

    @property
    def root(self) -> Path: ...
    @property
    def store(self) -> Store: ...
    @property
    def run_id(self) -> int: ...
    @property
    def prefs(self) -> ParallelPreferences: ...
    @property
    def hooks(self) -> Hooks | None: ...
    @property
    def notify(self) -> Notify: ...
    def project(self) -> Project: ...


@dataclass
class Tracked:
    """A worker process this supervisor watches."""

    handle: WorkerHandle
    launched_here: bool
    requested: str | None = None
    """What we asked of it: ``pause``, ``stop``, ``budget``, or a key of :data:`.decisions.BLOCKING_STOPS`
    (we stopped it because it cannot go on); decides how an exit reads."""
    stop_deadline: float | None = None
    term_at: float | None = None
    """When a graceful stop turns into SIGTERM (the worker did not end its unit by then)."""
    frozen: bool = False
    checkout: Path | None = None
    launched_at: float = field(default_factory=time.time)
    log_start: int = 0
    """Size of the stdout log at launch: notices before it belong to earlier runs."""
    model_seen: bool = False
    """The model answered at least once since launch (adopted workers count as seen)."""
    provider_failed_at: float | None = None
    provider_error: str | None = None
    last_finished_unit: str | None = None
    """The last unit its output finished: its second end event, read in the next batch,
    is not a second unit."""
    block_reason: str | None = None
    """Why we stopped it, when ``requested`` is a key of :data:`.decisions.BLOCKING_STOPS`."""


class SupervisorCore:
    """The supervisor's state (set in ``Supervisor.__post_init__``) and what every part uses."""

    root: Path
    notify: Notify
    hooks: Hooks | None
    confirm: Confirm | None
    gsd_dir: Path
    parallel_dir: Path
    preferences: Preferences
    store: Store
    run_id: int
    tracked: dict[str, Tracked]
    restart_at: dict[str, float]
    started: set[str]
    unplanned: dict[str, str]
    """Milestones the last plan held back: their planning files are not committed."""
    budget: BudgetGuard
    merger: AutoMerger
    gsd_program: tuple[str, ...] | None
    """The GSD program of the worker command; None for a worker that is not GSD."""
    guard: IsolationGuard
    radar: RadarWatch
    drift: DriftGuard
    preview: PreviewWatch
    _project: Project | None
    _project_dirty: bool
    _replan: bool
    _default_branch: str | None
    _status_written: dict[str, tuple[Any, ...]]
    _stop_requested: bool
    _halted: bool
    """``stop`` (all) came: nothing new starts in this session (``start`` or ``resume`` go on)."""
    _store_at: float
    _store_id: Any
    _guard_at: float

    @property
    def prefs(self) -> ParallelPreferences:
        return self.preferences.parallel

    def project(self) -> Project:
        """The project as the root's ``.gsd`` says, re-read only after something changed it."""
        if self._project is None or self._project_dirty:
            from ..project import read_project

            if self._default_branch is None:
                from ..workspace.git import default_branch

                self._default_branch = default_branch(self.root)
            self._project = read_project(
                self.root,
                default_branch=self._default_branch,
                git_main_branch=self.preferences.git_main_branch,
            )
            self._project_dirty = False
        return self._project

    def project_changed(self) -> None:
        """The project's files changed (a merge landed): re-read them, re-plan the run."""
        self._project_dirty = True

    def request_replan(self) -> None:
        """What runs changed more than the plan knows (the radar saw new files): plan again."""
        self._replan = True

    @property
    def halted(self) -> bool:
        """``stop`` (all) came: nothing new starts in this session."""
        return self._halted

    def set_state(self, mid: str, state: WorkerState | str, reason: str | None = None) -> None:
        """Record a worker's new state (and fire ``on_worker_state_change``): for collaborators."""
        self._set_state(mid, state, reason)

    def _set_state(self, mid: str, state: WorkerState | str, reason: str | None = None) -> None:
        reason = None if reason is None else str(reason)  # a StateReason is stored as its text
        old = self.store.set_state(mid, self.run_id, state, reason)
        new = str(state)
        if old != new:
            assert self.hooks is not None
            self.hooks.on_worker_state_change(mid, old, new, reason)
            if new in {"failed", "crashed", "blocked"}:
                self.notify(f"{mid}: {new}" + (f" — {reason}" if reason else ""), "warning")
