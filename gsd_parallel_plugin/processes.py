"""Process identity: liveness, exit codes and group signals of the processes we watch.

A process is identified by ``WorkerHandle(pid, create_time)``: the pid alone can be reused by
an unrelated process after it dies, the pair cannot. Liveness is always "that pid exists, was
created at that time, and is not a zombie" — never output silence, so a worker that runs one
long test for ten minutes is not declared dead.

Workers run in their own session, so they are process-group leaders (pgid == pid): a signal
to the group reaches the worker and the tools it started, but not the coordinator. This module
is below every room (locks, the store rebuild and the supervisor all ask it), so it imports
none of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress

import psutil

from .models import WorkerHandle

CREATE_TIME_TOLERANCE = 0.01
"""Seconds. psutil reports the same float in every process; the slack only absorbs rounding."""

_LAUNCHED: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
"""Workers this process launched, by pid: the Popen object is the only way to get an exit code."""


def remember_child(proc: subprocess.Popen[bytes], created: float) -> None:
    """Keep a child this process launched: only its Popen can tell its exit code."""
    _LAUNCHED[proc.pid] = (proc, created)


# --- liveness -----------------------------------------------------------------------------


def process_create_time(pid: int) -> float | None:
    """psutil's start time of ``pid`` (epoch seconds), or None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _ours(handle: WorkerHandle) -> subprocess.Popen[bytes] | None:
    entry = _LAUNCHED.get(handle.pid)
    if entry is None or abs(entry[1] - handle.create_time) > CREATE_TIME_TOLERANCE:
        return None
    return entry[0]


def exit_status(handle: WorkerHandle) -> int | None:
    """The exit code of a worker *this process* launched (reaping it); None while it runs.

    Negative means killed by that signal (``-9``). For a worker we did not launch (adopted
    after a coordinator restart) the code is unknowable: None always — use :func:`is_alive`
    to see that it is gone and :func:`infer_outcome` to judge how it ended.
    """
    proc = _ours(handle)
    return None if proc is None else proc.poll()


def forget(handle: WorkerHandle) -> None:
    """Drop a launched worker from the registry (after its exit has been settled)."""
    if _ours(handle) is not None:
        del _LAUNCHED[handle.pid]


def _process(handle: WorkerHandle) -> psutil.Process | None:
    """The live process behind ``handle``: same pid, same start time, not a zombie."""
    proc = _ours(handle)
    if proc is not None:
        proc.poll()  # reap our own child so it cannot linger as a zombie
    try:
        p = psutil.Process(handle.pid)
        if abs(p.create_time() - handle.create_time) > CREATE_TIME_TOLERANCE:
            return None  # the pid now belongs to someone else
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_alive(handle: WorkerHandle) -> bool:
    """True while the worker runs (stopped by SIGSTOP counts as alive; a zombie does not)."""
    return _process(handle) is not None


def is_stopped(handle: WorkerHandle) -> bool:
    """True when the worker is frozen by SIGSTOP (``pause --now``)."""
    p = _process(handle)
    if p is None:
        return False
    try:
        return p.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def wait_exit(handle: WorkerHandle, timeout: float, interval: float = 0.02) -> bool:
    """Poll until the worker is gone; True if it went within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(handle):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


# --- signals ------------------------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group, never our own (a worker that joined it would take us down)."""
    try:
        if pgid == os.getpgrp():
            return False
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def send_signal_group(handle: WorkerHandle, sig: int) -> bool:
    """Send ``sig`` to the worker's process group; False (nothing sent) if the worker is gone.

    Used for SIGTERM on stop and SIGSTOP/SIGCONT for ``pause --now``. If the worker left its
    own group, the worker alone is signalled. The pid-reuse check happens just before the
    signal; the window in between is microseconds.
    """
    p = _process(handle)
    if p is None:
        return False
    try:
        pgid = os.getpgid(p.pid)
    except ProcessLookupError:
        return False
    if pgid == p.pid:
        return _signal_group(pgid, sig)
    try:
        p.send_signal(sig)  # psutil re-checks the pid is still this process
        return True
    except psutil.Error:
        return False


def kill_tree(handle: WorkerHandle) -> bool:
    """SIGKILL the worker, its process group, and every descendant psutil can find.

    Descendants are collected *before* anything dies (afterwards they are reparented and
    untraceable); that catches children that made their own session or group, which a group
    signal misses. When the worker itself is already gone, its group is still killed, unless
    its pid now belongs to an unrelated process. Orphans of an earlier death that left the
    group are out of reach. True if any signal was delivered.
    """
    p = _process(handle)
    victims: list[psutil.Process] = []
    if p is not None:
        with suppress(psutil.Error):
            victims = p.children(recursive=True)
    sent = False
    reused = p is None and process_create_time(handle.pid) is not None
    if not reused:  # a group can outlive its leader; its id cannot be handed out meanwhile
        sent = _signal_group(handle.pid, signal.SIGKILL)
    if p is not None:
        with suppress(psutil.Error):
            p.kill()
            sent = True
    for child in victims:
        with suppress(psutil.Error):
            child.kill()
            sent = True
    ours = _ours(handle)
    if ours is not None:
        ours.poll()
    return sent
