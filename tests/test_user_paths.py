"""What a demanding user runs into: odd input, odd states, Ctrl-C, and getting unstuck.

Every test drives the real ``gsd-parallel`` CLI (a subprocess) on a real git project; the
rule checked throughout is one clear line, exit 2 for a user error, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gsd_parallel_plugin.testing.builder import build_project

ONE = {"M001": {"title": "One", "slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}}}}


def one_line_error(result, *needles: str) -> None:
    """Exit 2, a single ``gsd-parallel:`` line on stderr naming every needle, no traceback."""
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("gsd-parallel: "), lines[0]
    assert "Traceback" not in result.err and "internal error" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def worker_states(cli, root: Path) -> dict[str, str]:
    status = cli("--project", root, "status", "--json")
    return {w["id"]: w["state"] for w in status.json().get("workers", [])}


# --------------------------------------------------------------------------- preferences


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("budget_ceiling", ".inf"),
        ("budget_ceiling", "1.0e-12"),  # rounds to $0 in the store's nano-USD
        ("budget_ceiling", "1.0e+300"),  # does not fit the store's integer nano-USD
        ("milestone_budget", ".inf"),
        ("milestone_budget", "1.0e-12"),
        ("stop_grace_seconds", ".inf"),  # SIGKILL would never come, `stop` would never return
        ("stall_minutes", ".inf"),
    ],
)
def test_unusable_numbers_in_preferences_are_refused(tmp_path, cli, key, value):
    project = build_project(tmp_path / "p", ONE)
    (project.gsd / "PREFERENCES.md").write_text(
        f"---\nparallel:\n  enabled: true\n  {key}: {value}\n---\n"
    )
    for command in (("start", "--dry-run"), ("start",), ("status",)):
        one_line_error(cli("--project", project.root, *command), f"parallel.{key}", "invalid")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e300"])
def test_resume_budget_must_be_a_usable_amount(tmp_path, cli, value):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    one_line_error(cli("--project", project.root, "resume", "M001", "--budget", value), "--budget")
