"""Preferences: global overlaid by project, strict validation, GSD's keys kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import PreferencesError
from gsd_parallel_plugin.preferences import DEFAULT_WORKER_COMMAND, load_preferences
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import ONE, one_line_error, worker_states


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    home = tmp_path / "home"
    gsd = tmp_path / "proj" / ".gsd"
    gsd.mkdir(parents=True)
    return home, gsd, {"GSD_HOME": str(home)}


def test_defaults_without_files(dirs):
    _home, gsd, env = dirs
    prefs = load_preferences(gsd, environ=env)
    assert prefs.parallel.enabled is False
    assert prefs.parallel.max_workers == 2
    assert prefs.parallel.worker_command == DEFAULT_WORKER_COMMAND
    assert prefs.parallel.stall_minutes == 15
    assert prefs.parallel.preview_minutes is None  # the periodic preview is off
    assert prefs.sources == ()


def test_preview_minutes_takes_fractions_and_null(dirs):
    _home, gsd, env = dirs
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  preview_minutes: 0.02\n---\n")
    assert load_preferences(gsd, environ=env).parallel.preview_minutes == 0.02
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  preview_minutes: 10\n---\n")
    assert load_preferences(gsd, environ=env).parallel.preview_minutes == 10.0
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  preview_minutes: null\n---\n")
    assert load_preferences(gsd, environ=env).parallel.preview_minutes is None


def test_project_overlays_global_per_key_and_keeps_gsd_keys(dirs):
    home, gsd, env = dirs
    write(
        home / "PREFERENCES.md",
        "---\nversion: 1\nbudget_ceiling: 20\nparallel:\n  max_workers: 3\n  auto_merge: auto\n---\n",
    )
    write(
        gsd / "PREFERENCES.md",
        "---\nmodels: {execution: x}\ngit:\n  main_branch: trunk\nparallel:\n  enabled: true\n  max_workers: 4\n---\nbody\n",
    )
    prefs = load_preferences(gsd, environ=env)
    assert prefs.parallel.enabled is True
    assert prefs.parallel.max_workers == 4  # project wins
    assert prefs.parallel.auto_merge == "auto"  # global kept where project is silent
    assert prefs.raw["budget_ceiling"] == 20  # GSD's own key, untouched
    assert prefs.raw["models"] == {"execution": "x"}
    assert prefs.git_main_branch == "trunk"
    assert prefs.warnings == ()


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("enabled", "maybe", "true or false"),
        ("max_workers", 9, "a whole number from 1 to 4"),
        ("max_workers", 0, "a whole number from 1 to 4"),
        ("max_workers", "true", "a whole number from 1 to 4"),
        ("budget_ceiling", 0, "a number > 0"),
        ("budget_ceiling", -5, "a number > 0"),
        ("merge_strategy", "per-task", "one of per-milestone, per-slice"),
        ("auto_merge", "always", "one of auto, confirm, manual"),
        ("worker_model", "''", "a non-empty string"),
        ("merge_order", "random", "one of sequential, by-completion"),
        ("overlap", "ignore", "one of serialize, warn"),
        ("max_restarts", 11, "a whole number from 0 to 10"),
        ("stop_grace_seconds", 0, "a number > 0"),
        ("merge_check", 5, "a command"),
        ("merge_check", "[]", "a command"),
        ("milestone_budget", -1, "a number > 0"),
        ("stall_minutes", -1, "a number >= 0"),
        ("preview_minutes", 0, "a number > 0 and at most 10080, or null"),
        ("preview_minutes", -2, "a number > 0"),
        ("preview_minutes", "soon", "a number > 0"),
        ("preview_minutes", "true", "a number > 0"),
    ],
)
def test_each_invalid_value_names_file_key_value_and_allowed(dirs, key, value, allowed):
    _home, gsd, env = dirs
    path = write(gsd / "PREFERENCES.md", f"---\nparallel:\n  {key}: {value}\n---\n")
    with pytest.raises(PreferencesError) as info:
        load_preferences(gsd, environ=env)
    message = str(info.value)
    assert str(path) in message
    assert f"parallel.{key}" in message
    assert allowed in message
    assert "\n" not in message


def test_unknown_parallel_key_is_a_warning(dirs):
    _home, gsd, env = dirs
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  max_wrokers: 3\n---\n")
    prefs = load_preferences(gsd, environ=env)
    assert prefs.parallel.max_workers == 2
    assert len(prefs.warnings) == 1 and "parallel.max_wrokers" in prefs.warnings[0]


def test_worker_command_only_from_global_or_env(dirs):
    home, gsd, env = dirs
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  worker_command: [sh, -c, evil]\n---\n")
    with pytest.raises(PreferencesError, match="cannot be set in a project"):
        load_preferences(gsd, environ=env)
    (gsd / "PREFERENCES.md").unlink()
    write(home / "PREFERENCES.md", "---\nparallel:\n  worker_command: [my-gsd, headless]\n---\n")
    assert load_preferences(gsd, environ=env).parallel.worker_command == ("my-gsd", "headless")
    env2 = {**env, "GSD_PARALLEL_WORKER_COMMAND": "python -m 'fake worker'"}
    assert load_preferences(gsd, environ=env2).parallel.worker_command == (
        "python",
        "-m",
        "fake worker",
    )


def test_merge_check_string_is_split_not_shelled(dirs):
    _home, gsd, env = dirs
    write(gsd / "PREFERENCES.md", "---\nparallel:\n  merge_check: pytest -q 'tests dir'\n---\n")
    assert load_preferences(gsd, environ=env).parallel.merge_check == ("pytest", "-q", "tests dir")


def test_broken_yaml_and_non_mapping_parallel(dirs):
    _home, gsd, env = dirs
    path = write(gsd / "PREFERENCES.md", "---\nparallel: [unclosed\n---\n")
    with pytest.raises(PreferencesError) as info:
        load_preferences(gsd, environ=env)
    assert str(path) in str(info.value)
    write(gsd / "PREFERENCES.md", "---\nparallel: true\n---\n")
    with pytest.raises(PreferencesError, match="expected a mapping"):
        load_preferences(gsd, environ=env)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("budget_ceiling", ".inf"),
        ("budget_ceiling", "1.0e-12"),  # rounds to $0 in the store's nano-USD
        ("budget_ceiling", "1.0e+300"),  # does not fit the store's integer nano-USD
        ("milestone_budget", ".inf"),
        ("milestone_budget", "1.0e-12"),
        ("stop_grace_seconds", ".inf"),  # SIGKILL would never come, `stop` would never return
        ("stop_grace_seconds", "86400"),  # `stop` waits for the grace period: a day is no grace
        ("stall_minutes", ".inf"),
        ("preview_minutes", ".inf"),
        ("preview_minutes", "20000"),  # two weeks: not a period a run ever reaches
    ],
)
def test_unusable_numbers_in_preferences_are_refused(tmp_path, cli, key, value):
    project = build_project(tmp_path / "p", ONE)
    (project.gsd / "PREFERENCES.md").write_text(f"---\nparallel:\n  enabled: true\n  {key}: {value}\n---\n")
    for command in (("start", "--dry-run"), ("start",)):
        one_line_error(cli("--project", project.root, *command), f"parallel.{key}", "invalid")
    # status only inspects: it warns, naming the file and key, and answers
    status = cli("--project", project.root, "status")
    assert status.code == 0, status.err
    assert f"PREFERENCES.md: parallel.{key}" in status.err and "invalid" in status.err


def test_typo_in_preferences_during_a_run_blocks_no_stop_or_inspection(gsd_project, cli, fake_worker):
    """Workers spend while PREFERENCES.md is broken: stop, pause, status, watch, doctor still
    work (a warning names the file); start refuses with one line."""
    fake_worker(unit_seconds=10.0)  # every unit outlasts the commands below
    project = gsd_project(
        {**ONE, "M002": {"title": "Two", "slices": {"S01": {"T01": ["c.txt"], "T02": ["d.txt"]}}}},
        preferences={"enabled": True, "max_workers": 2},
    )
    root = project.root
    assert cli("--project", root, "start").code == 0
    wait_until(lambda: worker_states(cli, root).get("M001") == "running", timeout=30)
    prefs = project.gsd / "PREFERENCES.md"
    prefs.write_text("---\nparallel:\n  enabled: true\n  max_workers: two\n---\n")
    for command in (("status",), ("status", "--json"), ("watch", "--once"), ("doctor",), ("logs", "M001")):
        result = cli("--project", root, *command)
        assert result.code == 0, (command, result.out, result.err)
        assert "Traceback" not in result.err
        assert f"{prefs}: parallel.max_workers = 'two' is invalid" in result.err, (command, result.err)
    one_line_error(cli("--project", root, "start"), str(prefs), "parallel.max_workers")
    paused = cli("--project", root, "pause", "M001", "--now")
    assert paused.code == 0, paused.err
    stopped = cli("--project", root, "stop")
    assert stopped.code == 0, stopped.err
    assert str(prefs) in stopped.err
    states = worker_states(cli, root)
    assert set(states.values()) <= {"stopped", "complete"}, states


def test_empty_worker_command_variable_blocks_only_what_launches_workers(gsd_project, cli):
    project = gsd_project(ONE, preferences={"enabled": True})
    env = {"GSD_PARALLEL_WORKER_COMMAND": ""}
    status = cli("--project", project.root, "status", env=env)
    assert status.code == 0 and status.err == "", status.err
    assert cli("--project", project.root, "doctor", env=env).code == 0
    one_line_error(cli("--project", project.root, "start", env=env), "GSD_PARALLEL_WORKER_COMMAND")
