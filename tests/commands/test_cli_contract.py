"""The CLI contract: help is cheap, errors are one line with the right exit code, --json anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.testing.scenarios import ONE, one_line_error

HEAVY = {
    "rich",
    "sh",
    "psutil",
    "yaml",
    "sqlite3",
    "gsd_parallel_plugin.store",
    "gsd_parallel_plugin.project",
}


def test_help_imports_nothing_heavy():
    code = (
        "import sys, io, contextlib\n"
        "from gsd_parallel_plugin.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        f"print(sorted(m for m in sys.modules if m in {HEAVY!r} or m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_version(cli):
    result = cli("--help")
    assert result.code == 0 and "start" in result.out and "merge" in result.out
    assert cli("--version").out.startswith("gsd-parallel ")
    assert cli().code == 2
    sub = cli("start", "--help")
    assert sub.code == 0 and "--dry-run" in sub.out


def test_not_a_gsd_project(tmp_path, cli):
    result = cli("--project", tmp_path, "status")
    assert result.code == 2
    assert result.err.startswith("gsd-parallel: not a GSD project")
    assert len(result.err.strip().splitlines()) == 1


def test_parallel_disabled_message(tmp_path, cli):
    project = build_project(tmp_path / "p", {"M001": {"title": "A", "slices": {"S01": {"T01": ["a"]}}}})
    result = cli("--project", project.root, "start", "--dry-run")
    assert result.code == 2
    assert result.err.strip() == (
        "gsd-parallel: Parallel mode is not enabled. Set `parallel.enabled: true` in your preferences."
    )


def test_invalid_preference_is_exit_2_one_line(tmp_path, cli):
    project = build_project(
        tmp_path / "p", {"M001": {"title": "A"}}, preferences={"enabled": True, "max_workers": 9}
    )
    result = cli("--project", project.root, "start", "--dry-run", "--json")
    assert result.code == 2
    assert "parallel.max_workers = 9 is invalid: expected a whole number from 1 to 4" in result.err
    assert json.loads(result.out)["error"].endswith("a whole number from 1 to 4")
    assert "Traceback" not in result.err


def test_json_after_subcommand_and_dry_run_contract(tmp_path, cli):
    project = build_project(
        tmp_path / "p",
        {
            "M001": {"title": "Core API", "complete": True, "slices": {"S01": None}},
            "M002": {
                "title": "Auth System",
                "depends_on": ["M001"],
                "slices": {"S01": {"T01": ["src/auth/session.py", "src/app.py"]}, "S02": None},
            },
            "M003": {"title": "Search", "slices": {"S01": {"T01": ["src/search.py", "src/app.py"]}}},
            "M004": {"title": "API Integration", "depends_on": ["M002", "M003"], "roadmap": False},
            "M005": {"title": "Parked", "parked": True, "roadmap": False},
            "M006": {},
        },
        preferences={"enabled": True, "max_workers": 3},
    )
    result = cli("--project", project.root, "start", "--dry-run", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert [e["id"] for e in data["eligible"]] == ["M002", "M003"]
    assert {e["id"]: e["reason"] for e in data["ineligible"]} == {
        "M001": "Already complete.",
        "M004": "Blocked by incomplete dependencies: M002, M003.",
        "M005": "Milestone is parked.",
        "M006": "Milestone has no planning data — cannot determine eligibility.",
    }
    assert data["eligible"][0]["reason"] == (
        "All dependencies satisfied. WARNING: has file overlap with another eligible milestone."
    )
    assert data["overlaps"] == [{"milestones": ["M002", "M003"], "files": ["src/app.py"]}]
    assert data["plan"]["start"] == ["M002"]
    assert data["plan"]["waiting"][0]["id"] == "M003"
    assert data["preferences"]["max_workers"] == 3
    # the same through the slash-command dispatch: identical
    from gsd_parallel_plugin.host import HostSession

    host = HostSession(project.root, interactive=False)
    same = host.dispatch("/gsd parallel start --dry-run --json")
    assert same.data == data


def test_unknown_subcommand(tmp_path, cli):
    result = cli("frobnicate")
    assert result.code == 2
    assert (
        'Unknown parallel subcommand "frobnicate". Usage: gsd-parallel [start|status|stop|pause|resume|merge|watch]'
        in result.err
    )


def test_unknown_and_invalid_milestone_ids(tmp_path, cli):
    project = build_project(
        tmp_path / "p",
        {"M001": {"title": "A", "slices": {"S01": {"T01": ["a"]}}}},
        preferences={"enabled": True},
    )
    bad = cli("--project", project.root, "status", "M009")
    assert bad.code == 2
    assert bad.err.strip() == "gsd-parallel: unknown milestone M009 (known: M001)"
    worse = cli("--project", project.root, "logs", "../etc")
    assert worse.code == 2


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its stdout a pipe whose reading end is already closed (`| head` gone)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gsd_parallel_plugin", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_json_into_a_closed_pipe_ends_quietly(tmp_path):
    """`gsd-parallel --json status | head` must not end in a BrokenPipe traceback."""
    project = build_project(
        tmp_path / "p",
        {"M001": {"title": "A", "slices": {"S01": {"T01": ["a"]}}}},
        preferences={"enabled": True},
    )
    for args in (["--project", str(project.root), "--json", "status"], ["--help"]):
        done = _into_closed_pipe(*args)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.stderr == ""
        assert done.returncode == 141


def test_json_version_is_json(cli):
    result = cli("--json", "--version")
    assert result.code == 0
    assert json.loads(result.out)["version"] == cli("--version").out.split()[1]


def test_hints_and_usage_name_the_command_as_invoked(tmp_path, cli):
    """In a terminal hints say `gsd-parallel …`; called by the GSD extension, `/parallel …`."""
    project = build_project(
        tmp_path / "p",
        {"M001": {"title": "A", "slices": {"S01": {"T01": ["a"]}}}},
        preferences={"enabled": True},
    )
    root = str(project.root)
    for invoked, prefix in (([], "gsd-parallel"), (["--invoked-as=/parallel"], "/parallel")):
        bad_flag = cli(*invoked, "--project", root, "status", "--bogus")
        assert bad_flag.code == 2
        assert f"{prefix} status: unrecognized arguments: --bogus" in bad_flag.err
        unknown = cli(*invoked, "--project", root, "frobnicate")
        assert f"Usage: {prefix} [start|status" in unknown.err
        sub_help = cli(*invoked, "start", "--help")
        assert sub_help.out.startswith(f"usage: {prefix} start ")
        for result in (bad_flag, unknown, sub_help, cli(*invoked, "--help")):
            assert "/gsd parallel" not in result.out + result.err
    top = cli("--help").out
    assert "inside GSD as /parallel <subcommand>" in top and "gsd-parallel gsd-extension install" in top


def test_ctrl_c_in_any_command_is_one_line_or_one_json_document(tmp_path, cli, gsd_plugin_dir):
    module = gsd_plugin_dir.write(
        "interrupting_plugin",
        """
        from gsd_parallel_plugin import hookimpl
        from gsd_parallel_plugin.models import SlashCommand

        def handler(ctx):
            raise KeyboardInterrupt

        @hookimpl
        def register_slash_commands(host):
            return [SlashCommand("slow", "a command the user interrupts", handler)]
        """,
    )
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    env = {"GSD_PARALLEL_PLUGINS": module}
    text = cli("--project", project.root, "slow", env=env)
    assert text.code == 130 and text.err.strip() == "gsd-parallel: interrupted"
    as_json = cli("--project", project.root, "--json", "slow", env=env)
    assert as_json.code == 130 and as_json.json() == {"error": "interrupted"}


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_project_option_must_name_a_directory(tmp_path, cli, kind):
    """Inside a project, a mistyped --project must not quietly fall back to the enclosing one."""
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    target = project.root / "typo"
    if kind == "file":
        target.write_text("x")
    expected = "does not exist" if kind == "missing" else "not a directory"
    for command in (("status",), ("start", "--dry-run"), ("--json", "graph")):
        result = cli("--project", target, *command)
        one_line_error(result, str(target), expected)
    as_json = cli("--project", target, "--json", "status")
    assert set(as_json.json()) == {"error"}


def test_running_from_a_subdirectory_finds_the_project(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    sub = project.root / "src" / "deep"
    sub.mkdir(parents=True)
    result = cli("start", "--dry-run", cwd=sub)
    assert result.code == 0 and "Would start now: M001." in result.out


def test_commands_run_inside_a_milestone_worktree_act_on_the_project(gsd_project, cli, fake_worker):
    """The conflict advice says: resolve in .gsd-parallel/M002, then merge M002. A user does
    that from inside the worktree, whose checkout has a .gsd of its own: the command must
    still act on the project (its store, its integration branch), not on the worktree."""
    fake_worker(unit_seconds=0)
    project = gsd_project(ONE, preferences={"enabled": True, "auto_merge": "manual"})
    assert cli("--project", project.root, "start", "--wait").code == 0
    worktree = project.root / ".gsd-parallel" / "M001"
    merged = cli("merge", "M001", cwd=worktree / "src" if (worktree / "src").is_dir() else worktree)
    assert merged.code == 0, merged.err
    assert project.git("log", "-1", "--format=%s", "main") == "feat: One"
    status = cli("--project", project.root, "status", "--json").json()
    assert [(w["id"], w["merged"]) for w in status["workers"]] == [("M001", True)]
    assert not (worktree / ".gsd" / "parallel").exists(), "no second store inside the worktree"


def test_unknown_subcommand_lists_every_subcommand(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    result = cli("--project", project.root, "stauts")
    one_line_error(result, 'Unknown parallel subcommand "stauts"')
    for name in ("start", "status", "graph", "logs", "doctor", "plugins", "demo"):
        assert name in result.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--json",), "no subcommand"),
        (("--json", "--project"), "--project needs a directory"),
        (("--project", "--json"), "--project needs a directory"),
    ],
)
def test_json_without_a_subcommand_or_a_project_value_is_one_json_error(cli, args, needle):
    result = cli(*args)
    assert result.code == 2, result.out
    assert needle in result.json()["error"]
    one_line_error(result, needle)


def test_session_events_has_help():
    # The extension runs it (it is not offered by /parallel); a real subcommand all the same.
    out = subprocess.run([sys.executable, "-m", "gsd_parallel_plugin", "session-events", "--help"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0 and "session" in out.stdout
