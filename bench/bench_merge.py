"""Time to dry-run and to merge N completed milestones (default 20), through the real CLI.

Each milestone is finished by the shipped fake worker in its own worktree (2 slices x 2
tasks, distinct code files) and then edits the shared ``.gsd/PROJECT.md``, so every merge
after the first also auto-resolves a ``.gsd`` conflict. Measured: ``merge --dry-run`` (all
N stacked), then ``merge`` (all N landing one by one, each in its own temporary worktree),
both as a user runs them (a fresh process, so Python start-up is included once).

    python bench/bench_merge.py [--milestones 20] [--files 200]

``--files`` pads the repository with that many tracked files, since creating each
temporary worktree costs a checkout of the whole tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env, git, run_fake_gsd
from gsd_parallel_plugin.workspace.worktrees import ensure_worktree


def finish(root: Path, mid: str, env: dict[str, str]) -> None:
    wt = ensure_worktree(root, mid, "main").path
    done = run_fake_gsd(wt, mid, env=env)
    assert done.returncode == 0, done.stderr
    from gsd_parallel_plugin.gsd.checkout import finish_checkout

    finish_checkout(wt, mid, f"gsd-parallel/{mid}")  # the SUMMARY, as the supervisor commits it
    (wt / ".gsd/PROJECT.md").write_text(f"# Project\n\nLast touched by {mid}\n")
    git(wt, "add", ".gsd/PROJECT.md")
    git(wt, "commit", "-q", "-m", f"{mid}: project notes")


def cli(root: Path, env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(root), *args, "--json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return time.perf_counter() - t0, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--milestones", type=int, default=20)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    n = args.milestones
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        base = Path(tmp)
        env = {**os.environ, **fake_worker_env(unit_seconds=0.0), "GSD_HOME": str(base / "home")}
        milestones = {
            f"M{i:03d}": {
                "title": f"Feature {i}",
                "slices": {
                    "S01": {"T01": [f"src/f{i}/a.py"], "T02": [f"src/f{i}/b.py"]},
                    "S02": {"T01": [f"src/f{i}/c.py"], "T02": [f"tests/test_f{i}.py"]},
                },
            }
            for i in range(1, n + 1)
        }
        padding = {f"lib/pkg{i // 50}/mod{i}.py": f"X = {i}\n" for i in range(args.files)}
        project = build_project(
            base / "proj", milestones, preferences={"enabled": True},
            files={"README.md": "# bench\n", ".gsd/PROJECT.md": "# Project\n", **padding},
        )  # fmt: skip
        os.environ.update({k: v for k, v in env.items() if k.startswith("GIT_")})
        t0 = time.perf_counter()
        with Store(project.gsd / "parallel" / "coordinator.db") as store:
            for mid in milestones:
                finish(project.root, mid, env)
                store.mark_completed(mid)
        setup = time.perf_counter() - t0

        dry_time, dry = cli(project.root, env, "merge", "--dry-run")
        dry_rows = json.loads(dry.stdout)["results"]
        merge_time, merged = cli(project.root, env, "merge")
        rows = json.loads(merged.stdout)["results"]
        landed = sum(r["outcome"] == "merged" for r in rows)
        commits = int(git(project.root, "rev-list", "--count", "main")) - 1

    clean = sum(r["outcome"] == "clean" for r in dry_rows)
    print(f"milestones: {n}, padding files: {args.files} (setup {setup:.1f}s)")
    print(f"merge --dry-run: {dry_time:6.2f}s  ({clean}/{n} clean, exit {dry.returncode})")
    print(f"merge:           {merge_time:6.2f}s  ({landed}/{n} landed as {commits} commits,"
          f" {merge_time / n * 1000:.0f} ms per milestone, exit {merged.returncode})")  # fmt: skip
    return 0 if landed == n and clean == n else 1


if __name__ == "__main__":
    sys.exit(main())
