"""One lock file per job (the supervisor, a merge): ``flock`` plus a record of the holder.

The kernel drops a ``flock`` when its holder dies, so ``kill -9`` never leaves a lock
stuck. The file also records the holder's pid and process start time for messages,
``status`` and ``doctor``. Readers never take the flock themselves: even a shared lock
held for an instant would make a starting holder believe someone else has it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from ..models import WorkerHandle


def read_holder(path: Path) -> dict[str, Any] | None:
    """The live holder recorded in ``path`` (``{"pid", "create_time"}``), else None.

    A holder killed with ``kill -9`` leaves its record behind; psutil says it is gone,
    and a reused pid has another start time.
    """
    try:
        data = json.loads(path.read_bytes()[:4096] or b"{}")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None  # a holder that released (the file is emptied) or none ever: no psutil
    create_time = data.get("create_time")
    if not isinstance(create_time, (int, float)):
        return None
    from ..processes import is_alive

    return data if is_alive(WorkerHandle(data["pid"], float(create_time))) else None


class PidLock:
    """An exclusive ``flock`` on ``path`` with the holder's pid and start time recorded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, *, yield_to_holder: bool = False) -> bool:
        """Take the lock, trying for up to ``timeout`` seconds; False if that fails.

        ``yield_to_holder`` gives up at once when a live holder is recorded, and keeps
        trying (a brief contention) when none is.
        """
        from ..processes import process_create_time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                held = yield_to_holder and read_holder(self.path) is not None
                if held or time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        me = {"pid": os.getpid(), "create_time": process_create_time(os.getpid())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (None when nobody does)."""
        return read_holder(self.path)
