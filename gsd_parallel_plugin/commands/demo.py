"""``gsd-parallel demo [DIR]``: a sample GSD project run end to end with the fake worker.

It shows the whole product in well under a minute without a model provider: the
eligibility report, workers running side by side, an overlap serialized, a dependency
waiting for its merge, and what landed on ``main``.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models import CommandContext, CommandResult
from .common import ArgParser, parse

SAMPLE: dict[str, dict[str, Any]] = {
    "M001": {"title": "Core API", "complete": True, "slices": {"S01": {"T01": ["src/core.py"]}}},
    "M002": {
        "title": "Auth System",
        "depends_on": ["M001"],
        "slices": {
            "S01": {"T01": ["src/auth/session.py", "src/app.py"], "T02": ["src/auth/login.py"]},
            "S02": {"T01": ["tests/test_auth.py"]},
        },
    },
    "M003": {
        "title": "Search",
        "slices": {"S01": {"T01": ["src/search.py", "src/app.py"], "T02": ["tests/test_search.py"]}},
    },
    "M004": {
        "title": "Checkout Flow",
        "depends_on": ["M002"],
        "slices": {"S01": {"T01": ["src/checkout.py"], "T02": ["tests/test_checkout.py"]}},
    },
    "M005": {"title": "User Guide", "slices": {"S01": {"T01": ["docs/guide.md"], "T02": ["docs/faq.md"]}}},
    "M006": {"title": "Admin Console", "parked": True, "roadmap": False},
}
PREFERENCES = {
    "enabled": True,
    "max_workers": 3,
    "auto_merge": "auto",
    "budget_ceiling": 5.0,
    "stop_grace_seconds": 2,
}


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--unit-seconds", type=float, default=0.25)
    args = parse(parser, ctx)
    target = _target(args.directory)
    project = _build(target)
    _use_fake_worker(target, args.unit_seconds)

    from ..host import HostSession

    ctx.host.notify(f"demo project: {project}")
    host = HostSession(project, plugins=ctx.host.plugins, interactive=ctx.host.interactive)
    started = time.monotonic()
    report = host.dispatch(["parallel", "start", "--dry-run"], json=False)
    run_result = host.dispatch(["parallel", "start", "--wait"], json=ctx.json)
    elapsed = time.monotonic() - started

    from ..testing.builder import git

    log = git(project, "log", "--oneline", "--no-decorate", "main")
    text = "\n".join(
        [
            report.text.rstrip(),
            "",
            run_result.text.rstrip(),
            "",
            "## main after the run",
            "",
            *[f"    {line}" for line in log.splitlines()],
            "",
            f"Finished in {elapsed:.1f}s. The project is kept at {project}",
            f"Try: gsd-parallel --project {shlex.quote(str(project))} status",
        ]
    )
    data = {
        "project": str(project),
        "seconds": round(elapsed, 2),
        "status": run_result.data,
        "main_log": log.splitlines(),
    }
    return CommandResult(text + "\n", data, exit_code=run_result.exit_code)


def _target(directory: str | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="gsd-parallel-demo-"))
    target = Path(directory).expanduser().absolute()
    try:
        if target.exists() and not target.is_dir():
            raise UserError(f"{target} is not a directory: give a new or empty directory for the demo")
        if target.exists() and any(target.iterdir()):
            raise UserError(f"{target} is not empty: give a new or empty directory for the demo")
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot use {target} for the demo ({reason}): give a new or empty directory"
        ) from None
    return target


def _build(target: Path) -> Path:
    from ..testing.builder import build_project

    project = target / "shop"
    build_project(
        project,
        SAMPLE,
        preferences=PREFERENCES,
        files={"README.md": "# Shop\n\nA sample project for gsd-parallel.\n", "src/app.py": "# app\n"},
    )
    return project


def _use_fake_worker(target: Path, unit_seconds: float) -> None:
    """Point this process (and so the supervisor and workers) at the shipped fake worker.

    ``GSD_HOME`` moves into the demo directory so the user's own preferences play no part.
    """
    from ..testing.builder import fake_worker_env

    home = target / "gsd-home"
    home.mkdir(exist_ok=True)
    os.environ.update(fake_worker_env(unit_seconds=unit_seconds, unit_cost=0.01))
    os.environ["GSD_HOME"] = str(home)
    os.environ.pop("GSD_PARALLEL_WORKER", None)
