"""Builtin plugin: launch ``parallel.worker_command`` as a detached process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hookimpl

if TYPE_CHECKING:
    from ..models import WorkerHandle, WorkerSpec


@hookimpl(trylast=True)
def spawn_worker(spec: WorkerSpec) -> WorkerHandle | None:
    from ..run.workers import launch

    return launch(spec)
