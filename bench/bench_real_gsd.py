"""Wall time of N independent milestones (default 4) run by real GSD workers, 2 at once vs 1.

Each run is ``gsd-parallel start --wait`` with ``auto_merge: auto`` on a fresh project
(one slice, one task per milestone), its workers being the real ``gsd headless --json auto``
driven by the scripted model (``gsd_parallel_plugin.testing.scripted_model``), which waits
``--delay`` seconds before every answer: a real model's time dominates a real milestone, and
GSD asks it about 9 times per milestone here. GSD runs in a temporary ``GSD_HOME``/``HOME``,
never yours. Printed: both wall times, their ratio, each run's cost (as gsd-parallel summed
it from GSD's events, and as the model billed it) and whether ``main`` got one squash commit
per milestone.

    python bench/bench_real_gsd.py [--delay 2.0] [--milestones 4] [--workers 2] [--gsd PATH]

Needs the real GSD (``find_real_gsd()``: ``$GSD_PARALLEL_REAL_GSD`` or the build cache of
``../shared/real-gsd/build.sh``); without one it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.money import cost_to_nanos
from gsd_parallel_plugin.testing.real_gsd import (
    REAL_GSD_HINT,
    RealGsdError,
    find_real_gsd,
    make_gsd_project,
    real_gsd_environ,
)
from gsd_parallel_plugin.testing.scripted_model import ScriptedModel, write_agent_config

NANOS = 1_000_000_000


def squash_commits(root: Path) -> list[str]:
    """Subjects of the single-parent commits on main carrying gsd-parallel's milestone trailer."""
    out = subprocess.run(
        ["git", "log", "--no-merges", "--format=%s", "--grep=^GSD-Milestone: ", "main"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.splitlines()


def one_run(base: Path, gsd: Path, workers: int, ids: list[str], delay: float) -> dict:
    """A fresh project and home, one ``start --wait``; what it took and what landed."""
    gsd_home, home = base / "gsd-home", base / "user-home"
    home.mkdir(parents=True)
    (gsd_home / "agent").mkdir(parents=True)  # before GSD runs, or it prints a first-run banner
    (gsd_home / "PREFERENCES.md").write_text(
        f"---\nparallel:\n  enabled: true\n  max_workers: {workers}\n  auto_merge: auto\n---\n"
    )
    root = make_gsd_project(base / "proj", ids)
    env = real_gsd_environ(gsd_home, home=home)
    env["GSD_PARALLEL_WORKER_COMMAND"] = shlex.join([str(gsd), "headless", "--json", "auto"])
    env.pop("GSD_PARALLEL_WORKER", None)
    with ScriptedModel(delay=delay) as model:
        write_agent_config(gsd_home / "agent", model)
        t0 = time.perf_counter()
        command = [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(root), "start", "--wait"]
        done = subprocess.run(
            [*command, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        requests, billed = model.requests, model.billed_nanos()
    try:
        status = json.loads(done.stdout)
    except ValueError:
        status = {}
    states = {w["id"]: w["state"] for w in status.get("workers", [])}
    return {
        "workers": workers,
        "wall": wall,
        "code": done.returncode,
        "stderr": done.stderr.strip().splitlines()[-3:],
        "states": states,
        "cost": status.get("total_cost"),
        "billed": billed / NANOS,
        "billed_nanos": billed,
        "requests": requests,
        "squashes": squash_commits(root),
        "user_home_gsd": (home / ".gsd").exists(),
        "load": os.getloadavg()[0],
    }


def report(run: dict, n: int) -> None:
    complete = sum(state == "complete" for state in run["states"].values())
    cost = run["cost"]
    same = cost is not None and cost_to_nanos(cost) == run["billed_nanos"]
    print(
        f"max_workers {run['workers']}: {run['wall']:.1f}s wall, exit {run['code']}, "
        f"{complete}/{n} complete, {run['requests']} model answers, "
        f"cost ${cost if cost is not None else float('nan'):.6f} "
        f"(model billed ${run['billed']:.6f}{', same' if same else ', DIFFERENT'}), "
        f"main got {len(run['squashes'])} squash commit(s)"
        + (" [ok]" if len(run["squashes"]) == n else f" [expected {n}]")
        + f"; load average after {run['load']:.2f}"
    )
    if run["code"] != 0 or complete != n:
        print(f"  states: {run['states']}; stderr tail: {run['stderr']}")
    if run["user_home_gsd"]:
        print("  note: GSD wrote ~/.gsd in the temporary HOME (its GSD_HOME was elsewhere)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before each model answer")
    parser.add_argument("--milestones", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="compared with max_workers 1")
    parser.add_argument("--gsd", type=Path, help="the real gsd (default: find_real_gsd())")
    parser.add_argument("--keep", type=Path, help="keep the projects in this new directory")
    args = parser.parse_args()
    try:
        gsd = args.gsd or find_real_gsd()
    except RealGsdError as exc:
        gsd, hint = None, f"real GSD not found: {exc}"
    else:
        hint = REAL_GSD_HINT
    if gsd is not None and not (gsd.is_file() and os.access(gsd, os.X_OK)):
        gsd, hint = None, f"real GSD not found: {gsd} is not an executable file"
    if gsd is None:
        print(hint, file=sys.stderr)
        return 2
    ids = [f"M{i:03d}" for i in range(1, args.milestones + 1)]
    print(f"{len(ids)} independent milestones, real GSD {gsd}, model delay {args.delay:.2f}s per answer")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} (other processes slow GSD down)")
    with tempfile.TemporaryDirectory(prefix="bench-real-gsd-") as tmp:
        base = args.keep.absolute() if args.keep else Path(tmp)
        runs = []
        for n, workers in enumerate((args.workers, 1), 1):
            run = one_run(base / f"run{n}-max-workers-{workers}", gsd, workers, ids, args.delay)
            report(run, len(ids))
            runs.append(run)
    parallel, serial = runs
    print(
        f"wall: {parallel['wall']:.1f}s with max_workers {args.workers}, {serial['wall']:.1f}s with 1; "
        f"speed-up {serial['wall'] / parallel['wall']:.2f}x (ideal {min(args.workers, len(ids))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
