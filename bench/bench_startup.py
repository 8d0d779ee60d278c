"""How long do the read-only commands take to start? (issue 11, item 6: status within 5x)

Builds a small real project (git repository, parallel mode on), then times each command in
a fresh process, the median of ``--runs`` runs, against a bare ``python -c pass`` in the
same interpreter: ``--version``, ``--help``, ``status`` with no run (text and ``--json``)
and ``status`` with a finished run in the store. Then lists the modules that take longest
to import for ``status`` with no run (``python -X importtime``, by cumulative time).

    python bench/bench_startup.py [--runs 21] [--top 15]

The machine's load shows in every number; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import GIT_IDENTITY, build_project

TARGET_RATIO = 5.0


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


def median_ms(argv: list[str], cwd: Path, runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``argv`` in a fresh process; a failing command stops the bench."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return statistics.median(times)


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
    env = {**os.environ, **GIT_IDENTITY}
    gsd_parallel = cli()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        empty = build(Path(tmp) / "no-run", finished_run=False)
        finished = build(Path(tmp) / "finished-run", finished_run=True)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], empty),
            ("gsd-parallel --version", [*gsd_parallel, "--version"], empty),
            ("gsd-parallel --help", [*gsd_parallel, "--help"], empty),
            ("gsd-parallel status (no run)", [*gsd_parallel, "status"], empty),
            ("gsd-parallel status --json (no run)", [*gsd_parallel, "status", "--json"], empty),
            ("gsd-parallel status (finished run)", [*gsd_parallel, "status"], finished),
        ]
        results = [(label, median_ms(argv, cwd, runs, env)) for label, argv, cwd in cases]
        module = ["-m", "gsd_parallel_plugin", "status"]
        imports = slowest_imports(module, empty, env, args.top)
    base = results[0][1]
    print(f"{sys.executable}, median of {runs} runs each")
    width = max(len(label) for label, _ms in results)
    for label, ms in results:
        print(f"  {label:<{width}}  {ms:7.1f} ms  {ms / base:5.1f}x")
    status_ratio = results[3][1] / base
    verdict = "within" if status_ratio <= TARGET_RATIO else "OVER"
    print(f"status (no run): {status_ratio:.1f}x python -c pass, {verdict} the {TARGET_RATIO:g}x target")
    print(f"\nslowest imports of `gsd-parallel status` (no run), top {len(imports)} by cumulative time:")
    for cumulative, name in imports:
        print(f"  {cumulative / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
