"""Building blocks of end-to-end scenarios, shared by gsd-parallel's own tests.

Finish a milestone with the real fake worker (no supervisor), leave a checkout with only
uncommitted work, commit files, snapshot a root checkout byte for byte, read the merge
journal, load a plugin module into the CLI, start the CLI several times at once, and check
the CLI's rule for bad input (one ``gsd-parallel:`` line, exit 2, no traceback).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..gsd.checkout import finish_checkout
from ..store import Store
from ..workspace import layout
from ..workspace.worktrees import ensure_worktree
from .builder import BuiltProject, build_project, fake_worker_env, git, run_fake_gsd
from .session import CliResult

PREFS: dict[str, Any] = {"enabled": True, "max_workers": 2}
"""The ``parallel:`` block most scenarios use: enabled, two workers."""

ONE: dict[str, Any] = {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}}}}
"""One milestone of one slice with two tasks (four units of the fake worker)."""


def store_of(project: BuiltProject) -> Store:
    """The project's coordination store (open it with ``with``)."""
    return Store(layout.store_path(layout.parallel_dir(project.gsd)))


def two_milestones(tmp_path: Path, first_files: Sequence[str], second_files: Sequence[str],
                   **prefs: Any) -> BuiltProject:  # fmt: skip
    """Two independent one-task milestones, M002 and M003, touching the files given."""
    return build_project(
        tmp_path / "proj",
        {
            "M002": {"title": "Auth System", "slices": {"S01": {"T01": list(first_files)}}},
            "M003": {"title": "Search", "slices": {"S01": {"T01": list(second_files)}}},
        },
        preferences={**PREFS, **prefs},
    )


def complete(project: BuiltProject, mid: str, *, record: bool = True, **knobs: Any) -> Path:
    """Run the fake worker to completion in the milestone's worktree (no supervisor); with
    ``record`` the store learns the completion time, as the supervisor would record it."""
    wt = ensure_worktree(project.root, mid, "main").path
    done = run_fake_gsd(wt, mid, env=fake_worker_env(**knobs))
    assert done.returncode == 0, done.stderr
    finish_checkout(wt, mid, layout.branch_name(mid))  # the SUMMARY, committed as the supervisor does
    if record:
        with store_of(project) as store:
            store.mark_completed(mid)
    return wt


def complete_with_only_uncommitted_work(project: BuiltProject, mid: str) -> Path:
    """A milestone recorded complete whose checkout holds one file, ``src/a.py``, that was
    never committed: nothing to merge beyond main."""
    ensure_worktree(project.root, mid, "main")
    with store_of(project) as store:
        store.mark_completed(mid)
    wt = project.root / ".gsd-parallel" / mid
    (wt / "src").mkdir()
    (wt / "src/a.py").write_text("never committed\n")
    return wt


def commit_in(path: Path, message: str, files: Mapping[str, str]) -> str:
    """Write ``files`` (relative path → text) in ``path`` and commit them; returns the commit."""
    for rel, text in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "--", *files)
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD")


def snapshot(root: Path) -> dict[str, Any]:
    """HEAD, refs, index, status and every working-tree file's bytes of the root checkout."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [
            d for d in dirnames
            if not (rel == Path(".") and d == ".git")
            and not (rel == Path(".gsd") and d in {"worktrees", "parallel"})
        ]  # fmt: skip
        for name in filenames:
            data = (Path(dirpath) / name).read_bytes()
            files[str(rel / name)] = hashlib.sha256(data).hexdigest()
    git_dir = root / ".git"
    return {
        "head": git(root, "rev-parse", "HEAD"),
        "refs": git(root, "for-each-ref", "--format=%(refname) %(objectname)"),
        "index": git(root, "ls-files", "-s"),
        "status": git(root, "status", "--porcelain=v1", "--untracked-files=all"),
        "files": files,
        "merge_state": sorted(n for n in ("MERGE_HEAD", "SQUASH_MSG", "MERGE_MSG") if (git_dir / n).exists()),
    }


def journal(project: BuiltProject) -> list[Any]:
    """Every merge the store's journal holds, oldest first."""
    with store_of(project) as store:
        return store.merges()


def main_log(project: BuiltProject) -> list[str]:
    """The subjects of main's commits, newest first."""
    return project.git("log", "--format=%s", "main").splitlines()


def write_plugin(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """A plugin module in ``tmp_path``; returns the env that makes the CLI load it."""
    (tmp_path / f"{name}.py").write_text(source)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "GSD_PARALLEL_PLUGINS": name}


def start_concurrently(
    root: Path, count: int, *, timeout: float = 120
) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """``count`` ``gsd-parallel start`` processes at once (stdin closed); returns the ended
    processes and their (stdout, stderr)."""
    command = [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(root), "start"]
    procs = [
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    return procs, [p.communicate(timeout=timeout) for p in procs]


def one_line_error(result: CliResult, *needles: str) -> None:
    """Exit 2, a single ``gsd-parallel:`` line on stderr naming every needle, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("gsd-parallel: "), lines[0]
    assert "Traceback" not in result.err and "internal error" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def worker_states(cli: Callable[..., CliResult], root: Path) -> dict[str, str]:
    """Milestone ID → worker state, as ``status --json`` reports them."""
    status = cli("--project", root, "status", "--json")
    return {w["id"]: w["state"] for w in status.json().get("workers", [])}
