"""Final-merge conflicts with the drift guard against ``sync_with_integration: never``, and the
overlap radar's cost per unit.

A generated project of 8 independent milestones (4 workers, ``overlap: warn`` so overlapping
ones run side by side, ``auto_merge: auto``) whose tasks edit randomly overlapping files from a
small pool (seeded). The fake worker appends a line per task to each file it edits, so two
branches that both edited a file from the same base always conflict; a branch brought up to
date before its own edit does not. Per seed, both modes run on the same project:

- final-merge conflicts: squash merges that conflicted;
- with the drift guard, updates that conflicted pause the worker early (counted apart: those
  are found at a unit boundary, before the rest of the milestone's money is spent).

    python bench/bench_conflicts.py [--seeds 10] [--unit-seconds 0.1]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.run.supervisor import Supervisor
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env

MILESTONES = 8
POOL = 12


def milestones(seed: int) -> dict:
    rng = random.Random(seed)
    out = {}
    for i in range(1, MILESTONES + 1):
        tasks = {}
        for t in range(1, rng.randint(1, 8) + 1):  # sizes differ: merges land while others run
            own = [f"src/m{i}_{t}.py"]
            shared = [f"src/common{rng.randrange(POOL)}.py"] if rng.random() < 0.35 else []
            tasks[f"T{t:02d}"] = own + shared
        out[f"M{i:03d}"] = {"title": f"Feature {i}", "slices": {"S01": tasks}}
    return out


def run_once(tmp: Path, seed: int, mode: str) -> dict:
    project = build_project(
        tmp / f"{mode}-{seed}",
        milestones(seed),
        preferences={
            "enabled": True,
            "max_workers": 4,
            "overlap": "warn",
            "auto_merge": "auto",
            "sync_with_integration": mode,
        },
        files={f"src/common{k}.py": f"common{k} = 1\n" for k in range(POOL)},
    )
    sup = Supervisor(project.root, tick_seconds=0.05)
    t0 = time.monotonic()
    sup.run()
    wall = time.monotonic() - t0
    with Store(project.gsd / "parallel" / "coordinator.db") as store:
        run = store.latest_run()
        assert run is not None
        merges = [m for m in store.merges() if m.outcome is not None]
        syncs = [e for e in store.events_of_kind("sync", run.id) if isinstance(e.data, dict)]
        units = sum(w.units_done for w in store.workers(run.id))
    return {
        "final_conflicts": sum(m.outcome == "conflict" for m in merges),
        "merged": sum(m.outcome == "merged" for m in merges),
        "sync_updates": sum(e.data.get("outcome") == "updated" for e in syncs),
        "sync_conflicts": sum(e.data.get("outcome") == "conflict" for e in syncs),
        "units": units,
        "radar_seconds": sup.radar.radar.seconds,
        "radar_updates": sup.radar.radar.updates,
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--unit-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-conflicts-") as td:
        tmp = Path(td)
        os.environ.update(fake_worker_env(unit_seconds=args.unit_seconds, unit_cost=0.01))
        os.environ["GSD_HOME"] = str(tmp / "home")
        totals = {"unit": [], "never": []}
        print(f"{'seed':>4} {'never: conflicts':>17} {'unit: conflicts':>16} {'early (sync)':>12} "
              f"{'updates':>8} {'radar ms/unit':>13}")  # fmt: skip
        for seed in range(args.seeds):
            never = run_once(tmp, seed, "never")
            unit = run_once(tmp, seed, "unit")
            totals["never"].append(never)
            totals["unit"].append(unit)
            per_unit = 1000 * unit["radar_seconds"] / max(unit["units"], 1)
            print(
                f"{seed:>4} {never['final_conflicts']:>17} {unit['final_conflicts']:>16} "
                f"{unit['sync_conflicts']:>12} {unit['sync_updates']:>8} {per_unit:>13.1f}",
                flush=True,
            )
        n = sum(r["final_conflicts"] for r in totals["never"])
        u = sum(r["final_conflicts"] for r in totals["unit"])
        early = sum(r["sync_conflicts"] for r in totals["unit"])
        updates = sum(r["sync_updates"] for r in totals["unit"])
        radar_s = sum(r["radar_seconds"] for r in totals["unit"] + totals["never"])
        units = sum(r["units"] for r in totals["unit"] + totals["never"])
        recomputes = sum(r["radar_updates"] for r in totals["unit"] + totals["never"])
        print()
        print(
            f"final-merge conflicts over {args.seeds} seeds: never {n}, drift guard (unit) {u}; "
            f"ratio unit/never {u / n:.2f}"
            if n
            else f"final-merge conflicts: never {n}, unit {u}"
        )
        print(
            f"drift guard: {updates} clean updates, {early} conflicts found early at a unit boundary "
            f"(worker paused); never + unit milestones hitting any conflict: {n} vs {u + early}"
        )
        print(
            f"radar: {1000 * radar_s / max(units, 1):.1f} ms per unit with 4 workers "
            f"({recomputes} recomputations, {1000 * radar_s / max(recomputes, 1):.1f} ms each, "
            f"{units} units)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
