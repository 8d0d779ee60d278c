"""How long do the read-only commands take to start? (issue 11, item 6: status within 5x)

Builds a small real project (git repository, parallel mode on), then times each command in
a fresh process, the median of ``--runs`` runs, against a bare ``python -c pass`` in the
same interpreter: ``--version``, ``--help``, ``status`` with no run (text and ``--json``)
and ``status`` with a finished run in the store. Then lists the modules that take longest
to import for ``status`` with no run (``python -X importtime``, by cumulative time).

    python bench/bench_startup.py [--runs 21] [--top 15]

Modules load from cached bytecode (a warm-up run writes it, also under
``PYTHONDONTWRITEBYTECODE``), as they do once a package is installed. The machine's load
shows in every number (the commands take turns, so it hits them all alike); the ratios
are what to compare. To measure another checkout: ``PYTHONPATH=/that/checkout python
bench/bench_startup.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import GIT_IDENTITY, build_project

TARGET_RATIO = 5.0

FLOOR_IMPORTS = "import argparse, dataclasses, json, pathlib, pluggy"
"""What ``status`` cannot do without while it keeps its behaviour: pluggy (every command
runs in a host with its plugins, ``on_session_start`` included), argparse (its errors are
the CLI's), dataclasses (the frozen records plugins receive) and pathlib. Timed as a case of
its own, it shows how much of the ratio our own code still adds."""


def build(root: Path, *, finished_run: bool) -> Path:
    """A two-milestone project; with ``finished_run``, one finished run in its store."""
    project = build_project(
        root,
        {"M001": {"title": "First"}, "M002": {"title": "Second", "depends_on": ["M001"]}},
        preferences={"enabled": True, "max_workers": 2, "budget_ceiling": 5.0},
    )
    if finished_run:
        with Store(project.gsd / "parallel" / "coordinator.db") as store:
            run = store.create_run(5.0)
            store.add_worker(run.id, "M001", "First", project.root, "gsd-parallel/M001")
            store.set_state("M001", run.id, "complete")
            store.finish_run(run.id)
    return project.root


def cli() -> list[str]:
    """The console script next to this interpreter (what a user runs), else ``-m``."""
    script = Path(sys.executable).with_name("gsd-parallel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gsd_parallel_plugin"]


def time_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of ``argv`` in a fresh process; a failing command stops the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def medians(
    cases: list[tuple[str, list[str], Path]], runs: int, env: dict[str, str]
) -> list[tuple[str, float, float]]:
    """(label, median wall ms, median CPU ms) per case. The cases take turns, one run each
    per round, so a burst of load on the machine hits them all alike."""
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _argv, _cwd in cases}
    for _label, argv, cwd in cases:
        time_once(argv, cwd, env)  # warm-up: writes the bytecode caches, as an install does
    for _ in range(runs):
        for label, argv, cwd in cases:
            samples[label].append(time_once(argv, cwd, env))
    return [
        (label, statistics.median(w for w, _c in got), statistics.median(c for _w, c in got))
        for label, got in samples.items()
    ]


def slowest_imports(argv: list[str], cwd: Path, env: dict[str, str], top: int) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the ``top`` slowest imports of ``argv``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (median; at least 15)")
    parser.add_argument("--top", type=int, default=15, help="how many slow imports to list")
    args = parser.parse_args()
    runs = max(args.runs, 15)
    # Measured as installed: modules load from cached bytecode, even where the environment
    # says not to write any (compiling ~30 modules from source would dominate every number).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | GIT_IDENTITY
    gsd_parallel = cli()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        empty = build(Path(tmp) / "no-run", finished_run=False)
        finished = build(Path(tmp) / "finished-run", finished_run=True)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], empty),
            ("floor: " + FLOOR_IMPORTS, [sys.executable, "-c", FLOOR_IMPORTS], empty),
            ("gsd-parallel --version", [*gsd_parallel, "--version"], empty),
            ("gsd-parallel --help", [*gsd_parallel, "--help"], empty),
            ("gsd-parallel status (no run)", [*gsd_parallel, "status"], empty),
            ("gsd-parallel status --json (no run)", [*gsd_parallel, "status", "--json"], empty),
            ("gsd-parallel status (finished run)", [*gsd_parallel, "status"], finished),
        ]
        results = medians(cases, runs, env)
        module = ["-m", "gsd_parallel_plugin", "status"]
        imports = slowest_imports(module, empty, env, args.top)
    base = results[0][1]
    print(f"{sys.executable}, median of {runs} runs each (wall time; CPU time of the process)")
    width = max(len(label) for label, _wall, _cpu in results)
    for label, wall, cpu in results:
        print(f"  {label:<{width}}  {wall:7.1f} ms  {wall / base:5.1f}x   cpu {cpu:6.1f} ms")
    by_label = {label: wall for label, wall, _cpu in results}
    status_ratio = by_label["gsd-parallel status (no run)"] / base
    floor = by_label["floor: " + FLOOR_IMPORTS]
    verdict = "within" if status_ratio <= TARGET_RATIO else "OVER"
    print(f"status (no run): {status_ratio:.1f}x python -c pass, {verdict} the {TARGET_RATIO:g}x target")
    print(
        f"  of which the floor (the imports above) is {floor / base:.1f}x; our own code adds "
        f"{by_label['gsd-parallel status (no run)'] - floor:.1f} ms"
    )
    print(f"\nslowest imports of `gsd-parallel status` (no run), top {len(imports)} by cumulative time:")
    for cumulative, name in imports:
        print(f"  {cumulative / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
