"""``/gsd parallel watch [--once]``: the live dashboard of the run.

Read-only: the store is opened with ``query_only`` and nothing is started or
signalled, so any number of watchers can run next to the supervisor. On a terminal it
takes the screen and redraws in place once a second (rich ``Live`` with its own
refresh thread off: one draw per tick, no flicker, nearly no CPU); ``q`` or Ctrl-C
leaves with exit code 0. ``--once``, ``--json`` or a non-terminal prints one frame.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from types import FrameType
from typing import TextIO

from ..errors import UserError
from ..exitcodes import ExitCode
from ..invocation import ArgParser, load, parse
from ..models import CommandContext, CommandResult

MAX_WIDTH = 120
DEFAULT_WIDTH = 80


def run(name: str, ctx: CommandContext) -> CommandResult:
    from ..views.dashboard import render_text
    from ..views.snapshot import SnapshotReader

    parser = ArgParser(name)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parse(parser, ctx)
    if args.width is not None and args.width < 20:
        raise UserError("--width must be at least 20 columns")
    if not 0.1 <= args.interval <= 60:
        raise UserError("--interval must be between 0.1 and 60 seconds")
    loaded = load(ctx, strict=False)  # read-only: a broken preference is a warning here
    reader = SnapshotReader(loaded.root, loaded.preferences, gsd_dir=loaded.project.gsd_dir)
    try:
        if args.once or ctx.json or not ctx.host.interactive:
            snap = reader.read()
            width = args.width or _frame_width(ctx.host.out)
            # one frame for a script: a store it cannot read is an error it should see
            unreadable = (snap.notice or "").startswith(UNREADABLE)
            code: int = ExitCode.USER_ERROR if unreadable else ExitCode.OK
            return CommandResult(render_text(snap, width), snap.to_json(), exit_code=code)
        code = watch_live(reader, ctx.host.out, interval=args.interval, width=args.width)
        return CommandResult("", {"exit_code": code}, exit_code=code)
    finally:
        reader.close()


UNREADABLE = "coordination store unreadable"


def _frame_width(out: TextIO) -> int:
    try:
        if out.isatty():
            return max(20, min(MAX_WIDTH, os.get_terminal_size(out.fileno()).columns))
    except (OSError, ValueError, AttributeError):
        pass
    return DEFAULT_WIDTH


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def watch_live(reader, out: TextIO, *, interval: float = 1.0, width: int | None = None) -> int:  # type: ignore[no-untyped-def]
    """Redraw every ``interval`` seconds until ``q``, Ctrl-C or SIGTERM; returns 0."""
    from rich.console import Console
    from rich.live import Live

    from ..views.dashboard import render

    console = Console(file=out)
    keys = _Keys(sys.stdin)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with (
            keys,
            Live(
                console=console,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            while True:
                snap = reader.read()
                frame_width = width or max(20, min(MAX_WIDTH, console.width))
                live.update(render(snap, frame_width), refresh=True)
                if keys.wait_for_quit(interval):
                    return ExitCode.OK
    except KeyboardInterrupt:
        return ExitCode.OK
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Keys:
    """Single keypresses from a terminal stdin (cbreak mode, restored on exit)."""

    def __init__(self, stream: TextIO) -> None:
        self.fd: int | None = None
        self._saved: list | None = None  # type: ignore[type-arg]
        try:
            if stream.isatty():
                self.fd = stream.fileno()
        except (ValueError, OSError, AttributeError):
            self.fd = None

    def __enter__(self) -> _Keys:
        if self.fd is not None:
            import termios
            import tty

            try:
                self._saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)  # keys arrive one by one; Ctrl-C still sends SIGINT
            except termios.error:
                self.fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def wait_for_quit(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds, or less if ``q`` is pressed (then True)."""
        import time

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return False
            data = os.read(self.fd, 64)
            if not data:  # stdin closed: keep refreshing, stop listening
                self.fd = None
            elif b"q" in data or b"Q" in data:
                return True
        return False
