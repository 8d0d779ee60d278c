"""gsd-parallel-guard, tested the way a plugin author would: with gsd_parallel_plugin.testing."""

from __future__ import annotations

import textwrap

import gsd_parallel_guard as guard
import pytest

from gsd_parallel_plugin.errors import PluginError
from gsd_parallel_plugin.testing import registered

PYPROJECT = textwrap.dedent("""
    [project]
    name = "app"

    [tool.gsd-parallel-guard]
    protected = ["migrations/", "LICENSE", "**/*.lock"]
""")

MILESTONES = {
    "M001": {"title": "API", "slices": {"S01": {"T01": ["src/api.py"]}}},
    "M002": {"title": "Schema", "slices": {"S01": {"T01": ["src/models.py", "migrations/0002_add.sql"]}}},
    "M003": {"title": "Deps", "slices": {"S01": {"T01": ["./web/yarn.lock"]}}},
}


def test_dry_run_reports_protected_milestones_as_ineligible(gsd_project, gsd_host):
    project = gsd_project(MILESTONES, pyproject=PYPROJECT)
    host = gsd_host(project, plugins=[guard])
    result = host.run("start --dry-run", json=True)
    assert result.exit_code == 0
    reasons = {v["id"]: v["reason"] for v in result.data["ineligible"]}
    assert reasons == {
        "M002": "Touches protected paths (gsd-parallel-guard): migrations/0002_add.sql.",
        "M003": "Touches protected paths (gsd-parallel-guard): web/yarn.lock.",
    }
    assert [v["id"] for v in result.data["eligible"]] == ["M001"]
    assert result.data["plan"]["start"] == ["M001"]
    text = host.run("start --dry-run").text
    assert (
        "- **M002** — Schema\n  Touches protected paths (gsd-parallel-guard): migrations/0002_add.sql."
        in text
    )


def test_allow_list_and_no_config(gsd_project, gsd_host):
    allowed = PYPROJECT + 'allow = ["M002"]\n'
    project = gsd_project(MILESTONES, pyproject=allowed)
    data = gsd_host(project, plugins=[guard]).run("start --dry-run", json=True).data
    assert [v["id"] for v in data["ineligible"]] == ["M003"]
    bare = gsd_project(MILESTONES)  # no pyproject.toml at all: the guard has no opinion
    data = gsd_host(bare, plugins=[guard]).run("start --dry-run", json=True).data
    assert data["ineligible"] == []


def test_block_unplanned(gsd_project, gsd_host):
    config = PYPROJECT + "block_unplanned = true\n"
    project = gsd_project({**MILESTONES, "M004": {"title": "Vague"}}, pyproject=config)
    data = gsd_host(project, plugins=[guard]).run("start --dry-run", json=True).data
    reasons = {v["id"]: v["reason"] for v in data["ineligible"]}
    assert [v["id"] for v in data["eligible"]] == ["M001"]
    assert reasons["M004"] == "No file plan, so it may touch protected paths (gsd-parallel-guard)."


def test_broken_config_fails_the_operation_naming_the_plugin(gsd_project, gsd_host):
    project = gsd_project(MILESTONES, pyproject='[tool.gsd-parallel-guard]\nprotected = "migrations/"\n')
    result = gsd_host(project, plugins=[guard]).run("start --dry-run")
    assert result.exit_code == 1
    assert result.text.startswith(
        "plugin 'gsd_parallel_guard' failed in check_eligibility: GuardConfigError: "
    )
    assert "protected must be a list of non-empty strings, got 'migrations/'" in result.text


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("migrations/0001.sql", "migrations/", True),
        ("migrations/0001.sql", "migrations", True),
        ("migrationsX/0001.sql", "migrations", False),
        ("LICENSE", "LICENSE", True),
        ("docs/LICENSE", "LICENSE", False),
        ("yarn.lock", "**/*.lock", True),
        ("a/b/yarn.lock", "**/*.lock", True),
        ("./src/app.py", "src/*.py", True),
        ("db/", "db/migrations/*", True),
        ("src/", "db/migrations/*", False),
        ("src/", "*.sql", True),
    ],
)
def test_matching(path, pattern, expected):
    assert guard.matches(path, pattern) is expected


def test_before_merge_vetoes_changes_to_protected_paths(gsd_project, gsd_host):
    """A real squash-style commit: config from its parent, changed files from the merge."""
    project = gsd_project({"M001": {"title": "API"}}, pyproject=PYPROJECT)
    (project.root / "migrations").mkdir()
    (project.root / "migrations" / "0003.sql").write_text("ALTER TABLE t ADD c int;\n")
    # The milestone also tries to unprotect migrations/: the guard reads the parent's config.
    (project.root / "pyproject.toml").write_text(PYPROJECT.replace('"migrations/", ', ""))
    commit = project.commit_all("feat: M001")
    host = gsd_host(project, plugins=[guard])
    reasons = host.hooks.before_merge("M001", project.root, ["migrations/0003.sql", "pyproject.toml"], commit)
    assert reasons == ["M001 changes protected paths (gsd-parallel-guard): migrations/0003.sql"]
    assert host.hooks.before_merge("M001", project.root, ["src/api.py"], commit) == []


def test_before_merge_with_an_unknown_commit_fails_closed(gsd_project, gsd_host):
    project = gsd_project({"M001": {}}, pyproject=PYPROJECT)
    host = gsd_host(project)
    with (
        registered(host, guard),
        pytest.raises(PluginError, match="plugin 'gsd_parallel_guard' failed in before_merge"),
    ):
        host.hooks.before_merge("M001", project.root, ["x"], "0" * 40)
    assert "gsd_parallel_guard" not in [name for name, _ in host.plugins.pm.list_name_plugin()]


def test_entry_point_is_installed(gsd_project, gsd_host):
    """Installed, the plugin is found through its entry point (autoload on)."""
    host = gsd_host(gsd_project({"M001": {}}), autoload=True)
    info = {i.name: i for i in host.plugins.info()}
    assert info["gsd_parallel_guard"].distribution == "gsd-parallel-guard"
    assert info["gsd_parallel_guard"].hooks == ["before_merge", "check_eligibility"]
