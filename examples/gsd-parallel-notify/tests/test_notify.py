"""gsd-parallel-notify, tested with gsd_parallel_plugin.testing: a real run with the fake worker."""

from __future__ import annotations

import json
import sys

import gsd_parallel_notify as notify
import pytest

EVENT_HOOKS = {"on_worker_state_change", "on_milestone_complete", "on_merge_complete", "on_budget_exceeded"}


def read_events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_real_run_writes_every_event_in_order(
    gsd_project, gsd_host, gsd_recorder, gsd_fake_worker, tmp_path, monkeypatch
):
    events_file = tmp_path / "out" / "events.jsonl"
    monkeypatch.setenv(notify.ENV_FILE, str(events_file))
    gsd_fake_worker(unit_seconds=0, unit_cost=0.01)
    project = gsd_project(
        {
            "M001": {"title": "API", "slices": {"S01": {"T01": ["src/api.py"]}}},
            "M002": {"title": "Web", "slices": {"S01": {"T01": ["src/web.py"]}}},
        },
        preferences={"enabled": True, "max_workers": 2, "auto_merge": "auto"},
    )
    host = gsd_host(project, plugins=[notify], recorder=gsd_recorder)
    result = host.run("start --wait")
    assert result.exit_code == 0, host.errors

    events = read_events(events_file)
    # Exactly the broadcast calls the coordinator made, in the same order.
    expected = [
        (call.name.removeprefix("on_"), call.kwargs.get("milestone_id"))
        for call in gsd_recorder.calls
        if call.name in EVENT_HOOKS
    ]
    assert [(e["event"], e.get("milestone_id")) for e in events] == expected
    for mid in ("M001", "M002"):
        mine = [e for e in events if e.get("milestone_id") == mid]
        assert [(e["event"], e.get("new_state")) for e in mine] == [
            ("worker_state_change", "running"),
            ("worker_state_change", "complete"),
            ("milestone_complete", None),
            ("merge_complete", None),
        ]
        assert mine[2]["branch"] == f"gsd-parallel/{mid}"
        assert mine[2]["worktree"].endswith(f".gsd-parallel/{mid}")
        assert mine[3]["branch"] == "main"
        assert mine[3]["commit"] in project.git("log", "--format=%H", "main").split()
    assert all(e["at"].endswith("Z") for e in events)


def test_a_run_over_budget_writes_budget_exceeded(
    gsd_project, gsd_host, gsd_fake_worker, tmp_path, monkeypatch
):
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv(notify.ENV_FILE, str(events_file))
    gsd_fake_worker(unit_seconds=0.5, unit_cost=0.01)  # the budget stop lands mid-run
    project = gsd_project(
        {"M001": {"slices": {"S01": {"T01": ["a.txt"], "T02": ["b.txt"]}, "S02": {"T01": ["c.txt"]}}}},
        preferences={"enabled": True, "budget_ceiling": 0.02},
    )
    gsd_host(project, plugins=[notify]).run("start --wait")
    events = read_events(events_file)
    (exceeded,) = [e for e in events if e["event"] == "budget_exceeded"]
    assert exceeded["budget_ceiling"] == 0.02 and exceeded["run_total_usd"] >= 0.02
    states = [e.get("new_state") for e in events if e["event"] == "worker_state_change"]
    assert states[-2:] == ["stopping", "stopped"]


def command_writing_to(path):
    script = "import os, sys; open(sys.argv[1], 'a').write(os.environ['GSD_EVENT'] + ' ' + sys.stdin.read())"
    return json.dumps([sys.executable, "-c", script, str(path)])


def test_command_gets_each_event_on_stdin(gsd_project, gsd_host, tmp_path, monkeypatch):
    received = tmp_path / "received.txt"
    monkeypatch.setenv(notify.ENV_COMMAND, command_writing_to(received))
    host = gsd_host(gsd_project({"M001": {}}), plugins=[notify])
    host.hooks.on_merge_complete("M001", "abc123", "main")
    host.hooks.on_budget_exceeded(5.25, 5.0)
    lines = received.read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["merge_complete", "budget_exceeded"]
    first, second = (json.loads(line.split(" ", 1)[1]) for line in lines)
    assert first | {"at": None} == {
        "event": "merge_complete",
        "at": None,
        "milestone_id": "M001",
        "commit": "abc123",
        "branch": "main",
    }
    assert second["run_total_usd"] == 5.25 and second["budget_ceiling"] == 5.0
    assert host.hooks.broadcast_errors == []


def test_failing_command_is_a_named_warning_and_the_line_is_still_written(
    gsd_project, gsd_host, tmp_path, monkeypatch
):
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv(notify.ENV_FILE, str(events_file))
    monkeypatch.setenv(
        notify.ENV_COMMAND, json.dumps([sys.executable, "-c", "import sys; sys.exit('no route to pager')"])
    )
    host = gsd_host(gsd_project({"M001": {}}), plugins=[notify])
    host.hooks.on_budget_exceeded(3.0, 2.0)
    assert [e["event"] for e in read_events(events_file)] == ["budget_exceeded"]
    assert (
        f"warning: plugin 'gsd_parallel_notify' raised in on_budget_exceeded: NotifyError: notify command {sys.executable} exited 1: no route to pager"
        in host.errors
    )


def test_event_filter_and_configuration_errors(tmp_path):
    out = tmp_path / "e.jsonl"
    env = {notify.ENV_FILE: str(out), notify.ENV_EVENTS: "merge_complete"}
    notify.emit("worker_state_change", {"milestone_id": "M001"}, env)
    notify.emit("merge_complete", {"milestone_id": "M001"}, env)
    assert [e["event"] for e in read_events(out)] == ["merge_complete"]
    with pytest.raises(notify.NotifyError, match="unknown event"):
        notify.load_config({notify.ENV_EVENTS: "on_merge_complete"})
    with pytest.raises(notify.NotifyError, match="must be a JSON array of strings"):
        notify.load_config({notify.ENV_COMMAND: "notify-send gsd"})
    assert notify.load_config({}) == notify.NotifyConfig()


def test_entry_point_is_installed(gsd_project, gsd_host):
    host = gsd_host(gsd_project({"M001": {}}), autoload=True)
    info = {i.name: i for i in host.plugins.info()}
    assert info["gsd_parallel_notify"].distribution == "gsd-parallel-notify"
    assert info["gsd_parallel_notify"].hooks == [
        "on_budget_exceeded",
        "on_merge_complete",
        "on_milestone_complete",
        "on_worker_state_change",
    ]
