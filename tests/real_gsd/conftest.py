"""Fixtures of the real-GSD end-to-end tier (helpers are in ``e2e_support.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import RealProject

from gsd_parallel_plugin.testing.real_gsd import make_gsd_project


@pytest.fixture
def gsd_on_path(real_gsd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``bin`` directory first on PATH holding ``gsd`` -> the real binary.

    The ``cli`` fixture passes ``os.environ`` on, so the supervisor it starts (and every
    worker it launches) finds this ``gsd`` like a user's shell would.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gsd").symlink_to(real_gsd)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")
    return bin_dir


@pytest.fixture
def real_project(
    tmp_path: Path,
    gsd_home: Path,
    gsd_on_path: Path,
    scripted_model: Any,
    cli: Callable[..., Any],
) -> Callable[..., RealProject]:
    """``real_project(["M001", "M002"], depends=..., track_gsd=..., **parallel_prefs)``.

    Writes ``parallel: {enabled: true, **parallel_prefs}`` to ``$GSD_HOME/PREFERENCES.md``
    (the user's global preferences) and builds the project at ``tmp_path/"proj"``.
    """

    def make(
        milestones: Sequence[str],
        *,
        depends: Mapping[str, Sequence[str]] | None = None,
        track_gsd: bool = True,
        **parallel: Any,
    ) -> RealProject:
        prefs = {"parallel": {"enabled": True, **parallel}}
        (gsd_home / "PREFERENCES.md").write_text(
            "---\n" + yaml.safe_dump(prefs, sort_keys=False) + "---\n", encoding="utf-8"
        )
        root = make_gsd_project(tmp_path / "proj", milestones, depends=depends or {}, track_gsd=track_gsd)
        return RealProject(root, cli)

    return make
