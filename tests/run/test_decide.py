"""The exit decision table of the supervisor (``decisions.decide_exit``), row by row.

Each row: the facts when a worker's process has gone, and the state and reason it settles in.
The supervisor gathers these facts from real processes and logs (``tests/test_supervisor.py``,
``tests/test_gsd_outcomes.py``); here every branch of the rule is reached without them.
"""

from __future__ import annotations

import pytest

from gsd_parallel_plugin.models import StateReason, WorkerState
from gsd_parallel_plugin.run.decisions import ExitFacts, SettledState, decide_exit, first_line, pause_reason

S = WorkerState
ROWS: list[tuple[str, ExitFacts, SettledState]] = [
    # an isolation breach fails whatever it finished (never merged blindly)
    ("isolation beats complete", ExitFacts(0, "isolation", complete=True, block_reason="breach"),
     SettledState(S.FAILED, "breach")),
    ("complete on exit 0", ExitFacts(0, complete=True), SettledState(S.COMPLETE)),
    ("complete even when stopped", ExitFacts(0, "stop", complete=True), SettledState(S.COMPLETE)),
    ("complete, adopted", ExitFacts(None, complete=True), SettledState(S.COMPLETE)),
    ("provider stop blocks", ExitFacts(11, "provider", block_reason="provider failed: 529"),
     SettledState(S.BLOCKED, "provider failed: 529")),
    ("startup stop blocks", ExitFacts(None, "startup", block_reason="no model call"),
     SettledState(S.BLOCKED, "no model call")),
    # adopted workers: the code comes from the log, or from what we asked
    ("adopted, log says 0", ExitFacts(None, log_code=0), SettledState(S.STOPPED,
     "GSD exited without completing the milestone")),
    ("adopted, log says 10", ExitFacts(None, log_code=10, notice="Blocked: tests"),
     SettledState(S.BLOCKED, "Blocked: tests")),
    ("adopted stop, log silent", ExitFacts(None, "stop"), SettledState(S.STOPPED, None)),
    ("adopted budget stop, log silent", ExitFacts(None, "budget"), SettledState(S.STOPPED, StateReason.BUDGET)),
    ("adopted pause, log silent", ExitFacts(None, "pause", state_reason="milestone budget reached"),
     SettledState(S.PAUSED, "milestone budget reached")),
    ("adopted, nothing known", ExitFacts(None), SettledState(S.CRASHED, "worker vanished (exit status unknown)")),
    # exit 0 without completing: how it reads depends on what we asked
    ("budget stop, exit 0", ExitFacts(0, "budget"), SettledState(S.STOPPED, StateReason.BUDGET)),
    ("user stop, exit 0", ExitFacts(0, "stop"), SettledState(S.STOPPED, None)),
    ("exit 0 unasked, with notice", ExitFacts(0, notice="out of tasks"),
     SettledState(S.STOPPED, "GSD exited without completing the milestone: out of tasks")),
    ("pause then exit 0", ExitFacts(0, "pause"), SettledState(S.STOPPED,
     "GSD exited without completing the milestone")),
    # exit 10: a pause we asked for, or GSD's own block
    ("graceful pause, exit 10", ExitFacts(10, "pause", state_reason="pause requested"),
     SettledState(S.PAUSED, None)),
    ("envelope pause, exit 10", ExitFacts(10, "pause", state_reason="milestone budget reached"),
     SettledState(S.PAUSED, "milestone budget reached")),
    ("exit 10 unasked, with notice", ExitFacts(10, notice="Paused: provider error"),
     SettledState(S.BLOCKED, "Paused: provider error")),
    ("exit 10 unasked, silent", ExitFacts(10), SettledState(S.BLOCKED, "GSD reported the milestone blocked (exit 10)")),
    ("exit 10 on a stop", ExitFacts(10, "stop", notice="blocked"), SettledState(S.BLOCKED, "blocked")),
    # interrupted on purpose
    ("interrupting pause, exit 11", ExitFacts(11, "pause", state_reason="spending without progress for 5 min"),
     SettledState(S.PAUSED, "spending without progress for 5 min")),
    ("pause killed by a signal", ExitFacts(-9, "pause"), SettledState(S.PAUSED, None)),
    ("pause, another code crashes", ExitFacts(1, "pause", stderr_last="boom"),
     SettledState(S.CRASHED, "exit code 1: boom")),
    ("stop, SIGTERM'd", ExitFacts(11, "stop"), SettledState(S.STOPPED, None)),
    ("stop, SIGKILLed", ExitFacts(-9, "stop"), SettledState(S.STOPPED, None)),
    ("budget stop, SIGTERM'd", ExitFacts(-15, "budget"), SettledState(S.STOPPED, StateReason.BUDGET)),
    # nobody asked: a crash, with the last stderr line
    ("exit 1 with stderr", ExitFacts(1, stderr_last="Traceback: boom"),
     SettledState(S.CRASHED, "exit code 1: Traceback: boom")),
    ("exit 11 unasked", ExitFacts(11), SettledState(S.CRASHED, "exit code 11")),
    ("killed by signal 9", ExitFacts(-9), SettledState(S.CRASHED, "killed by signal 9")),
]  # fmt: skip


@pytest.mark.parametrize(("facts", "expected"), [(f, o) for _, f, o in ROWS], ids=[r[0] for r in ROWS])
def test_decide_exit(facts: ExitFacts, expected: SettledState) -> None:
    assert decide_exit(facts) == expected


def test_first_line_and_pause_reason() -> None:
    assert first_line("\n  Blocked: tests fail \nmore") == "Blocked: tests fail"
    assert first_line(None) is None and first_line(" \n ") is None
    assert pause_reason("pause requested") is None  # the user's pause: no reason shown
    assert pause_reason(None) is None
    assert pause_reason("milestone budget reached") == "milestone budget reached"
