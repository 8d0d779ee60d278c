"""``gsd-parallel revert MID [--dry-run] [--with-dependents]``: take a merged milestone back
off its integration branch so it can run again (see :mod:`..merge.revert`).

Exit 0 when reverted (``--dry-run``: when it would be); 1 when merged milestones depend on it
(the list is shown; ``--with-dependents`` reverts them too) or the revert could not land; 2 for
an unknown or unmerged milestone. ``--json`` prints ``{"plan": {...}, "outcome", "commit",
"files", "error", "notes"}``.
"""

from __future__ import annotations

import os

from .. import hints
from ..errors import UserError
from ..exitcodes import ExitCode
from ..invocation import ArgParser, Loaded, load, milestone_arg, parse
from ..models import CommandContext, CommandResult
from ..workspace import layout

IN_WORKER = "Cannot revert from within a parallel worker"


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..merge.attempt import MergeEnv
    from ..merge.revert import NotMerged, plan_revert, revert
    from ..store import Store
    from ..workspace import git

    parser = ArgParser(name)
    parser.add_argument("milestone")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--with-dependents", action="store_true")
    args = parse(parser, ctx)
    if os.environ.get("GSD_PARALLEL_WORKER"):
        raise UserError(IN_WORKER)
    loaded = load(ctx)
    git.repo_root(loaded.root)
    mid = milestone_arg(loaded, args.milestone)
    prefs = loaded.preferences.parallel
    with Store(layout.store_path(loaded.parallel_dir)) as store:
        env = MergeEnv(loaded.root, loaded.project, store, ctx.host.hooks, prefs, notify=ctx.host.notify)
        try:
            plan = plan_revert(env, mid, args.with_dependents)
        except NotMerged as exc:
            raise UserError(str(exc)) from None
        data: dict[str, object] = {"plan": plan.to_json(), "dry_run": args.dry_run}
        lines = [f"# Revert {mid}\n"]
        for m, shas in plan.order:
            lines.append(f"- **{m}** — {len(shas)} squash commit(s) on {plan.integ}: "
                         + ", ".join(f"`{s[:12]}`" for s in shas))  # fmt: skip
        if plan.unmerged_dependents:
            ctx.host.notify(
                f"{', '.join(plan.unmerged_dependents)} depend(s) on what is reverted and "
                "started from a branch that has it: check them before they merge "
                f"({hints.cmd('merge --preview')}).",
                "warning",
            )
        if plan.refused:
            lines.append(
                f"\nRefused: merged milestone(s) depend on {mid}: {', '.join(plan.dependents)}. "
                f"Revert them too, newest first, with {hints.cmd(f'revert {mid} --with-dependents')}."
            )
            data.update(outcome="refused", commit=None, files=[], error="merged dependents")
            return CommandResult("\n".join(lines) + "\n", data, exit_code=ExitCode.FAILED)
        if args.dry_run:
            lines.append(f"\nNothing changed (dry run). Run {hints.cmd(_words(mid, args))} to revert.")
            data.update(outcome="would-revert", commit=None, files=[], error=None)
            return CommandResult("\n".join(lines) + "\n", data)
        result = revert(env, plan)
        data.update(outcome=result.outcome, commit=result.commit, files=list(result.files),
                    error=result.error, notes=list(result.notes))  # fmt: skip
        if result.outcome != "reverted":
            first, *rest = (result.error or result.outcome).splitlines()
            lines.append(f"\n{result.outcome.upper()}: {first}")
            lines += [f"  {line}" for line in rest]
            return CommandResult("\n".join(lines) + "\n", data, exit_code=ExitCode.FAILED)
        reverted = [m for m, _ in plan.order]
        lines.append(f"\nReverted on {plan.integ} as `{(result.commit or '')[:12]}`: "
                     f"{', '.join(reverted)} not complete any more.")  # fmt: skip
        lines += [f"- {note}" for note in result.notes]
    _rerun_hint(ctx, loaded, reverted)
    return CommandResult("\n".join(lines) + "\n", data)


def _words(mid: str, args: object) -> str:
    return f"revert {mid}" + (" --with-dependents" if getattr(args, "with_dependents", False) else "")


def _rerun_hint(ctx: CommandContext, loaded: Loaded, reverted: list[str]) -> None:
    """How to run them again: ``resume`` in the run that holds their rows, else ``start``."""
    from ..views.runstate import RunView

    held = set(RunView.read(loaded).held)
    again = [m for m in reverted if m in held]
    how = (
        (hints.cmd(f"resume {again[0]}") if len(again) == 1 else hints.cmd("resume"))
        if again
        else hints.cmd("start")
    )
    ctx.host.notify(f"{', '.join(reverted)} can run again: {how}.")
