"""``gsd-parallel demo [DIR] [--real]``: a sample GSD project run end to end.

It shows the whole product in well under a minute without a model provider: the
eligibility report, workers running side by side, an overlap serialized, a dependency
waiting for its merge, and what landed on ``main``.

By default the workers are the fake GSD that ships with the package. With ``--real`` they
are the real GSD 3 (``gsd headless --json auto``: the build cache's or ``$GSD_PARALLEL_REAL_GSD``,
else a ``gsd`` on ``PATH`` whose ``--version`` is 3.x) on a smaller project (three
milestones, one depending on another), driven by the scripted model
(:mod:`gsd_parallel_plugin.testing.scripted_model`) that this process serves on 127.0.0.1
for the length of the run. GSD runs with ``GSD_HOME`` and ``HOME`` inside the demo
directory: your own ``~/.gsd``, ``~/.pi`` and model credentials play no part.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import hints
from ..errors import UserError
from ..invocation import ArgParser, parse
from ..models import CommandContext, CommandResult

if TYPE_CHECKING:
    from ..host import HostSession

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

REAL_MILESTONES = ("M001", "M002", "M003")
REAL_DEPENDS = {"M003": ("M001",)}
"""The ``--real`` project: M001 and M002 run side by side, M003 waits for M001's merge."""
REAL_PREFERENCES = (
    "---\n"
    "version: 1\n"
    "parallel:\n"
    "  enabled: true\n"
    "  max_workers: 2\n"
    "  auto_merge: auto\n"
    "  budget_ceiling: 10.0\n"
    "  stop_grace_seconds: 5\n"
    # A real worker that never reaches the model is a broken set-up: say so in a minute.
    "  startup_grace_seconds: 60\n"
    "  provider_grace_seconds: 30\n"
    "---\n\n# GSD Preferences\n"
)
NOT_FOUND = "real GSD not found: "
INTERRUPTED_TEXT = (
    "Interrupted: the workers were stopped, since the scripted model they talk to ends with the demo."
)
VERSION_TIMEOUT = 30.0


def run(name: str, ctx: CommandContext) -> CommandResult:
    parser = ArgParser(name)
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--unit-seconds", type=float, default=0.25)
    parser.add_argument("--real", action="store_true")
    args = parse(parser, ctx)
    if args.real:
        gsd, version = _find_gsd()  # before anything is created: no GSD, no demo directory
        return _run_real(ctx, _target(args.directory), gsd, version)
    target = _target(args.directory)
    project = _build(target)
    _use_fake_worker(target, args.unit_seconds)

    from ..host import HostSession

    ctx.host.notify(f"demo project: {project}")
    host = HostSession(
        project, plugins=ctx.host.plugins, interactive=ctx.host.interactive, out=io.StringIO()
    )  # its output is part of the demo's own text below
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
            _ending(run_result.exit_code, elapsed, project),
            f"Try: {hints.bare('--project ' + shlex.quote(str(project)) + ' status')}",
        ]
    )
    data = {
        "project": str(project),
        "seconds": round(elapsed, 2),
        "status": run_result.data,
        "main_log": log.splitlines(),
    }
    return CommandResult(text + "\n", data, exit_code=run_result.exit_code)


def _ending(exit_code: int, elapsed: float, project: Path) -> str:
    """The demo's last line: "Finished" only when the run was not interrupted (Ctrl-C)."""
    from ..exitcodes import ExitCode

    if exit_code == ExitCode.INTERRUPTED:
        return f"Interrupted after {elapsed:.1f}s. The project is kept at {project}"
    return f"Finished in {elapsed:.1f}s. The project is kept at {project}"


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


# --------------------------------------------------------------------------- --real


def _find_gsd() -> tuple[Path, str | None]:
    """The real GSD to run and its version: :func:`find_real_gsd`, else a 3.x ``gsd`` on PATH.

    Raises the one-line ``real GSD not found: …`` error (exit 2) otherwise, also for a
    ``GSD_PARALLEL_REAL_GSD`` that names no runnable file.
    """
    from ..testing.real_gsd import ENV_REAL_GSD, RealGsdError, find_real_gsd

    try:
        found = find_real_gsd()
    except RealGsdError as exc:
        raise UserError(f"{NOT_FOUND}{exc}") from None
    if found is not None:
        return found, _gsd_version(found)
    on_path = shutil.which("gsd")
    if on_path is None:
        raise UserError(
            f"{NOT_FOUND}no build in ~/.cache/gsd-parallel/real-gsd and no `gsd` on PATH: "
            f"install GSD 3 (gsd-pi) or set {ENV_REAL_GSD}"
        )
    path = Path(on_path)
    version = _gsd_version(path)
    if version is None or not version.startswith("3"):
        said = f"says {version!r}" if version else "does not answer --version"
        raise UserError(f"{NOT_FOUND}{path} {said}, the demo needs GSD 3.x: install it or set {ENV_REAL_GSD}")
    return path, version


def _gsd_version(gsd: Path) -> str | None:
    """``gsd --version``'s first line, run with a throwaway GSD_HOME and HOME (None: failed)."""
    from ..testing.real_gsd import real_gsd_environ

    with tempfile.TemporaryDirectory(prefix="gsd-parallel-version-") as tmp:
        (Path(tmp) / "gsd-home").mkdir()
        env = real_gsd_environ(Path(tmp) / "gsd-home", home=Path(tmp))
        try:
            done = subprocess.run(
                [str(gsd), "--version"], env=env, cwd=tmp, capture_output=True, text=True,
                timeout=VERSION_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def _run_real(ctx: CommandContext, target: Path, gsd: Path, version: str | None) -> CommandResult:
    from ..exitcodes import ExitCode
    from ..host import HostSession
    from ..testing.builder import git
    from ..testing.scripted_model import ScriptedModel, write_agent_config

    project = _build_real(target)
    gsd_home, home = _use_real_worker(target, gsd)
    ctx.host.notify(f"demo project: {project}")
    ctx.host.notify(f"workers: real GSD {version or '(version unknown)'} at {gsd}")
    host = HostSession(
        project, plugins=ctx.host.plugins, interactive=ctx.host.interactive, out=io.StringIO()
    )  # its output is part of the demo's own text below
    run_result: CommandResult | None = None
    # The model lives in this process: it must outlive every worker, so the supervisor runs
    # here in the foreground (``start --wait``) and nothing is left running when it ends.
    with ScriptedModel() as model:
        write_agent_config(gsd_home / "agent", model)
        started = time.monotonic()
        try:
            report = host.dispatch(["parallel", "start", "--dry-run"], json=False)
            run_result = host.dispatch(["parallel", "start", "--wait"], json=ctx.json)
        finally:
            if run_result is None or run_result.exit_code == ExitCode.INTERRUPTED:
                _stop_workers(host)
        elapsed = time.monotonic() - started
        requests, billed = model.requests, model.billed_nanos()

    from ..money import NANOS_PER_USD

    log = git(project, "log", "--oneline", "--no-decorate", "main")
    run_text, run_data = run_result.text, run_result.data
    if run_result.exit_code == ExitCode.INTERRUPTED:
        # ``start --wait`` handed the run to a background supervisor, but the model is gone.
        after = host.dispatch(["parallel", "status"], json=ctx.json)
        run_text = after.text.rstrip() + "\n\n" + INTERRUPTED_TEXT
        run_data = {**(after.data if isinstance(after.data, dict) else {}), "interrupted": True}
    text = "\n".join(
        [
            report.text.rstrip(),
            "",
            run_text.rstrip(),
            "",
            "## main after the run",
            "",
            *[f"    {line}" for line in log.splitlines()],
            "",
            f"Workers: real GSD {version or '(version unknown)'} ({gsd}), one `gsd headless --json "
            f"auto` per milestone; model: the scripted model on {model.host}, {requests} answers "
            f"at its pretend prices (${billed / NANOS_PER_USD:.2f}).",
            f"GSD's own state is in {gsd_home} (HOME {home}): your ~/.gsd and ~/.pi were not used.",
            _ending(run_result.exit_code, elapsed, project),
            f"Try: {hints.bare('--project ' + shlex.quote(str(project)) + ' status')}",
        ]
    )
    data = {
        "project": str(project),
        "seconds": round(elapsed, 2),
        "status": run_data,
        "main_log": log.splitlines(),
        "real": {
            "gsd": str(gsd),
            "version": version,
            "gsd_home": str(gsd_home),
            "home": str(home),
            "model_requests": requests,
            "model_billed": billed / NANOS_PER_USD,
        },
    }
    return CommandResult(text + "\n", data, exit_code=run_result.exit_code)


def _build_real(target: Path) -> Path:
    """A small GSD project the real GSD runs: three milestones, M003 needing M001."""
    from ..testing.builder import git
    from ..testing.real_gsd import make_gsd_project

    project = make_gsd_project(target / "greetings", REAL_MILESTONES, depends=REAL_DEPENDS)
    (project / ".gsd" / "PREFERENCES.md").write_text(REAL_PREFERENCES, encoding="utf-8")
    git(project, "commit", "-q", "-m", "Enable gsd-parallel", "--", ".gsd/PREFERENCES.md")
    return project


def _use_real_worker(target: Path, gsd: Path) -> tuple[Path, Path]:
    """Point this process (so the supervisor and its workers) at *gsd*, isolated in *target*.

    ``GSD_HOME`` (GSD's and gsd-parallel's global state and preferences) and ``HOME`` (where
    GSD reads ``~/.pi`` and installs skills) move into the demo directory, the variables that
    could steer GSD elsewhere or to a real model are dropped (``real_gsd_environ``).
    """
    from ..testing.real_gsd import REAL_GSD_CLEARED_VARIABLES, real_gsd_env

    gsd_home, home = target / "gsd-home", target / "home"
    (gsd_home / "agent").mkdir(parents=True, exist_ok=True)  # else GSD prints a first-run banner
    home.mkdir(exist_ok=True)
    for name in REAL_GSD_CLEARED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(real_gsd_env(gsd_home, home=home))
    os.environ["GSD_PARALLEL_WORKER_COMMAND"] = shlex.join([str(gsd), "headless", "--json", "auto"])
    os.environ.pop("GSD_PARALLEL_WORKER", None)
    return gsd_home, home


def _stop_workers(host: HostSession) -> None:
    """Stop the run's workers (the run was interrupted): the scripted model goes away now."""
    with contextlib.suppress(Exception, KeyboardInterrupt):  # a second Ctrl-C: leave it be
        host.dispatch(["parallel", "stop"], json=True)
