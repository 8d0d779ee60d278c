"""Build small GSD projects in real git repositories from a compact description.

Used by our own tests and offered to plugin authors through the pytest plugin::

    project = build_project(tmp_path, {
        "M001": {"title": "Core", "complete": True},
        "M002": {"title": "Auth", "depends_on": ["M001"],
                 "slices": {"S01": {"T01": ["src/auth.py"], "T02": ["src/app.py"]}}},
        "M003": {"parked": True},
        "M004": {},                      # ghost: a directory and nothing else
    }, preferences={"enabled": True, "max_workers": 2})

A milestone description may hold: ``title``, ``depends_on`` (list), ``slices``
(``{SID: {TID: [files]}}``; a slice given as ``None`` has a roadmap line but no plan),
``done_slices`` (SIDs marked ``[x]``), ``complete``, ``summary_status``, ``parked``,
``context`` (False: no CONTEXT file), ``roadmap`` (False: no ROADMAP file),
``integration_branch``. An empty dict makes a ghost.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "GSD Test",
    "GIT_AUTHOR_EMAIL": "test@gsd-parallel.invalid",
    "GIT_COMMITTER_NAME": "GSD Test",
    "GIT_COMMITTER_EMAIL": "test@gsd-parallel.invalid",
}

MilestoneDescription = Mapping[str, Any]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; return stdout (raises on failure)."""
    env = {**os.environ, **GIT_IDENTITY, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def commit_file(repo: Path, name: str, text: str | None = None) -> str:
    """Write ``name`` in ``repo`` (by default its own name as text) and commit it alone;
    returns the new HEAD. The smallest real commit a git-level test needs."""
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else f"{name}\n")
    git(repo, "add", "--", name)
    git(repo, "commit", "-q", "-m", f"change {name}")
    return git(repo, "rev-parse", "HEAD")


def init_repo(root: Path) -> Path:
    """A new repository at ``root`` on ``main`` with one commit (``README.md``)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    commit_file(root, "README.md")
    return root


@dataclass(frozen=True)
class BuiltProject:
    """A generated project: the repository root and shortcuts into it."""

    root: Path

    @property
    def gsd(self) -> Path:
        return self.root / ".gsd"

    def milestone_dir(self, milestone_id: str) -> Path:
        return self.gsd / "milestones" / milestone_id

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def head(self, ref: str = "HEAD") -> str:
        return git(self.root, "rev-parse", ref)

    def commit_all(self, message: str) -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()


def _context(mid: str, title: str, depends_on: Sequence[str] | None) -> str:
    front = f"---\ndepends_on: [{', '.join(depends_on)}]\n---\n\n" if depends_on else ""
    return f"{front}# {mid}: {title}\n\nContext for {title}.\n"


def _roadmap(mid: str, title: str, slices: Mapping[str, Any], done: Sequence[str]) -> str:
    lines = [f"# {mid}: {title}", "", "## Slices", ""]
    for sid in slices:
        mark = "x" if sid in done else " "
        lines += [f"- [{mark}] **{sid}: Slice {sid}** `risk:low` `depends:[]`", ""]
    return "\n".join(lines)


def _plan(sid: str, tasks: Mapping[str, Sequence[str]]) -> str:
    lines = [f"# {sid}: Slice {sid}", "", "## Tasks", ""]
    for tid, files in tasks.items():
        lines.append(f"- [ ] **{tid}: Task {tid}** `est:10m`")
        lines.append(f"  Do {tid}.")
        if files:
            lines.append("  - Files: " + ", ".join(f"`{f}`" for f in files))
        lines.append("  - Verify: true")
        lines.append("")
    return "\n".join(lines)


def write_milestone(gsd: Path, mid: str, spec: MilestoneDescription) -> Path:
    """Write one milestone's planning files under ``gsd/milestones/<mid>``."""
    mdir = gsd / "milestones" / mid
    mdir.mkdir(parents=True, exist_ok=True)
    if not spec:
        return mdir  # ghost
    title = spec.get("title", f"Milestone {mid}")
    if spec.get("context", True):
        (mdir / f"{mid}-CONTEXT.md").write_text(_context(mid, title, spec.get("depends_on")))
    slices: Mapping[str, Any] = spec.get("slices", {})
    if spec.get("roadmap", True):
        done = spec.get("done_slices", list(slices) if spec.get("complete") else [])
        (mdir / f"{mid}-ROADMAP.md").write_text(_roadmap(mid, title, slices, done))
    for sid, tasks in slices.items():
        if tasks is None:
            continue
        sdir = mdir / "slices" / sid
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / f"{sid}-PLAN.md").write_text(_plan(sid, tasks))
    status = spec.get("summary_status", "complete" if spec.get("complete") else None)
    if status:
        (mdir / f"{mid}-SUMMARY.md").write_text(
            f"---\nid: {mid}\ntitle: {json.dumps(title)}\nstatus: {status}\n"
            f"completed_at: 2026-05-06T17:42:10.512Z\n---\n\n# {mid}: {title}\n"
        )
    if spec.get("parked"):
        (mdir / f"{mid}-PARKED.md").write_text(f"# {mid} parked\n")
    if spec.get("integration_branch"):
        (mdir / f"{mid}-META.json").write_text(json.dumps({"integrationBranch": spec["integration_branch"]}))
    return mdir


def write_preferences(gsd: Path, parallel: Mapping[str, Any] | None, **top: Any) -> None:
    data: dict[str, Any] = dict(top)
    if parallel is not None:
        data["parallel"] = dict(parallel)
    text = "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n\n# Preferences\n"
    (gsd / "PREFERENCES.md").write_text(text)


def build_project(
    root: Path,
    milestones: Mapping[str, MilestoneDescription],
    *,
    preferences: Mapping[str, Any] | None = None,
    queue_order: Sequence[str] | None = None,
    files: Mapping[str, str] | None = None,
    git_init: bool = True,
    branch: str = "main",
) -> BuiltProject:
    """Write a GSD project into ``root`` and (by default) commit it on ``branch``."""
    root.mkdir(parents=True, exist_ok=True)
    gsd = root / ".gsd"
    (gsd / "milestones").mkdir(parents=True, exist_ok=True)
    for mid, spec in milestones.items():
        write_milestone(gsd, mid, spec)
    if preferences is not None:
        write_preferences(gsd, preferences)
    if queue_order is not None:
        (gsd / "QUEUE-ORDER.json").write_text(json.dumps({"order": list(queue_order)}))
    for rel, content in (files or {"README.md": "# Sample project\n"}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    project = BuiltProject(root)
    if git_init:
        git(root, "init", "-q", "-b", branch)
        project.commit_all("initial project")
    return project


def fake_worker_env(
    *,
    unit_seconds: float = 0.0,
    unit_cost: float = 0.01,
    **knobs: str,
) -> dict[str, str]:
    """Environment that makes gsd-parallel launch the shipped fake worker.

    ``knobs`` are extra ``GSD_FAKE_*`` settings, e.g. ``fail_at="M001/S01/T01"``.
    """
    import shlex
    import sys

    env = {
        "GSD_PARALLEL_WORKER_COMMAND": shlex.join(
            [sys.executable, "-m", "gsd_parallel_plugin.testing.fake_gsd", "headless", "--json", "auto"]
        ),
        "GSD_FAKE_UNIT_SECONDS": str(unit_seconds),
        "GSD_FAKE_UNIT_COST": str(unit_cost),
        **GIT_IDENTITY,
    }
    for key, value in knobs.items():
        env[f"GSD_FAKE_{key.upper()}"] = str(value)
    return env


FAKE_GSD = ("-m", "gsd_parallel_plugin.testing.fake_gsd")


def run_fake_gsd(
    checkout: Path,
    milestone_id: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    **run: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run the fake worker on one milestone by hand, the way the supervisor does.

    Like the real GSD it needs GSD's runtime files ignored and the plan imported first: the
    runtime excludes are added, ``headless recover`` runs in ``checkout``, then
    ``headless --json auto`` with ``GSD_MILESTONE_LOCK`` and
    ``GSD_PARALLEL_WORKER``. ``env`` overlays ``os.environ``; ``run`` goes to
    :func:`subprocess.run` for the ``auto`` step (``capture_output=True, text=True`` by default).
    """
    import sys

    from ..gsd.checkout import ensure_runtime_excludes

    ensure_runtime_excludes(checkout)
    full = {**os.environ, **(env or {}), "GSD_MILESTONE_LOCK": milestone_id,
            "GSD_PARALLEL_WORKER": "1"}  # fmt: skip
    program = [sys.executable, *FAKE_GSD, "headless"]
    subprocess.run([*program, "recover"], cwd=checkout, env=full, check=True,
                   capture_output=True, timeout=timeout)  # fmt: skip
    if "stdout" not in run and "stderr" not in run:
        run.setdefault("capture_output", True)
    run.setdefault("text", True)
    return subprocess.run([*program, "--json", "auto"], cwd=checkout, env=full,
                          timeout=timeout, check=False, **run)  # fmt: skip
