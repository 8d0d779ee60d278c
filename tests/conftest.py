"""The suite runs on the pytest plugin gsd-parallel ships (``gsd_parallel_plugin.testing``).

Here are only the short names the tests use: ``cli``, ``fake_worker`` and the autouse
``isolated_gsd_home`` (every test gets the plugin's isolated ``$GSD_HOME``, never the
developer's ``~/.gsd`` or their ``GSD_PARALLEL_*`` variables), and ``hook_log_plugin``.
Helpers are imported from ``gsd_parallel_plugin.testing``; ``wait_until`` and ``CliResult``
are still re-exported here for tests written against ``from conftest import wait_until``.

Only the package itself is imported here, never its ``pytest_plugin`` module: pytest must
be the first to import that one, or it could not rewrite it and would warn about it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gsd_parallel_plugin.testing import CliResult, wait_until

if TYPE_CHECKING:  # never at run time: pytest must import pytest_plugin first (see above)
    from gsd_parallel_plugin.testing.pytest_plugin import PluginDir

pytest_plugins = ["gsd_parallel_plugin.testing"]

__all__ = ["CliResult", "wait_until"]


@pytest.fixture(autouse=True)
def isolated_gsd_home(gsd_home: Path) -> Path:
    """Never read the developer's own ~/.gsd preferences or gsd-parallel variables in tests."""
    return gsd_home


@pytest.fixture
def fake_worker(gsd_fake_worker: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
    """Call with fake-worker knobs; sets the environment the supervisor passes on."""
    return gsd_fake_worker


@pytest.fixture
def cli(gsd_cli: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """Run ``gsd-parallel`` as a real subprocess (exactly what a user runs)."""
    return gsd_cli


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path: Path):
    """Whatever a test started in its projects (supervisor, workers) is stopped after it,
    also when it failed half-way: the next tests and CI must not inherit busy processes."""
    yield
    from gsd_parallel_plugin.testing import stop_leftovers

    for gsd in [*tmp_path.glob("*/.gsd"), *tmp_path.glob("*/*/.gsd")]:
        if (gsd / "parallel").is_dir():
            stop_leftovers(gsd.parent)


@pytest.fixture
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git config, and a fixed identity: git tests see only what they make."""
    cfg = tmp_path / "gitconfig"
    cfg.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")


@pytest.fixture
def repo(isolated_git: None, tmp_path: Path) -> Path:
    """A plain repository on ``main`` with one commit, for the git-level tests."""
    from gsd_parallel_plugin.testing.builder import init_repo

    return init_repo(tmp_path / "repo")


@pytest.fixture
def hook_log_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gsd_plugin_dir: PluginDir
) -> Callable[..., Path]:
    """``hook_log_plugin(module, variable, source=None)``: load the plugin ``module`` (written
    from ``source`` when given) through ``GSD_PARALLEL_PLUGINS``, here and in every process a
    test starts, with ``$variable`` naming the JSON-lines log it writes; returns that log."""

    def load(module: str, variable: str, source: str | None = None) -> Path:
        if source is not None:
            gsd_plugin_dir.write(module, source)
        log = tmp_path / "hooks.jsonl"
        monkeypatch.setenv("GSD_PARALLEL_PLUGINS", module)
        monkeypatch.setenv(variable, str(log))
        return log

    return load
