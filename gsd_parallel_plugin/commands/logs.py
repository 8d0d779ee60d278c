"""``/gsd parallel logs MID [-f] [-n N]``: a worker's activity, readable.

Units started and finished, tool calls (failures marked), notify messages and cost,
from ``.gsd/parallel/<MID>.stdout.log`` (GSD's NDJSON), then the worker's stderr.
``-f`` keeps following both logs until Ctrl-C (exit 0), like ``tail -f``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

from ..errors import UserError
from ..invocation import ArgParser, load, milestone_arg, parse
from ..models import CommandContext, CommandResult
from ..workspace import layout

POLL_SECONDS = 0.25
DEFAULT_LINES = 200


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..views.activity import LogFollower

    parser = ArgParser(name)
    parser.add_argument("milestone")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("-n", "--lines", type=int, default=DEFAULT_LINES)
    args = parse(parser, ctx)
    if args.lines < 0:
        raise UserError("--lines must be 0 (everything) or more")
    if args.follow and ctx.json:
        raise UserError("logs -f does not combine with --json; read the NDJSON log itself instead")
    loaded = load(ctx, warn=False, strict=False)
    mid = milestone_arg(loaded, args.milestone)
    stdout_log = layout.stdout_log(loaded.parallel_dir, mid)
    stderr_log = layout.stderr_log(loaded.parallel_dir, mid)
    follower = LogFollower(stdout_log, stderr_log)
    activity, stderr = follower.read_all()
    limit = args.lines if 0 < args.lines < sys.maxsize else None  # huge: everything, like 0
    shown = list(deque(activity, maxlen=limit)) if limit else activity
    shown_err = list(deque(stderr, maxlen=limit)) if limit else stderr

    if ctx.json:
        return CommandResult(
            "",
            {
                "milestone": mid,
                "stdout_log": str(stdout_log),
                "stderr_log": str(stderr_log),
                "activity": [e.to_json() for e in shown],
                "stderr": [e.text for e in shown_err],
                "summary": follower.interpreter.summary_json(),
                "skipped_lines": follower.skipped_lines,
            },
        )
    exists = stdout_log.exists() or stderr_log.exists()
    lines = [f"# Activity of {mid}", ""]
    if not exists:
        lines.append(f"No activity logged for {mid} yet ({stdout_log} does not exist).")
    else:
        if len(shown) < len(activity):
            lines.append(f"… {len(activity) - len(shown)} earlier line(s); -n 0 shows all")
        lines += [e.render() for e in shown] or ["(no events yet)"]
        lines += ["", f"Summary: {follower.interpreter.summary()}"]
        if follower.skipped_lines:
            lines.append(f"({follower.skipped_lines} unreadable line(s) skipped)")
        if shown_err:
            lines += ["", f"## stderr (last {len(shown_err)} line(s))", ""]
            lines += [e.text for e in shown_err]
    text = "\n".join(lines) + "\n"
    if not args.follow:
        return CommandResult(text, None)
    out = ctx.host.out
    out.write(text)
    if not exists:
        out.write("Waiting for the worker to write its log…\n")
    out.write(f"-- following {mid} (Ctrl-C to stop) --\n")
    out.flush()
    follow(follower, out)
    return CommandResult("", None)


def follow(follower, out: TextIO, *, poll: float = POLL_SECONDS) -> None:  # type: ignore[no-untyped-def]
    """Print new activity and stderr lines as they are written, until interrupted."""
    try:
        while True:
            printed = False
            for entry in follower.read_stdout():
                out.write(entry.render() + "\n")
                printed = True
            for entry in follower.read_stderr():
                out.write(entry.render() + "\n")
                printed = True
            if printed:
                out.flush()
            time.sleep(poll)
    except KeyboardInterrupt:
        out.flush()
    except BrokenPipeError:  # `logs -f | head`: the reader left
        pass
