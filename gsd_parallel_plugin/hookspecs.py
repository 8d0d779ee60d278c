"""Hook specifications: the contract between gsd-parallel, its host and third-party plugins.

Each spec declares its kind with ``@hookspec("<kind>")``; the kind sets pluggy's options
(``firstresult``, ``historic``) and :data:`HOOK_KINDS` is read back from the specs, so a
hook's kind is written once, here.  A new hook is a spec here, its section in ``hooks.md``
and its typed method on :class:`~gsd_parallel_plugin.plugins.Hooks`;
``tests/test_hooks_contract.py`` checks that the three agree, kinds included.
Five kinds (``hooks.md``, "Kinds of hooks", has the table of what a raising plugin breaks):

* **decision** hooks are ``firstresult``: the first non-None answer wins; the builtin
  implementation is registered ``trylast`` so any third-party plugin is asked first;
* **veto** hooks collect every answer: any non-empty reason vetoes, reasons accumulate;
* **broadcast** events return nothing; a plugin that raises is logged by name and the
  coordinator carries on;
* **historic** is a broadcast a plugin registered later still receives (pluggy's ``historic``);
* **collect** gathers every plugin's list; one plugin raising fails the whole collection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import pluggy

from . import PROJECT_NAME

if TYPE_CHECKING:
    from .host import HostSession
    from .models import Milestone, Project, SlashCommand, WorkerHandle, WorkerSpec

HookKind = Literal["decision", "veto", "broadcast", "historic", "collect"]
KIND_ATTRIBUTE = PROJECT_NAME + "_kind"
"""The attribute :func:`hookspec` sets on each spec function to its kind."""

_F = TypeVar("_F", bound=Callable[..., object])
_marker = pluggy.HookspecMarker(PROJECT_NAME)


def hookspec(kind: HookKind) -> Callable[[_F], _F]:
    """Mark a function as a hook spec of ``kind``; the kind decides pluggy's options."""
    if kind not in get_args(HookKind):
        raise ValueError(f"unknown hook kind {kind!r}: one of {', '.join(get_args(HookKind))}")

    def mark(function: _F) -> _F:
        setattr(function, KIND_ATTRIBUTE, kind)
        return _marker(firstresult=kind == "decision", historic=kind == "historic")(function)

    return mark


# --------------------------------------------------------------------------- session


@hookspec("collect")
def register_slash_commands(host: HostSession) -> Sequence[SlashCommand]:
    """Contribute ``/gsd <group> <name>`` subcommands.

    Called once by the host when it builds its command table, in the process that
    reads user input (GSD's session or the ``gsd-parallel`` CLI).  Broadcast-collect:
    every plugin's list is gathered; two plugins claiming the same ``(group, name)``
    is an error naming both.

    :param host: the host session (for plugins that need its notify/confirm).
    :return: a sequence of :class:`~gsd_parallel_plugin.models.SlashCommand`.
    """


@hookspec("historic")
def on_session_start(host: HostSession) -> None:
    """The host session is ready (plugins loaded, preferences not yet read).

    Historic broadcast: a plugin registered later still receives it.  Called in the
    host's process.  Return value ignored.
    """


# --------------------------------------------------------------------------- eligibility


@hookspec("veto")
def check_eligibility(milestone: Milestone, project: Project, preferences: Mapping[str, Any]) -> str | None:
    """Veto a milestone that GSD's own rules find runnable.

    Called during eligibility analysis (``start``, ``start --dry-run``, backfill in the
    supervisor) once per milestone that is not complete, parked or a ghost.  Veto:
    return a reason string to mark it ineligible; return None to have no opinion.
    Any veto wins and all reasons are shown, joined.

    :param milestone: the parsed milestone.
    :param project: the whole project (for cross-milestone rules).
    :param preferences: the effective ``parallel`` preferences block.
    :return: a human reason such as ``"touches protected path migrations/"`` or None.
    """


# --------------------------------------------------------------------------- workers


@hookspec("decision")
def spawn_worker(spec: WorkerSpec) -> WorkerHandle | None:
    """Launch the worker process for one milestone.

    Decision hook (firstresult).  Called by the supervisor (or by ``start``) in the
    coordinator process after the worktree exists.  The builtin runs
    ``spec.command`` detached in its own session with cwd ``spec.worktree``,
    ``spec.env`` merged over the environment and output appended to the log files.
    A host that runs agents itself returns the handle of the process it started.

    :param spec: the launch description.
    :return: a :class:`~gsd_parallel_plugin.models.WorkerHandle` (pid and create time)
        or None to let the next implementation decide.
    :raises WorkerLaunchError: when the command cannot be started (missing binary).
    """


@hookspec("broadcast")
def on_worker_state_change(
    milestone_id: str, old_state: str | None, new_state: str, reason: str | None
) -> None:
    """A worker moved between states (``starting``, ``running``, ``paused``, ...).

    Broadcast, fired by the supervisor process after the state is stored.

    :param milestone_id: the worker's milestone.
    :param old_state: the previous state, None for a new worker.
    :param new_state: the new state.
    :param reason: why, when there is one (``milestone budget reached``, the crash's
        last stderr line, ...).
    """


@hookspec("broadcast")
def on_milestone_complete(milestone_id: str, branch: str, worktree: Path) -> None:
    """A worker exited 0 and its worktree holds a terminal ``<MID>-SUMMARY.md``.

    Broadcast, fired by the supervisor once per milestone, before any automatic merge.
    A host that runs its own agents calls it to report completion.
    """


@hookspec("broadcast")
def on_gsd_session_start(session_id: str, cwd: Path) -> None:
    """The user opened a GSD session with the gsd-parallel extension loaded.

    Broadcast, delivered from the extension's spool (by the supervisor or
    ``gsd-parallel session-events``), shortly after GSD's ``session_start``.  Never for
    a worker's own GSD: the supervisor reads those directly.
    """


@hookspec("broadcast")
def on_gsd_session_end(session_id: str, cwd: Path, cost_usd: float) -> None:
    """That GSD session ended (GSD's ``session_shutdown``).

    Broadcast, delivered like :func:`on_gsd_session_start`.  Our workers keep running.

    :param cost_usd: what the session spent while the extension was loaded.
    """


# --------------------------------------------------------------------------- budget


@hookspec("broadcast")
def on_cost_update(
    milestone_id: str,
    delta_usd: float,
    worker_total_usd: float,
    run_total_usd: float,
    budget_ceiling: float | None,
    source: str,
) -> None:
    """Cost changed: a worker's ``message_end`` events were read (or a host reported cost),
    or the user's own GSD session spent (through the GSD extension).

    Broadcast, fired by the supervisor after the new cost is committed to the store,
    so the totals are exact across supervisor restarts.  The session's spend is fired by
    whichever process drains the extension's spool (the supervisor, or
    ``gsd-parallel session-events``).

    :param milestone_id: the worker's milestone; ``session:<GSD session id>`` for the session.
    :param delta_usd: the increase since the previous call for this worker (or session).
    :param worker_total_usd: the milestone's total over all its restarts (the session's total).
    :param run_total_usd: the run's total over all workers (the session never counts in it).
    :param budget_ceiling: ``parallel.budget_ceiling`` or None.
    :param source: ``"worker"``, or ``"session"`` for the user's own GSD session.
    """


@hookspec("broadcast")
def on_budget_exceeded(run_total_usd: float, budget_ceiling: float) -> None:
    """The run's total reached ``parallel.budget_ceiling``; every worker is being stopped.

    Broadcast, fired once per run by the supervisor.
    """


# --------------------------------------------------------------------------- overlaps


@hookspec("broadcast")
def on_overlap_detected(
    milestone_ids: Sequence[str],
    files: Sequence[str],
    would_conflict: bool,
    conflict_files: Sequence[str],
) -> None:
    """Two running or unmerged milestones have changed the same files (the overlap radar).

    Broadcast, fired by the supervisor once per new pair and run (a restarted supervisor
    does not fire it again), within one unit of the second edit, whether or not any plan
    names the files.

    :param milestone_ids: the pair, in ID order.
    :param files: the files both have changed against their base (planning files aside).
    :param would_conflict: True when merging one branch into the other would conflict
        (``git merge-tree``; nothing checked out).
    :param conflict_files: the files that would conflict (empty when it merges cleanly).
    """


# --------------------------------------------------------------------------- merge


@hookspec("decision")
def choose_merge_order(
    candidates: Sequence[str], project: Project, preferences: Mapping[str, Any]
) -> Sequence[str] | None:
    """Decide the order in which completed milestones merge.

    Decision hook (firstresult), called by ``merge`` and by automatic merging.  The
    builtin honours ``parallel.merge_order``.  Return a permutation (or a subset) of
    ``candidates``; IDs not in ``candidates`` are ignored.
    """


@hookspec("decision")
def resolve_merge_conflict(milestone_id: str, files: Sequence[str], worktree: Path) -> bool | None:
    """Resolve code conflicts of a squash merge before it is aborted.

    Decision hook (firstresult), called in the merging process with the temporary
    worktree holding the conflicted merge.  Return True after resolving *and staging*
    every file in ``files``; None lets the next implementation (finally the builtin
    stop-and-report) decide.
    """


@hookspec("veto")
def before_merge(milestone_id: str, worktree: Path, changed_files: Sequence[str], commit: str) -> str | None:
    """Gate a merge that is built but has not landed yet.

    Veto hook, called in the merging process after the squash commit was made in the
    temporary worktree and before the integration branch moves.  Return a reason to
    refuse the merge; None to allow it.

    :param worktree: the temporary worktree holding the merged tree (run checks there).
    :param changed_files: paths the merge changes relative to the integration branch.
    :param commit: the squash commit's SHA.
    """


@hookspec("broadcast")
def on_merge_complete(milestone_id: str, commit: str, branch: str) -> None:
    """A milestone landed on the integration branch ``branch`` as ``commit``.

    Broadcast, fired by the merging process after the ref moved.
    """


HOOK_KINDS: dict[str, HookKind] = {
    name: getattr(obj, KIND_ATTRIBUTE)
    for name, obj in list(globals().items())
    if hasattr(obj, KIND_ATTRIBUTE)
}
"""Hook name -> kind, read from the specs above (in their order)."""
