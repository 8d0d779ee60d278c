"""The SQLite coordination store: ``.gsd/parallel/coordinator.db``.

One file shared by the supervisor (the writer), CLI commands (enqueue commands, read),
``watch`` (read-only, polling) and ``merge``. Conventions, chosen so that several
processes can share it and a crash never loses or double-counts anything:

- WAL, ``busy_timeout`` 10 s, ``foreign_keys=ON``, autocommit connections
  (``isolation_level=None``) and explicit ``BEGIN IMMEDIATE`` for every write, so a write
  transaction is serialised against other writers from its first statement.
- Money is integer **nano-USD** (``*_nanos`` columns, 1 USD = 10**9): sums are exact, so
  1000 x 0.01 is 10.0, not 9.99999999999998. Rows expose USD floats as properties
  (``cost``, ``budget_ceiling``, ``milestone_budget``); :mod:`gsd_parallel_plugin.money` converts
  (``usd_to_nanos`` is re-exported here).
- Timestamps are epoch seconds as floats (``time.time()``); :func:`to_ms` converts for the
  GSD status files, which use epoch milliseconds.
- The schema is versioned by ``PRAGMA user_version`` plus a ``meta`` table
  (``app = 'gsd-parallel'``). A file that is not ours, corrupt, or from a newer version is a
  :class:`StoreError` naming the path; it is never modified, deleted or replaced.
- A :class:`Store` (one sqlite connection) belongs to one thread.

The package's parts: :mod:`.schema` (DDL, version checks, opening, refusing files that
are not ours), :mod:`.rows` (row dataclasses, time helpers), and the parts of
:class:`Store`: :mod:`.records` (commands, events, milestone facts), :mod:`.runs` (runs
and workers) and :mod:`.merges` (the merge journal).
"""

from __future__ import annotations

from ..money import NANOS_PER_USD, nanos_to_usd, usd_to_nanos
from .merges import MergeJournalMixin
from .rows import (
    COMMANDS,
    MERGE_OUTCOMES,
    RUN_STATES,
    WORKER_STATES,
    CommandRow,
    EventRow,
    MergeRow,
    MilestoneRow,
    RunRow,
    RunState,
    WorkerRow,
    now,
    to_ms,
)
from .runs import RunsMixin
from .schema import APP, APPLICATION_ID, BUSY_TIMEOUT_MS, SCHEMA_VERSION, SQLITE_MAGIC, NoStore

__all__ = [
    "APP",
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "COMMANDS",
    "MERGE_OUTCOMES",
    "NANOS_PER_USD",
    "RUN_STATES",
    "SCHEMA_VERSION",
    "SQLITE_MAGIC",
    "WORKER_STATES",
    "CommandRow",
    "EventRow",
    "MergeRow",
    "MilestoneRow",
    "NoStore",
    "RunRow",
    "RunState",
    "Store",
    "WorkerRow",
    "nanos_to_usd",
    "now",
    "to_ms",
    "usd_to_nanos",
]


class Store(RunsMixin, MergeJournalMixin):
    """A connection to the coordination store at ``path``.

    Writable (default): creates the parent directory and the schema when the file is new
    or empty. ``readonly=True`` opens with ``mode=ro`` and never creates anything; a
    missing or empty file raises :class:`NoStore` (see also :meth:`open_readonly`);
    writes raise :class:`StoreError`.
    """
