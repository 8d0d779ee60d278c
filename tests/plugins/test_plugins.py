"""Plugin discovery, load warnings, blocking, and hook error isolation — with real modules
and a real installed distribution."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gsd_parallel_plugin import hookspecs
from gsd_parallel_plugin.errors import PluginError
from gsd_parallel_plugin.host import HostSession
from gsd_parallel_plugin.plugins import Hooks, create_plugin_manager
from gsd_parallel_plugin.testing import registered

pytest_plugins = ["gsd_parallel_plugin.testing"]

NO_AUTOLOAD = {"GSD_PARALLEL_DISABLE_PLUGIN_AUTOLOAD": "1"}


@pytest.fixture
def plugdir(gsd_plugin_dir):
    """Throwaway plugin modules, importable here and by subprocesses."""
    return gsd_plugin_dir


def module(plugdir, name: str, body: str) -> str:
    return plugdir.write(name, body)


def names(loaded) -> list[str]:
    return [name for name, p in loaded.pm.list_name_plugin() if p is not None]


def test_builtins_are_trylast(plugdir):
    loaded = create_plugin_manager(environ=NO_AUTOLOAD)
    assert {"gsd_parallel.commands", "gsd_parallel.workers", "gsd_parallel.merging"} <= set(names(loaded))
    for impl in loaded.pm.hook.register_slash_commands.get_hookimpls():
        assert impl.trylast
    assert loaded.warnings == []


def test_env_plugins_broken_and_misspelled(plugdir):
    module(
        plugdir,
        "good_plug",
        """
        from gsd_parallel_plugin import hookimpl
        @hookimpl
        def check_eligibility(milestone, project, preferences):
            return None
    """,
    )
    module(plugdir, "broken_plug", "raise RuntimeError('boom at import')\n")
    module(
        plugdir,
        "typo_plug",
        """
        from gsd_parallel_plugin import hookimpl
        @hookimpl
        def on_cost_updat(milestone_id):
            pass
    """,
    )
    env = {**NO_AUTOLOAD, "GSD_PARALLEL_PLUGINS": "good_plug, broken_plug,typo_plug,missing_plug"}
    loaded = create_plugin_manager(environ=env)
    assert "good_plug" in names(loaded)
    assert "typo_plug" not in names(loaded)
    joined = "\n".join(loaded.warnings)
    assert (
        "plugin 'broken_plug' (from GSD_PARALLEL_PLUGINS) failed to load: RuntimeError: boom at import"
        in joined
    )
    assert (
        "plugin 'typo_plug' ignored: unknown hook 'on_cost_updat' (did you mean 'on_cost_update'?)" in joined
    )
    assert "plugin 'missing_plug'" in joined and "ModuleNotFoundError" in joined


def test_disabled_plugins_are_blocked(plugdir):
    module(plugdir, "good_plug2", "from gsd_parallel_plugin import hookimpl\n")
    env = {
        **NO_AUTOLOAD,
        "GSD_PARALLEL_PLUGINS": "good_plug2",
        "GSD_PARALLEL_DISABLED_PLUGINS": "good_plug2,gsd_parallel.merging",
    }
    loaded = create_plugin_manager(environ=env)
    assert "good_plug2" not in names(loaded)
    assert "gsd_parallel.merging" not in names(loaded)


def test_project_pyproject_lists_plugins(plugdir, tmp_path):
    module(plugdir, "proj_plug", "from gsd_parallel_plugin import hookimpl\n")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.gsd-parallel]\nplugins = ["proj_plug"]\n')
    loaded = create_plugin_manager(root, environ=NO_AUTOLOAD)
    assert loaded.sources["proj_plug"][0] == "pyproject.toml"
    (root / "pyproject.toml").write_text("[tool.gsd-parallel\nplugins = 1")
    loaded = create_plugin_manager(root, environ=NO_AUTOLOAD)
    assert any("cannot read [tool.gsd-parallel]" in w for w in loaded.warnings)


def test_entry_point_of_a_real_installed_distribution(tmp_path, monkeypatch):
    src = tmp_path / "dist_src"
    (src / "ep_plugin_mod").mkdir(parents=True)
    (src / "ep_plugin_mod" / "__init__.py").write_text(
        textwrap.dedent("""
        from gsd_parallel_plugin import hookimpl
        @hookimpl
        def check_eligibility(milestone, project, preferences):
            return "vetoed by ep" if milestone.id == "M002" else None
    """)
    )
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "gsd-parallel-ep-demo"
        version = "1.2.3"
        [project.entry-points.gsd_parallel]
        ep_demo = "ep_plugin_mod"
        [tool.hatch.build.targets.wheel]
        packages = ["ep_plugin_mod"]
    """)
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.syspath_prepend(str(target))
    loaded = create_plugin_manager(environ={})
    info = {i.name: i for i in loaded.info()}
    assert info["ep_demo"].distribution == "gsd-parallel-ep-demo"
    assert info["ep_demo"].version == "1.2.3"
    assert info["ep_demo"].hooks == ["check_eligibility"]
    blocked = create_plugin_manager(environ={"GSD_PARALLEL_DISABLED_PLUGINS": "ep_demo"})
    assert "ep_demo" not in names(blocked)
    off = create_plugin_manager(environ=NO_AUTOLOAD)
    assert "ep_demo" not in names(off)


def test_broadcast_raise_is_isolated_and_named():
    seen: list[str] = []

    class Bad:
        @staticmethod
        def on_merge_complete(milestone_id, commit, branch):
            raise ValueError("nope")

    class Good:
        @staticmethod
        def on_merge_complete(milestone_id, commit, branch):
            seen.append(milestone_id)

    from gsd_parallel_plugin import hookimpl

    hookimpl(Bad.on_merge_complete)
    hookimpl(Good.on_merge_complete)
    loaded = create_plugin_manager(environ=NO_AUTOLOAD)
    hooks = Hooks(loaded.pm)
    with registered(hooks, Good, name="good"), registered(hooks, Bad, name="bad"):
        hooks.on_merge_complete("M001", "abc", "main")
    assert seen == ["M001"]
    assert hooks.broadcast_errors == ["plugin 'bad' raised in on_merge_complete: ValueError: nope"]
    assert not loaded.pm.has_plugin("good") and not loaded.pm.has_plugin("bad")


def test_decision_raise_names_plugin():
    from gsd_parallel_plugin import hookimpl

    class Chooser:
        @staticmethod
        @hookimpl
        def choose_merge_order(candidates, project, preferences):
            raise KeyError("x")

    loaded = create_plugin_manager(environ=NO_AUTOLOAD)
    loaded.pm.register(Chooser, name="chooser")
    with pytest.raises(PluginError, match="plugin 'chooser' failed in choose_merge_order: KeyError"):
        Hooks(loaded.pm).choose_merge_order(["M001"], None, {})  # type: ignore[arg-type]


def test_duplicate_command_names_are_rejected(tmp_path):
    from gsd_parallel_plugin import hookimpl
    from gsd_parallel_plugin.models import CommandResult, SlashCommand

    class Clash:
        @staticmethod
        @hookimpl
        def register_slash_commands(host):
            return [SlashCommand("status", "mine", lambda ctx: CommandResult("x"))]

    loaded = create_plugin_manager(environ=NO_AUTOLOAD)
    loaded.pm.register(Clash, name="clashing_plugin")
    host = HostSession(tmp_path, plugins=loaded, interactive=False)
    result = host.dispatch("/gsd parallel status")
    assert result.exit_code == 2
    assert "claimed by two plugins" in result.text
    assert "'gsd_parallel.commands'" in result.text and "'clashing_plugin'" in result.text


def test_plugin_adds_a_command_and_unknown_subcommand(tmp_path):
    from gsd_parallel_plugin import hookimpl
    from gsd_parallel_plugin.models import CommandResult, SlashCommand

    class Extra:
        @staticmethod
        @hookimpl
        def register_slash_commands(host):
            return [
                SlashCommand(
                    "hello",
                    "greets",
                    lambda ctx: CommandResult("hi " + " ".join(ctx.args), {"json": ctx.json}),
                )
            ]

    loaded = create_plugin_manager(environ=NO_AUTOLOAD)
    loaded.pm.register(Extra, name="extra")
    host = HostSession(tmp_path, plugins=loaded, interactive=False)
    result = host.dispatch("/gsd parallel hello world --json")
    assert result.text == "hi world" and result.data == {"json": True}
    bad = host.dispatch("/gsd parallel frobnicate")
    assert bad.exit_code == 2
    assert bad.text.startswith(
        'Unknown parallel subcommand "frobnicate". Usage: gsd-parallel [start|status|stop|pause|resume|merge|watch]'
    )
    assert "hello" in bad.text  # plugin subcommands are listed too


def test_every_hookspec_is_documented_in_hooks_md():
    text = (Path(__file__).resolve().parents[2] / "hooks.md").read_text()
    specs = [n for n, obj in vars(hookspecs).items() if hasattr(obj, "gsd_parallel_spec")]
    assert len(specs) == 15
    missing = [n for n in specs if f"### `{n}(" not in text]
    assert missing == []


def test_veto_plugin_through_the_cli(tmp_path, cli):
    from gsd_parallel_plugin.testing.builder import build_project

    plugdir = tmp_path / "mods"
    plugdir.mkdir()
    (plugdir / "no_search.py").write_text(
        textwrap.dedent("""
            from gsd_parallel_plugin import hookimpl

            @hookimpl
            def check_eligibility(milestone):
                if any(f.startswith("src/search") for f in milestone.files):
                    return "search is frozen this week"
        """)
    )
    project = build_project(
        tmp_path / "p",
        {
            "M001": {"title": "Auth", "slices": {"S01": {"T01": ["src/auth.py"]}}},
            "M002": {"title": "Search", "slices": {"S01": {"T01": ["src/search.py"]}}},
        },
        preferences={"enabled": True},
    )
    env = {"GSD_PARALLEL_PLUGINS": "no_search", "PYTHONPATH": str(plugdir)}
    data = cli("--project", project.root, "start", "--dry-run", "--json", env=env).json()
    assert [e["id"] for e in data["eligible"]] == ["M001"]
    assert data["ineligible"] == [{"id": "M002", "title": "Search", "reason": "search is frozen this week"}]
    listed = cli("plugins", "--json", env=env).json()["plugins"]
    assert {"name": "no_search", "hooks": ["check_eligibility"]}.items() <= next(
        p for p in listed if p["name"] == "no_search"
    ).items()
