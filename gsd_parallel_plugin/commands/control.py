"""``/gsd parallel stop|pause|resume [MID]``: queue the command, make sure a supervisor
applies it, wait briefly for the effect, and answer with GSD's messages."""

from __future__ import annotations

import time

from ..errors import UserError
from ..invocation import ArgParser, load, milestone_arg, parse
from ..models import CommandContext, CommandResult
from ..money import NANOS_PER_USD, usd_to_nanos
from ..preferences import usd_amount
from ..run.budget import envelope_of
from ..run.drift import is_sync_pause
from ..run.ensure import ensure_supervisor
from ..store import WorkerRow
from ..views import NO_RUN
from ..views.runstate import RunView, open_store, refuse_if_budget_exhausted

ACCEPTS = {
    "stop": {"starting", "running", "pausing", "paused", "crashed", "blocked"},
    "pause": {"starting", "running"},
    "resume": {"paused", "pausing", "blocked", "stopped", "failed"},
}
"""Stopped and failed workers resume too: relaunched in their worktree, GSD goes on from disk
(without this nothing could ever continue them: ``start`` does not restart what this run holds)."""
DONE = {
    "stop": {"stopped", "complete", "failed"},
    "pause": {"pausing", "paused", "complete"},
    "resume": {"running", "starting", "complete"},
}
MESSAGES = {
    "stop": ("Stopped worker for {mid}.", "All parallel workers stopped."),
    "pause": ("Paused worker for {mid}.", "All parallel workers paused."),
    "resume": ("Resumed worker for {mid}.", "All parallel workers resumed."),
}


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    if name == "pause":
        parser.add_argument("--now", action="store_true", help="freeze the process (SIGSTOP)")
    if name == "resume":
        parser.add_argument("--budget", type=float, metavar="USD")
    args = parse(parser, ctx)
    if name == "resume" and args.budget is not None:
        try:
            usd_amount(args.budget)
        except ValueError as exc:
            raise UserError(f"--budget {args.budget:g} is invalid: expected {exc}") from None
    # stop and pause must work while PREFERENCES.md has a typo: the workers keep spending
    loaded = load(ctx, strict=name == "resume")
    view = RunView.read(loaded)
    if not view.active:
        raise UserError(NO_RUN)
    if name == "resume":
        loaded.preferences.require_worker_command()  # resume launches workers
        refuse_if_budget_exhausted(loaded)
    now = name == "pause" and bool(args.now)
    targets = _targets(name, loaded, view, args.milestone, now=now)
    if name == "resume":
        _check_envelopes(loaded, view, targets, args.budget)
    command_args: dict[str, object] = {}
    if name == "pause" and args.now:
        command_args["now"] = True
    if name == "resume" and args.budget is not None:
        command_args["budget"] = args.budget
    store = open_store(loaded)
    assert store is not None
    with store:
        store.enqueue(name, args.milestone, command_args)
    ensure_supervisor(ctx, loaded, view, force=True)
    view = _wait_for(name, loaded, targets, loaded.preferences.parallel.stop_grace_seconds, now=now)
    single, every = MESSAGES[name]
    text = single.format(mid=args.milestone) if args.milestone else every
    states = {mid: (w.state if (w := view.worker(mid)) else None) for mid in targets}
    if name == "pause" and not (args.now) and any(s == "pausing" for s in states.values()):
        text += "\nIt pauses after its current unit; the worktree and branch are kept."
    return CommandResult(text, {"command": name, "milestones": targets, "states": states})


NOW_ACCEPTS = ACCEPTS["pause"] | {"pausing"}
"""``pause --now`` escalates a graceful pause still waiting for its unit to end: it freezes it."""


def _accepts(name: str, w: WorkerRow, *, now: bool = False) -> bool:
    if name == "pause" and w.state == "pausing" and is_sync_pause(w.state_reason):
        return True  # the drift guard pauses it only to update it, then relaunches: this pause stays
    return w.state in (NOW_ACCEPTS if now else ACCEPTS[name])


def _targets(name: str, loaded, view: RunView, mid: str | None, *, now: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    accepts = NOW_ACCEPTS if now else ACCEPTS[name]
    if mid is not None:
        mid = milestone_arg(loaded, mid)
        w = view.worker(mid)
        if w is None:
            raise UserError(f"{mid} has no worker in the current run; nothing to {name}")
        if not _accepts(name, w, now=now) and w.state in DONE[name]:
            raise UserError(f"{mid} is already {w.state}: nothing to {name}")
        if not _accepts(name, w, now=now):
            raise UserError(
                f"{mid} is {w.state}; only a worker that is {_either(accepts)} can be {_past(name)}"
            )
        return [mid]
    targets = [w.milestone_id for w in view.workers if _accepts(name, w, now=now)]
    if not targets:
        raise UserError(f"no worker to {name}: none is {_either(accepts)}")
    return targets


def _check_envelopes(loaded, view: RunView, targets: list[str], budget: float | None) -> None:  # type: ignore[no-untyped-def]
    """A worker at its milestone budget would pause again at once: ask for a higher one.

    ``--budget`` is the milestone's new total envelope, so it must exceed what it spent.
    """
    default = loaded.preferences.parallel.milestone_budget
    for mid in targets:
        w = view.worker(mid)
        if w is None:
            continue
        if budget is not None:
            if usd_to_nanos(budget) <= w.cost_nanos:
                raise UserError(
                    f"--budget {budget:g} is not above what {mid} has spent (${w.cost:.2f}):"
                    " it is the milestone's new total budget"
                )
            continue
        envelope = envelope_of(w, default)
        if envelope is not None and w.cost_nanos >= envelope:
            raise UserError(
                f"{mid} has spent ${w.cost:.2f} of its ${envelope / NANOS_PER_USD:.2f} milestone"
                f" budget: resume it with --budget USD above ${w.cost:.2f}"
            )


def _either(states: set[str]) -> str:
    ordered = sorted(states)
    return ", ".join(ordered[:-1]) + " or " + ordered[-1] if len(ordered) > 1 else ordered[0]


def _past(name: str) -> str:
    return {"stop": "stopped", "pause": "paused", "resume": "resumed"}[name]


def _wait_for(name: str, loaded, targets: list[str], grace: float, *, now: bool = False) -> RunView:  # type: ignore[no-untyped-def]
    done = {"paused", "complete"} if now else DONE[name]  # --now: frozen, not just asked
    deadline = time.time() + (2 * grace + 5.0 if name == "stop" else 5.0)  # signal, TERM, KILL
    view = RunView.read(loaded)
    while time.time() < deadline:
        view = RunView.read(loaded)
        if all((w := view.worker(mid)) is not None and w.state in done for mid in targets):
            break
        time.sleep(0.1)
    return view
