"""Host sessions, plugin registration and clean-up for tests — usable without pytest.

The pytest fixtures in :mod:`gsd_parallel_plugin.testing.pytest_plugin` are thin wrappers
over these functions, so a plugin author who prefers ``unittest`` loses nothing.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pluggy

from ..host import HostSession
from ..models import CommandResult
from ..plugins import (
    ENV_DISABLE_AUTOLOAD,
    ENV_DISABLED,
    ENV_PLUGINS,
    CallListener,
    Hooks,
    LoadedPlugins,
    create_plugin_manager,
    plugin_problems,
)
from ..workspace import layout
from .builder import BuiltProject
from .recorder import HookRecorder

ISOLATED_VARIABLES = (
    "GSD_PARALLEL_WORKER",
    "GSD_PARALLEL_WORKER_COMMAND",
    ENV_PLUGINS,
    ENV_DISABLED,
    ENV_DISABLE_AUTOLOAD,
)
"""Variables a test must not inherit from the developer's shell."""

_T = TypeVar("_T")


class PluginLoadError(AssertionError):
    """A plugin under test could not be loaded cleanly (typo in a hook name, import error)."""


class CapturingHost(HostSession):
    """A :class:`HostSession` that keeps what it prints, never asks, and never reads a tty.

    ``listeners`` (e.g. a :class:`~gsd_parallel_plugin.testing.HookRecorder`) are attached
    before the session starts, so they see ``on_session_start`` too; a plugin raising in a
    broadcast hook becomes a ``warning:`` notice in :attr:`errors`.
    """

    def __init__(
        self,
        project_dir: Path | None,
        *,
        plugins: LoadedPlugins,
        environ: Mapping[str, str] | None = None,
        confirm_fn: Callable[[str], bool] | None = None,
        listeners: Sequence[CallListener] = (),
    ) -> None:
        self._out_buffer = io.StringIO()
        self._err_buffer = io.StringIO()
        self._early_listeners = list(listeners)
        super().__init__(
            project_dir,
            plugins=plugins,
            environ=environ,
            interactive=False,
            out=self._out_buffer,
            err=self._err_buffer,
            confirm_fn=confirm_fn,
        )

    @property
    def hooks(self) -> Hooks:
        return self._hooks

    @hooks.setter
    def hooks(self, value: Hooks) -> None:
        """Called by ``HostSession.__init__`` before it fires ``on_session_start``."""
        self._hooks = value
        value.listeners.extend(self._early_listeners)
        value.warn = lambda message: self.notify(message, "warning")

    @property
    def output(self) -> str:
        """Everything printed to the host's stdout so far."""
        return self._out_buffer.getvalue()

    @property
    def errors(self) -> str:
        """Everything printed to the host's stderr so far (notices, warnings, progress)."""
        return self._err_buffer.getvalue()

    def run(self, line: str | Sequence[str], *, json: bool = False) -> CommandResult:
        """``host.run("start --dry-run")`` = ``dispatch("/gsd parallel start --dry-run")``."""
        words = line.split() if isinstance(line, str) else list(line)
        if not words or words[0] not in {"/gsd", "gsd", "parallel"}:
            words = ["parallel", *words]
        return self.dispatch(words, json=json)


def _root(project: BuiltProject | Path | None) -> Path | None:
    return project.root if isinstance(project, BuiltProject) else project


def make_host(
    project: BuiltProject | Path | None = None,
    *,
    plugins: Sequence[object] = (),
    autoload: bool = False,
    environ: Mapping[str, str] | None = None,
    confirm: Callable[[str], bool] | None = None,
    strict: bool = True,
    recorder: CallListener | None = None,
) -> CapturingHost:
    """A host session with a fresh plugin manager: builtins plus ``plugins``.

    ``autoload=False`` (the default) skips entry points, so installed plugins do not leak
    into the test; ``autoload=True`` is how you test that *your* entry point works.
    ``strict`` turns any load warning (a misspelled hook, a module that fails to import)
    into :class:`PluginLoadError` instead of a line on stderr. ``recorder`` (a
    :class:`~gsd_parallel_plugin.testing.HookRecorder`) sees every hook call from
    ``on_session_start`` on.
    """
    env = dict(os.environ if environ is None else environ)
    if autoload:
        env.pop(ENV_DISABLE_AUTOLOAD, None)
    else:
        env[ENV_DISABLE_AUTOLOAD] = "1"
    root = _root(project)
    loaded = create_plugin_manager(root, environ=env, extra_plugins=plugins)
    if strict and loaded.warnings:
        raise PluginLoadError("plugin load warnings:\n" + "\n".join(loaded.warnings))
    host = CapturingHost(
        root,
        plugins=loaded,
        environ=env,
        confirm_fn=confirm,
        listeners=[recorder] if recorder is not None else [],
    )
    if isinstance(recorder, HookRecorder):
        recorder.attach(host)  # already listening; now its detach() knows this host too
    return host


PluginTarget = HostSession | Hooks | LoadedPlugins | pluggy.PluginManager


def _pm_of(target: PluginTarget) -> pluggy.PluginManager:
    if isinstance(target, pluggy.PluginManager):
        return target
    if isinstance(target, HostSession):
        return target.plugins.pm
    return target.pm


def _forget_command_table(target: PluginTarget) -> None:
    """A host builds its command table once; a plugin added later must be seen."""
    if isinstance(target, HostSession):
        target._commands = None


@contextmanager
def registered(target: PluginTarget, plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block; always unregister it.

    Refuses (:class:`PluginLoadError`) a plugin whose hooks match no spec, exactly like
    discovery does. Yields the name the plugin was registered under.
    """
    pm = _pm_of(target)
    errors, _notes = plugin_problems(pm, plugin)
    if errors:
        raise PluginLoadError(f"plugin {name or plugin!r} cannot be registered: {'; '.join(errors)}")
    try:
        registered_name = pm.register(plugin, name=name)
    except Exception:
        if pm.is_registered(plugin):  # a historic hook (on_session_start) raised on replay
            pm.unregister(plugin)
        raise
    if registered_name is None:
        raise PluginLoadError(f"plugin {name!r} is blocked (GSD_PARALLEL_DISABLED_PLUGINS)")
    _forget_command_table(target)
    try:
        yield registered_name
    finally:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        _forget_command_table(target)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class CliResult:
    """A finished ``gsd-parallel`` process."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> CliResult:
    """Run ``gsd-parallel`` as a real subprocess (what a user runs), stdin closed."""
    done = subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def wait_until(predicate: Callable[[], _T], timeout: float = 20.0, interval: float = 0.05) -> _T:
    """Poll until ``predicate()`` is truthy and return that value; AssertionError after ``timeout`` s.

    For what a background supervisor or worker does on its own time: assert on the outcome,
    never on how long it took (``timeout`` only bounds a hang).
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this loop
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def _same_process(pid: int, create_time: float | None) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False  # exited; its parent (maybe this test process) has not reaped it yet
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def stop_leftovers(root: Path, grace: float = 5.0) -> list[int]:
    """Stop a background supervisor and the workers a test left running; return their pids.

    Only processes recorded by this project (lock file, coordination store) with a
    matching start time are touched, so a recycled pid is never killed.
    """
    from ..errors import StoreError
    from ..models import WorkerHandle
    from ..processes import is_alive, kill_tree
    from ..run.supervisor_lock import SupervisorLock
    from ..store import Store

    parallel_dir = layout.parallel_dir(root / ".gsd").resolve()
    stopped: list[int] = []
    holder = SupervisorLock.holder(parallel_dir) if parallel_dir.is_dir() else None
    if holder and isinstance(holder.get("pid"), int):
        pid = holder["pid"]
        if pid != os.getpid() and _same_process(pid, holder.get("create_time")):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _same_process(pid, holder.get("create_time")) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _same_process(pid, holder.get("create_time")):
                os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
    try:
        store = Store.open_readonly(layout.store_path(parallel_dir))
    except StoreError:
        return stopped  # a test that corrupted the store on purpose has no workers to stop
    if store is None:
        return stopped
    with store:
        rows = store.workers()
    for row in rows:
        if row.pid is None or row.create_time is None:
            continue
        handle = WorkerHandle(row.pid, row.create_time)
        if is_alive(handle) and kill_tree(handle):
            stopped.append(row.pid)
    return stopped
