"""gsd-parallel: run several GSD milestones at once.

This module stays cheap to import: it is loaded by every plugin that wants
``hookimpl``, and by ``gsd-parallel --help`` and ``--version``, which need no pluggy
(importing it roughly doubles their start, ``bench/bench_startup.py``): ``hookimpl`` is
made on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker
    """Decorator for plugin functions implementing a gsd-parallel hook."""

__version__ = "0.1.0"

PROJECT_NAME = "gsd_parallel"
"""The one pluggy project name: markers, plugin manager and entry-point group."""

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    """``hookimpl``, made on first use (PEP 562); ``from gsd_parallel_plugin import hookimpl``
    works as ever and always gives the same marker."""
    if name != "hookimpl":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pluggy

    marker = pluggy.HookimplMarker(PROJECT_NAME)
    globals()["hookimpl"] = marker
    return marker
