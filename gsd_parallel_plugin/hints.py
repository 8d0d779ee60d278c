"""How hints name our commands: the way the user reached us.

``gsd-parallel merge M002`` in a terminal, ``/parallel merge M002`` inside GSD (the
extension passes ``--invoked-as=/parallel``). :meth:`HostSession.dispatch` sets the
prefix for the duration of a command; anything outside one (the detached supervisor,
its automerge notices) says ``gsd-parallel``, which works from any shell.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_PREFIX = "gsd-parallel"
_prefix: ContextVar[str] = ContextVar("gsd_parallel_invoked_as", default=DEFAULT_PREFIX)


def prefix() -> str:
    """``gsd-parallel`` or ``/parallel``: what the user types before a subcommand."""
    return _prefix.get()


def cmd(words: str) -> str:
    """A command to suggest, quoted for a hint: ``cmd("merge M002")`` -> `` `gsd-parallel merge M002` ``."""
    return f"`{prefix()} {words}`" if words else f"`{prefix()}`"


def bare(words: str) -> str:
    """The same command without backquotes (usage lines, argparse ``prog``)."""
    return f"{prefix()} {words}" if words else prefix()


@contextmanager
def invoked_as(value: str | None) -> Iterator[None]:
    """Name commands as ``value`` (None or empty: the default) inside the block."""
    token = _prefix.set(value or DEFAULT_PREFIX)
    try:
        yield
    finally:
        _prefix.reset(token)
