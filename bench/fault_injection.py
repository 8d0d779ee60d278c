"""Fault injection: ``kill -9`` the supervisor and workers at random moments of whole runs.

Each run builds a fresh project (independent milestones and a dependency chain, fake worker,
``auto_merge: auto``), starts it, and then, until every milestone is merged, repeatedly picks
one fault at random: kill -9 the supervisor (at a random moment, or while it holds the merge
lock), kill -9 a random worker, or kill -9 both. After a supervisor kill the user's next
command (``status``) must bring a supervisor back; nothing else restarts it. At the end it
checks and prints the invariants:

- merged once: every milestone has exactly one squash commit (``GSD-Milestone:`` trailer) on
  ``main`` and is recorded merged; the run is finished;
- exact cost: the sum of what the workers reported in their logs (every ``message_end``
  ``usage.cost.total``) equals the cost recorded in the store, to the nano-dollar;
- doctor clean: ``doctor`` exits 0 (no unfinished merge, stray worktree, branch, lock, ...);
- no double spawn: never two live worker processes for one milestone (polled every 20 ms).

    python bench/fault_injection.py [--runs 20] [--seed 1] [--unit-seconds 0.1] [--keep]

Exit status 0 when every run holds every invariant. Only processes started for the project
of the run (their working directory is inside it) are ever killed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gsd_parallel_plugin.gsd.output import read_new_events, summarize
from gsd_parallel_plugin.store import NANOS_PER_USD, Store
from gsd_parallel_plugin.testing.builder import build_project, fake_worker_env

MILESTONES = {
    "M001": {"title": "Alpha", "slices": {"S01": {"T01": ["src/a1.py"], "T02": ["src/a2.py"]}}},
    "M002": {"title": "Beta", "slices": {"S01": {"T01": ["src/b1.py"]},
                                          "S02": {"T01": ["src/b2.py"]}}},
    "M003": {"title": "Gamma", "depends_on": ["M001"],
             "slices": {"S01": {"T01": ["src/c1.py"], "T02": ["src/c2.py"]}}},
    "M004": {"title": "Delta", "depends_on": ["M002"], "slices": {"S01": {"T01": ["src/d1.py"]}}},
}  # fmt: skip
RUN_TIMEOUT = 120.0


@dataclass
class Result:
    index: int
    faults: dict[str, int] = field(default_factory=dict)
    merged_once: bool = False
    exact_cost: bool = False
    doctor_clean: bool = False
    no_double_spawn: bool = True
    finished: bool = False
    notes: list[str] = field(default_factory=list)
    reported: int = 0
    recorded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all((self.merged_once, self.exact_cost, self.doctor_clean,
                    self.no_double_spawn, self.finished))  # fmt: skip


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.parallel = root / ".gsd" / "parallel"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(self.root), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def _ours(self, proc: psutil.Process) -> bool:
        try:
            cwd = proc.cwd()
        except (psutil.Error, OSError):
            return False
        return cwd == str(self.root) or cwd.startswith(str(self.root) + os.sep)

    def supervisor_pid(self) -> int | None:
        try:
            data = json.loads((self.parallel / "supervisor.lock").read_text() or "{}")
        except (OSError, ValueError):
            return None
        pid = data.get("pid")
        if not isinstance(pid, int):
            return None
        try:
            proc = psutil.Process(pid)
            if (
                "gsd_parallel_plugin.run.supervisor" in " ".join(proc.cmdline())
                and (str(self.root) in proc.cmdline())
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                return pid
        except psutil.Error:
            pass
        return None

    def merge_holder(self) -> int | None:
        try:
            data = json.loads((self.parallel / "merge.lock").read_text() or "{}")
        except (OSError, ValueError):
            return None
        pid = data.get("pid")
        return pid if isinstance(pid, int) and psutil.pid_exists(pid) else None

    def workers(self) -> dict[str, list[int]]:
        """Live fake-worker ``auto`` processes of this project, by milestone."""
        found: dict[str, list[int]] = {}
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                cmd = proc.info["cmdline"] or []
                if "gsd_parallel_plugin.testing.fake_gsd" not in cmd or "auto" not in cmd:
                    continue
                if proc.info["status"] == psutil.STATUS_ZOMBIE or not self._ours(proc):
                    continue
                mid = proc.environ().get("GSD_MILESTONE_LOCK", "?")
            except (psutil.Error, OSError):
                continue
            found.setdefault(mid, []).append(proc.pid)
        return found


def kill(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    until = time.monotonic() + 5  # gone (or a zombie) before the run goes on
    while time.monotonic() < until:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.005)
    return True


def _worker_roots(pids: list[int]) -> list[int]:
    """The pids that are workers of their own: a fork child of one of them (between fork and
    exec of its git call it still shows the worker's command line) is not a second worker."""
    roots = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or proc.ppid() in pids:
                continue
        except psutil.Error:
            continue
        roots.append(pid)
    return roots


def watch_double_spawn(project: Project, result: Result, stop: threading.Event) -> None:
    while not stop.is_set():
        for mid, pids in project.workers().items():
            if len(_worker_roots(pids)) > 1:
                # Look again a moment later: a killed process may linger as it dies.
                stop.wait(0.05)
                again = _worker_roots(project.workers().get(mid, []))
                if len(again) > 1 and result.no_double_spawn:
                    result.no_double_spawn = False
                    parents = {p: psutil.Process(p).ppid() for p in again if psutil.pid_exists(p)}
                    result.notes.append(f"double spawn: {mid} pids {again} (parents {parents})")
        stop.wait(0.02)


def merged_everything(project: Project) -> bool:
    path = project.parallel / "coordinator.db"
    if not path.exists():
        return False
    try:
        with Store(path, readonly=True) as s:
            return set(MILESTONES) <= set(s.merged_milestones())
    except Exception:  # a moment of contention: ask again
        return False


def inject(project: Project, rng: random.Random, result: Result) -> None:
    """Faults until every milestone merged (or the run times out)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and not merged_everything(project):
        time.sleep(rng.uniform(0.1, 1.2))
        fault = rng.choice(["supervisor", "supervisor", "merge", "merge", "worker", "both", "none"])
        if fault == "merge":
            # Wait (briefly) for a merge to be under way, then kill its supervisor mid-way.
            until = time.monotonic() + 3.0
            while time.monotonic() < until and project.merge_holder() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            holder = project.merge_holder()
            if holder is not None and holder == project.supervisor_pid() and kill(holder):
                result.faults["merge"] = result.faults.get("merge", 0) + 1
        elif fault in {"supervisor", "both"} and kill(project.supervisor_pid()):
            result.faults["supervisor"] = result.faults.get("supervisor", 0) + 1
        if fault in {"worker", "both"}:
            pids = [p for ps in project.workers().values() for p in ps]
            if pids and kill(rng.choice(pids)):
                result.faults["worker"] = result.faults.get("worker", 0) + 1
        if project.supervisor_pid() is None:
            time.sleep(rng.uniform(0, 0.5))
            project.cli("status")  # the user's next command: it must bring a supervisor back
    # The run ends by itself once everything merged; wait for the supervisor to go. Killed
    # at the very end, the user's next command brings one back to close the run.
    if project.supervisor_pid() is None:
        last = project.cli("status")
        result.notes.append(f"final status: exit {last.returncode} {last.stderr.strip()[-300:]}")
    until = time.monotonic() + 30
    while time.monotonic() < until and project.supervisor_pid() is not None:
        time.sleep(0.1)


def reported_nanos(project: Project) -> int:
    total = 0
    for log in sorted(project.parallel.glob("*.stdout.log")):
        total += summarize(read_new_events(log, 0).events).cost_nanos
    return total


def check(project: Project, result: Result) -> None:
    g = ["git", "-C", str(project.root)]
    log = subprocess.run([*g, "log", "--format=%B%x00", "main"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    counts = {mid: 0 for mid in MILESTONES}
    for message in log.split("\0"):
        for line in message.splitlines():
            if line.startswith("GSD-Milestone:"):
                mid = line.split(":", 1)[1].strip()
                counts[mid] = counts.get(mid, 0) + 1
    with Store(project.parallel / "coordinator.db", readonly=True) as s:
        merged = s.merged_milestones()
        recorded = sum(w.cost_nanos for r in _all_runs(s) for w in s.workers(r))
        unfinished = s.unfinished_merges()
        latest = s.latest_run()
    result.finished = latest is not None and latest.state == "finished"
    if not result.finished:
        result.notes.append(f"run not finished: {latest.state if latest else None}")
    once = all(n == 1 for n in counts.values()) and set(MILESTONES) <= set(merged)
    result.merged_once = once and not unfinished
    if not result.merged_once:
        result.notes.append(f"merge commits {counts}, recorded merged {sorted(merged)}, "
                            f"unfinished journal rows {[u.id for u in unfinished]}")  # fmt: skip
    result.reported, result.recorded = reported_nanos(project), recorded
    result.exact_cost = result.reported == result.recorded
    if not result.exact_cost:
        result.notes.append(f"cost: reported {result.reported} n$ != recorded {result.recorded} n$")
    doctor = project.cli("doctor")
    result.doctor_clean = doctor.returncode == 0
    if not result.doctor_clean:
        result.notes.append(
            "doctor: "
            + " | ".join(ln for ln in doctor.stdout.splitlines() if ln.startswith("- "))
            + doctor.stderr.strip()
        )


def _all_runs(s: Store) -> list[int]:
    return [int(r[0]) for r in s._conn.execute("SELECT id FROM runs ORDER BY id")]


def one_run(base: Path, index: int, seed: int, unit_seconds: float) -> Result:
    rng = random.Random(seed * 1000 + index)
    result = Result(index)
    root = base / f"run{index:02d}"
    prefs = {"enabled": True, "max_workers": 2, "auto_merge": "auto", "max_restarts": 10,
             "stop_grace_seconds": 1, "startup_grace_seconds": 0}  # fmt: skip
    build_project(root, MILESTONES, preferences=prefs)
    env = {**os.environ, **fake_worker_env(unit_seconds=unit_seconds, unit_cost=0.125),
           "GSD_HOME": str(base / f"home{index:02d}")}  # fmt: skip
    project = Project(root, env)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_double_spawn, args=(project, result, stop), daemon=True)
    t0 = time.monotonic()
    watcher.start()
    try:
        started = project.cli("start")
        if started.returncode != 0:
            result.notes.append(f"start failed: {started.stdout}{started.stderr}")
            return result
        inject(project, rng, result)
    finally:
        stop.set()
        watcher.join()
    result.seconds = time.monotonic() - t0
    check(project, result)
    if result.ok:
        result.notes = [n for n in result.notes if not n.startswith("final status")]
        shutil.rmtree(root, ignore_errors=True)
    for pid in [project.supervisor_pid(), *(p for ps in project.workers().values() for p in ps)]:
        kill(pid)  # whatever a failed run left behind
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unit-seconds", type=float, default=0.1)
    parser.add_argument("--keep", action="store_true", help="keep the projects of the runs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gsd-fault-"))
    results: list[Result] = []
    try:
        for i in range(1, args.runs + 1):
            r = one_run(base, i, args.seed, args.unit_seconds)
            results.append(r)
            faults = ", ".join(f"{k} {v}" for k, v in sorted(r.faults.items())) or "none"
            marks = " ".join(f"{name}={'ok' if ok else 'FAIL'}" for name, ok in (
                ("merged_once", r.merged_once), ("exact_cost", r.exact_cost),
                ("doctor_clean", r.doctor_clean), ("no_double_spawn", r.no_double_spawn),
                ("finished", r.finished)))  # fmt: skip
            print(f"run {i:2d}: {'PASS' if r.ok else 'FAIL'} {r.seconds:5.1f}s kills: {faults}; "
                  f"{marks}; cost ${r.recorded / NANOS_PER_USD:.3f}", flush=True)  # fmt: skip
            for note in r.notes:
                print(f"        {note}", flush=True)
    finally:
        if not args.keep and all(r.ok for r in results):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"projects of failed runs kept in {base}")
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.faults.items():
            total[k] = total.get(k, 0) + v
    held = sum(r.ok for r in results)
    print(
        f"\n{held} of {len(results)} runs held every invariant; kills: "
        + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
    )
    for name in ("merged_once", "exact_cost", "doctor_clean", "no_double_spawn", "finished"):
        print(f"  {name}: {sum(getattr(r, name) for r in results)}/{len(results)}")
    return 0 if held == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
