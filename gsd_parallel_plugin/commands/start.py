"""``gsd-parallel start``: the eligibility report, the plan, and (unless --dry-run) workers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from .. import hints
from ..errors import GitError
from ..exitcodes import ExitCode
from ..invocation import ArgParser, Loaded, load, parse, require_enabled, veto_for
from ..models import CommandContext, CommandResult, EligibilityReport
from ..project.eligibility import analyse, render_report, report_json
from ..views.runstate import RunView, held_for_plans, open_store, refuse_if_budget_exhausted
from ..workspace import layout

STARTED = "Parallel orchestration started."
ALREADY = "Parallel orchestration is already running; its supervisor fills free slots itself."
NONE_ELIGIBLE = "No milestones are eligible for parallel execution."
NOTHING_NEW = "Nothing new to start."
CARRIES_ON = "The run had no supervisor; a new one carries on with what is left."
START_WAIT_SECONDS = 20.0


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--wait", action="store_true")
    args = parse(parser, ctx)
    loaded = load(ctx)
    require_enabled(loaded)
    prefs = loaded.preferences.parallel
    view = RunView.read(loaded)
    report = analyse(
        loaded.project,
        max_workers=prefs.max_workers,
        overlap_policy=prefs.overlap,
        veto=veto_for(ctx, loaded),
        uncommitted=held_for_plans(loaded, started=[w.milestone_id for w in view.workers]),
        running=view.live if view else (),
        awaiting_merge=view.awaiting_merge if view else (),
        held=view.held if view else (),
    )
    text = render_report(report, loaded.project)
    data = report_json(report)
    data["preferences"] = prefs.to_json()
    data["project_problems"] = list(loaded.project.problems)
    if args.dry_run:
        refusal = _would_refuse(ctx, loaded)
        data["would_refuse"] = refusal
        if refusal:
            text += f"\n`start` would refuse: {refusal}\n"
        return CommandResult(text, data)
    held = _held_eligible(report, view)
    data["held"] = [{"id": mid, "state": state} for mid, state in held]
    if held:
        text += _held_text(held)
    unmerged = [mid for mid in view.awaiting_merge if loaded.project.get(mid) is not None]
    data["awaiting_merge"] = unmerged
    if unmerged:
        text += (
            f"\nComplete, awaiting merge (never started again): {', '.join(unmerged)}. "
            f"Merge with {hints.cmd('merge')}.\n"
        )

    refuse_if_budget_exhausted(loaded)
    check_repository(loaded)
    check_worker_command(ctx, loaded)
    if not report.plan.start and not (view and view.live) and not args.wait:
        from ..run.ensure import ensure_supervisor

        if view is not None and ensure_supervisor(ctx, loaded, view):
            # Merges or waiting work were left without a supervisor (killed during a merge).
            return CommandResult(f"{text}\n{CARRIES_ON}", {**data, "started": [], "supervisor_started": True})
        none = NOTHING_NEW if held else NONE_ELIGIBLE
        return CommandResult(f"{text}\n{none}", {**data, "started": []})
    if args.wait:
        from ..run.foreground import hand_over, run_foreground

        if not ctx.json:  # the report and plan first, as `start` prints them, then the run
            print(text.rstrip("\n") + "\n", file=ctx.host.out, flush=True)
        code = run_foreground(ctx, loaded)
        if code == ExitCode.INTERRUPTED:
            pid = hand_over(loaded)
            final = RunView.read(loaded)
            who = f"a background supervisor (pid {pid})" if pid else "the background supervisor"
            text = (
                f"Interrupted. The workers keep running ({', '.join(final.live)}) under {who}: "
                f"{hints.cmd('status')} to follow, {hints.cmd('stop')} to stop them.\n"
                if final.live
                else f"Interrupted. No worker is running; {hints.cmd('status')} shows where the run stands.\n"
            )
            result = {**data, **final.status_json(loaded), "interrupted": True}
            return CommandResult(final.render_status(loaded) + "\n" + text, result, exit_code=code)
        final = RunView.read(loaded)
        return CommandResult(
            final.render_status(loaded), {**data, **final.status_json(loaded)}, exit_code=code
        )
    return start_background(ctx, loaded, report, text, data)


def _would_refuse(ctx: CommandContext, loaded: Loaded) -> str | None:
    """What a real ``start`` would refuse with (repository, worker, budget), said by the dry run."""
    from ..errors import GsdParallelError

    try:
        refuse_if_budget_exhausted(loaded)
        check_repository(loaded)
        check_worker_command(ctx, loaded)
    except GsdParallelError as exc:
        return str(exc)
    return None


def _held_eligible(report: EligibilityReport, view: RunView | None) -> list[tuple[str, str]]:
    """Eligible milestones this run will not start again by itself (stopped, failed, paused)."""
    if view is None:
        return []
    held = set(view.held)
    return [(v.id, w.state) for v in report.eligible if v.id in held and (w := view.worker(v.id)) is not None]


def _held_text(held: list[tuple[str, str]]) -> str:
    """Held milestones and how to continue each: a complete one merges, the others resume."""
    names = ", ".join(f"{mid} ({state})" for mid, state in held)
    done = [mid for mid, state in held if state == "complete"]
    rest = [mid for mid, state in held if state != "complete"]
    how = []
    if rest:
        how.append(
            hints.cmd(f"resume {rest[0]}")
            if len(rest) == 1
            else f"{hints.cmd('resume')} (all) or {hints.cmd('resume <MID>')}"
        )
    if done:
        how.append(hints.cmd(f"merge {done[0]}") if len(done) == 1 else hints.cmd("merge"))
    return (
        f"\nHeld in the current run, not started again by `start`: {names}. "
        f"Continue with {' and '.join(how)}.\n"
    )


def check_repository(loaded: Loaded) -> None:
    """Refuse the whole start for repository states no worktree can start from."""
    from ..workspace import git

    root = git.repo_root(loaded.root)
    if git.is_unborn(root):
        raise GitError("repository has no commits yet: commit something first, then start")
    if git.current_branch(root) is None:
        raise GitError(
            f"the main checkout is on a detached HEAD: check out {loaded.project.integration_branch} first"
        )


def check_worker_command(ctx: CommandContext, loaded: Loaded) -> None:
    """A missing worker binary is one clear error now, not a failed worker per milestone.

    Skipped when a third-party plugin implements ``spawn_worker``: it may not use the command.
    """
    import os

    from ..run.workers import resolve_program

    command = loaded.preferences.require_worker_command()
    if any(not name.startswith("gsd_parallel.") for name in ctx.host.hooks.implementers("spawn_worker")):
        return
    resolve_program(command[0], os.environ, loaded.root)


@contextlib.contextmanager
def _start_lock(parallel_dir: Path) -> Iterator[None]:
    """``.gsd/parallel/start.lock`` (flock): one ``start`` at a time decides whether to spawn."""
    import fcntl

    parallel_dir.mkdir(parents=True, exist_ok=True)
    with open(parallel_dir / layout.START_LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # the holder releases within seconds (or dies)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


SETTLED_BY_START = frozenset({"running", "pausing", "complete", "failed", "blocked"})
"""States a launch by this ``start`` ends in; ``stopped``/``paused``/``crashed`` rows are from before it."""


def start_background(
    ctx: CommandContext,
    loaded: Loaded,
    report: EligibilityReport,
    text: str,
    data: dict[str, object],
) -> CommandResult:
    from ..run.ensure import wait_until_supervising
    from ..run.supervisor_lock import spawn_background, supervisor_running

    parallel_dir = loaded.parallel_dir
    spawned_at = time.time()
    # Two starts at once: each would see no supervisor, spawn one and say "started". Under
    # this lock the second waits until the first one's supervisor holds its lock, then sees it.
    with _start_lock(parallel_dir):
        already = supervisor_running(parallel_dir)
        if not already:
            wait_until_supervising(loaded, spawn_background(loaded.root, parallel_dir))
    wanted = set(report.plan.start)
    deadline = time.time() + START_WAIT_SECONDS
    view = RunView.read(loaded)
    while time.time() < deadline:
        view = RunView.read(loaded)
        # A row written before the spawn (a worker the budget stopped, continuing now) has
        # not settled yet: its old state says nothing about this start. Nor has a row the new
        # supervisor's adoption just wrote as stopped/paused/crashed: it is relaunched next.
        settled = {
            w.milestone_id for w in view.workers if w.state in SETTLED_BY_START and w.updated_at >= spawned_at
        }
        if wanted <= settled:
            break
        time.sleep(0.1)
    started = [w for w in view.workers if w.state in {"running", "starting", "pausing"}]
    failed = [w for w in view.workers if w.milestone_id in wanted and w.state == "failed"]
    first = ALREADY if already else STARTED
    lines = [first, "Workers: " + (", ".join(w.milestone_id for w in started) or "none")]
    if failed:
        lines.append("Errors: " + "; ".join(f"{w.milestone_id}: {w.state_reason}" for w in failed))
    result = {**data, **view.status_json(loaded)}
    result["started"] = [w.milestone_id for w in started]
    result["errors"] = [{"id": w.milestone_id, "error": w.state_reason} for w in failed]
    code = ExitCode.FAILED if failed and not started else ExitCode.OK
    return CommandResult(f"{text}\n" + "\n".join(lines) + "\n", result, exit_code=code)


__all__ = ["STARTED", "open_store", "run"]
