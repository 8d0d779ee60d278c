"""Helpers for the real-GSD end-to-end tier: a user's project, its commands, git reads.

The tier runs ``gsd-parallel`` exactly as a user does: a real subprocess (the ``cli``
fixture), the default worker command (``gsd headless --json auto``) with ``gsd`` found on
PATH, preferences in the (isolated) ``$GSD_HOME/PREFERENCES.md``, a committed plan made by
:func:`~gsd_parallel_plugin.testing.real_gsd.make_gsd_project`, and the scripted model as
the only provider GSD can reach.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from gsd_parallel_plugin.testing.real_gsd import make_gsd_project


def git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in *cwd*; stdout without the trailing newline (raises on failure)."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.rstrip("\n")


class RealProject:
    """A committed GSD project and the commands a user runs on it."""

    def __init__(self, root: Path, cli: Callable[..., Any]) -> None:
        self.root = root
        self._cli = cli

    def run(self, *args: str, timeout: float = 240) -> Any:
        return self._cli("--project", self.root, *args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        result = self.run("--json", "status", timeout=60)
        assert result.code == 0, result.out + result.err
        data: dict[str, Any] = result.json()
        return data

    def worker(self, mid: str) -> dict[str, Any] | None:
        return next((w for w in self.status()["workers"] if w["id"] == mid), None)

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    @property
    def parallel_dir(self) -> Path:
        return self.root / ".gsd" / "parallel"

    def diagnostics(self) -> str:
        """Everything a failing test should show: logs, supervisor output, store events."""
        out: list[str] = []
        pdir = self.parallel_dir
        for path in sorted(pdir.glob("*.log")) if pdir.is_dir() else []:
            text = path.read_text(errors="replace")
            if path.name.endswith(".stdout.log"):
                lines = [ln for ln in text.splitlines() if '"notify"' in ln or "auto_retry" in ln]
                text = "\n".join(lines[-15:])
            out.append(f"--- {path.name}\n{text[-3000:]}")
        rows = events(self.root)
        out.append("--- events\n" + "\n".join(" | ".join(map(str, r)) for r in rows[-60:]))
        return "\n".join(out)


def squash_commits(root: Path, since: str, branch: str = "main") -> list[tuple[str, str]]:
    """``(sha, GSD-Milestone trailer)`` of each commit on *branch* after *since*, oldest first."""
    out = git(
        root,
        "log",
        "--reverse",
        "--format=%H %(trailers:key=GSD-Milestone,valueonly,separator=%x2C)",
        f"{since}..{branch}",
    )
    commits = []
    for line in out.splitlines():
        sha, _, trailer = line.partition(" ")
        commits.append((sha, trailer.strip()))
    return commits


def leftover_branches(root: Path) -> list[str]:
    return git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads/gsd-parallel/",
               "refs/heads/milestone/").split()  # fmt: skip


def worktrees(root: Path) -> list[str]:
    return [ln.removeprefix("worktree ") for ln in git(root, "worktree", "list", "--porcelain").splitlines()
            if ln.startswith("worktree ")]  # fmt: skip


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_file(project_root: Path, mid: str) -> dict[str, Any]:
    """``.gsd/parallel/workers/<MID>.status.json`` as the supervisor last wrote it ({} when none)."""
    return _read_json(project_root / ".gsd" / "parallel" / "workers" / f"{mid}.status.json") or {}


def supervisor_alive(project_root: Path) -> bool:
    from gsd_parallel_plugin.run.supervisor_lock import supervisor_running

    return supervisor_running(project_root / ".gsd" / "parallel")


def events(project_root: Path) -> list[tuple[str, str | None, str]]:
    """``(kind, milestone, message)`` of every event in the coordination store (read-only)."""
    import sqlite3

    db = project_root / ".gsd" / "parallel" / "coordinator.db"
    if not db.is_file():
        return []
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT kind, milestone_id, message FROM events ORDER BY id").fetchall()
    finally:
        conn.close()


def processes_in(directory: Path) -> list[str]:
    """``pid name cwd`` of every process working inside *directory* (a worker left running)."""
    import psutil

    top = str(directory.resolve())
    found = []
    for proc in psutil.process_iter(["pid", "name", "cwd", "status"]):
        cwd = proc.info.get("cwd") or ""
        if proc.info.get("status") != psutil.STATUS_ZOMBIE and (cwd == top or cwd.startswith(top + "/")):
            found.append(f"{proc.info['pid']} {proc.info['name']} {cwd}")
    return found


# --------------------------------------------------------------------------- fixtures
# Imported by the test modules (a conftest.py here would shadow tests/conftest.py, which
# test modules import as `conftest`).


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
    """``real_project(["M001", "M002"], depends=..., track_gsd=..., files=..., tasks=..., **parallel_prefs)``.

    Writes ``parallel: {enabled: true, **parallel_prefs}`` to ``$GSD_HOME/PREFERENCES.md``
    (the user's global preferences) and builds the project at ``tmp_path/"proj"``.
    """

    def make(
        milestones: Sequence[str],
        *,
        depends: Mapping[str, Sequence[str]] | None = None,
        track_gsd: bool = True,
        files: Mapping[str, Sequence[str]] | None = None,
        tasks: Mapping[str, int] | None = None,
        **parallel: Any,
    ) -> RealProject:
        prefs = {"parallel": {"enabled": True, **parallel}}
        (gsd_home / "PREFERENCES.md").write_text(
            "---\n" + yaml.safe_dump(prefs, sort_keys=False) + "---\n", encoding="utf-8"
        )
        root = make_gsd_project(
            tmp_path / "proj",
            milestones,
            depends=depends or {},
            track_gsd=track_gsd,
            files=files,
            tasks=tasks,
        )
        return RealProject(root, cli)

    return make
