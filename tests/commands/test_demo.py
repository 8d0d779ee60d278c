"""The README's first command: `gsd-parallel demo` runs a sample project end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import git
from gsd_parallel_plugin.testing.scenarios import one_line_error, worker_states


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


def test_demo_real_without_a_real_gsd_says_so_in_one_line(tmp_path, cli, monkeypatch):
    """No GSD to run: exit 2, one `real GSD not found: …` line, no demo directory made."""
    from gsd_parallel_plugin.testing.real_gsd import ENV_REAL_GSD

    monkeypatch.delenv(ENV_REAL_GSD, raising=False)
    bin_dir, empty = tmp_path / "bin", tmp_path / "empty"
    bin_dir.mkdir()
    empty.mkdir()
    no_cache = {"XDG_CACHE_HOME": str(tmp_path / "no-cache")}
    old = bin_dir / "gsd"
    old.write_text("#!/bin/sh\necho 2.9.1\n")
    old.chmod(0o755)

    cases = {
        "GSD_PARALLEL_REAL_GSD=": {ENV_REAL_GSD: str(tmp_path / "missing" / "gsd")},  # set, but no file
        "no `gsd` on PATH": {**no_cache, "PATH": str(empty)},
        "says '2.9.1', the demo needs GSD 3.x": {**no_cache, "PATH": str(bin_dir)},
    }
    for n, (expected, env) in enumerate(cases.items()):
        target = tmp_path / f"demo{n}"
        result = cli("demo", "--real", target, env=env)
        assert result.code == 2, result.err
        assert result.out == ""
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("gsd-parallel: real GSD not found: "), result.err
        assert expected in lines[0]
        assert not target.exists()


@pytest.mark.real_gsd
def test_demo_real_runs_real_gsd_workers_and_lands_three_squash_commits(real_gsd, tmp_path, cli, gsd_home):
    from gsd_parallel_plugin.money import cost_to_nanos
    from gsd_parallel_plugin.testing.real_gsd import ENV_REAL_GSD

    user_home = tmp_path / "user-home"  # stands for the developer's home: must stay untouched
    user_home.mkdir()
    demo = tmp_path / "demo"
    result = cli(
        "--json",
        "demo",
        "--real",
        demo,
        env={ENV_REAL_GSD: str(real_gsd), "HOME": str(user_home)},
        timeout=300,
    )
    assert result.code == 0, result.err[-3000:]
    data = json.loads(result.out)
    workers = {w["id"]: w for w in data["status"]["workers"]}
    assert {mid: (w["state"], w["merged"]) for mid, w in workers.items()} == {
        mid: ("complete", True) for mid in ("M001", "M002", "M003")
    }

    project = demo / "greetings"
    assert data["project"] == str(project)
    squashes = git(project, "log", "--no-merges", "--format=%H", "--grep=^GSD-Milestone: ", "main").split()
    landed = [
        git(project, "log", "-1", "--format=%(trailers:key=GSD-Milestone,valueonly)", c) for c in squashes
    ]
    assert sorted(landed) == ["M001", "M002", "M003"]
    assert landed.index("M003") < landed.index("M001")  # newest first: M003 landed after M001
    for commit in squashes:  # squashes, not merges: one parent each
        assert len(git(project, "rev-list", "--parents", "-n", "1", commit).split()) == 2
    assert git(project, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
    for mid in ("M001", "M002", "M003"):
        assert (project / "src" / f"{mid.lower()}.txt").read_text() == f"{mid}/S01/T01: Write greeting\n"

    real = data["real"]
    assert real["model_requests"] > 0
    assert cost_to_nanos(data["status"]["total_cost"]) == cost_to_nanos(real["model_billed"]) > 0
    assert (demo / "gsd-home" / "agent" / "sessions").is_dir()  # GSD's state went to the demo's home
    assert not (user_home / ".gsd").exists() and not (user_home / ".pi").exists()
    assert not any(gsd_home.iterdir())  # nor to the GSD_HOME the demo was started with


def test_demo_into_a_file_or_an_unwritable_place_is_a_user_error(tmp_path, cli):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    one_line_error(cli("demo", a_file), str(a_file), "not a directory")
    assert a_file.read_text() == "mine\n"
    one_line_error(cli("demo", a_file / "sub"), str(a_file / "sub"))


def test_ctrl_c_in_demo_does_not_say_finished(tmp_path, cli):
    target = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "demo", str(target), "--unit-seconds", "3"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        shop = target / "shop"
        wait_until(lambda: "running" in set(worker_states(cli, shop).values()), timeout=60)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        cli("--project", target / "shop", "stop", env={"GSD_HOME": str(target / "gsd-home")})
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "Finished" not in out, out
    assert "Interrupted after" in out, out
