"""The code style the README promises is the code style CI enforces: ruff lint, ruff format, mypy.

Each check runs the tool the way a contributor would from the repository root, so a change
that would fail review fails here first. They skip only when the tool is not installed (the
test extra installs all three).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint_is_clean() -> None:
    done = _tool("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    done = _tool("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, "run `python -m ruff format .`\n" + done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    done = _tool("mypy", "gsd_parallel_plugin")
    assert done.returncode == 0, done.stdout + done.stderr
