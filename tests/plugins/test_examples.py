"""The example plugins, installed into a fresh virtual environment next to gsd-parallel.

Each example is a real distribution: pip builds and installs it (no network: hatchling
is already here, ``--no-build-isolation --no-index``), and from then on it is active
through its ``gsd_parallel`` entry point alone. Its own test suite runs in that
environment too, so CI runs the examples' tests with this single pytest run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gsd_parallel_plugin.testing import build_project, fake_worker_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {name: REPO / "examples" / name for name in ("gsd-parallel-guard", "gsd-parallel-notify")}


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(
        self,
        *args: str | Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GSD_PARALLEL_", "GSD_FAKE_", "PYTHONPATH"))
        }
        return subprocess.run(
            [str(a) for a in args],
            env={**clean, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def gsd_parallel(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.path / "bin" / "gsd-parallel", *args, env=env)


def see_outer_packages(env: Venv) -> None:
    """Let the nested venv see the packages of the environment running these tests.

    ``--system-site-packages`` means the *base* interpreter's packages: run from a virtual
    environment (as most people run the README's command) the nested one would not see
    pip, hatchling or pytest installed there. A ``.pth`` file adds the outer environment's
    site-packages after the nested one's own, so what is installed into it still wins.
    """
    import site
    import sysconfig

    if sys.prefix == sys.base_prefix:
        return  # not in a venv: the system site-packages are the outer ones
    outer = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    inner = env.run(env.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    assert inner.returncode == 0, inner.stderr
    Path(inner.stdout.strip(), "_outer_environment.pth").write_text("\n".join(outer) + "\n")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    env = Venv(tmp_path_factory.mktemp("examples") / "venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env.path)],
        check=True,
    )
    see_outer_packages(env)
    done = env.run(
        env.python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", REPO, *EXAMPLES.values(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return env


def test_nested_venv_sees_the_outer_environment(venv):
    """Run from a venv, the nested one finds what the outer one has (pip, hatchling, pytest)."""
    import site

    done = venv.run(venv.python, "-c", "import sys; print('\\n'.join(sys.path))", cwd=venv.path)
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split("\n")
    for outer in site.getsitepackages():
        assert outer in paths, (outer, paths)


def test_installed_copies_are_the_ones_imported(venv):
    done = venv.run(
        venv.python, "-c",
        "import gsd_parallel_plugin, gsd_parallel_guard, gsd_parallel_notify as n;"
        "print(gsd_parallel_plugin.__file__); print(gsd_parallel_guard.__file__); print(n.__file__)",
        cwd=venv.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert Path(path).is_relative_to(venv.path), path


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_test_suite_passes_installed(venv, example):
    done = venv.run(venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=EXAMPLES[example])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_plugins_command_lists_both_examples_from_their_entry_points(venv, tmp_path):
    project = build_project(tmp_path / "proj", {"M001": {}}, preferences={"enabled": True})
    done = venv.gsd_parallel(
        "--project", project.root, "plugins", "--json", env={"GSD_HOME": str(tmp_path / "home")}
    )
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert plugins["gsd_parallel_guard"] | {"hooks": None} == {
        "name": "gsd_parallel_guard",
        "distribution": "gsd-parallel-guard",
        "version": "0.1.0",
        "source": "entry point",
        "module": "gsd_parallel_guard",
        "builtin": False,
        "hooks": None,
    }
    assert plugins["gsd_parallel_notify"]["distribution"] == "gsd-parallel-notify"
    off = venv.gsd_parallel(
        "--project", project.root, "plugins", "--json",
        env={"GSD_HOME": str(tmp_path / "home"), "GSD_PARALLEL_DISABLED_PLUGINS": "gsd_parallel_guard"},
    )  # fmt: skip
    data = json.loads(off.stdout)
    assert "gsd_parallel_guard" not in {p["name"] for p in data["plugins"]}
    assert data["blocked"] == ["gsd_parallel_guard"]


def test_guard_blocks_a_protected_milestone_in_start_dry_run(venv, tmp_path):
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "API", "slices": {"S01": {"T01": ["src/api.py"]}}},
            "M002": {"title": "Schema", "slices": {"S01": {"T01": ["migrations/0002_add.sql"]}}},
        },
        preferences={"enabled": True, "max_workers": 2},
        files={"pyproject.toml": '[tool.gsd-parallel-guard]\nprotected = ["migrations/"]\n'},
    )
    done = venv.gsd_parallel(
        "--project", project.root, "start", "--dry-run", env={"GSD_HOME": str(tmp_path / "home")}
    )
    assert done.returncode == 0, done.stderr
    assert "## Eligible for Parallel Execution (1)\n\n- **M001** — API\n" in done.stdout
    assert (
        "## Ineligible (1)\n\n- **M002** — Schema\n"
        "  Touches protected paths (gsd-parallel-guard): migrations/0002_add.sql.\n"
    ) in done.stdout


def test_guard_refuses_a_real_merge_of_a_path_protected_meanwhile(venv, tmp_path):
    """The plan did not touch a protected path when the milestone started; by merge time
    main protects it: before_merge reads the integration branch's table and refuses."""
    project = build_project(
        tmp_path / "proj",
        {"M001": {"title": "Schema", "slices": {"S01": {"T01": ["migrations/0001.sql"]}}}},
        preferences={"enabled": True, "auto_merge": "manual"},
    )
    env = {
        **fake_worker_env(unit_seconds=0),
        "GSD_PARALLEL_WORKER_COMMAND": f"{venv.python} -m gsd_parallel_plugin.testing.fake_gsd headless --json auto",
        "GSD_HOME": str(tmp_path / "home"),
    }
    started = venv.gsd_parallel("--project", project.root, "start", "--wait", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    (project.root / "pyproject.toml").write_text('[tool.gsd-parallel-guard]\nprotected = ["migrations/"]\n')
    protected_tip = project.commit_all("protect migrations")
    refused = venv.gsd_parallel("--project", project.root, "merge", env=env)
    assert refused.returncode == 1
    assert (
        "refused by before_merge: M001 changes protected paths (gsd-parallel-guard): migrations/0001.sql"
        in refused.stdout + refused.stderr
    )
    assert project.head("main") == protected_tip
    assert not (project.root / "migrations").exists()
    allowed = venv.gsd_parallel(
        "--project", project.root, "merge", env={**env, "GSD_PARALLEL_DISABLED_PLUGINS": "gsd_parallel_guard"}
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert (project.root / "migrations" / "0001.sql").is_file()


def test_notifier_file_has_the_events_of_a_real_run_in_order(venv, tmp_path):
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "API", "slices": {"S01": {"T01": ["src/api.py"], "T02": ["src/db.py"]}}},
            "M002": {"title": "Web", "slices": {"S01": {"T01": ["src/web.py"]}}},
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "auto"},
    )
    events_file = tmp_path / "events" / "run.jsonl"
    env = {
        **fake_worker_env(unit_seconds=0, unit_cost=0.01),
        "GSD_PARALLEL_WORKER_COMMAND": f"{venv.python} -m gsd_parallel_plugin.testing.fake_gsd headless --json auto",
        "GSD_PARALLEL_NOTIFY_FILE": str(events_file),
        "GSD_HOME": str(tmp_path / "home"),
    }
    done = venv.gsd_parallel("--project", project.root, "start", "--wait", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    for mid in ("M001", "M002"):
        mine = [e for e in events if e.get("milestone_id") == mid]
        assert [(e["event"], e.get("old_state"), e.get("new_state")) for e in mine] == [
            ("worker_state_change", "starting", "running"),
            ("worker_state_change", "running", "complete"),
            ("milestone_complete", None, None),
            ("merge_complete", None, None),
        ], mine
        assert mine[2]["branch"] == f"gsd-parallel/{mid}"
        assert mine[3]["branch"] == "main" and mine[3]["commit"] in project.git("log", "--format=%H", "main")
    # The file's state changes are the store's, in the store's order.
    import sqlite3

    con = sqlite3.connect(project.gsd / "parallel" / "coordinator.db")
    try:
        stored = [m for (m,) in con.execute("SELECT milestone_id FROM events WHERE kind='state' ORDER BY id")]
    finally:
        con.close()
    assert [e["milestone_id"] for e in events if e["event"] == "worker_state_change"] == stored
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
