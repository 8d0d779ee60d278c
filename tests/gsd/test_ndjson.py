"""Reading worker NDJSON logs: offsets, garbage, enormous lines, exact cost, announcements."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsd_parallel_plugin.gsd.output import (
    OUTCOME_EXIT_CODES,
    Progress,
    classify_notice,
    infer_outcome,
    read_new_events,
    read_progress,
    summarize,
)
from gsd_parallel_plugin.money import cost_to_nanos


def cost_event(total: Any, **tokens: int) -> dict[str, Any]:
    usage = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, **tokens, "cost": {"total": total}}
    return {"type": "message_end", "message": {"role": "assistant", "usage": usage}}


def notify(message: str) -> dict[str, Any]:
    return {"type": "extension_ui_request", "id": "n", "method": "notify", "message": message}


def line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event) + "\n").encode()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def read_all(path: Path, offset: int = 0, **kw: int) -> tuple[list[dict[str, Any]], int, int]:
    """Read to the end in as many calls as it takes; (events, final offset, skipped)."""
    events: list[dict[str, Any]] = []
    skipped = 0
    while True:
        chunk = read_new_events(path, offset, **kw)
        assert chunk.new_offset >= offset
        events += chunk.events
        skipped += chunk.skipped_lines
        if chunk.new_offset == offset:
            return events, offset, skipped
        offset = chunk.new_offset


# --- read_new_events ------------------------------------------------------------------------


def test_partial_line_is_left_until_its_newline_arrives(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    first, second = line(cost_event(0.5)), line(cost_event(0.25))
    log.write_bytes(first + second[:10])
    chunk = read_new_events(log, 0)
    assert [e["message"]["usage"]["cost"]["total"] for e in chunk.events] == [0.5]
    assert chunk.new_offset == len(first)
    assert chunk.skipped_lines == 0

    again = read_new_events(log, chunk.new_offset)  # nothing new: nothing read, nothing moved
    assert again.events == [] and again.new_offset == len(first)

    append(log, second[10:])
    done = read_new_events(log, chunk.new_offset)
    assert [e["message"]["usage"]["cost"]["total"] for e in done.events] == [0.25]
    assert done.new_offset == len(first) + len(second)


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(
        b"\n"  # blank
        b"   \r\n"  # whitespace
        b"[headless] not json\n"
        b"[1, 2, 3]\n"  # JSON, not an object
        b"42\n"
        b'"string"\n'
        b'{"type": "message_end", "broken": \n'  # truncated object
        b"\xff\xfe{}\n"  # invalid UTF-8
        + b"[" * 100_000
        + b"\n"  # nesting deep enough to hit the recursion limit
        + line(cost_event(0.125))
        + b'{"type":"agent_start"}\r\n'  # CRLF is fine
    )
    chunk = read_new_events(log, 0)
    assert [e["type"] for e in chunk.events] == ["message_end", "agent_start"]
    assert chunk.skipped_lines == 9
    assert chunk.new_offset == log.stat().st_size


def test_enormous_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    with log.open("wb") as fh:
        fh.write(line(cost_event(0.5)))
        fh.write(b'{"type": "message_end", "junk": "')
        for _ in range(5):  # 5 MiB line, written in pieces so the test itself stays small
            fh.write(b"x" * (1 << 20))
        fh.write(b'"}\n')
        fh.write(line(cost_event(0.25)))
    tracemalloc.start()
    try:
        events, offset, skipped = read_all(log, max_bytes=256 << 10, max_line=64 << 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e["message"]["usage"]["cost"]["total"] for e in events] == [0.5, 0.25]
    assert skipped == 1
    assert offset == log.stat().st_size
    assert peak < 2 << 20  # the 5 MiB line was never held in memory


def test_enormous_line_with_default_limits_is_skipped_in_one_pass(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(b"y" * (5 << 20) + b"\n" + line(cost_event(0.5)))
    events, offset, skipped = read_all(log)
    assert skipped == 1 and len(events) == 1 and offset == log.stat().st_size


def test_growing_enormous_line_whose_tail_is_valid_json_is_not_counted(tmp_path: Path) -> None:
    """The tail of a garbage line can parse as an event; it must never be counted."""
    log = tmp_path / "w.log"
    log.write_bytes(line(cost_event(0.5)) + b"noise " * 300)  # > max_line, no newline yet
    chunk = read_new_events(log, 0, max_bytes=4096, max_line=1024)
    assert len(chunk.events) == 1
    assert chunk.new_offset > len(line(cost_event(0.5)))  # moved into the long line
    assert chunk.skipped_lines == 0  # counted when it ends, not now

    append(log, b"more noise " * 10)  # still growing
    middle = read_new_events(log, chunk.new_offset, max_bytes=4096, max_line=1024)
    assert middle.events == [] and middle.new_offset == log.stat().st_size

    append(log, line(cost_event(99.0)) + line(cost_event(0.25)))  # tail is a valid event
    end = read_new_events(log, middle.new_offset, max_bytes=4096, max_line=1024)
    assert [e["message"]["usage"]["cost"]["total"] for e in end.events] == [0.25]
    assert end.skipped_lines == 1
    assert summarize(chunk.events + middle.events + end.events).cost_nanos == 750_000_000


def test_truncated_file_restarts_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(line(cost_event(0.5)) * 3)
    first = read_new_events(log, 0)
    assert len(first.events) == 3 and not first.restarted
    log.write_bytes(line(cost_event(0.25)))  # rotated: shorter than the stored offset
    again = read_new_events(log, first.new_offset)
    assert again.restarted and again.start_offset == 0
    assert [e["message"]["usage"]["cost"]["total"] for e in again.events] == [0.25]
    assert again.new_offset == log.stat().st_size


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_new_events(tmp_path / "nope.log", 0).events == []
    gone = read_new_events(tmp_path / "nope.log", 100)
    assert gone.new_offset == 0 and gone.restarted


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    costs=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=12),
    max_bytes=st.integers(min_value=1, max_value=400),
)
def test_any_write_and_read_interleaving_counts_every_event_once(
    tmp_path_factory: Any, costs: list[int], cuts: list[int], max_bytes: int
) -> None:
    """Whatever the write boundaries and read sizes, offsets only grow and each event counts once."""
    log = tmp_path_factory.mktemp("h") / "w.log"
    data = b"".join(line(cost_event(c / 1000)) + b"junk\n" for c in costs)
    points = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    log.write_bytes(b"")
    offset, events, skipped, written = 0, [], 0, 0
    for point in points:
        append(log, data[written:point])
        written = point
        chunk = read_new_events(log, offset, max_bytes=max_bytes, max_line=200)
        assert chunk.new_offset >= offset and not chunk.restarted
        offset, events, skipped = chunk.new_offset, events + chunk.events, skipped + chunk.skipped_lines
    rest, offset, more = read_all(log, offset, max_bytes=max_bytes, max_line=200)
    assert offset == len(data)
    assert summarize(events + rest).cost_nanos == sum(c * 1_000_000 for c in costs)
    assert skipped + more == len(costs)


# --- summarize ----------------------------------------------------------------------------


def test_cost_is_exact_in_nanos_and_tokens_are_summed() -> None:
    events = [cost_event(0.01, input=1200, output=340, cacheRead=5, cacheWrite=1)] * 1000
    progress = summarize(events)
    assert progress.cost_nanos == 10 * 1_000_000_000
    assert progress.tokens == {"input": 1_200_000, "output": 340_000, "cacheRead": 5000, "cacheWrite": 1000}
    assert progress.messages == 1000
    assert sum([0.01] * 1000) != 10.0  # what float addition would have given


def test_cost_to_nanos_takes_the_decimal_the_float_prints_as() -> None:
    assert cost_to_nanos(0.0087) == 8_700_000
    assert cost_to_nanos(1) == 1_000_000_000
    assert cost_to_nanos(0) == 0
    for bad in (float("nan"), float("inf"), -0.5, True, "0.1", None, [0.1]):
        assert cost_to_nanos(bad) is None


def test_bad_costs_and_shapes_are_ignored_not_fatal() -> None:
    events = [
        cost_event(float("nan")),
        cost_event(-1.0),
        cost_event("0.5"),
        cost_event(True),
        {"type": "message_end"},
        {"type": "message_end", "message": "text"},
        {"type": "message_end", "message": {"usage": {"cost": 3}}},
        cost_event(0.25, input=-5, output=True),  # only the cost is usable here
        {"type": 7},
        {},
        notify(None),  # type: ignore[arg-type]
    ]
    progress = summarize(events)
    assert progress.cost_nanos == 250_000_000
    assert progress.tokens == {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
    assert progress.messages == 8


def test_units_from_the_fake_workers_notices() -> None:
    events = [
        {"type": "agent_start"},
        notify("Starting plan-slice M001/S01"),
        cost_event(0.01),
        notify("Finished plan-slice M001/S01"),
        notify("Starting execute-task M001/S01/T01"),
        {"type": "tool_execution_start", "toolCallId": "c1", "toolName": "edit", "args": {"path": "a"}},
    ]
    progress = summarize(events)
    assert progress.current_unit == "execute-task M001/S01/T01" and progress.unit_known
    assert progress.units_finished == 1
    assert progress.last_notify == "Starting execute-task M001/S01/T01"
    assert progress.last_event_type == "tool_execution_start"

    later = summarize([cost_event(0.01), notify("Finished execute-task M001/S01/T01")])
    assert later.current_unit is None and later.unit_known  # authoritative: now idle
    quiet = summarize([cost_event(0.01)])
    assert not quiet.unit_known  # says nothing about the unit

    total = progress.then(quiet)
    assert total.current_unit == "execute-task M001/S01/T01"  # an unknown batch keeps it
    total = total.then(later)
    assert total.current_unit is None and total.units_finished == 2
    assert total.cost_nanos == 30_000_000 and total.events == len(events) + 3


def test_units_from_gsd_lifecycle_tools_and_unit_complete_notices() -> None:
    start = {
        "type": "tool_execution_start",
        "toolCallId": "t9",
        "toolName": "mcp__gsd__gsd_complete_task",
        "args": {"milestoneId": "M002", "sliceId": "S01", "taskId": "T03"},
    }
    progress = summarize([start])
    assert progress.current_unit == "execute-task M002/S01/T03"
    end = {
        "type": "tool_execution_end",
        "toolCallId": "t9",
        "toolName": "gsd_complete_task",
        "result": {},
        "isError": False,
    }
    both = summarize([start, end, notify("Unit complete: execute-task M002/S01/T03")])
    assert both.units_finished == 1 and both.current_unit is None  # one unit, counted once
    failed = summarize([start, {**end, "isError": True}])
    assert failed.units_finished == 0
    other = summarize([{"type": "tool_execution_end", "toolName": "bash", "isError": False}])
    assert other.units_finished == 0 and not other.unit_known


def test_a_unit_ended_twice_across_two_reads_counts_once() -> None:
    """GSD's lifecycle tool and the ``Finished``/``Unit complete`` notice both end a unit. A
    read that stops between them (the supervisor reads what the log holds so far) must not
    count it twice: under load the budget test saw 2 units where one had finished."""
    start = {"type": "tool_execution_start", "toolCallId": "t1", "toolName": "gsd_complete_task",
             "args": {"milestoneId": "M001", "sliceId": "S01", "taskId": "T01"}}  # fmt: skip
    end = {
        "type": "tool_execution_end",
        "toolCallId": "t1",
        "toolName": "gsd_complete_task",
        "isError": False,
    }
    events = [
        start, end, notify("Finished execute-task M001/S01/T01"),
        notify("Starting execute-task M001/S01/T02"), notify("Finished execute-task M001/S01/T02"),
    ]  # fmt: skip
    for cut in range(len(events) + 1):
        first = summarize(events[:cut])
        # The supervisor's second read: the unit the first left running, the last it finished.
        second = summarize(events[cut:], current_unit=first.current_unit)
        assert first.units_finished + second.units_finished_after(first.last_finished) == 2, cut
        folded = first.then(second)
        assert folded.units_finished == 2, cut
        assert folded.finished_units == ("execute-task M001/S01/T01", "execute-task M001/S01/T02"), cut
    assert summarize(events[2:3]).units_finished_after(None) == 1  # nothing read before: it counts


def test_gsd_notice_vocabulary() -> None:
    assert classify_notice("Auto-mode paused — M001 resumes from disk on the next run") == "paused"
    assert classify_notice("Step-mode paused: provider error") == "paused"
    assert classify_notice("Auto-mode blocked — validation gate") == "blocked"
    assert classify_notice("merge conflict — resolve manually and re-run /gsd auto") == "blocked"
    assert classify_notice("Auto-mode stopped") == "stopped"
    assert classify_notice("Auto-mode stopped — stop requested for M001") == "stopped"
    assert classify_notice("No active milestone") == "stopped"
    assert classify_notice("Auto-mode stopped — milestone M002 complete") == "complete"
    assert classify_notice("Auto-mode complete") == "complete"
    assert classify_notice("Milestone M001-abc123 is already complete — nothing to do") == "complete"
    assert classify_notice("Override resolved — rewrite-docs completed") is None
    assert classify_notice("Starting execute-task M001/S01/T01") is None


def test_announcements_belong_to_the_latest_run() -> None:
    old_run = summarize([{"type": "extensions_ready"}, notify("Auto-mode paused — resume later")])
    assert old_run.paused_announced and old_run.announcement == "paused"
    new_run = summarize([{"type": "extensions_ready"}, notify("Starting execute-task M001/S01/T02")])
    both = old_run.then(new_run)
    assert not both.paused_announced and both.announcement is None
    # GSD starts an agent session per unit: that is not a new run, the flags stay.
    unit = summarize([{"type": "agent_start"}])
    assert old_run.then(unit).paused_announced
    done = both.then(summarize([notify("Auto-mode stopped — milestone M001 complete")]))
    assert done.completed_announced and done.stopped_announced and done.announcement == "complete"
    assert done.current_unit is None


# --- infer_outcome ------------------------------------------------------------------------


def test_infer_outcome_from_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "M001.stdout.log"
    assert infer_outcome(log, False) == "crashed"  # no log at all
    assert infer_outcome(log, True) == "complete"  # the SUMMARY decides

    log.write_bytes(line({"type": "extensions_ready"}) + line(notify("Auto-mode paused — later")))
    assert infer_outcome(log, False) == "paused"
    size = log.stat().st_size

    append(log, line({"type": "extensions_ready"}) + line(notify("Starting execute-task M001/S01/T01")))
    assert infer_outcome(log, False) == "crashed"  # the new run said nothing before dying

    append(log, line(notify("Auto-mode stopped — stop requested for M001")) + b'{"partial')
    assert infer_outcome(log, False) == "stopped"
    assert infer_outcome(log, False, since_offset=size) == "stopped"

    log.write_bytes(line(notify("Auto-mode paused — later")))
    size = log.stat().st_size
    append(log, b"[junk]\n")
    assert infer_outcome(log, False, since_offset=size) == "crashed"  # an old notice does not count

    log.write_bytes(line(notify("Auto-mode blocked — needs a human")))
    assert infer_outcome(log, False) == "blocked"
    log.write_bytes(line(notify("Auto-mode stopped — milestone M001 complete")))
    assert infer_outcome(log, False) == "stopped"  # said complete, but no terminal SUMMARY
    assert {k: OUTCOME_EXIT_CODES[k] for k in ("paused", "blocked", "stopped")} == {
        "paused": 10,
        "blocked": 10,
        "stopped": 0,
    }


def test_read_progress_reads_only_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(line(cost_event(1.0)) * 1000 + line(notify("Auto-mode paused")))
    progress = read_progress(log, tail_bytes=4096)
    assert progress.paused_announced
    assert 0 < progress.messages < 1000  # only the last few KiB were read
    assert read_progress(tmp_path / "missing.log") == Progress()


def test_gsd_giving_up_on_the_provider_is_remembered_until_the_model_answers() -> None:
    assistant = {"type": "message_end", "message": {"role": "assistant", "usage": {"cost": {"total": 0.01}}}}
    failed_answer = {"type": "message_end", "message": {"role": "assistant", "stopReason": "error"}}
    retry = {"type": "auto_retry_start", "attempt": 1}
    gave_up = {"type": "auto_retry_end", "success": False, "finalError": "500 Internal Server Error"}
    quiet = summarize([{"type": "extensions_ready"}, {"type": "message_end", "message": {"role": "custom"}}])
    assert quiet.model_events == 0 and quiet.provider_failure is None  # no model call yet
    answered = summarize([assistant])
    assert answered.model_events == 1 and answered.provider_failure is None
    failed = answered.then(summarize([failed_answer, retry, retry, retry, gave_up]))
    assert failed.provider_failure == "500 Internal Server Error" and failed.model_events == 1
    assert failed.then(summarize([notify("still here")])).provider_failure == "500 Internal Server Error"
    assert failed.then(summarize([assistant])).provider_failure is None  # it answers again
    assert failed.then(summarize([{"type": "auto_retry_end", "success": True}])).provider_failure is None
