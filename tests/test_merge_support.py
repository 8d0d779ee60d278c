"""Helpers for the merge tests (no tests here): finish milestones with the real fake worker,
snapshot a checkout, load a plugin module into the CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from gsd_parallel_plugin.gsd.checkout import finish_checkout
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import BuiltProject, fake_worker_env, git, run_fake_gsd
from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

PREFS: dict[str, Any] = {"enabled": True, "max_workers": 2}


def complete(project: BuiltProject, mid: str, *, record: bool = True, **knobs: Any) -> Path:
    """Run the fake worker to completion in the milestone's worktree (no supervisor); with
    ``record`` the store learns the completion time, as the supervisor would record it."""
    wt = ensure_worktree(project.root, mid, "main").path
    done = run_fake_gsd(wt, mid, env=fake_worker_env(**knobs))
    assert done.returncode == 0, done.stderr
    finish_checkout(wt, mid, f"gsd-parallel/{mid}")  # the SUMMARY, committed as the supervisor does
    if record:
        with Store(project.gsd / "parallel" / "coordinator.db") as store:
            store.mark_completed(mid)
    return wt


def commit_in(path: Path, message: str, files: dict[str, str]) -> str:
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
        "merge_state": sorted(
            n for n in ("MERGE_HEAD", "SQUASH_MSG", "MERGE_MSG") if (git_dir / n).exists()
        ),
    }


def journal(project: BuiltProject) -> list[Any]:
    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        return store.merges()


def main_log(project: BuiltProject) -> list[str]:
    return project.git("log", "--format=%s", "main").splitlines()


def write_plugin(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """A plugin module in ``tmp_path``; returns the env that makes the CLI load it."""
    (tmp_path / f"{name}.py").write_text(source)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "GSD_PARALLEL_PLUGINS": name}
