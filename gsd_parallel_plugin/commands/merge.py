"""``gsd-parallel merge [MID] [--dry-run]``: land completed milestones on the integration branch.

Text output is GSD's ``# Merge Results`` list; ``--json`` prints
``{"results": [{"id", "outcome", "files", "commit", "error"}]}``. Exit 1 when any merge did
not land (``--dry-run``: when any would conflict).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import hints
from ..errors import ProjectError, UserError
from ..layout import branch_name, checkout_display
from ..models import CommandContext, CommandResult, MergeResult
from .common import MILESTONE_ID, ArgParser, Loaded, load, parse

NO_CANDIDATES = "No completed milestones to merge."
IN_WORKER = "Cannot merge from within a parallel worker"

if TYPE_CHECKING:
    from ..merge import MergeEnv
    from ..store import Store


def run(name: str, ctx: CommandContext) -> CommandResult:
    from .. import git
    from ..merge import MergeEnv
    from ..merge_plan import merge_candidates
    from ..store import Store

    parser = ArgParser(name)
    parser.add_argument("milestone", nargs="?")
    parser.add_argument("--dry-run", action="store_true")
    args = parse(parser, ctx)
    if os.environ.get("GSD_PARALLEL_WORKER"):
        raise UserError(IN_WORKER)
    loaded = load(ctx)
    git.repo_root(loaded.root)  # one clear line when this is not a git repository
    prefs = loaded.preferences.parallel
    with Store(loaded.parallel_dir / "coordinator.db") as store:
        env = MergeEnv(
            loaded.root, loaded.project, store, ctx.host.hooks, prefs, notify=ctx.host.notify
        )
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
        results = _merge(ctx, env, order)
        landed = set(store.merged_milestones())
    text = render_results(results)
    _hints(ctx, loaded, results, landed)
    code = 1 if any(r.id not in landed for r in results) else 0
    return CommandResult(text, {"results": [r.to_json() for r in results]}, exit_code=code)


def _mark_dry(result: CommandResult, dry: bool) -> CommandResult:
    """Every ``merge --dry-run --json`` answer has its ``dry_run`` key, nothing to merge too."""
    if dry and isinstance(result.data, dict):
        result.data["dry_run"] = True
    return result


def _explicit(
    loaded: Loaded, store: Store, value: str, candidates: Sequence[str]
) -> str | CommandResult:
    """``merge MID``: the milestone, or a ready answer when there is nothing to do."""
    from .. import git

    if not MILESTONE_ID.match(value):
        raise ProjectError(f"invalid milestone ID {value!r}: expected M001 or M001-abc123")
    mid = value
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
    from ..merge import merge_all
    from ..progress import progress

    if len(order) == 1:
        return merge_all(env, order)
    with progress(ctx, total=len(order), label="Merging") as bar:

        def step(result: MergeResult) -> None:
            bar.advance(f"{result.id} {result.outcome}")

        return merge_all(env, order, on_result=step)


def _dry_run(env: MergeEnv, order: list[str]) -> CommandResult:
    from ..merge_plan import dry_run

    results = dry_run(env, order)
    lines = []
    for r in results:
        if r.outcome == "conflict":
            lines.append(f"- **{r.id}** — CONFLICT ({len(r.files)} file(s)):")
            lines += [f"  - `{f}`" for f in r.files]
        elif r.outcome == "clean":
            extra = f" ({len(r.resolved)} .gsd/junk conflict(s) resolve themselves)"
            lines.append(f"- **{r.id}** — clean" + (extra if r.resolved else ""))
        else:
            lines.append(f"- **{r.id}** — skipped: {r.error}")
    text = "\n".join(["# Merge Dry Run\n", *lines]) + "\n"
    data = {"dry_run": True, "results": [r.to_json() for r in results]}
    code = 1 if any(r.outcome == "conflict" for r in results) else 0
    return CommandResult(text, data, exit_code=code)


def render_results(results: Sequence[MergeResult]) -> str:
    """GSD's merge report: ``# Merge Results`` then one bullet per milestone."""
    lines = []
    for r in results:
        if r.outcome == "merged":
            lines.append(f"- **{r.id}** — merged successfully")
        elif r.outcome == "conflict":
            lines.append(f"- **{r.id}** — CONFLICT ({len(r.files)} file(s)):")
            lines += [f"  - `{f}`" for f in r.files]
            lines.append(
                f"  Resolve conflicts manually and run {hints.cmd(f'merge {r.id}')} to retry."
            )
        else:
            first, *rest = (r.error or r.outcome).splitlines() or [r.outcome]
            lines.append(f"- **{r.id}** — {r.outcome}: {first}")
            lines += [f"  {line}" for line in rest]
    return "\n".join(["# Merge Results\n", *lines]) + "\n"


def _hints(
    ctx: CommandContext, loaded: Loaded, results: Sequence[MergeResult], landed: set[str]
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
    merged_now = {r.id for r in results if r.outcome == "merged"}

    def done(dep: str) -> bool:
        target = loaded.project.get(dep)
        return dep in landed or (target is not None and target.complete)

    waiting = [
        m.id
        for m in loaded.project.milestones
        if not m.complete and merged_now & set(m.depends_on) and all(map(done, m.depends_on))
    ]
    if waiting and not ctx.json:
        from ..supervisor import supervisor_running

        if not supervisor_running(loaded.parallel_dir):
            ctx.host.notify(
                f"{', '.join(waiting)} can start now: run {hints.cmd('start')}."
            )


def _integration(loaded: Loaded, mid: str) -> str:
    milestone = loaded.project.get(mid)
    return (milestone.integration_branch if milestone else None) or (
        loaded.project.integration_branch
    )
