"""The README's first command: `gsd-parallel demo` runs a sample project end to end."""

from __future__ import annotations

import json


def test_demo_runs_the_sample_project(tmp_path, cli):
    result = cli("--json", "demo", tmp_path / "demo", "--unit-seconds", "0.02", timeout=120)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    states = {w["id"]: w["state"] for w in data["status"]["workers"]}
    assert states["M005"] == "complete"
    assert "M006" not in states  # parked: never started
    assert (tmp_path / "demo" / "shop" / ".gsd" / "milestones" / "M002").is_dir()
    assert data["seconds"] < 60


def test_demo_refuses_a_non_empty_directory(tmp_path, cli):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("mine\n")
    result = cli("demo", tmp_path / "busy")
    assert result.code == 2
    assert "is not empty" in result.err
    assert (tmp_path / "busy" / "file").read_text() == "mine\n"
