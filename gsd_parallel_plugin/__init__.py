"""gsd-parallel: run several GSD milestones at once.

This module stays cheap to import: it is loaded by every plugin that wants
``hookimpl``, and by ``gsd-parallel --help``.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "gsd_parallel"
"""The one pluggy project name: markers, plugin manager and entry-point group."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator for plugin functions implementing a gsd-parallel hook."""

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
