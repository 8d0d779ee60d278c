"""Shared fixtures: an isolated GSD home, the fake worker, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gsd_parallel_plugin.testing.builder import fake_worker_env


@pytest.fixture(autouse=True)
def isolated_gsd_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Never read the developer's own ~/.gsd preferences in tests."""
    home = tmp_path_factory.mktemp("gsd-home")
    monkeypatch.setenv("GSD_HOME", str(home))
    monkeypatch.delenv("GSD_PARALLEL_WORKER", raising=False)
    monkeypatch.delenv("GSD_PARALLEL_WORKER_COMMAND", raising=False)
    return home


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, str]]:
    """Call with fake-worker knobs; sets the environment the supervisor passes on."""

    def configure(**knobs: Any) -> dict[str, str]:
        env = fake_worker_env(**knobs)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    return configure


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run ``gsd-parallel`` as a real subprocess (exactly what a user runs)."""

    def run(
        *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
    ) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "gsd_parallel_plugin", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
