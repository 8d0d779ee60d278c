"""Supervisor CPU use while 4 fake workers run, and the makespan of a 12-milestone project.

The project has no dependencies and milestones of different sizes, so backfill matters:
a slot must be refilled as soon as a worker finishes. The makespan is compared with the
lower bound max(longest milestone, total work / workers), where each milestone's work is
measured from its own worker's start to its completion.
    python bench/bench_supervisor.py [--unit-seconds 0.2] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env


def run_project(tmp: Path, name: str, milestones: dict, workers: int, env_extra: dict) -> tuple:
    project = build_project(tmp / name, milestones, preferences={"enabled": True, "max_workers": workers})
    env = {**os.environ, **env_extra, "GSD_HOME": str(tmp / "home")}
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "start"],
        env=env,
        check=True,
        capture_output=True,
    )
    lock = project.gsd / "parallel" / "supervisor.lock"
    return project, psutil.Process(json.loads(lock.read_text())["pid"]), t0


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def steady_cpu(tmp: Path, workers: int, seconds: float) -> tuple[float, int]:
    """Supervisor CPU while `workers` fake workers run and nothing launches or exits."""
    milestones = {
        f"M{i:03d}": {
            "title": f"Long {i}",
            "slices": {"S01": {"T01": [f"src/long{i}.py"], "T02": [f"src/l{i}.py"]}},
        }
        for i in range(1, workers + 1)
    }
    env = fake_worker_env(unit_seconds=seconds * 3, unit_cost=0.01)
    project, sup, _t0 = run_project(tmp, "steady", milestones, workers, env)
    time.sleep(1.0)  # let every launch finish
    running = len([c for c in sup.children() if c.is_running()])
    before, wall0 = cpu_seconds(sup), time.monotonic()
    time.sleep(seconds)
    busy, wall = cpu_seconds(sup) - before, time.monotonic() - wall0
    subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "stop"],
        env={**os.environ, "GSD_HOME": str(tmp / "home")},
        capture_output=True,
        check=False,
    )
    return 100 * busy / wall, running


def makespan(tmp: Path, n: int, workers: int, unit_seconds: float) -> None:
    rng = random.Random(7)
    milestones = {
        f"M{i:03d}": {
            "title": f"Feature {i}",
            "slices": {"S01": {f"T{t:02d}": [f"src/m{i}/t{t}.py"] for t in range(1, rng.randint(2, 7))}},
        }
        for i in range(1, n + 1)
    }
    env = fake_worker_env(unit_seconds=unit_seconds, unit_cost=0.01)
    project, sup, t0 = run_project(tmp, "makespan", milestones, workers, env)
    cpu0 = cpu_seconds(sup)
    wall0 = time.monotonic()
    cpu = cpu0
    while True:
        try:
            if not sup.is_running() or sup.status() == psutil.STATUS_ZOMBIE:
                break
            cpu = cpu_seconds(sup)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    wall = time.monotonic() - wall0
    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        rows = store.workers(run.id)
    durations = {w.milestone_id: (w.completed_at or 0) - w.started_at for w in rows}
    span = max(w.completed_at or 0 for w in rows) - min(w.started_at for w in rows)
    bound = max(max(durations.values()), sum(durations.values()) / workers)
    print(
        f"makespan of {len(rows)} milestones ({sum(w.state == 'complete' for w in rows)} complete) on "
        f"{workers} workers: {span:.2f}s; lower bound max(longest, work/{workers}) = {bound:.2f}s; "
        f"ratio {span / bound:.2f}"
    )
    print(
        f"  supervisor CPU over the whole run incl. worktree creation: "
        f"{100 * (cpu - cpu0) / wall:.1f}% of one core; start-to-exit wall {time.monotonic() - t0:.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unit-seconds", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--milestones", type=int, default=12)
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        percent, running = steady_cpu(Path(tmp), args.workers, args.steady_seconds)
        print(
            f"supervisor CPU while {running} fake workers run: {percent:.2f}% of one core "
            f"(over {args.steady_seconds:.0f}s)"
        )
        makespan(Path(tmp), args.milestones, args.workers, args.unit_seconds)


if __name__ == "__main__":
    main()
