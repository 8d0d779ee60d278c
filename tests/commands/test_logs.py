"""``logs``: readable activity from real NDJSON logs (the fake worker's and hand-written
GSD-style ones with garbage in them), stderr, ``-n``, and ``-f`` as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gsd_parallel_plugin.testing.builder import (
    GIT_IDENTITY,
    BuiltProject,
    build_project,
    run_fake_gsd,
)
from gsd_parallel_plugin.testing.scenarios import ONE


@pytest.fixture
def project(tmp_path: Path) -> BuiltProject:
    built = build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Core", "slices": {"S01": {"T01": ["src/a.py"], "T02": ["src/b.py"]}}},
            "M002": {"title": "Auth"},
        },
        preferences={"enabled": True},
    )
    (built.gsd / "parallel").mkdir()
    return built


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", *map(str, args)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ev(**fields: object) -> str:
    return json.dumps(fields) + "\n"


def cost_event(total: float, tokens: int = 100) -> str:
    usage = {"input": tokens, "output": 0, "cacheRead": 0, "cacheWrite": 0, "cost": {"total": total}}
    return ev(type="message_end", message={"role": "assistant", "usage": usage})


def notify(message: str, kind: str = "info") -> str:
    return ev(type="extension_ui_request", id="n", method="notify", message=message, notifyType=kind)


def test_a_real_fake_worker_log(project: BuiltProject) -> None:
    parallel = project.gsd / "parallel"
    env = {
        **os.environ, **GIT_IDENTITY, "GSD_MILESTONE_LOCK": "M001", "GSD_FAKE_UNIT_SECONDS": "0",
        "GSD_FAKE_UNIT_COST": "0.125", "GSD_PROJECT_ROOT": str(project.root),
    }  # fmt: skip
    with open(parallel / "M001.stdout.log", "wb") as out, open(parallel / "M001.stderr.log", "wb") as err:
        code = run_fake_gsd(project.root, "M001", env=env, stdout=out, stderr=err).returncode
    assert code == 0
    done = cli("--project", project.root, "logs", "M001")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["# Activity of M001", "", "── worker run started"]
    units = ["execute-task M001/S01/T01", "execute-task M001/S01/T02", "complete-slice M001/S01",
             "complete-milestone M001"]  # fmt: skip
    starts = [line for line in lines if line.startswith("▶ ")]
    ends = [line for line in lines if line.startswith("✔ ")]
    assert starts == [f"▶ Starting {u}" for u in units]
    assert ends == [f"✔ {u} complete" for u in units]  # GSD's lifecycle tool ends the unit, once
    assert "  · write src/a.py" in lines
    costs = [line for line in lines if line.startswith("   cost ")]
    assert len(costs) == 8 and costs[-1].startswith("   cost +$0.0625 (total $0.5000)")  # 2 per unit
    assert "• Auto-mode stopped — all milestones complete. Session: $0.500 · 10.0k tokens · 4 units" in lines
    summary = next(line for line in lines if line.startswith("Summary: "))
    assert summary.startswith("Summary: 4 unit(s) finished") and "cost $0.5000" in summary
    assert any(line.startswith("## stderr") for line in lines)
    # Order: each unit starts, then its tools, its cost, its end.
    first = lines.index("▶ Starting execute-task M001/S01/T01")
    assert lines.index("  · write src/a.py") > first
    assert lines.index("✔ execute-task M001/S01/T01 complete") > lines.index(costs[0]) > first


def test_garbage_gsd_tools_failures_and_json(project: BuiltProject) -> None:
    parallel = project.gsd / "parallel"
    log = "".join([
        ev(type="extensions_ready"),
        "not json at all\n",
        "\n",
        "[1, 2, 3]\n",
        ev(type="tool_execution_start", toolCallId="c1", toolName="gsd_task_complete",
           args={"milestoneId": "M002", "sliceId": "S01", "taskId": "T01"}),
        ev(type="tool_execution_end", toolCallId="c1", toolName="gsd_task_complete", isError=False),
        ev(type="tool_execution_start", toolCallId="c2", toolName="bash", args={"command": "pytest -q"}),
        ev(type="tool_execution_end", toolCallId="c2", toolName="bash", isError=True,
           result={"content": [{"type": "text", "text": "2 failed, 3 passed"}]}),
        cost_event(0.0087, tokens=1540),
        cost_event(float("1e-3")),
        ev(type="message_end", message={"usage": {"cost": {"total": "free"}}}),
        notify("Disk almost full", "warning"),
        '{"type": "message_end", "message": {"usage": {"cost": {"total": 5',  # partial last line
    ])  # fmt: skip
    (parallel / "M002.stdout.log").write_text(log)
    (parallel / "M002.stderr.log").write_text(
        "warming up\nTraceback (most recent call last):\nValueError: boom\n"
    )
    text = cli("--project", project.root, "logs", "M002").stdout
    lines = text.splitlines()
    assert "  · gsd_task_complete" in lines
    assert "✔ execute-task M002/S01/T01 complete" in lines
    assert "  · bash pytest -q" in lines
    assert "  ✖ bash failed: 2 failed, 3 passed" in lines
    assert "   cost +$0.0087 (total $0.0087) · 1,540 tokens" in lines
    assert "   cost +$0.0010 (total $0.0097) · 100 tokens" in lines
    assert "• warning: Disk almost full" in lines
    assert "(3 unreadable line(s) skipped)" in lines
    assert lines[-3:] == ["warming up", "Traceback (most recent call last):", "ValueError: boom"]
    assert "Summary: 1 unit(s) finished · 2 tool call(s) (1 failed) · cost $0.0097 · 1,640 tokens" in lines

    data = json.loads(cli("--project", project.root, "--json", "logs", "M002").stdout)
    assert data["summary"]["cost"] == pytest.approx(0.0097) and data["summary"]["units_finished"] == 1
    assert data["stderr"][-1] == "ValueError: boom"
    assert [e["kind"] for e in data["activity"]][:3] == ["start", "tool", "unit-end"]

    tail = cli("--project", project.root, "logs", "M002", "-n", "2").stdout.splitlines()
    assert tail[2] == "… 6 earlier line(s); -n 0 shows all"  # of 8 entries
    assert tail[3:5] == ["   cost +$0.0010 (total $0.0097) · 100 tokens", "• warning: Disk almost full"]


def test_missing_log_and_bad_arguments(project: BuiltProject) -> None:
    done = cli("--project", project.root, "logs", "M002")
    assert done.returncode == 0 and "No activity logged for M002 yet" in done.stdout
    for args, message in [
        (("logs", "M009"), "unknown milestone M009"),
        (("logs", "../x"), "invalid milestone ID"),
        (("logs", "M002", "-n", "-1"), "--lines"),
        (("--json", "logs", "M002", "-f"), "does not combine with --json"),
    ]:
        done = cli("--project", project.root, *args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


class Lines:
    """A process's stdout lines, read on a thread, so a test can wait for one with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(
            target=lambda: [self.q.put(line.rstrip("\n")) for line in stream], daemon=True
        ).start()

    def wait_for(self, wanted: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"never saw {wanted!r}; got {self.seen}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.q.get(timeout=left))


def test_follow_prints_new_activity_until_interrupted(project: BuiltProject) -> None:
    parallel = project.gsd / "parallel"
    stdout_log = parallel / "M002.stdout.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin", "--project", str(project.root), "logs", "M002", "-f"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lines = Lines(proc)
        lines.wait_for("-- following M002 (Ctrl-C to stop) --")
        assert "Waiting for the worker to write its log…" in lines.seen
        with open(stdout_log, "a") as fh:  # the log appears after the follower started
            fh.write(ev(type="agent_start") + notify("Starting execute-task M002/S01/T01"))
        lines.wait_for("▶ Starting execute-task M002/S01/T01")
        with open(stdout_log, "a") as fh:  # a line written in two pieces is shown once, whole
            fh.write('{"type": "extension_ui_request", "method": "notify", ')
            fh.flush()
            time.sleep(0.6)
            fh.write('"message": "Finished execute-task M002/S01/T01"}\n')
        lines.wait_for("✔ Finished execute-task M002/S01/T01")
        with open(parallel / "M002.stderr.log", "a") as fh:
            fh.write("something on stderr\n")
        lines.wait_for("stderr│ something on stderr")
        with open(stdout_log, "a") as fh:
            fh.write(cost_event(0.5))
        lines.wait_for("   cost +$0.5000 (total $0.5000) · 100 tokens")
        assert lines.seen.count("✔ Finished execute-task M002/S01/T01") == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_logs_with_an_enormous_line_count_shows_everything(tmp_path, cli):
    project = build_project(tmp_path / "p", ONE, preferences={"enabled": True})
    parallel = project.gsd / "parallel"
    parallel.mkdir()
    (parallel / "M001.stderr.log").write_text("[fake-gsd] hello\n")
    result = cli("--project", project.root, "logs", "M001", "-n", "99999999999999999999")
    assert result.code == 0, result.err
    assert "[fake-gsd] hello" in result.out
