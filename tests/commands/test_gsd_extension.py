"""``gsd-parallel gsd-extension install|uninstall|status`` with real files in a temporary HOME."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gsd_parallel_plugin.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_install_status_uninstall_global(home, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = home / ".pi" / "agent" / "extensions" / "gsd-parallel"
    assert main(["gsd-extension", "install", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["installed"] and data["path"] == str(target) and not data["updated"]
    assert {p.name for p in target.iterdir()} == {"package.json", "index.js", "config.json"}
    config = json.loads((target / "config.json").read_text())
    names = [c["name"] for c in config["subcommands"]]
    assert {"start", "status", "merge", "gsd-extension"} <= set(names)
    assert Path(config["command"][0]).exists()
    assert json.loads((target / "package.json").read_text())["pi"]["extensions"] == ["./index.js"]
    assert not (home / ".gsd" / "agent").exists()

    assert main(["gsd-extension", "install", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["updated"] is True

    assert main(["gsd-extension", "status", "--json"]) == 0
    places = json.loads(capsys.readouterr().out)["places"]
    assert places[0]["installed"] and places[0]["command_exists"] and places[0]["current"]
    (target / "index.js").write_text("// an older extension\n")
    assert main(["gsd-extension", "status"]) == 0
    assert "older than this gsd-parallel's extension" in capsys.readouterr().out
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "command": ["/gone/gsd-parallel"]}))
    assert main(["gsd-extension", "status"]) == 0
    assert "MISSING: run `gsd-parallel gsd-extension install` again" in capsys.readouterr().out

    assert main(["gsd-extension", "uninstall"]) == 0
    assert "Removed" in capsys.readouterr().out
    assert not target.exists()
    assert main(["gsd-extension", "status"]) == 0
    assert "global: not installed" in capsys.readouterr().out


def test_bad_action_is_a_user_error(home, capsys):
    assert main(["gsd-extension", "frobnicate"]) == 2


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_unit_tests():
    tests = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "gsd_extension").glob("*.test.mjs"))
    assert tests
    proc = subprocess.run(["node", "--test", *tests], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_project_install_with_and_without_a_directory(home, tmp_path, monkeypatch, capsys):
    """``--project`` after ``gsd-extension`` is its own option (it was taken for the global
    ``--project DIR`` and failed with "--project needs a directory")."""
    from gsd_parallel_plugin.testing.builder import build_project

    project = build_project(tmp_path / "proj", {"M001": {}}, preferences={"enabled": True})
    target = project.root / ".gsd" / "extensions" / "gsd-parallel"
    monkeypatch.chdir(project.root / "src" if (project.root / "src").is_dir() else project.root)
    assert main(["gsd-extension", "install", "--project"]) == 0, capsys.readouterr().err
    assert (target / "index.js").is_file() and "(project)" in capsys.readouterr().out
    assert main(["gsd-extension", "uninstall", "--project"]) == 0
    assert not target.exists() and "Removed" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["--json", "gsd-extension", "install", "--project", str(project.root)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(target)
    assert not (home / ".pi").exists()  # a project install never touches the global place
    assert main(["--project", str(project.root), "gsd-extension", "status"]) == 0
    assert f"project: installed in {target}" in capsys.readouterr().out
