"""Testing gsd-parallel and its plugins: a pytest plugin, a hook recorder, the fake GSD worker.

Enable the fixtures in your top-level ``conftest.py``::

    pytest_plugins = ["gsd_parallel_plugin.testing"]

and use ``gsd_project``, ``gsd_host``, ``gsd_recorder``, ``gsd_fake_worker``, ``gsd_cli``,
``gsd_plugin_dir`` and ``gsd_home`` (documented in hooks.md, "Testing your plugin"). The
same tools without pytest: :func:`build_project`, :func:`make_host`, :func:`registered`,
:class:`HookRecorder`, :func:`fake_worker_env`, :func:`run_fake_gsd`, :func:`run_cli`,
:func:`wait_until`.

This module stays cheap to import (the fake worker, ``python -m
gsd_parallel_plugin.testing.fake_gsd``, imports it on every launch): the names below are
loaded on first use. It holds no assertions, hence PYTEST_DONT_REWRITE: pytest need not
warn when a conftest imported it before ``pytest_plugins`` named it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

pytest_plugins = ["gsd_parallel_plugin.testing.pytest_plugin"]

if TYPE_CHECKING:
    from .builder import BuiltProject, build_project, fake_worker_env, run_fake_gsd
    from .recorder import HookCall, HookRecorder
    from .session import (
        CapturingHost,
        CliResult,
        PluginLoadError,
        make_host,
        registered,
        run_cli,
        stop_leftovers,
        wait_until,
    )

_EXPORTS = {
    "BuiltProject": "builder",
    "build_project": "builder",
    "fake_worker_env": "builder",
    "run_fake_gsd": "builder",
    "HookCall": "recorder",
    "HookRecorder": "recorder",
    "CapturingHost": "session",
    "CliResult": "session",
    "PluginLoadError": "session",
    "make_host": "session",
    "registered": "session",
    "run_cli": "session",
    "stop_leftovers": "session",
    "wait_until": "session",
}

__all__ = [
    "BuiltProject",
    "CapturingHost",
    "CliResult",
    "HookCall",
    "HookRecorder",
    "PluginLoadError",
    "build_project",
    "fake_worker_env",
    "make_host",
    "registered",
    "run_cli",
    "run_fake_gsd",
    "stop_leftovers",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
