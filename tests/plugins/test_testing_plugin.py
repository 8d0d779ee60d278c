"""gsd_parallel_plugin.testing: the fixtures and helpers plugin authors rely on."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

import gsd_parallel_plugin.testing as testing
from gsd_parallel_plugin import hookimpl
from gsd_parallel_plugin.models import CommandResult, SlashCommand
from gsd_parallel_plugin.testing import (
    HookRecorder,
    PluginLoadError,
    make_host,
    registered,
    stop_leftovers,
    wait_until,
)

pytest_plugins = ["gsd_parallel_plugin.testing"]

ONE = {"M001": {"title": "One", "slices": {"S01": {"T01": ["src/one.py"]}}}}


class Greeter:
    """A plugin as a class: a command and a session-start notice."""

    @staticmethod
    @hookimpl
    def register_slash_commands():
        return [SlashCommand("hello", "greets", lambda ctx: CommandResult("hi " + " ".join(ctx.args)))]

    @staticmethod
    @hookimpl
    def on_session_start(host):
        host.notify("greeter ready")


def test_package_is_cheap_to_import_and_exports_resolve():
    code = "import sys, gsd_parallel_plugin.testing; print('pytest' in sys.modules, 'gsd_parallel_plugin.host' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]  # the fake worker imports this package
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        testing.nope  # noqa: B018


def test_gsd_home_isolates_the_environment(gsd_home, monkeypatch):
    assert os.environ["GSD_HOME"] == str(gsd_home)
    assert not any(os.environ.get(n) for n in ("GSD_PARALLEL_PLUGINS", "GSD_PARALLEL_WORKER_COMMAND"))


def test_wait_until_returns_the_first_truthy_value_or_fails_naming_the_condition():
    values = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(values), interval=0) == "ready"

    def never():
        return False

    with pytest.raises(AssertionError, match=r"^condition not met within 0\.01s: <function .*never"):
        wait_until(never, timeout=0.01, interval=0.001)


def test_gsd_project_builds_a_committed_repository(gsd_project):
    project = gsd_project(ONE, pyproject="[tool.x]\ny = 1\n")
    assert project.git("status", "--porcelain") == ""
    assert (project.root / "pyproject.toml").read_text() == "[tool.x]\ny = 1\n"
    assert "enabled: true" in (project.gsd / "PREFERENCES.md").read_text()
    assert (project.milestone_dir("M001") / "slices" / "S01" / "S01-PLAN.md").is_file()
    second = gsd_project(ONE, preferences=None)
    assert second.root != project.root and not (second.gsd / "PREFERENCES.md").exists()


def test_gsd_host_runs_commands_with_a_fresh_plugin_manager(gsd_project, gsd_host):
    project = gsd_project(ONE)
    host = gsd_host(project, plugins=[Greeter])
    assert "greeter ready" in host.errors
    assert host.run("hello world").text == "hi world"
    report = host.run("start --dry-run", json=True)
    assert report.exit_code == 0 and report.data["plan"]["start"] == ["M001"]
    disabled = gsd_host(gsd_project(ONE, preferences=None))
    result = disabled.run("start --dry-run")
    assert result.exit_code == 2 and "Parallel mode is not enabled" in result.text
    names = [n for n, p in host.plugins.pm.list_name_plugin() if p is not None]
    assert names == ["gsd_parallel.commands", "gsd_parallel.workers", "gsd_parallel.merging", "Greeter"]


def test_strict_host_refuses_a_misspelled_hook(gsd_host, gsd_plugin_dir):
    class Typo:
        @staticmethod
        @hookimpl
        def on_milestone_completed(milestone_id):
            pass

    with pytest.raises(
        PluginLoadError,
        match=r"unknown hook 'on_milestone_completed' \(did you mean 'on_milestone_complete'\?\)",
    ):
        gsd_host(plugins=[Typo])
    lenient = gsd_host(plugins=[Typo], strict=False)
    assert "did you mean 'on_milestone_complete'?" in lenient.errors
    module = gsd_plugin_dir.write("env_loaded", "from gsd_parallel_plugin import hookimpl\n")
    host = gsd_host(environ={**os.environ, "GSD_PARALLEL_PLUGINS": module})
    assert host.plugins.sources[module][0] == "GSD_PARALLEL_PLUGINS"


def test_registered_always_unregisters_and_refreshes_commands(gsd_project, gsd_host):
    host = gsd_host(gsd_project(ONE))
    assert host.run("hello").exit_code == 2  # the command table is built now, without it
    with registered(host, Greeter) as name:
        assert name == "Greeter"
        assert "greeter ready" in host.errors  # historic on_session_start replayed to it
        assert host.run("hello you").text == "hi you"
    assert host.run("hello").exit_code == 2
    with pytest.raises(RuntimeError, match="inside"), registered(host, Greeter):
        raise RuntimeError("inside")
    assert not host.plugins.pm.is_registered(Greeter)


def test_registered_refuses_bad_plugins_and_cleans_up_a_raising_replay(gsd_host):
    host = gsd_host()

    class Typo:
        @staticmethod
        @hookimpl
        def spawn_workers(spec):
            return None

    with pytest.raises(PluginLoadError, match="unknown hook 'spawn_workers'"), registered(host, Typo):
        pass

    class Crashy:
        @staticmethod
        @hookimpl
        def on_session_start():
            raise ValueError("too early")

    with pytest.raises(ValueError, match="too early"), registered(host, Crashy):
        pass
    assert not host.plugins.pm.is_registered(Crashy)


def test_recorder_from_session_start_and_its_assertions(gsd_host, gsd_recorder):
    host = gsd_host(recorder=gsd_recorder)
    assert gsd_recorder.names == ["on_session_start"]
    host.hooks.on_merge_complete("M001", "c0ffee", "main")
    host.hooks.on_merge_complete("M002", "beef", "main")
    gsd_recorder.assert_fired("on_session_start", "on_merge_complete")
    gsd_recorder.assert_not_fired("on_budget_exceeded")
    gsd_recorder.assert_sequence(["on_session_start", ("on_merge_complete", {"milestone_id": "M002"})])
    with pytest.raises(
        AssertionError, match=r"no call on_merge_complete\{'milestone_id': 'M001'\} after position 3"
    ):
        gsd_recorder.assert_sequence(
            [("on_merge_complete", {"milestone_id": "M002"}), ("on_merge_complete", {"milestone_id": "M001"})]
        )
    with pytest.raises(AssertionError, match="exactly one call of on_merge_complete, got 2"):
        gsd_recorder.getcall("on_merge_complete")
    with pytest.raises(AssertionError, match="never fired: on_cost_update"):
        gsd_recorder.assert_fired("on_cost_update")
    assert gsd_recorder.calls_of("on_merge_complete")[1]["commit"] == "beef"
    gsd_recorder.detach()
    host.hooks.on_budget_exceeded(2.0, 1.0)
    assert "on_budget_exceeded" not in gsd_recorder.fired()


def test_recorder_attach_is_a_context_manager_and_not_doubled(gsd_host):
    host = gsd_host()
    with HookRecorder().attach(host).attach(host.hooks) as rec:
        host.hooks.on_budget_exceeded(2.0, 1.0)
    host.hooks.on_budget_exceeded(3.0, 1.0)
    assert [c["run_total_usd"] for c in rec.calls] == [2.0]
    assert host.hooks.listeners == []


def test_capturing_host_turns_broadcast_failures_into_one_warning(gsd_host):
    class Loud:
        @staticmethod
        @hookimpl
        def on_cost_update(milestone_id):
            raise RuntimeError(f"cannot count {milestone_id}")

    host = gsd_host(plugins=[Loud])
    for _ in range(3):
        host.hooks.on_cost_update("M001", 0.1, 0.1, 0.1, None)
    warning = "warning: plugin 'Loud' raised in on_cost_update: RuntimeError: cannot count M001"
    assert host.errors.count(warning) == 1
    assert len(host.hooks.broadcast_errors) == 3


def test_a_real_run_in_process_with_the_fake_worker(gsd_project, gsd_host, gsd_recorder, gsd_fake_worker):
    env = gsd_fake_worker(unit_seconds=0, unit_cost=0.125)
    assert os.environ["GSD_PARALLEL_WORKER_COMMAND"] == env["GSD_PARALLEL_WORKER_COMMAND"]
    project = gsd_project(ONE)
    host = gsd_host(project, recorder=gsd_recorder)
    assert host.run("start --wait").exit_code == 0, host.errors
    costs = [c["delta_usd"] for c in gsd_recorder.calls_of("on_cost_update")]
    assert sum(costs) == 3 * 0.125  # T01, complete-slice, complete-milestone
    assert gsd_recorder.getcall("on_milestone_complete")["branch"] == "gsd-parallel/M001"
    assert "M001" in project.git("log", "--format=%s", "main..gsd-parallel/M001")


def test_gsd_cli_sees_modules_from_gsd_plugin_dir(gsd_project, gsd_cli, gsd_plugin_dir):
    module = gsd_plugin_dir.write(
        "veto_everything",
        """
        from gsd_parallel_plugin import hookimpl

        @hookimpl
        def check_eligibility(milestone):
            return "Vetoed by the test."
        """,
    )
    project = gsd_project(ONE)
    result = gsd_cli(
        "--project", project.root, "start", "--dry-run", "--json", env={"GSD_PARALLEL_PLUGINS": module}
    )
    assert result.code == 0, result.err
    assert result.json()["ineligible"] == [{"id": "M001", "title": "One", "reason": "Vetoed by the test."}]


def test_stop_leftovers_ends_a_background_run(gsd_project, gsd_fake_worker):
    gsd_fake_worker(unit_seconds=0, hang_at="M001/S01/T01")
    project = gsd_project(ONE)
    host = make_host(project)
    assert host.run("start").exit_code == 0, host.errors

    def running_worker():
        data = host.run("status", json=True).data
        return [w for w in data["workers"] if w["state"] == "running" and w.get("pid")]

    workers = wait_until(running_worker)
    pids = stop_leftovers(project.root)
    assert workers[0]["pid"] in pids and len(pids) == 2  # the supervisor and the worker
    for pid in pids:
        wait_until(
            lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        )
    assert stop_leftovers(project.root) == []
