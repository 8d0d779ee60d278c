"""The CLI contract: help is cheap, errors are one line with the right exit code, --json anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gsd_parallel_plugin.testing.builder import build_project

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
