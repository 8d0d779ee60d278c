"""The coordination store against real SQLite files and real concurrent processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gsd_parallel_plugin.errors import StoreError, UserError
from gsd_parallel_plugin.models import WorkerState
from gsd_parallel_plugin.store import (
    SCHEMA_VERSION,
    NoStore,
    Store,
    nanos_to_usd,
    to_ms,
    usd_to_nanos,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".gsd" / "parallel" / "coordinator.db"


@pytest.fixture
def store(db: Path) -> Store:
    with Store(db) as s:
        yield s


def _worker(store: Store, mid: str = "M001") -> int:
    run = store.active_run() or store.create_run(budget_ceiling=5)
    store.add_worker(run.id, mid, f"Title {mid}", Path("/w") / mid, f"gsd-parallel/{mid}")
    return run.id


# ---------------------------------------------------------------- schema and files


def test_creates_parent_dir_schema_and_wal(db: Path) -> None:
    with Store(db):
        pass
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(raw.execute("SELECT key, value FROM meta"))["app"] == "gsd-parallel"
    raw.close()


def test_reopen_keeps_data(db: Path) -> None:
    with Store(db) as s:
        run_id = _worker(s)
        s.record_output(run_id, "M001", expected_offset=0, new_offset=7, cost_delta=0.25)
    with Store(db) as s:
        w = s.worker("M001")
        assert w is not None and w.cost == 0.25 and w.stdout_offset == 7
        assert s.active_run() is not None and s.active_run().budget_ceiling == 5.0


def test_empty_file_is_initialised(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.touch()
    with Store(db) as s:
        assert s.latest_run() is None
    assert db.stat().st_size > 0


def _assert_refused_untouched(path: Path, match: str, readonly: bool = False) -> None:
    before = path.read_bytes()
    siblings = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(StoreError, match=match) as info:
        Store(path, readonly=readonly)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, UserError)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == siblings


@pytest.mark.parametrize("readonly", [False, True])
def test_garbage_file_refused_untouched(db: Path, readonly: bool) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database\x00\x01" * 100)
    _assert_refused_untouched(db, "not a gsd-parallel coordination store.*move it aside", readonly)


@pytest.mark.parametrize("readonly", [False, True])
def test_foreign_sqlite_refused_untouched(db: Path, readonly: bool) -> None:
    db.parent.mkdir(parents=True)
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE todo (id INTEGER PRIMARY KEY, text TEXT)")
    raw.execute("INSERT INTO todo (text) VALUES ('buy milk')")
    raw.commit()
    raw.close()
    _assert_refused_untouched(db, "another application", readonly)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_foreign_meta_table_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    raw.execute("INSERT INTO meta VALUES ('app', 'something-else')")
    raw.commit()
    raw.close()
    _assert_refused_untouched(db, "another application")


def test_corrupt_sqlite_refused_untouched(db: Path) -> None:
    with Store(db) as s:
        _worker(s)
    data = bytearray(db.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # valid header, destroyed pages
    db.write_bytes(bytes(data))
    _assert_refused_untouched(db, "not a gsd-parallel coordination store")


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_refused_untouched(db: Path, readonly: bool) -> None:
    with Store(db) as s:
        _worker(s)
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    _assert_refused_untouched(db, "newer gsd-parallel.*upgrade", readonly)


# ---------------------------------------------------------------- read-only mode


def test_readonly_missing_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "coordinator.db"
    with pytest.raises(NoStore, match="no coordination store"):
        Store(path, readonly=True)
    assert Store.open_readonly(path) is None
    assert not path.parent.exists()
    path.parent.mkdir()
    assert Store.open_readonly(path) is None
    assert list(path.parent.iterdir()) == []


def test_readonly_sees_live_writes_and_refuses_writes(store: Store, db: Path) -> None:
    run_id = _worker(store)
    ro = Store.open_readonly(db)
    assert ro is not None
    with ro:
        assert ro.worker("M001").state == "starting"
        store.set_state("M001", run_id, WorkerState.RUNNING)
        assert ro.worker("M001").state == "running"
        assert [e.kind for e in ro.events()] == ["state"]
        with pytest.raises(StoreError, match="read-only"):
            ro.enqueue("pause")
    store.close()
    with Store(db, readonly=True) as ro:  # last connection: WAL sidecars are cleaned up
        assert ro.worker("M001").state == "running"
    assert [p.name for p in db.parent.iterdir()] == ["coordinator.db"]


# ---------------------------------------------------------------- runs and workers


def test_one_active_run(store: Store) -> None:
    run = store.create_run(None)
    with pytest.raises(StoreError, match="already active"):
        store.create_run(1.0)
    store.set_run_state(run.id, "budget_exceeded")
    store.finish_run(run.id)  # does not overwrite budget_exceeded
    latest = store.latest_run()
    assert latest is not None and latest.state == "budget_exceeded" and latest.ended_at
    assert store.active_run() is None
    second = store.create_run(2.5, supervisor_pid=123, supervisor_create_time=1.5)
    assert second.id > run.id and second.supervisor_pid == 123
    store.update_run(second.id, budget_ceiling=10, supervisor_pid=456)
    assert store.active_run() == store.run(second.id)
    assert store.run(second.id).budget_ceiling == 10.0


def test_add_worker_reuses_row_and_keeps_cost(store: Store) -> None:
    run_id = _worker(store)
    store.record_output(run_id, "M001", expected_offset=0, new_offset=5, cost_delta="0.5")
    store.update_worker("M001", run_id, restarts=1, pid=42, create_time=9.5)
    again = store.add_worker(run_id, "M001", "New title", "/w2", "gsd-parallel/M001")
    assert again.cost == 0.5 and again.restarts == 1 and again.title == "New title"
    assert again.worktree == Path("/w2") and again.stdout_offset == 5
    assert [w.milestone_id for w in store.workers()] == ["M001"]


def test_update_worker_validates_fields(store: Store) -> None:
    run_id = _worker(store)
    with pytest.raises(ValueError, match="cost_nanos"):
        store.update_worker("M001", run_id, cost_nanos=1)
    with pytest.raises(ValueError, match="state"):
        store.update_worker("M001", run_id, state="running")
    with pytest.raises(KeyError):
        store.update_worker("M999", run_id, pid=1)
    w = store.update_worker("M001", run_id, milestone_budget=2.5, last_error="boom")
    assert w.milestone_budget == 2.5 and w.milestone_budget_nanos == 2_500_000_000
    assert w.last_error == "boom"


def test_set_state_returns_old_logs_event_and_records_completion(store: Store) -> None:
    run_id = _worker(store)
    assert store.set_state("M001", run_id, "running") == "starting"
    assert store.set_state("M001", run_id, "running") == "running"  # no-op, no event
    assert store.set_state("M001", run_id, "complete", reason="summary found") == "running"
    w = store.worker("M001")
    assert w.state == "complete" and w.state_reason == "summary found" and w.completed_at
    assert store.completed_milestones() == {"M001": w.completed_at}
    events = store.events()
    assert [e.data["new"] for e in events] == ["running", "complete"]
    assert events[-1].message == "M001: running -> complete (summary found)"
    with pytest.raises(ValueError):
        store.set_state("M001", run_id, "dancing")


def test_worker_lookup_across_runs(store: Store) -> None:
    first = _worker(store)
    store.finish_run(first)
    second = store.create_run(None).id
    store.add_worker(second, "M002", "t", "/w", "gsd-parallel/M002")
    assert store.worker("M001").run_id == first  # newest run that has it
    assert [w.milestone_id for w in store.workers()] == ["M002"]
    assert [w.milestone_id for w in store.workers(first)] == ["M001"]


# ---------------------------------------------------------------- cost and offsets


def test_compare_and_set_offset_refuses_stale_reader(store: Store) -> None:
    run_id = _worker(store)
    ok = store.record_output(
        run_id, "M001", expected_offset=0, new_offset=120, cost_delta=0.0087,
        tokens={"input": 1200, "output": 340, "cacheRead": 5, "cache_write": 1},
        units_delta=1, current_unit="M001/S01/T01",
    )  # fmt: skip
    assert ok is not None and ok.stdout_offset == 120 and ok.current_unit == "M001/S01/T01"
    # a second reader that read the same bytes from offset 0 is refused: nothing changes
    assert store.record_output(
        run_id, "M001", expected_offset=0, new_offset=120, cost_delta=0.0087,
        tokens={"input": 1200}, units_delta=1,
    ) is None  # fmt: skip
    w = store.worker("M001")
    assert (w.cost, w.tokens_input, w.tokens_output, w.tokens_cache_read) == (0.0087, 1200, 340, 5)
    assert w.tokens_total == 1546 and w.units_done == 1 and w.stdout_offset == 120
    with pytest.raises(ValueError, match="unknown token"):
        store.record_output(run_id, "M001", expected_offset=120, new_offset=130, tokens={"x": 1})
    with pytest.raises(ValueError, match="back"):
        store.record_output(run_id, "M001", expected_offset=120, new_offset=100)
    with pytest.raises(KeyError):
        store.record_output(run_id, "M404", expected_offset=0, new_offset=1)
    assert store.worker("M001").stdout_offset == 120


def test_offset_and_cost_roll_back_together(store: Store) -> None:
    run_id = _worker(store)
    with pytest.raises(RuntimeError), store.transaction():
        assert store.record_output(run_id, "M001", expected_offset=0, new_offset=50, cost_delta=1.25)
        store.add_event("cost", "joined the outer transaction", run_id=run_id)
        raise RuntimeError("crash before commit")
    w = store.worker("M001")
    assert (w.stdout_offset, w.cost_nanos) == (0, 0) and store.events() == []


def test_costs_are_exact(store: Store) -> None:
    run_id = _worker(store, "M001")
    store.add_worker(run_id, "M002", "t", "/w", "gsd-parallel/M002")
    offset = 0
    for _ in range(1000):
        assert store.record_output(
            run_id, "M001", expected_offset=offset, new_offset=offset + 10, cost_delta=0.01
        )
        offset += 10
    for i in range(12):
        store.record_output(run_id, "M002", expected_offset=i, new_offset=i + 1, cost_delta=0.01)
    assert store.worker("M001").cost == 10.0
    assert store.worker("M002").cost == 0.12 == round(12 * 0.01, 6)
    store.record_output(run_id, "M002", expected_offset=12, new_offset=13, cost_nanos=1)
    assert store.worker("M002").cost_nanos == 120_000_001
    store.record_output(run_id, "M002", expected_offset=13, new_offset=14, cost_nanos=-1)
    assert store.run_total_cost(run_id) == 10.12
    assert store.run_total_nanos(run_id) == 10_120_000_000


def test_money_and_time_helpers() -> None:
    assert usd_to_nanos(0.1) == 100_000_000 and usd_to_nanos("0.0000000015") == 2
    assert usd_to_nanos(3) == 3_000_000_000 and nanos_to_usd(None) is None
    assert nanos_to_usd(usd_to_nanos(0.0087)) == 0.0087
    assert to_ms(1.5) == 1500 and to_ms(None) is None


# ---------------------------------------------------------------- commands


def test_commands_fifo_claimed_once(store: Store) -> None:
    a = store.enqueue("pause", "M001", {"now": True})
    b = store.enqueue("resume", "M002", {"budget": 10})
    c = store.enqueue("stop")
    assert [x.id for x in store.pending_commands()] == [a, b, c]
    claimed = store.claim_commands()
    assert [(x.command, x.milestone_id, dict(x.args)) for x in claimed] == [
        ("pause", "M001", {"now": True}),
        ("resume", "M002", {"budget": 10}),
        ("stop", None, {}),
    ]
    assert store.claim_commands() == [] and store.pending_commands() == []
    with pytest.raises(ValueError, match="unknown command"):
        store.enqueue("explode")


_CHILD = """
import json, sys
from gsd_parallel_plugin.store import Store
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
enqueued, claimed = [], []
with Store(path) as s:
    for i in range(n):
        enqueued.append(s.enqueue("pause", f"M{i % 7 + 1:03d}", {"who": who, "i": i}))
        claimed += [c.id for c in s.claim_commands()]
print(json.dumps({"enqueued": enqueued, "claimed": claimed}))
"""


def test_concurrent_processes_claim_each_command_once(db: Path) -> None:
    # several processes open the fresh store at once, then enqueue and claim concurrently
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db), str(k), "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(6)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    with Store(db) as s:
        leftovers = [c.id for c in s.claim_commands()]
        every = [r[0] for r in s._conn.execute("SELECT id FROM commands")]
    enqueued = sorted(i for r in results for i in r["enqueued"])
    claimed = [i for r in results for i in r["claimed"]] + leftovers
    assert len(enqueued) == 240 and enqueued == sorted(every)
    assert sorted(claimed) == enqueued  # every command claimed, none twice


# ---------------------------------------------------------------- events


def test_events_ordering_and_tailing(store: Store) -> None:
    run_id = _worker(store)
    ids = [store.add_event("note", f"n{i}", data={"i": i}, run_id=run_id) for i in range(30)]
    store.add_event("note", "no run")
    assert ids == sorted(ids)
    latest = store.events(limit=5)
    assert [e.message for e in latest] == ["n26", "n27", "n28", "n29", "no run"]
    page = store.events(limit=3, after_id=ids[9])
    assert [e.message for e in page] == ["n10", "n11", "n12"] and page[0].data == {"i": 10}
    assert [e.message for e in store.events(limit=100, run_id=run_id)][-1] == "n29"
    assert store.events(after_id=store.events(limit=1)[-1].id) == []


# ---------------------------------------------------------------- merge journal


def test_merge_journal_round_trip(store: Store) -> None:
    mid = store.begin_merge("M002", "gsd-parallel/M002", "main", "a" * 40, "b" * 40)
    store.update_merge(mid, step="worktree", worktree=Path("/tmp/merge-M002"))
    assert [m.id for m in store.unfinished_merges()] == [mid]
    row = store.merges("M002")[0]
    assert (row.step, row.worktree, row.outcome, row.base_sha) == (
        "worktree", "/tmp/merge-M002", None, "a" * 40,
    )  # fmt: skip
    with pytest.raises(ValueError, match="commit_sha"):
        store.finish_merge(mid, "merged")  # rolled back: still unfinished
    assert store.unfinished_merges()[0].outcome is None
    done = store.finish_merge(mid, "merged", commit_sha="c" * 40, files=["src/a.py", "b.md"])
    assert done.outcome == "merged" and done.files == ("src/a.py", "b.md") and done.finished_at
    assert store.unfinished_merges() == []
    assert store.merged_milestones() == {"M002": "c" * 40}
    assert store.milestones()["M002"].merged_at == done.finished_at

    failed = store.begin_merge("M003", "gsd-parallel/M003", "main", "c" * 40, "d" * 40)
    store.finish_merge(failed, "conflict", files=["src/x.py"], error="CONFLICT (content)")
    assert store.merge(failed).error == "CONFLICT (content)"
    assert [m.milestone_id for m in store.merges()] == ["M002", "M003"]
    assert "M003" not in store.merged_milestones()
    with pytest.raises(ValueError):
        store.update_merge(failed, outcome="merged")
    assert store.merge(failed).to_json()["files"] == ["src/x.py"]


def test_merged_flag_joins_worker_rows(store: Store) -> None:
    run_id = _worker(store, "M002")
    store.mark_merged("M002", "e" * 40)
    w = store.worker("M002", run_id)
    assert w.merge_commit == "e" * 40 and w.merged_at
    assert json.loads(json.dumps(w.to_json()))["merge_commit"] == "e" * 40
