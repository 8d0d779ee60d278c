"""``/gsd parallel graph [--format tree|mermaid|dot]``: the milestone dependency graph.

States come from the plan files and, when a run has happened, from the store (opened
read-only): running/paused/failed workers, completed and merged milestones.
"""

from __future__ import annotations

from pathlib import Path

from ..invocation import ArgParser, Loaded, load, parse
from ..models import CommandContext, CommandResult, Milestone
from ..workspace import layout

FORMATS = ("tree", "mermaid", "dot")


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..views.graph import build_graph, milestone_states, render_dot, render_mermaid, render_tree

    parser = ArgParser(name)
    parser.add_argument("--format", choices=FORMATS, default="tree")
    parser.add_argument("--direction", choices=("TD", "LR"), default="TD")
    args = parse(parser, ctx)
    loaded = load(ctx, warn=False, strict=False)
    workers, worktrees, merged, completed = _run_facts(loaded)
    states = milestone_states(loaded.project, workers=workers, merged=merged, completed=completed)
    graph = build_graph(loaded.project, states, _worktree_plans(loaded, worktrees))
    if args.format == "mermaid":
        text = render_mermaid(graph, args.direction)
    elif args.format == "dot":
        text = render_dot(graph)
    else:
        text = render_tree(graph)
    return CommandResult(text, {"format": args.format, "text": text, **graph.to_json()})


def _run_facts(loaded: Loaded) -> tuple[dict[str, str], dict[str, Path], set[str], set[str]]:
    """Worker states and worktrees of the latest run, merged and completed milestones."""
    from ..store import Store

    store = Store.open_readonly(layout.store_path(loaded.parallel_dir))
    if store is None:
        return {}, {}, set(), set()
    with store:
        run = store.active_run() or store.latest_run()
        rows = store.workers(run.id) if run else []
        merged, completed = set(store.merged_milestones()), set(store.completed_milestones())
    return (
        {w.milestone_id: w.state for w in rows},
        {w.milestone_id: w.worktree for w in rows},
        merged,
        completed,
    )


def _worktree_plans(loaded: Loaded, worktrees: dict[str, Path]) -> dict[str, Milestone]:
    """Task progress as the workers' worktrees show it (the root sees it after the merge)."""
    from ..views.snapshot import worktree_milestone

    plans = {}
    for mid, path in worktrees.items():
        milestone = worktree_milestone(path, mid, loaded.root)
        if milestone is not None:
            plans[mid] = milestone
    return plans
