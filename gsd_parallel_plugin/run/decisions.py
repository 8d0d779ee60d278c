"""The supervisor's decisions as pure functions over plain data (table-tested, no processes).

- :func:`decide_exit`: what a worker's exit means, in GSD's own words where it
  gave any. The supervisor gathers the facts (exit code, the log's last notice, completion
  as GSD records it) and applies the outcome.
- :func:`exit_decision`: whether a run is done (closes by itself) and why not. The
  supervisor asks it when its loop ends; ``run.ensure.work_left`` asks it whether a new
  supervisor would close the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..exitcodes import GsdExit
from ..models import StateReason, WorkerState

BLOCKING_STOPS = {"provider": WorkerState.BLOCKED, "startup": WorkerState.BLOCKED,
                  "isolation": WorkerState.FAILED}  # fmt: skip
"""Stops we make because a worker cannot go on, and the state each leaves it in."""


@dataclass
class SettledState:
    state: WorkerState
    reason: str | None = None


@dataclass(frozen=True)
class ExitFacts:
    """What is known when a worker's process has gone."""

    code: int | None
    """Its exit code; None when it was not ours to reap (adopted from an earlier supervisor)."""
    requested: str | None = None
    """What we asked of it: ``pause``, ``stop``, ``budget``, or a key of :data:`BLOCKING_STOPS`."""
    complete: bool = False
    """GSD records the milestone complete (its DB in the checkout, or the SUMMARY)."""
    notice: str | None = None
    """The first line of GSD's last notice since the launch."""
    state_reason: str | None = None
    """The worker row's reason (why a pausing worker was paused)."""
    block_reason: str | None = None
    """Why we stopped it, when ``requested`` is a key of :data:`BLOCKING_STOPS`."""
    log_code: int | None = None
    """For an adopted worker: the exit code its log implies (None when it does not say)."""
    stderr_last: str | None = None
    """The last line of its stderr log."""


def first_line(text: str | None) -> str | None:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else None


def pause_reason(state_reason: str | None) -> str | None:
    """Why a pausing worker was paused, when not by the user (budget guard reasons)."""
    if state_reason in (None, StateReason.PAUSE_REQUESTED):
        return None
    return state_reason


def decide_exit(f: ExitFacts) -> SettledState:
    """What an exit means. Exit 0 alone never means complete: GSD exits 0 after a stop too."""
    if f.requested == "isolation":  # whatever it finished, it is not merged blindly
        return SettledState(WorkerState.FAILED, f.block_reason)
    if f.complete:
        return SettledState(WorkerState.COMPLETE)
    if f.requested in BLOCKING_STOPS:
        return SettledState(BLOCKING_STOPS[f.requested], f.block_reason)
    paused = SettledState(WorkerState.PAUSED, pause_reason(f.state_reason))
    code = f.code
    if code is None:  # adopted: infer from the log
        code = f.log_code
        if code is None and f.requested in {"pause", "stop", "budget"}:
            code = GsdExit.CANCELLED  # ended by the SIGTERM we sent it (an interrupting pause, a stop)
        if code is None:
            return SettledState(WorkerState.CRASHED, "worker vanished (exit status unknown)")
    if code == GsdExit.DONE:
        if f.requested == "budget":
            return SettledState(WorkerState.STOPPED, StateReason.BUDGET)
        if f.requested == "stop":
            return SettledState(WorkerState.STOPPED, None)
        return SettledState(
            WorkerState.STOPPED,
            "GSD exited without completing the milestone" + (f": {f.notice}" if f.notice else ""),
        )
    if code == GsdExit.PAUSED_OR_BLOCKED:
        if f.requested == "pause":
            return paused
        # Paused for a provider error, blocked, the uncommitted-changes guard: GSD says which.
        return SettledState(WorkerState.BLOCKED, f.notice or "GSD reported the milestone blocked (exit 10)")
    if f.requested == "pause" and (code == GsdExit.CANCELLED or code < 0):
        return paused  # interrupted on purpose (budget guard); resumable like any pause
    if f.requested in {"stop", "budget"}:
        return SettledState(WorkerState.STOPPED, StateReason.BUDGET if f.requested == "budget" else None)
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return SettledState(WorkerState.CRASHED, f"{how}" + (f": {f.stderr_last}" if f.stderr_last else ""))


# --------------------------------------------------------------------------- is the run done?


@dataclass(frozen=True)
class RunFacts:
    """A run as the exit decision sees it, once nothing runs or waits to restart."""

    states: tuple[str, ...]
    """The state of each worker in the run."""
    awaiting_merge: tuple[str, ...] = ()
    """Its milestones complete but not merged, sorted."""
    uncommitted: tuple[str, ...] = ()
    """Milestones held back until their plan is committed, sorted."""
    startable: tuple[str, ...] = ()
    """Milestones eligible to start now."""

    @classmethod
    def of(
        cls,
        states: Iterable[str],
        awaiting_merge: Iterable[str] = (),
        uncommitted: Iterable[str] = (),
        startable: Iterable[str] = (),
    ) -> RunFacts:
        return cls(tuple(states), tuple(sorted(awaiting_merge)), tuple(sorted(uncommitted)),
                   tuple(startable))  # fmt: skip


@dataclass(frozen=True)
class ExitDecision:
    done: bool
    """The run closes: every milestone in it complete and merged, nothing held back or startable."""
    why: str
    """What the supervisor says as it exits."""


def exit_decision(f: RunFacts) -> ExitDecision:
    """Whether the run is done. A milestone complete but not merged keeps it open: what waits
    for its merge stays listed as waiting, and ``start`` continues this run (its cost stays in
    ``status``); so does a milestone held back until its plan is committed."""
    done = all(state == "complete" for state in f.states) and not (
        f.awaiting_merge or f.uncommitted or f.startable
    )
    why = (
        f"waiting for {', '.join(f.awaiting_merge)} to be merged"
        if f.awaiting_merge
        else f"waiting for the plans of {', '.join(f.uncommitted)} to be committed"
        if f.uncommitted
        else "nothing left to run"
    )
    return ExitDecision(done, why)
