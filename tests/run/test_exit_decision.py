"""Is the run done? ``decisions.exit_decision``, the one rule the supervisor closes a run by
(``Supervisor.finish``) and ``run.ensure.work_left`` asks before starting a supervisor to close it."""

from __future__ import annotations

import pytest

from gsd_parallel_plugin.run.decisions import ExitDecision, RunFacts, exit_decision

ROWS: list[tuple[str, RunFacts, ExitDecision]] = [
    ("every milestone complete and merged", RunFacts.of(["complete", "complete"]),
     ExitDecision(True, "nothing left to run")),
    ("an empty run", RunFacts.of([]), ExitDecision(True, "nothing left to run")),
    ("complete, waiting for its merge", RunFacts.of(["complete", "complete"], ["M002", "M001"]),
     ExitDecision(False, "waiting for M001, M002 to be merged")),
    ("a plan not committed yet", RunFacts.of(["complete"], uncommitted=["M003"]),
     ExitDecision(False, "waiting for the plans of M003 to be committed")),
    ("the merge is named before the plan", RunFacts.of(["complete"], ["M001"], ["M003"]),
     ExitDecision(False, "waiting for M001 to be merged")),
    ("something can start", RunFacts.of(["complete"], startable=["M004"]),
     ExitDecision(False, "nothing left to run")),
    ("a stopped worker", RunFacts.of(["complete", "stopped"]), ExitDecision(False, "nothing left to run")),
    ("a paused worker", RunFacts.of(["paused"]), ExitDecision(False, "nothing left to run")),
    ("a failed worker", RunFacts.of(["failed", "complete"]), ExitDecision(False, "nothing left to run")),
    ("a blocked worker, a merge waiting", RunFacts.of(["blocked", "complete"], ["M002"]),
     ExitDecision(False, "waiting for M002 to be merged")),
]  # fmt: skip


@pytest.mark.parametrize(("facts", "expected"), [(f, d) for _, f, d in ROWS], ids=[r[0] for r in ROWS])
def test_exit_decision(facts: RunFacts, expected: ExitDecision) -> None:
    assert exit_decision(facts) == expected
