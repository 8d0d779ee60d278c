"""Parse and analyse a generated project of 2,000 milestones (random DAG, 20 planned files each).

Prints the time to read the project from disk and the time of the eligibility analysis
(rules, cycles, overlaps through the inverted index, start plan). Run:
    python bench/bench_eligibility.py [--milestones 2000] [--files 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.project.eligibility import analyse
from gsd_parallel_plugin.testing.builder import write_milestone


def generate(root: Path, n: int, files_per: int, rng: random.Random) -> None:
    gsd = root / ".gsd"
    (gsd / "milestones").mkdir(parents=True)
    # A pool where some files are shared: realistic overlap (app entry points, configs).
    hot = [f"src/shared/hot_{i}.py" for i in range(40)]
    for i in range(1, n + 1):
        mid = f"M{i:03d}" if i < 1000 else f"M{i % 1000:03d}-{rng.randrange(36**6):06x}"[:11]
        deps = [f"M{j:03d}" for j in rng.sample(range(max(1, i - 30), i), k=min(i - 1, rng.randint(0, 2)))]
        own = [f"src/m{i}/file_{k}.py" for k in range(files_per - 2)]
        shared = rng.sample(hot, 2)
        tasks = {f"T{t:02d}": own[t::4] + ([shared[t % 2]] if t < 2 else []) for t in range(1, 5)}
        write_milestone(
            gsd,
            mid,
            {
                "title": f"Milestone {i}",
                "depends_on": deps if i < 1000 else None,
                "slices": {"S01": tasks},
                "complete": rng.random() < 0.3,
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--milestones", type=int, default=2000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generate(root, args.milestones, args.files, rng)
        gen = time.perf_counter() - t0
        parse_times, analyse_times = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            project = read_project(root, default_branch="main")
            parse_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = analyse(project, max_workers=4)
            analyse_times.append(time.perf_counter() - t0)
        files = sum(len(m.files) for m in project.milestones)
        print(f"milestones: {len(project.milestones)}  planned files: {files}  (generated in {gen:.2f}s)")
        print(
            f"eligible: {len(report.eligible)}  ineligible: {len(report.ineligible)}  "
            f"overlapping pairs: {len(report.overlaps)}  cycles: {len(report.cycles)}"
        )
        print(
            f"parse:    median {statistics.median(parse_times) * 1000:.0f} ms  "
            f"(min {min(parse_times) * 1000:.0f} ms over {args.repeat} runs)"
        )
        print(
            f"analysis: median {statistics.median(analyse_times) * 1000:.0f} ms  "
            f"(min {min(analyse_times) * 1000:.0f} ms over {args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
