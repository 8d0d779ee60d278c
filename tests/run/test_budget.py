"""Budget enforcement end to end: real supervisor, real fake workers, real git, real SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from gsd_parallel_plugin.errors import UserError
from gsd_parallel_plugin.plugins import Hooks, create_plugin_manager
from gsd_parallel_plugin.run.budget import StallWatch, report_cost, stall_reason
from gsd_parallel_plugin.run.forecast import forecast, worker_milestones
from gsd_parallel_plugin.run.supervisor_lock import SupervisorLock
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing import wait_until
from gsd_parallel_plugin.testing.builder import build_project, write_preferences
from gsd_parallel_plugin.testing.scenarios import PREFS

BUDGET_MESSAGE = (
    "Budget ceiling ($0.10) reached — ${spent} spent. Raise parallel.budget_ceiling or remove it to continue."
)
PLUGIN = textwrap.dedent(
    """
    import json, os
    from gsd_parallel_plugin import hookimpl

    def _log(**record):
        with open(os.environ["BUDGET_TEST_LOG"], "a") as fh:
            fh.write(json.dumps({**record, "pid": os.getpid()}) + "\\n")

    @hookimpl
    def on_cost_update(milestone_id, delta_usd, worker_total_usd, run_total_usd, budget_ceiling):
        _log(hook="cost", mid=milestone_id, delta=delta_usd, worker=worker_total_usd,
             run=run_total_usd, ceiling=budget_ceiling)

    @hookimpl
    def on_budget_exceeded(run_total_usd, budget_ceiling):
        _log(hook="exceeded", run=run_total_usd, ceiling=budget_ceiling)
    """
)


@pytest.fixture
def recorder(hook_log_plugin) -> Path:
    """A third-party plugin (loaded by GSD_PARALLEL_PLUGINS) that logs every budget hook call."""
    return hook_log_plugin("budget_recorder", "BUDGET_TEST_LOG", PLUGIN)


def hook_calls(log: Path, hook: str) -> list[dict]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["hook"] == hook]


def milestones(n: int, tasks: int = 2) -> dict:
    """``n`` independent milestones of one slice with ``tasks`` tasks: tasks + 2 units each."""
    return {
        f"M00{i}": {
            "title": f"Feature {i}",
            "slices": {"S01": {f"T0{t}": [f"src/m{i}_t{t}.py"] for t in range(1, tasks + 1)}},
        }
        for i in range(1, n + 1)
    }


def by_id(status: dict) -> dict[str, dict]:
    return {w["id"]: w for w in status["workers"]}


def db(project, sql: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(project.gsd / "parallel" / "coordinator.db")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def logged_cost(project) -> Decimal:
    """What the workers really reported: every message_end cost in every stdout log."""
    total = Decimal(0)
    for log in (project.gsd / "parallel").glob("*.stdout.log"):
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "message_end":
                usage = event["message"].get("usage")  # custom and toolResult messages have none
                if usage:
                    total += Decimal(str(usage["cost"]["total"]))
    return total


def status(cli, project) -> dict:
    result = cli("--project", project.root, "status", "--json")
    assert result.code == 0, result.err
    return result.json()


def alive(pid: int | None) -> bool:
    if pid is None or not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def supervisor_gone(project) -> bool:
    from gsd_parallel_plugin.run.supervisor_lock import supervisor_running

    return not supervisor_running(project.gsd / "parallel")


# --------------------------------------------------------------------------- the run ceiling


def test_ceiling_stops_every_worker_and_nothing_starts_again(tmp_path, cli, fake_worker, recorder):
    unit_cost, ceiling, workers = Decimal("0.02"), Decimal("0.10"), 2
    fake_worker(unit_seconds=0.3, unit_cost=float(unit_cost))
    project = build_project(tmp_path / "proj", milestones(3), preferences={**PREFS, "budget_ceiling": 0.10})
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 1, result.err  # not everything completed
    final = result.json()
    total = Decimal(str(final["total_cost"]))
    # Every worker was stopped once the total reached the ceiling; the third never started.
    assert final["run"]["state"] == "budget_exceeded"
    states = {w["id"]: (w["state"], w["state_reason"]) for w in final["workers"]}
    assert states == {
        "M001": ("stopped", "budget ceiling reached"),
        "M002": ("stopped", "budget ceiling reached"),
    }
    assert total >= ceiling
    # The bound (budget.py): per worker, what it spends in one tick (one unit here: a unit
    # takes longer than a tick) plus the unit it was committing when SIGTERM came.
    assert total <= ceiling + workers * 2 * unit_cost
    assert total == logged_cost(project), "cost in the store = cost in the logs, exactly"
    # on_budget_exceeded fired once, with the total at that moment.
    exceeded = hook_calls(recorder, "exceeded")
    assert len(exceeded) == 1 and exceeded[0]["ceiling"] == 0.10
    assert ceiling <= Decimal(str(exceeded[0]["run"])) <= total
    # No worker started after the ceiling was reached.
    (budget_event_id,) = db(project, "SELECT id FROM events WHERE kind='budget' AND data LIKE '%exceeded%'")[
        0
    ]
    later = db(
        project,
        "SELECT message FROM events WHERE kind='state' AND id > ? AND"
        " (message LIKE '%-> running%' OR message LIKE '%-> starting%')",
        (budget_event_id,),
    )
    assert later == []
    # start and resume refuse with GSD's message; nothing is launched.
    expected = BUDGET_MESSAGE.format(spent=f"{total:.2f}")
    refused = cli("--project", project.root, "start")
    assert refused.code == 2 and refused.err.strip() == f"gsd-parallel: {expected}"
    resumed = cli("--project", project.root, "resume")
    assert resumed.code == 2 and expected in resumed.err
    # Status shows spent / ceiling and the state.
    text = cli("--project", project.root, "status")
    assert text.code == 0
    assert expected in text.out
    assert f"${total:.2f} of $0.10 budget ceiling" in text.out
    assert "stopped — budget ceiling reached" in text.out
    data = status(cli, project)
    assert data["budget"]["state"] == "exceeded"
    assert data["budget"]["spent"] == float(total) and data["budget"]["ceiling"] == 0.10
    assert len(data["workers"]) == 2 and supervisor_gone(project)
    assert not any(alive(w["pid"]) for w in data["workers"])
    # Raising the ceiling continues the same run: what the ceiling stopped runs again, the
    # total keeps counting, and every unit is paid exactly once.
    write_preferences(project.gsd, {**PREFS, "budget_ceiling": 1.0})
    again = cli("--project", project.root, "start", "--wait", "--json")
    assert again.code == 0, again.err
    done = again.json()
    assert {w["id"]: w["state"] for w in done["workers"]} == dict.fromkeys(
        ("M001", "M002", "M003"), "complete"
    )
    assert Decimal(str(done["total_cost"])) == 12 * unit_cost == logged_cost(project)
    # One run throughout; it stays open until its milestones are merged (auto_merge: confirm).
    assert db(project, "SELECT id, state FROM runs") == [(1, "active")]
    assert cli("--project", project.root, "merge").code == 0
    assert db(project, "SELECT id, state FROM runs") == [(1, "finished")]
    assert len(hook_calls(recorder, "exceeded")) == 1


def test_no_ceiling_tracks_any_cost_and_stops_nothing(tmp_path, cli, fake_worker, recorder):
    fake_worker(unit_seconds=0.01, unit_cost=249.75)
    project = build_project(tmp_path / "proj", milestones(1), preferences=PREFS)
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    final = result.json()
    assert by_id(final)["M001"]["state"] == "complete"
    assert Decimal(str(final["total_cost"])) == Decimal("999")
    assert final["budget"]["ceiling"] is None and final["budget"]["state"] == "ok"
    assert hook_calls(recorder, "exceeded") == []
    assert db(project, "SELECT message FROM events WHERE kind IN ('budget', 'stall')") == []
    assert "Budget" not in cli("--project", project.root, "status").out


def test_kill_9_supervisor_mid_run_keeps_the_exact_total(tmp_path, cli, fake_worker):
    unit_cost = Decimal("0.02")
    # Units slow enough that the kill lands between 0.04 and the 0.10 ceiling even when each
    # `status` poll is slow (CI under load read the holder only after the supervisor had
    # stopped everyone at the ceiling and left).
    fake_worker(unit_seconds=1.0, unit_cost=float(unit_cost))
    project = build_project(tmp_path / "proj", milestones(3), preferences={**PREFS, "budget_ceiling": 0.10})
    assert cli("--project", project.root, "start").code == 0
    # The holder as commands read it (a lock being rewritten reads as no holder for an instant).
    lock = wait_until(lambda: SupervisorLock.holder(project.gsd / "parallel"), timeout=30)
    wait_until(lambda: status(cli, project)["total_cost"] >= 0.04, timeout=30)
    os.kill(lock["pid"], signal.SIGKILL)  # raises if it is already gone: the test would be moot
    # The next command notices, starts a supervisor that adopts the workers, and the
    # ceiling still holds.
    final = wait_until(
        lambda: (
            (s := status(cli, project))["run"]["state"] == "budget_exceeded"
            and supervisor_gone(project)
            and not any(w["state"] in {"running", "stopping", "starting"} for w in s["workers"])
            and s
        ),
        timeout=60,
    )
    total = Decimal(str(final["total_cost"]))
    assert total == logged_cost(project), "nothing lost or counted twice across kill -9"
    assert total >= Decimal("0.10")  # (no bound while no supervisor watched: they ran on)
    # Stopped by the ceiling, or finished while no supervisor was there; never "crashed",
    # never restarted, and the third milestone never started.
    outcomes = {(w["state"], w["state_reason"]) for w in final["workers"]}
    assert outcomes <= {("stopped", "budget ceiling reached"), ("complete", None)}, outcomes
    assert sorted(by_id(final)) == ["M001", "M002"]
    assert all(w["restarts"] == 0 for w in final["workers"])
    assert len(db(project, "SELECT id FROM runs")) == 1


# --------------------------------------------------------------------------- envelopes


def test_envelope_pauses_one_milestone_while_the_other_completes(tmp_path, cli, fake_worker):
    unit_cost = Decimal("0.02")
    # One unit is the window between the budget being seen and the pause landing: 0.8 s holds
    # on a loaded machine (at 0.2 s the worker could finish its last unit first).
    fake_worker(unit_seconds=0.8, unit_cost=float(unit_cost))
    project = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Big", "slices": {
                "S01": {"T01": ["a1.txt"], "T02": ["a2.txt"]},
                "S02": {"T01": ["b1.txt"], "T02": ["b2.txt"]},
            }},  # 7 units: $0.14
            "M002": {"title": "Small", "slices": {"S01": {"T01": ["c.txt"]}}},  # 3 units
        },
        preferences={**PREFS, "milestone_budget": 0.10},
    )  # fmt: skip
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 1, result.err
    workers = by_id(result.json())
    assert workers["M002"]["state"] == "complete"
    assert Decimal(str(workers["M002"]["cost"])) == 3 * unit_cost
    m1 = workers["M001"]
    assert (m1["state"], m1["state_reason"]) == ("paused", "milestone budget reached")
    # Paused after the unit it was in: one tick plus one unit over, at most.
    assert Decimal("0.10") <= Decimal(str(m1["cost"])) <= Decimal("0.10") + 2 * unit_cost
    assert not alive(m1["pid"])
    assert (project.root / ".gsd-parallel" / "M001").is_dir()
    text = cli("--project", project.root, "status").out
    assert "paused — milestone budget reached" in text and "budget $0." in text
    # A plain resume would pause again at once; --budget must be above what it spent.
    plain = cli("--project", project.root, "resume", "M001")
    assert plain.code == 2 and "resume it with --budget USD above" in plain.err
    low = cli("--project", project.root, "resume", "M001", "--budget", "0.05")
    assert low.code == 2 and "is not above what M001 has spent" in low.err
    resumed = cli("--project", project.root, "resume", "M001", "--budget", "1")
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith("Resumed worker for M001.")
    final = wait_until(
        lambda: (s := status(cli, project)) and by_id(s)["M001"]["state"] == "complete" and s,
        timeout=30,
    )
    m1 = by_id(final)["M001"]
    assert Decimal(str(m1["cost"])) == 7 * unit_cost  # every unit paid once, pause or not
    assert m1["milestone_budget"] == 1.0


# --------------------------------------------------------------------------- burn without progress


def test_spinning_worker_is_paused_and_a_silent_one_is_not(tmp_path, cli, fake_worker):
    minutes = 0.03  # a 1.8 s window
    fake_worker(
        unit_seconds=0.05, unit_cost=0.01,
        spin_at="M001/S01/T02",  # spends every 0.05 s without finishing the unit
        hang_at="M002/S01/T02",  # spends on T01, then silence (a long test run)
    )  # fmt: skip
    project = build_project(tmp_path / "proj", milestones(2), preferences={**PREFS, "stall_minutes": minutes})
    assert cli("--project", project.root, "start").code == 0
    reason = stall_reason(minutes)
    assert reason == "spending without progress for 0.03 min"
    m1 = wait_until(lambda: (w := by_id(status(cli, project))["M001"])["state"] == "paused" and w, timeout=30)
    assert m1["state_reason"] == reason
    assert not alive(m1["pid"]), "a paused spinner spends nothing more"
    spent = status(cli, project)["total_cost"]
    assert db(project, "SELECT milestone_id FROM events WHERE kind='stall'") == [("M001",)]
    assert reason in (project.gsd / "parallel" / "supervisor.log").read_text()  # the host was told
    # The silent worker stays running well past two windows of silence.
    m2 = by_id(status(cli, project))["M002"]
    assert m2["cost"] > 0 and m2["last_activity"] is not None
    wait_until(lambda: time.time() - m2["last_activity"] > 2 * minutes * 60, timeout=30)
    m2 = by_id(status(cli, project))["M002"]
    assert m2["state"] == "running" and alive(m2["pid"])
    assert db(project, "SELECT milestone_id FROM events WHERE kind='stall'") == [("M001",)]
    assert status(cli, project)["total_cost"] == spent
    assert cli("--project", project.root, "stop", "M002").code == 0


# --------------------------------------------------------------------------- cost hooks


def test_cost_plugin_sees_every_delta_and_totals_add_up(tmp_path, cli, fake_worker, recorder):
    fake_worker(unit_seconds=0.02, unit_cost=0.013)
    project = build_project(tmp_path / "proj", milestones(3), preferences=PREFS)
    result = cli("--project", project.root, "start", "--wait", "--json")
    assert result.code == 0, result.err
    final = result.json()
    calls = hook_calls(recorder, "cost")
    assert calls and {c["pid"] for c in calls} == {calls[0]["pid"]}  # one supervisor
    per_mid: dict[str, Decimal] = {}
    run = Decimal(0)
    for c in calls:
        delta = Decimal(str(c["delta"]))
        assert delta > 0
        per_mid[c["mid"]] = per_mid.get(c["mid"], Decimal(0)) + delta
        run += delta
        assert Decimal(str(c["worker"])) == per_mid[c["mid"]]
        assert Decimal(str(c["run"])) == run
    assert run == Decimal(str(final["total_cost"])) == logged_cost(project) == 12 * Decimal("0.013")
    assert per_mid == {w["id"]: Decimal(str(w["cost"])) for w in final["workers"]}


def test_host_reported_cost_is_recorded_broadcast_and_enforced(tmp_path, cli, fake_worker, recorder):
    # The host's agents report no cost in their output; the host reports it itself.
    fake_worker(unit_seconds=0.02, unit_cost=0, hang_at="M001/S01/T02")
    project = build_project(tmp_path / "proj", milestones(1), preferences={**PREFS, "budget_ceiling": 0.10})
    assert cli("--project", project.root, "start").code == 0
    # T01 done and read, then the worker hangs: its own token count stays put.
    wait_until(lambda: by_id(status(cli, project))["M001"]["completed_units"] == 1)
    tokens_before = by_id(status(cli, project))["M001"]["tokens"]
    hooks = Hooks(create_plugin_manager(project.root).pm)
    reports = [report_cost(project.root, "M001", 0.04, hooks=hooks, tokens={"input": 10})
               for _ in range(3)]  # fmt: skip
    assert [r.run_total_usd for r in reports] == [0.04, 0.08, 0.12]
    assert [r.ceiling_reached for r in reports] == [False, False, True]
    mine = [c for c in hook_calls(recorder, "cost") if c["pid"] == os.getpid()]
    assert [(c["delta"], c["worker"], c["run"], c["ceiling"]) for c in mine] == [
        (0.04, 0.04, 0.04, 0.10), (0.04, 0.08, 0.08, 0.10), (0.04, 0.12, 0.12, 0.10),
    ]  # fmt: skip
    # The supervisor enforces the ceiling on reported cost like on logged cost.
    final = wait_until(
        lambda: (
            (s := status(cli, project))["run"]["state"] == "budget_exceeded"
            and by_id(s)["M001"]["state"] == "stopped"
            and s
        ),
        timeout=30,
    )
    assert by_id(final)["M001"]["state_reason"] == "budget ceiling reached"
    assert by_id(final)["M001"]["tokens"] == tokens_before + 30
    assert final["total_cost"] == 0.12
    assert len(hook_calls(recorder, "exceeded")) == 1
    with pytest.raises(UserError, match="M002 has no worker"):
        report_cost(project.root, "M002", 0.01, hooks=hooks)
    with pytest.raises(ValueError, match=">= 0"):
        report_cost(project.root, "M001", -0.01, hooks=hooks)


def test_report_cost_without_a_run(tmp_path):
    project = build_project(tmp_path / "proj", milestones(1), preferences=PREFS)
    with pytest.raises(UserError, match="no parallel run"):
        report_cost(project.root, "M001", 0.01)


# --------------------------------------------------------------------------- pure parts


def watch(window: float = 60.0) -> StallWatch:
    return StallWatch(window, pid=1, progress_at=0.0, units=0, cost_nanos=0)


def test_stall_needs_rising_cost_through_the_window_without_progress():
    w = watch()
    for t in range(0, 121, 5):  # spends every 5 s, no unit finishes
        w.observe(float(t), 0, t * 1000)
        if t < 60:
            assert not w.suspect(float(t)), t
    assert w.suspect(120.0)
    w.observe(121.0, 1, 121_000)  # a unit finished: progress resets the window
    assert not w.suspect(121.0)
    assert not w.suspect(170.0)


def test_quiet_or_once_spending_worker_is_never_stalled():
    quiet = watch()
    for t in range(0, 3600, 10):
        quiet.observe(float(t), 0, 0)
        assert not quiet.suspect(float(t))
    once = watch()
    once.observe(1.0, 0, 5_000_000)  # one LLM call, then a long quiet test run
    for t in range(2, 3600, 10):
        once.observe(float(t), 0, 5_000_000)
        assert not once.suspect(float(t))
    assert not watch(0).suspect(10_000.0)  # stall_minutes: 0 disables


def test_forecast_from_average_cost_per_unit(tmp_path):
    from types import SimpleNamespace

    project = build_project(tmp_path / "proj", milestones(2, tasks=3), git_init=False)
    from gsd_parallel_plugin.project import read_project

    p = read_project(project.root)

    def row(mid: str, cost_nanos: int, units: int, state: str = "running"):
        return SimpleNamespace(milestone_id=mid, cost_nanos=cost_nanos, units_done=units,
                               state=state, cost=cost_nanos / 1e9,
                               worktree=tmp_path / "none")  # fmt: skip

    rows = [row("M001", 60_000_000, 2), row("M002", 0, 0)]
    fc = forecast(rows, worker_milestones(rows, p), ceiling=0.20)
    m1, m2 = fc.worker("M001"), fc.worker("M002")
    # 3 tasks + complete-slice + complete-milestone = 5 units left (the plans show none done)
    assert (m1.units_left, m1.per_unit, m1.basis) == (5, 0.03, "own")
    assert m1.remaining == pytest.approx(0.15)
    assert (m2.basis, m2.per_unit, m2.units_left) == ("run", 0.03, 5)  # the run's average
    assert fc.total == pytest.approx(0.06 + 0.15 + 0.15) and fc.over_ceiling
    assert not forecast([row("M001", 0, 0)], {"M001": None}, None).over_ceiling
    assert forecast([row("M001", 0, 0)], {"M001": None}, None).partial
    done = forecast([row("M001", 60_000_000, 5, "complete")], {}, 0.01)
    assert done.workers == () and not done.over_ceiling


def test_store_total_matches_after_host_reports_concurrently(tmp_path):
    """add_cost reads its totals in its own transaction: exact under concurrent writers."""
    import threading

    db_path = tmp_path / "coordinator.db"
    with Store(db_path) as store:
        run = store.create_run(None)
        for mid in ("M001", "M002"):
            store.add_worker(run.id, mid, mid, tmp_path, f"gsd-parallel/{mid}")

    def hammer(mid: str) -> None:
        with Store(db_path) as s:
            for _ in range(200):
                s.add_cost(run.id, mid, 1_000_000)

    threads = [threading.Thread(target=hammer, args=(m,)) for m in ("M001", "M002")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Store(db_path) as store:
        assert store.run_total_nanos(run.id) == 400_000_000
        row, total = store.add_cost(run.id, "M001", 0)
        assert row.cost_nanos == 200_000_000 and total == 400_000_000
