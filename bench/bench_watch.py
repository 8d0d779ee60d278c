"""How much CPU does ``gsd-parallel watch`` use while it refreshes? (issue 7: well under 5 %)

Builds a project with four milestones (two with real worktrees), fills the store the
way a supervisor does (cost, units and the current unit of every worker change four
times a second, a state event every few seconds), runs ``gsd-parallel watch`` in a real
pseudo-terminal of 80x40 and measures its CPU time (user + system, psutil) over a
window after start-up. Prints one line with the number.

    python bench/bench_watch.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import pty
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import build_project
from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

MIDS = ("M001", "M002", "M003", "M004")


def build(root: Path) -> tuple[Path, Path, int]:
    project = build_project(
        root / "proj",
        {
            mid: {
                "title": f"Feature {mid}",
                "slices": {
                    f"S0{s}": {f"T0{t}": [f"src/{mid}/{s}_{t}.py"] for t in range(1, 5)} for s in (1, 2)
                },
            }
            for mid in MIDS
        }
        | {"M005": {"title": "Later", "depends_on": ["M001"]}},
        preferences={"enabled": True, "max_workers": 4, "budget_ceiling": 50.0},
    )
    db = project.gsd / "parallel" / "coordinator.db"
    with Store(db) as store:
        run = store.create_run(50.0)
        for i, mid in enumerate(MIDS):
            wt = ensure_worktree(project.root, mid, "main").path if i < 2 else project.root
            store.add_worker(run.id, mid, f"Feature {mid}", wt, f"gsd-parallel/{mid}")
            store.set_state(mid, run.id, "running")
    return project.root, db, run.id


def feed(db: Path, run_id: int, stop: threading.Event) -> None:
    """Write like a busy supervisor: every worker reports output 4x a second."""
    with Store(db) as store:
        _feed(store, run_id, stop)


def _feed(store: Store, run_id: int, stop: threading.Event) -> None:
    offsets = dict.fromkeys(MIDS, 0)
    tick = 0
    while not stop.is_set():
        tick += 1
        for mid in MIDS:
            new = offsets[mid] + 100
            unit = f"execute-task {mid}/S01/T0{1 + tick // 20 % 4}"
            store.record_output(
                run_id, mid, expected_offset=offsets[mid], new_offset=new, cost_delta="0.001",
                units_delta=1 if tick % 20 == 0 else 0, current_unit=unit,
            )  # fmt: skip
            offsets[mid] = new
        if tick % 20 == 0:
            store.add_event("stall", f"heartbeat {tick}", run_id=run_id)
        stop.wait(0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root, db, run_id = build(Path(tmp))
        stop = threading.Event()
        writer = threading.Thread(target=feed, args=(db, run_id, stop), daemon=True)
        writer.start()

        master, slave = pty.openpty()
        import fcntl
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "40"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(root), "watch"],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        screen = bytearray()
        frames_at: list[float] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                frames_at.extend([time.monotonic()] * data.count(b"gsd-parallel watch"))
                screen.extend(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        ps = psutil.Process(proc.pid)
        time.sleep(args.warmup)
        before, t0 = ps.cpu_times(), time.monotonic()
        time.sleep(args.seconds)
        after, t1 = ps.cpu_times(), time.monotonic()
        os.write(master, b"q")
        code = proc.wait(timeout=10)
        stop.set()
        writer.join()
        os.close(master)

    used = (after.user - before.user) + (after.system - before.system)
    frames = sum(1 for t in frames_at if t0 <= t <= t1)
    share = 100 * used / (t1 - t0)
    print(
        f"watch CPU: {share:.2f}% of one core over {t1 - t0:.0f} s "
        f"({used * 1000:.0f} ms CPU, {frames} frames, {len(MIDS)} workers, 1 s refresh); "
        f"exit code after 'q': {code}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
