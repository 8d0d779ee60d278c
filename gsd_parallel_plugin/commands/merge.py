"""``gsd-parallel merge [MID] [--dry-run | --preview]``: land completed milestones on the
integration branch.

Text output is GSD's ``# Merge Results`` list; ``--json`` prints
``{"results": [{"id", "outcome", "files", "commit", "error"}]}``. Exit 1 when any merge did
not land (``--dry-run``: when any would conflict; ``--preview``: when any milestone in flight
would conflict or fail merge_check, see :mod:`..merge.preview`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import hints
from ..errors import ProjectError, UserError
from ..exitcodes import ExitCode
from ..invocation import ArgParser, Loaded, load, parse
from ..milestone_ids import validate_milestone_id
from ..models import CommandContext, CommandResult, MergeResult, WaitKind
from ..views.runstate import RunView, open_store
from ..workspace import layout
from ..workspace.layout import branch_name, checkout_display

NO_CANDIDATES = "No completed milestones to merge."
IN_WORKER = "Cannot merge from within a parallel worker"

if TYPE_CHECKING:
    from ..merge.attempt import MergeEnv
    from ..store import Store


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..merge.attempt import MergeEnv
    from ..merge.plan import merge_candidates
    from ..store import Store
    from ..workspace import git

    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--preview", action="store_true")
    args = parse(parser, ctx)
    if args.preview and (args.milestone or args.dry_run):
        raise UserError(
            "merge --preview previews every milestone in flight: run it without a "
            f"milestone ID or --dry-run ({hints.cmd('merge --preview')})"
        )
    if os.environ.get("GSD_PARALLEL_WORKER"):
        raise UserError(IN_WORKER)
    loaded = load(ctx)
    git.repo_root(loaded.root)  # one clear line when this is not a git repository
    prefs = loaded.preferences.parallel
    with Store(layout.store_path(loaded.parallel_dir)) as store:
        env = MergeEnv(loaded.root, loaded.project, store, ctx.host.hooks, prefs, notify=ctx.host.notify)
        if args.preview:
            return _preview(ctx, env)
        candidates, notes = merge_candidates(env)
        if args.milestone:
            mid = _explicit(loaded, store, args.milestone, candidates)
            if isinstance(mid, CommandResult):
                return _mark_dry(mid, args.dry_run)
            order = [mid]
        else:
            for note in notes:
                ctx.host.notify(note, "warning")
            order = ctx.host.hooks.choose_merge_order(candidates, loaded.project, prefs.to_json())
        if not order:
            return _mark_dry(CommandResult(NO_CANDIDATES, {"results": []}), args.dry_run)
        if args.dry_run:
            return _dry_run(env, order)
        waiting_before = _waiting_ids(loaded)
        results = _merge(ctx, env, order)
        landed = set(store.merged_milestones())
    text = render_results(results)
    _hints(ctx, loaded, results, waiting_before)
    code = ExitCode.FAILED if any(r.id not in landed for r in results) else ExitCode.OK
    return CommandResult(text, {"results": [r.to_json() for r in results]}, exit_code=code)


def _mark_dry(result: CommandResult, dry: bool) -> CommandResult:
    """Every ``merge --dry-run --json`` answer has its ``dry_run`` key, nothing to merge too."""
    if dry and isinstance(result.data, dict):
        result.data["dry_run"] = True
    return result


def _explicit(loaded: Loaded, store: Store, value: str, candidates: Sequence[str]) -> str | CommandResult:
    """``merge MID``: the milestone, or a ready answer when there is nothing to do."""
    from ..workspace import git

    mid = validate_milestone_id(value)
    if mid in candidates:
        return mid
    merged = store.merged_milestones()
    has_branch = git.branch_exists(loaded.root, branch_name(mid))
    if mid in merged and not has_branch:
        result = MergeResult(mid, "skipped", commit=merged[mid], error="already merged")
        return CommandResult(render_results([result]), {"results": [result.to_json()]})
    if loaded.project.get(mid) is None and not has_branch:
        raise ProjectError(f"unknown milestone {mid}")
    if not has_branch:
        raise UserError(f"{mid} has no branch {branch_name(mid)}: nothing to merge")
    if mid in merged:
        raise UserError(f"{mid} is already merged (as {merged[mid][:12]})")
    raise UserError(f"{mid} is not complete yet: only a completed milestone can merge")


def _merge(ctx: CommandContext, env: MergeEnv, order: Sequence[str]) -> list[MergeResult]:
    from ..merge.attempt import merge_all
    from ..views.progress import progress

    if len(order) == 1:
        return merge_all(env, order)
    with progress(ctx, total=len(order), label="Merging") as bar:

        def step(result: MergeResult) -> None:
            bar.advance(f"{result.id} {result.outcome}")

        return merge_all(env, order, on_result=step)


def _dry_run(env: MergeEnv, order: list[str]) -> CommandResult:
    from ..merge.plan import dry_run

    results = dry_run(env, order)
    lines = []
    for r in results:
        if r.outcome == "conflict":
            lines.append(f"- **{r.id}** — CONFLICT ({len(r.files)} file(s)):")
            lines += [f"  - `{f}`" for f in r.files]
        elif r.outcome == "refused":
            lines.append(f"- **{r.id}** — would be refused: {r.error}")
        elif r.outcome == "clean":
            extra = f" ({len(r.resolved)} .gsd/junk conflict(s) resolve themselves)"
            check = env.preferences.merge_check
            gate = f"; `{' '.join(check)}` (merge_check) runs before it lands" if check else ""
            lines.append(f"- **{r.id}** — clean" + (extra if r.resolved else "") + gate)
        else:
            lines.append(f"- **{r.id}** — skipped: {r.error}")
    text = "\n".join(["# Merge Dry Run\n", *lines]) + "\n"
    data = {"dry_run": True, "results": [r.to_json() for r in results]}
    code = ExitCode.FAILED if any(r.outcome in {"conflict", "refused"} for r in results) else ExitCode.OK
    return CommandResult(text, data, exit_code=code)


def _preview(ctx: CommandContext, env: MergeEnv) -> CommandResult:
    from ..merge.preview import preview, preview_order

    order, running = preview_order(env, ctx.host.hooks)
    if not order:
        text = "No milestone in flight: nothing to preview.\n"
        return CommandResult(text, {"preview": True, "results": []})
    results = preview(env, order, running)
    check = env.preferences.merge_check
    gate = f"`{shlex.join(check)}` (merge_check) after each" if check else "no merge_check configured"
    lines = [f"In merge order, each on top of the ones before it; {gate}. Nothing was merged.\n"]
    for r in results:
        head = f"- **{r.id}** ({r.state})"
        if r.outcome == "clean":
            lines.append(f"{head} — clean" + (", merge_check passed" if r.checked else ""))
        elif r.outcome == "conflict":
            lines.append(f"{head} — CONFLICT ({len(r.files)} file(s)):")
            lines += [f"  - `{f}`" for f in r.files]
        elif r.outcome == "check_failed":
            first, *rest = (r.output or "merge_check failed").splitlines()
            lines.append(f"{head} — FAILS merge_check with what is before it: {first}")
            lines += [f"    {line}" for line in rest]
        else:
            lines.append(f"{head} — skipped: {r.error}")
    text = "\n".join(["# Merge Preview\n", *lines]) + "\n"
    bad = [r for r in results if r.outcome in {"conflict", "check_failed"}]
    for r in bad:
        what = "conflicts" if r.outcome == "conflict" else "breaks merge_check"
        ctx.host.notify(
            f"{r.id} {what} with the milestones merged before it: fix it on its branch in "
            f"{checkout_display(r.id)} (a running worker can be paused with "
            f"{hints.cmd(f'pause {r.id}')}), then run {hints.cmd('merge --preview')} again.",
            "warning",
        )
    data = {"preview": True, "merge_check": list(check) if check else None,
            "results": [r.to_json() for r in results]}  # fmt: skip
    return CommandResult(text, data, exit_code=ExitCode.FAILED if bad else ExitCode.OK)


def render_results(results: Sequence[MergeResult]) -> str:
    """GSD's merge report: ``# Merge Results`` then one bullet per milestone."""
    lines = []
    for r in results:
        if r.outcome == "merged":
            lines.append(f"- **{r.id}** — merged successfully")
        elif r.outcome == "conflict":
            lines.append(f"- **{r.id}** — CONFLICT ({len(r.files)} file(s)):")
            lines += [f"  - `{f}`" for f in r.files]
            lines.append(f"  Resolve conflicts manually and run {hints.cmd(f'merge {r.id}')} to retry.")
        else:
            first, *rest = (r.error or r.outcome).splitlines() or [r.outcome]
            lines.append(f"- **{r.id}** — {r.outcome}: {first}")
            lines += [f"  {line}" for line in rest]
    return "\n".join(["# Merge Results\n", *lines]) + "\n"


def _hints(
    ctx: CommandContext, loaded: Loaded, results: Sequence[MergeResult], waiting_before: set[str]
) -> None:
    """Say how to resolve a conflict, and what the merges let start."""
    for r in results:
        if r.outcome == "conflict":
            integ = _integration(loaded, r.id)
            ctx.host.notify(
                f"To resolve {r.id}: in {checkout_display(r.id)} run `git merge {integ}`, fix "
                f"{', '.join(r.files[:3])}{' …' if len(r.files) > 3 else ''}, commit, then "
                f"{hints.cmd(f'merge {r.id}')}."
            )
    if not any(r.outcome == "merged" for r in results):
        return
    from ..run.supervisor_lock import supervisor_running

    after = _after_merge(ctx, loaded)
    supervised = supervisor_running(loaded.parallel_dir)
    if not supervised:
        after.close_run_if_done()
    unblocked = [mid for mid in after.startable if mid in waiting_before]
    if unblocked and not ctx.json:
        if supervised:
            ctx.host.notify(f"{', '.join(unblocked)} can start now: the supervisor starts it.")
        else:
            ctx.host.notify(f"{', '.join(unblocked)} can start now: run {hints.cmd('start')}.")


def _waiting_ids(loaded: Loaded) -> set[str]:
    """What waits before the merge (for a dependency's or an overlapping milestone's merge)."""
    return {w["id"] for w in RunView.read(loaded).waiting(loaded)}


@dataclass
class _AfterMerge:
    """The run as the merge left it (the project read again: the merge changed the
    integration branch's .gsd)."""

    loaded: Loaded
    view: RunView
    startable: list[str]
    waiting: list[str]

    def close_run_if_done(self) -> None:
        """The last merge of a run whose supervisor has exited ends the run: every worker
        complete and merged, nothing startable, nothing waiting."""
        run = self.view.run
        if run is None or not self.view.active or self.startable or self.waiting:
            return
        if any(w.state != "complete" or w.milestone_id not in self.view.merged for w in self.view.workers):
            return
        store = open_store(self.loaded)
        if store is not None:
            with store:
                store.finish_run(run.id)


def _after_merge(ctx: CommandContext, before: Loaded) -> _AfterMerge:
    from dataclasses import replace

    from ..project import read_project
    from ..project.eligibility import analyse

    # The project read again from its root (the command may have run inside the checkout
    # the merge just removed).
    project = read_project(
        before.root,
        default_branch=before.project.integration_branch,
        git_main_branch=before.preferences.git_main_branch,
    )
    loaded = replace(before, project=project)
    view = RunView.read(loaded)
    prefs = loaded.preferences.parallel
    report = analyse(
        loaded.project,
        max_workers=prefs.max_workers,
        overlap_policy=prefs.overlap,
        running=view.live,
        awaiting_merge=view.awaiting_merge,
        held=view.held,
    )
    startable = [*report.plan.start, *(w.id for w in report.plan.waiting if w.kind == WaitKind.SLOT)]
    waiting = [w["id"] for w in view.waiting(loaded) if w["id"] not in startable]
    return _AfterMerge(loaded, view, startable, waiting)


def _integration(loaded: Loaded, mid: str) -> str:
    milestone = loaded.project.get(mid)
    return (milestone.integration_branch if milestone else None) or (loaded.project.integration_branch)
