"""Never call the coordination store damaged on a transient error (issue 13, item 10).

"... is not a gsd-parallel coordination store (damaged ...): move it aside" makes the user
throw away the run's state and cost. A lock held across the busy timeout (the moment a
supervisor exits, a racing command) is retried, and the file is called damaged only when
SQLite's own ``quick_check`` agrees.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import StoreError, UserError
from gsd_parallel_plugin.store import Store, schema


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / ".gsd" / "parallel" / "coordinator.db"
    with Store(path) as s:
        run = s.create_run(2.0)
        s.add_worker(run.id, "M001", "Alpha", tmp_path, "gsd-parallel/M001")
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 150)  # a lock outlasts it quickly
    return path


@contextmanager
def exclusive_lock(path: Path, release_after: float | None = None) -> Iterator[None]:
    """Another connection holding the database exclusively (as long as the block runs, or
    ``release_after`` seconds)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO meta VALUES ('lock-test', 'x')")
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            conn.execute("ROLLBACK")
            conn.close()

    timer = threading.Timer(release_after, release) if release_after is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        release()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_lock_that_goes_away_is_waited_for(db: Path, readonly: bool) -> None:
    with exclusive_lock(db, release_after=0.5), Store(db, readonly=readonly) as s:
        run = s.active_run()
        assert run is not None and s.worker("M001", run.id) is not None


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_locked_for_long_is_not_called_damaged(db: Path, readonly: bool) -> None:
    before = db.read_bytes()
    with exclusive_lock(db), pytest.raises(StoreError) as info:
        Store(db, readonly=readonly)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message and str(db) in message
    assert "move it aside" not in message and "is not a gsd-parallel" not in message
    assert "not damaged" in message and "again" in message
    assert db.read_bytes() == before
    with Store(db, readonly=True) as s:  # and it was fine all along
        assert s.active_run() is not None


def test_real_damage_is_confirmed_by_sqlite_and_called_damaged(db: Path) -> None:
    data = bytearray(db.read_bytes())
    with Store(db) as s:  # everything in the main file, so the damage is what SQLite reads
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 past the header: the schema is unreadable
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged.*integrity check.*move it aside"):
        Store(db, readonly=True)
