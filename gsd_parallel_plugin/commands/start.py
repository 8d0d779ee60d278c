"""``/gsd parallel start``: the eligibility report, the plan, and (unless --dry-run) workers."""

from __future__ import annotations

import time

from ..eligibility import analyse, render_report, report_json
from ..errors import GitError
from ..models import CommandContext, CommandResult, EligibilityReport
from .common import ArgParser, Loaded, load, parse, require_enabled, veto_for
from .runstate import RunView, open_store, refuse_if_budget_exhausted

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
    view = RunView.read(loaded) if not args.dry_run else None
    report = analyse(
        loaded.project,
        max_workers=prefs.max_workers,
        overlap_policy=prefs.overlap,
        veto=veto_for(ctx, loaded),
        running=view.live if view else (),
        awaiting_merge=view.awaiting_merge if view else (),
        held=view.held if view else (),
    )
    text = render_report(report, loaded.project)
    data = report_json(report)
    data["preferences"] = prefs.to_json()
    data["project_problems"] = list(loaded.project.problems)
    if args.dry_run:
        return CommandResult(text, data)
    held = _held_eligible(report, view)
    data["held"] = [{"id": mid, "state": state} for mid, state in held]
    if held:
        text += _held_text(held)

    refuse_if_budget_exhausted(loaded)
    check_repository(loaded)
    check_worker_command(ctx, loaded)
    if not report.plan.start and not (view and view.live) and not args.wait:
        from .supervise import ensure_supervisor

        if view is not None and ensure_supervisor(ctx, loaded, view):
            # Merges or waiting work were left without a supervisor (killed during a merge).
            return CommandResult(f"{text}\n{CARRIES_ON}", {**data, "started": [], "supervisor_started": True})
        none = NOTHING_NEW if held else NONE_ELIGIBLE
        return CommandResult(f"{text}\n{none}", {**data, "started": []}, exit_code=0)
    if args.wait:
        from .foreground import INTERRUPTED, hand_over, run_foreground

        code = run_foreground(ctx, loaded)
        if code == INTERRUPTED:
            pid = hand_over(loaded)
            final = RunView.read(loaded)
            who = f"a background supervisor (pid {pid})" if pid else "the background supervisor"
            text = (
                f"Interrupted. The workers keep running ({', '.join(final.live)}) under {who}: "
                "`gsd-parallel status` to follow, `gsd-parallel stop` to stop them.\n"
                if final.live
                else "Interrupted. No worker is running; `gsd-parallel status` shows where the run stands.\n"
            )
            result = {**data, **final.status_json(loaded), "interrupted": True}
            return CommandResult(final.render_status(loaded) + "\n" + text, result, exit_code=code)
        final = RunView.read(loaded)
        return CommandResult(
            final.render_status(loaded), {**data, **final.status_json(loaded)}, exit_code=code
        )
    return start_background(ctx, loaded, report, text, data)


def _held_eligible(report: EligibilityReport, view: RunView | None) -> list[tuple[str, str]]:
    """Eligible milestones this run will not start again by itself (stopped, failed, paused)."""
    if view is None:
        return []
    held = set(view.held)
    return [
        (v.id, w.state)
        for v in report.eligible
        if v.id in held and (w := view.worker(v.id)) is not None
    ]


def _held_text(held: list[tuple[str, str]]) -> str:
    names = ", ".join(f"{mid} ({state})" for mid, state in held)
    how = (
        f"`/gsd parallel resume {held[0][0]}`"
        if len(held) == 1
        else "`/gsd parallel resume` (all) or `/gsd parallel resume <MID>`"
    )
    return f"\nHeld in the current run, not started again by `start`: {names}. Continue with {how}.\n"


def check_repository(loaded: Loaded) -> None:
    """Refuse the whole start for repository states no worktree can start from."""
    from .. import git

    root = git.repo_root(loaded.root)
    if git.is_unborn(root):
        raise GitError("repository has no commits yet: commit something first, then start")
    if git.current_branch(root) is None:
        raise GitError(
            "the main checkout is on a detached HEAD: check out "
            f"{loaded.project.integration_branch} first"
        )


def check_worker_command(ctx: CommandContext, loaded: Loaded) -> None:
    """A missing worker binary is one clear error now, not a failed worker per milestone.

    Skipped when a third-party plugin implements ``spawn_worker``: it may not use the command.
    """
    import os

    from ..workers import resolve_program

    if any(not name.startswith("gsd_parallel.") for name in ctx.host.hooks.implementers("spawn_worker")):
        return
    resolve_program(loaded.preferences.parallel.worker_command[0], os.environ, loaded.root)


def start_background(
    ctx: CommandContext,
    loaded: Loaded,
    report: EligibilityReport,
    text: str,
    data: dict[str, object],
) -> CommandResult:
    from ..supervisor import spawn_background, supervisor_running

    parallel_dir = loaded.parallel_dir
    already = supervisor_running(parallel_dir)
    spawned_at = time.time()
    if not already:
        spawn_background(loaded.root, parallel_dir)
    wanted = set(report.plan.start)
    deadline = time.time() + START_WAIT_SECONDS
    view = RunView.read(loaded)
    while time.time() < deadline:
        view = RunView.read(loaded)
        # A row written before the spawn (a worker the budget stopped, continuing now) has
        # not settled yet: its old state says nothing about this start.
        settled = {
            w.milestone_id
            for w in view.workers
            if w.state != "starting" and w.updated_at >= spawned_at
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
    code = 1 if failed and not started else 0
    return CommandResult(f"{text}\n" + "\n".join(lines) + "\n", result, exit_code=code)


__all__ = ["STARTED", "open_store", "run"]
