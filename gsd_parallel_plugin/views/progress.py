"""Progress for long operations (creating many worktrees, merging many milestones).

One API, three behaviours chosen by where the output goes::

    from gsd_parallel_plugin.views.progress import progress

    with progress(ctx, total=len(ids), label="Creating worktrees") as p:
        for mid in ids:
            p.update(mid)           # optional: "working on M002"
            create(mid)
            p.advance(mid)          # one step done

- ``--json`` (``ctx.json``): nothing at all, so stdout stays one JSON document;
- a terminal: a rich progress bar on stderr that disappears when done;
- anything else (CI, pipes, logs): one plain line per step on stderr, e.g.
  ``Creating worktrees [2/3] M002``.

``ctx`` may be a :class:`~gsd_parallel_plugin.models.CommandContext`, or None with the
keyword arguments ``json``, ``stream`` and ``interactive`` given directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from ..models import CommandContext


class Progress(Protocol):
    def update(self, item: str) -> None:
        """Say what is being worked on now (no step counted)."""

    def advance(self, item: str = "", steps: int = 1) -> None:
        """Count ``steps`` done; ``item`` names what just finished."""

    def note(self, message: str) -> None:
        """A line that stays (a warning about one item, say)."""


class _Silent:
    def update(self, item: str) -> None:
        pass

    def advance(self, item: str = "", steps: int = 1) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class _Plain:
    """One line per finished step; nothing for :meth:`update` (no noise in logs)."""

    def __init__(self, stream: TextIO, total: int | None, label: str) -> None:
        self.stream, self.total, self.label, self.done = stream, total, label, 0

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def update(self, item: str) -> None:
        pass

    def advance(self, item: str = "", steps: int = 1) -> None:
        self.done += steps
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        self._print(f"{self.label} [{count}]" + (f" {item}" if item else ""))

    def note(self, message: str) -> None:
        self._print(message)


class _Rich:
    def __init__(self, bar: Any, task: Any, label: str) -> None:
        self.bar, self.task, self.label = bar, task, label

    def update(self, item: str) -> None:
        self.bar.update(self.task, description=f"{self.label}: {item}" if item else self.label)

    def advance(self, item: str = "", steps: int = 1) -> None:
        self.bar.update(self.task, advance=steps, description=self.label)

    def note(self, message: str) -> None:
        self.bar.console.print(message, highlight=False, markup=False)


@contextmanager
def progress(
    ctx: CommandContext | None,
    total: int | None,
    label: str,
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    interactive: bool | None = None,
) -> Iterator[Progress]:
    """Report progress of ``total`` steps (None: unknown) named ``label``; see the module doc."""
    if json is None:
        json = bool(ctx.json) if ctx is not None else False
    if stream is None:
        stream = ctx.host.err if ctx is not None else sys.stderr
    if json:
        yield _Silent()
        return
    if interactive is None:
        try:
            interactive = stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
    if not interactive:
        yield _Plain(stream, total, label)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    with bar:
        yield _Rich(bar, bar.add_task(label, total=total), label)
