"""A command imports what it uses: ``status`` with no run loads no process, git-output,
terminal or run machinery (issue 11, item 6; ``bench/bench_startup.py`` measures the time).

Each check runs the command's real code path in a fresh interpreter and lists the modules
it imported; no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gsd_parallel_plugin.plugins import create_plugin_manager, may_have_entry_points
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project

#: what a read-only ``status`` with no run must not import
NOT_FOR_STATUS = (
    "sh",
    "yaml",  # the project's simple frontmatter and preferences are read without it
    "rich",
    "psutil",
    "asyncio",
    "tempfile",  # and with it shutil, random and the compression modules
    "shutil",
    "gsd_parallel_plugin.run.supervisor",
    "gsd_parallel_plugin.run.budget",
    "gsd_parallel_plugin.run.workers",
    "gsd_parallel_plugin.run.forecast",
    "gsd_parallel_plugin.run.radar",
    "gsd_parallel_plugin.gsd.output",
    "gsd_parallel_plugin.project.eligibility",
    "gsd_parallel_plugin.store",
    "gsd_parallel_plugin.records",  # the run's records: models loads them on first use
    "gsd_parallel_plugin.workspace.git",  # a loose refs/heads/main answers without it
)


def imported_by(*argv: str, cwd: Path) -> tuple[set[str], str]:
    """(modules newly imported, stdout) when ``gsd-parallel <argv>`` runs in-process."""
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        before = set(sys.modules)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            from gsd_parallel_plugin.cli import main
            code = main({list(argv)!r})
        print(json.dumps({{"code": code, "out": out.getvalue(),
                          "new": sorted(set(sys.modules) - before)}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["code"] == 0, done.stderr
    return set(result["new"]), result["out"]


def heavy(modules: set[str], names: tuple[str, ...] = NOT_FOR_STATUS) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    built = build_project(
        tmp_path / "p",
        {"M001": {"title": "First"}, "M002": {"title": "Second", "depends_on": ["M001"]}},
        preferences={"enabled": True, "max_workers": 2, "budget_ceiling": 5.0},
    )
    return built.root


#: what answering "no run" needs no more than the milestone directories for
PLAN_READING = (
    "gsd_parallel_plugin.views.runstate",  # the status read model: there is no run to read
    "gsd_parallel_plugin.project.reader",
    "gsd_parallel_plugin.project.plans",
    "gsd_parallel_plugin.project.roadmap",
    "gsd_parallel_plugin.project.records",
)


@pytest.mark.parametrize("argv", [("status",), ("status", "--json"), ("status", "M002")])
def test_status_with_no_run_imports_no_run_machinery(project, argv):
    modules, out = imported_by("--project", str(project), *argv, cwd=project)
    assert heavy(modules) == []
    assert "gsd_parallel_plugin.project" in modules  # it did read the project
    assert out.startswith("No parallel orchestration") or '"active": false' in out


@pytest.mark.parametrize("argv", [("status",), ("status", "--json")])
def test_status_where_nothing_ever_ran_reads_no_plan(project, argv):
    modules, _out = imported_by("--project", str(project), *argv, cwd=project)
    assert heavy(modules, PLAN_READING) == []
    assert "gsd_parallel_plugin.project.milestone_dirs" in modules  # it looked for project problems


def test_status_of_a_milestone_reads_the_plans_to_know_it(project):
    modules, _out = imported_by("--project", str(project), "status", "M002", cwd=project)
    assert "gsd_parallel_plugin.project.reader" in modules


@pytest.mark.parametrize("argv", [("--version",), ("--help",), ("status", "--help")])
def test_version_and_help_load_no_plugin_machinery(project, argv):
    modules, out = imported_by(*argv, cwd=project)
    assert out.startswith(("gsd-parallel", "usage:"))
    assert heavy(modules, ("pluggy", "gsd_parallel_plugin.models", "argparse")) == []


def test_status_skips_entry_point_discovery_when_nothing_declares_one(project):
    if may_have_entry_points("gsd_parallel"):
        pytest.skip("an installed distribution declares gsd_parallel entry points here")
    modules, _out = imported_by("--project", str(project), "status", cwd=project)
    assert "importlib.metadata" not in modules


def test_status_of_a_finished_run_still_needs_no_git_output_or_terminal(project):
    with Store(project / ".gsd" / "parallel" / "coordinator.db") as store:
        run = store.create_run(5.0)
        store.add_worker(run.id, "M001", "First", project, "gsd-parallel/M001")
        store.set_state("M001", run.id, "complete")
        store.finish_run(run.id)
    modules, out = imported_by("--project", str(project), "status", cwd=project)
    assert "Last run:" in out and "M001" in out
    assert heavy(modules, ("sh", "rich", "asyncio", "psutil")) == []  # the lock file is empty: no holder


def write_dist(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_the_cheap_entry_point_check_sees_the_section_not_the_word(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_dist(site, "other", "[console_scripts]\ngsd-parallel = gsd_parallel_plugin.cli:run\n")
    monkeypatch.setattr(sys, "path", [str(site)])
    assert not may_have_entry_points("gsd_parallel")
    write_dist(site, "guard", "\n  [gsd_parallel]  \nguard = guard_plugin\n")
    assert may_have_entry_points("gsd_parallel")


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert may_have_entry_points("gsd_parallel")


def test_an_entry_point_plugin_is_still_loaded(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_dist(site, "shout", "[gsd_parallel]\nshout = shout_plugin\n")
    (site / "shout_plugin.py").write_text(
        "from gsd_parallel_plugin import hookimpl\n\n"
        "@hookimpl\ndef on_budget_exceeded(run_total_usd, budget_ceiling):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(site))
    loaded = create_plugin_manager(environ={})
    assert loaded.sources["shout"] == ("entry point", "shout", "1.0")
