"""Fixtures for testing gsd-parallel plugins (loaded by ``pytest_plugins = ["gsd_parallel_plugin.testing"]``).

Every fixture is named ``gsd_*``, but for the real-GSD pair ``real_gsd`` and ``scripted_model``
(a fixture of your own with the same name wins over ours), and none is autouse: only the
tests that ask for one are affected. See "Testing your plugin" in hooks.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .builder import BuiltProject, MilestoneDescription, build_project, fake_worker_env
from .real_gsd import REAL_GSD_CLEARED_VARIABLES, REAL_GSD_HINT, find_real_gsd, real_gsd_env
from .recorder import HookRecorder
from .scripted_model import ScriptedModel, write_agent_config
from .session import (
    ISOLATED_VARIABLES,
    CapturingHost,
    CliResult,
    make_host,
    run_cli,
    stop_leftovers,
)

DEFAULT_PREFERENCES: Mapping[str, Any] = {"enabled": True, "max_workers": 2}


@pytest.fixture
def gsd_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$GSD_HOME``, and no gsd-parallel variables inherited from your shell."""
    home = tmp_path_factory.mktemp("gsd-home")
    monkeypatch.setenv("GSD_HOME", str(home))
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("GSD_FAKE_")]:
        monkeypatch.delenv(name, raising=False)
    return home


class ProjectFactory:
    """``gsd_project({"M001": {...}}, preferences=..., pyproject=...)`` → a committed repo."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: list[BuiltProject] = []

    def __call__(
        self,
        milestones: Mapping[str, MilestoneDescription],
        *,
        preferences: Mapping[str, Any] | None = DEFAULT_PREFERENCES,
        pyproject: str | None = None,
        files: Mapping[str, str] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> BuiltProject:
        """Build a GSD project (see :func:`~gsd_parallel_plugin.testing.build_project`).

        ``preferences`` is the ``parallel:`` block (default: enabled, two workers; None
        writes no preferences file); ``pyproject`` the text of the project's
        ``pyproject.toml`` (where plugins keep their ``[tool.*]`` settings).
        """
        root = self.base / (name or f"project-{len(self.built) + 1}")
        all_files = dict(files or {"README.md": "# Sample project\n"})
        if pyproject is not None:
            all_files["pyproject.toml"] = pyproject
        project = build_project(root, milestones, preferences=preferences, files=all_files, **options)
        self.built.append(project)
        return project


@pytest.fixture
def gsd_project(tmp_path: Path, gsd_home: Path) -> Iterator[ProjectFactory]:
    """Factory for GSD projects in temporary git repositories.

    At teardown, a background supervisor or worker a test left behind is stopped.
    """
    factory = ProjectFactory(tmp_path)
    yield factory
    for project in factory.built:
        stop_leftovers(project.root)


HostFactory = Callable[..., CapturingHost]


@pytest.fixture
def gsd_host(gsd_home: Path) -> HostFactory:
    """Factory for host sessions with a fresh plugin manager: builtins plus your plugins.

    ``gsd_host(project, plugins=[my_plugin], autoload=False, environ=None, confirm=None,
    strict=True, recorder=None)``; see :func:`~gsd_parallel_plugin.testing.make_host`.
    """

    return make_host  # the fixture's part is the isolated home it depends on


@pytest.fixture
def gsd_recorder() -> Iterator[HookRecorder]:
    """A :class:`HookRecorder`: ``gsd_host(project, recorder=gsd_recorder)`` records from
    ``on_session_start`` on; ``gsd_recorder.attach(host_or_hooks)`` from now on."""
    recorder = HookRecorder()
    yield recorder
    recorder.detach()


@pytest.fixture
def gsd_fake_worker(monkeypatch: pytest.MonkeyPatch, gsd_home: Path) -> Callable[..., dict[str, str]]:
    """``gsd_fake_worker(unit_seconds=0, unit_cost=0.01, fail_at=..., ...)``.

    Points ``parallel.worker_command`` at the shipped fake GSD worker for this test and
    sets its knobs (``GSD_FAKE_*``), so ``start`` runs real processes on real worktrees
    without a model provider. Returns the variables it set (pass them to subprocesses).
    """

    def configure(**knobs: Any) -> dict[str, str]:
        env = fake_worker_env(**knobs)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    return configure


@pytest.fixture
def gsd_cli(gsd_home: Path) -> Callable[..., CliResult]:
    """``gsd_cli("--project", root, "start", "--wait", env={...})``: a real ``gsd-parallel``."""
    return run_cli


class PluginDir:
    """A directory of plugin modules importable here and by ``gsd-parallel`` subprocesses."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, module: str, source: str) -> str:
        """Write ``<module>.py`` and return the module name (for ``GSD_PARALLEL_PLUGINS``)."""
        import importlib
        import textwrap

        (self.path / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()
        return module


@pytest.fixture
def gsd_plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginDir:
    """A temporary directory on ``sys.path`` and ``PYTHONPATH`` for throwaway plugin modules."""
    path = tmp_path / "plugin-modules"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")])))
    return PluginDir(path)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``real_gsd`` marker, so ``-m real_gsd`` / ``-m "not real_gsd"`` select the tier."""
    config.addinivalue_line(
        "markers", "real_gsd: runs the real GSD binary against a scripted model (skips without one)"
    )


@pytest.fixture(scope="session")
def real_gsd() -> Path:
    """The real ``gsd`` binary (see :func:`~gsd_parallel_plugin.testing.real_gsd.find_real_gsd`).

    Skips the test when there is none; a ``GSD_PARALLEL_REAL_GSD`` naming a missing file is
    an error instead, so a typo cannot silently skip the tier.
    """
    found = find_real_gsd()
    if found is None:
        pytest.skip(REAL_GSD_HINT)
    return found


@pytest.fixture
def scripted_model(
    gsd_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScriptedModel]:
    """A started :class:`ScriptedModel`, made the default model of this test's ``$GSD_HOME``.

    The environment is the one :func:`real_gsd_env` describes (``HOME`` is
    ``tmp_path/"user-home"``), so a real GSD started from this test reaches only this model
    and never the developer's ``~/.gsd`` or ``~/.pi``. Stopped after the test.
    """
    home = tmp_path / "user-home"
    home.mkdir(exist_ok=True)
    for name in REAL_GSD_CLEARED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for key, value in real_gsd_env(gsd_home, home=home).items():
        monkeypatch.setenv(key, value)
    with ScriptedModel() as model:
        write_agent_config(gsd_home / "agent", model)
        yield model
