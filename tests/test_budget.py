"""Budget enforcement end to end: real supervisor, real fake workers, real git, real SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import textwrap
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from conftest import wait_until

from gsd_parallel_plugin.testing.builder import build_project

PREFS = {"enabled": True, "max_workers": 2}
BUDGET_MESSAGE = (
    "Budget ceiling ($0.10) reached — ${spent} spent. "
    "Raise parallel.budget_ceiling or remove it to continue."
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
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party plugin (loaded by GSD_PARALLEL_PLUGINS) that logs every budget hook call."""
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "budget_recorder.py").write_text(PLUGIN)
    log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugdir), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GSD_PARALLEL_PLUGINS", "budget_recorder")
    monkeypatch.setenv("BUDGET_TEST_LOG", str(log))
    return log


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
                total += Decimal(str(event["message"]["usage"]["cost"]["total"]))
    return total


def status(cli, project) -> dict:
    result = cli("--project", project.root, "status", "--json")
    assert result.code == 0, result.err
    return result.json()


def supervisor_gone(project) -> bool:
    from gsd_parallel_plugin.supervisor import supervisor_running

    return not supervisor_running(project.gsd / "parallel")


# --------------------------------------------------------------------------- the run ceiling


def test_ceiling_stops_every_worker_and_nothing_starts_again(tmp_path, cli, fake_worker, recorder):
    unit_cost, ceiling, workers = Decimal("0.02"), Decimal("0.10"), 2
    fake_worker(unit_seconds=0.3, unit_cost=float(unit_cost))
    project = build_project(
        tmp_path / "proj", milestones(3), preferences={**PREFS, "budget_ceiling": 0.10}
    )
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
    (budget_event_id,) = db(
        project, "SELECT id FROM events WHERE kind='budget' AND data LIKE '%exceeded%'"
    )[0]
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
    assert not any(
        psutil.pid_exists(w["pid"]) and psutil.Process(w["pid"]).status() != psutil.STATUS_ZOMBIE
        for w in data["workers"]
    )


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
