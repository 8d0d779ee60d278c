"""How far past ``parallel.budget_ceiling`` a run goes: the measured overshoot.

Each scenario runs ``gsd-parallel start --wait`` (the real CLI, supervisor and fake workers on
real git worktrees) until the ceiling stops the run, then compares the exact total in the
store with the ceiling. The documented bound (``gsd_parallel_plugin/budget.py``) is

    overshoot <= sum over workers of spend rate x (one tick + time to exit after SIGTERM)

(``stop_grace_seconds`` caps the second term). Scenarios:

- ``spin``: the worst case, every worker spending continuously (``GSD_FAKE_SPIN_AT``:
  a ``message_end`` every ``--spin-seconds``), so the overshoot shows the reaction time.
- ``units``: the issue's case, $0.02 units, ceiling $0.10, two workers, with short and
  with 0.3 s units.

    python bench/bench_budget.py [--reps 5] [--workers 1 2 4] [--spin-seconds 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from gsd_parallel_plugin.run.supervisor import TICK_SECONDS
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env


def milestones(n: int) -> dict:
    return {
        f"M{i:03d}": {
            "title": f"Feature {i}",
            "slices": {"S01": {"T01": [f"src/a{i}.py"], "T02": [f"src/b{i}.py"]}},
        }
        for i in range(1, n + 1)
    }


SPIN_EVERY_MILESTONE = """\
import os, runpy, sys
os.environ["GSD_FAKE_SPIN_AT"] = os.environ["GSD_MILESTONE_LOCK"] + "/S01/T01"
sys.argv = ["fake_gsd", *sys.argv[1:]]  # headless recover | headless --json auto
runpy.run_module("gsd_parallel_plugin.testing.fake_gsd", run_name="__main__")
"""


def run_once(tmp: Path, name: str, n_milestones: int, workers: int, ceiling: float,
             knobs: dict) -> tuple[Decimal, float]:  # fmt: skip
    """One run to the ceiling: (total spent, wall seconds)."""
    prefs = {"enabled": True, "max_workers": workers, "budget_ceiling": ceiling}
    project = build_project(tmp / name, milestones(n_milestones), preferences=prefs)
    knobs = dict(knobs)
    spin = bool(knobs.pop("spin", False))
    env = {**os.environ, **fake_worker_env(**knobs), "GSD_HOME": str(tmp / "home")}
    if spin:  # every worker spins from its first task on
        wrapper = tmp / "spin_worker.py"
        wrapper.write_text(SPIN_EVERY_MILESTONE)
        command = [sys.executable, str(wrapper), "headless", "--json", "auto"]
        env["GSD_PARALLEL_WORKER_COMMAND"] = shlex.join(command)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root),
         "start", "--wait", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    wall = time.monotonic() - t0
    status = json.loads(done.stdout)
    if status["run"]["state"] != "budget_exceeded":
        raise SystemExit(f"{name}: the run did not reach the ceiling: {done.stderr}")
    return Decimal(str(status["total_cost"])), wall


def report(label: str, ceiling: float, totals: list[Decimal], rate: float | None) -> None:
    over = [float(t - Decimal(str(ceiling))) for t in totals]
    line = (
        f"{label:<34} ceiling ${ceiling:<5g} overshoot max ${max(over):.4f}"
        f"  mean ${statistics.mean(over):.4f}  ({max(over) / ceiling:.1%} of the ceiling)"
    )
    if rate:
        line += f"  = {max(over) / rate:.3f} s of spending at ${rate:g}/s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--spin-seconds", type=float, default=0.01)
    args = parser.parse_args()
    print(f"supervisor tick {TICK_SECONDS}s; every run is a real `start --wait`", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as d:
        tmp = Path(d)
        step, cost = args.spin_seconds, 0.01
        for workers in args.workers:
            rate = workers * cost / step  # USD per second, all workers together
            ceiling = round(rate * 0.5, 2)  # reached about half a second in
            totals = [
                run_once(tmp, f"spin{workers}-{r}", workers, workers, ceiling,
                         {"unit_seconds": step, "unit_cost": cost, "spin": 1})[0]
                for r in range(args.reps)
            ]  # fmt: skip
            report(f"spin: {workers} worker(s) x ${cost / step:g}/s", ceiling, totals, rate)
        for unit_seconds in (0.02, 0.3):
            totals = [
                run_once(tmp, f"units{unit_seconds}-{r}", 3, 2, 0.10,
                         {"unit_seconds": unit_seconds, "unit_cost": 0.02})[0]
                for r in range(args.reps)
            ]  # fmt: skip
            rate = 2 * 0.02 / unit_seconds
            report(f"units: 2 workers, $0.02 per {unit_seconds}s unit", 0.10, totals, rate)


if __name__ == "__main__":
    main()
