"""gsd-parallel-guard: keep parallel milestones away from protected files.

Configured in the project's own ``pyproject.toml``::

    [tool.gsd-parallel-guard]
    protected = ["migrations/", "LICENSE", "**/*.lock"]
    allow = ["M007"]          # optional: milestones that may touch them anyway
    block_unplanned = false   # optional: also hold back milestones whose plans list no files

Two hooks:

* ``check_eligibility`` vetoes a milestone whose planned files (the ``- Files:`` lines of
  its slice plans) match a protected pattern, so ``start`` never runs it in parallel;
* ``before_merge`` vetoes a merge whose changes touch a protected path, whatever the plan
  said. The configuration is read from the integration branch *before* the merge (the
  squash commit's parent), so a milestone cannot unprotect a path by editing the table.

A broken configuration raises: in a veto hook that fails the operation with this plugin's
name, which is the safe way for a guard to fail.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsd_parallel_plugin import hookimpl
from gsd_parallel_plugin.models import Milestone, Project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__version__ = "0.1.0"
TABLE = "gsd-parallel-guard"


class GuardConfigError(ValueError):
    """``[tool.gsd-parallel-guard]`` is not what this plugin understands."""


@dataclass(frozen=True)
class GuardConfig:
    protected: tuple[str, ...] = ()
    allow: frozenset[str] = frozenset()
    block_unplanned: bool = False


def _strings(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise GuardConfigError(
            f"{where}: [tool.{TABLE}] {key} must be a list of non-empty strings, got {value!r}"
        )
    return [v.strip() for v in value]


def parse_config(text: str, where: str) -> GuardConfig:
    """The guard's table from a ``pyproject.toml`` text; empty config when there is none."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GuardConfigError(f"{where}: invalid TOML: {exc}") from exc
    table = data.get("tool", {}).get(TABLE)
    if table is None:
        return GuardConfig()
    if not isinstance(table, dict):
        raise GuardConfigError(f"{where}: [tool.{TABLE}] must be a table")
    unknown = sorted(set(table) - {"protected", "allow", "block_unplanned"})
    if unknown:
        raise GuardConfigError(f"{where}: [tool.{TABLE}] has unknown key(s): {', '.join(unknown)}")
    block = table.get("block_unplanned", False)
    if not isinstance(block, bool):
        raise GuardConfigError(f"{where}: [tool.{TABLE}] block_unplanned must be true or false")
    return GuardConfig(
        protected=tuple(_clean(p) for p in _strings(table.get("protected", []), "protected", where)),
        allow=frozenset(_strings(table.get("allow", []), "allow", where)),
        block_unplanned=block,
    )


def load_config(project_root: Path) -> GuardConfig:
    """The configuration in the project's checkout (used for eligibility)."""
    path = project_root / "pyproject.toml"
    if not path.is_file():
        return GuardConfig()
    return parse_config(path.read_text(encoding="utf-8"), str(path))


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def config_at(repo: Path, revision: str) -> GuardConfig:
    """The configuration committed at ``revision`` (read from git, not from a work tree)."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").returncode != 0:
        raise GuardConfigError(f"cannot read the configuration: no commit {revision!r} in {repo}")
    listed = _git(repo, "ls-tree", "--name-only", revision, "--", "pyproject.toml")
    if listed.returncode != 0 or not listed.stdout.strip():
        return GuardConfig()
    shown = _git(repo, "show", f"{revision}:pyproject.toml")
    if shown.returncode != 0:
        raise GuardConfigError(f"git show {revision}:pyproject.toml failed: {shown.stderr.strip()}")
    return parse_config(shown.stdout, f"pyproject.toml at {revision}")


# --------------------------------------------------------------------------- matching


def _clean(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def matches(path: str, pattern: str) -> bool:
    """Does ``path`` fall under ``pattern``?

    Patterns are ``fnmatch`` globs where ``*`` also crosses ``/``; ``dir/`` (or a plain
    ``dir``) protects everything under it; a leading ``**/`` also matches at the top level.
    A *path* ending in ``/`` is a directory a plan mentions: it matches when anything
    under it could (so ``*.sql`` guards ``db/``: the guard errs on the safe side).
    """
    path, pattern = _clean(path), _clean(pattern)
    if not path or not pattern:
        return False
    if path.endswith("/"):
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        return literal.startswith(path) or path.startswith(literal)
    if pattern.endswith("/"):
        return path.startswith(pattern)
    if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern + "/"):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:])


def protected_paths(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The paths that match any pattern, sorted."""
    return sorted({p for p in paths if any(matches(p, pattern) for pattern in patterns)})


def _listed(paths: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# --------------------------------------------------------------------------- hooks


@hookimpl
def check_eligibility(milestone: Milestone, project: Project) -> str | None:
    """Hold back a milestone whose plan touches a protected path."""
    config = load_config(project.root)
    if milestone.id in config.allow:
        return None
    hits = protected_paths(milestone.files, config.protected)
    if hits:
        return f"Touches protected paths ({TABLE}): {_listed(hits)}."
    if config.block_unplanned and config.protected and not milestone.has_file_plan:
        return f"No file plan, so it may touch protected paths ({TABLE})."
    return None


@hookimpl
def before_merge(milestone_id: str, worktree: Path, changed_files: Sequence[str], commit: str) -> str | None:
    """Refuse a merge that changes a protected path (config from the integration branch)."""
    config = config_at(worktree, f"{commit}^")
    if milestone_id in config.allow:
        return None
    hits = protected_paths(changed_files, config.protected)
    if hits:
        return f"{milestone_id} changes protected paths ({TABLE}): {_listed(hits)}"
    return None
