"""The progress helper: plain lines off a terminal, a bar on a real pty, nothing for --json."""

from __future__ import annotations

import io
import os
from pathlib import Path

from gsd_parallel_plugin.host import HostSession
from gsd_parallel_plugin.models import CommandContext
from gsd_parallel_plugin.views.progress import progress


def test_plain_lines_when_not_a_terminal() -> None:
    err = io.StringIO()
    with progress(None, 3, "Creating worktrees", stream=err) as p:
        for mid in ("M001", "M002", "M003"):
            p.update(mid)
            p.advance(mid)
        p.note("M003: reused an existing worktree")
    assert err.getvalue().splitlines() == [
        "Creating worktrees [1/3] M001",
        "Creating worktrees [2/3] M002",
        "Creating worktrees [3/3] M003",
        "M003: reused an existing worktree",
    ]


def test_unknown_total() -> None:
    err = io.StringIO()
    with progress(None, None, "Merging", stream=err) as p:
        p.advance()
        p.advance("M002", steps=2)
    assert err.getvalue().splitlines() == ["Merging [1]", "Merging [3] M002"]


def test_nothing_at_all_with_json(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    host = HostSession(tmp_path, out=out, err=err, interactive=True)
    ctx = CommandContext(host=host, args=(), json=True)
    with progress(ctx, 2, "Merging") as p:
        p.update("M001")
        p.advance("M001")
        p.note("hello")
    assert out.getvalue() == "" and err.getvalue() == ""


def test_context_output_goes_to_the_hosts_stderr(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    host = HostSession(tmp_path, out=out, err=err, interactive=False)
    with progress(CommandContext(host=host, args=()), 1, "Merging") as p:
        p.advance("M001")
    assert out.getvalue() == "" and err.getvalue() == "Merging [1/1] M001\n"


def test_rich_bar_on_a_real_terminal() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert tty.isatty()
            with progress(None, 4, "Creating worktrees", stream=tty) as p:
                for mid in ("M001", "M002", "M003", "M004"):
                    p.update(mid)
                    p.advance(mid)
                p.note("one note")
            tty.flush()
        chunks = []
        while True:
            import select

            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                break
            chunks.append(os.read(master, 65536))
        screen = b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)
        os.close(slave)
    assert "Creating worktrees" in screen and "4/4" in screen and "one note" in screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
    assert "[1/4] M001" not in screen
