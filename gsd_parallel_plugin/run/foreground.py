"""``start --wait``: run the supervisor in this process with live progress.

On a terminal a rich table redraws in place; elsewhere each state change is one
plain line, so logs and CI output stay readable. If another supervisor already runs
the project, follow it through the store instead of starting a second one.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exitcodes import ExitCode
from ..invocation import Loaded
from ..models import CommandContext
from ..workspace import layout

if TYPE_CHECKING:
    from ..store import Store
    from .supervisor import Supervisor


class EventPrinter:
    """Prints new store events (state changes, adoptions, kills) as plain lines."""

    # budget and stall notices reach the user through host.notify already
    KINDS = frozenset({"state", "adopt", "kill", "merge"})

    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self.last_id: int | None = None

    def __call__(self, store: Store) -> None:
        if self.last_id is None:
            events = store.events(limit=1)
            self.last_id = events[-1].id if events else 0
            return
        for event in store.events(limit=200, after_id=self.last_id):
            self.last_id = event.id
            if event.kind in self.KINDS and not self.ctx.json:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
                print(f"[{stamp}] {event.message}", file=self.ctx.host.err, flush=True)


class Interrupt:
    """Ctrl-C while the supervisor runs in the foreground.

    The first one lets the current tick finish (never half a merge or a launch), then the
    loop ends and the caller hands the run to a background supervisor: the workers run in
    their own sessions and keep going. A second Ctrl-C leaves at once.
    """

    def __init__(self, ctx: CommandContext, request_stop: Callable[[], None]) -> None:
        self.ctx = ctx
        self.request_stop = request_stop
        """Ends the supervisor's loop after its current tick."""
        self.count = 0
        self.prompting = False
        """A question is waiting for an answer: Ctrl-C must end the wait (input() would not)."""
        self._previous: object = None

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.request_stop()  # the loop ends after this tick, the run stays open
        if not self.ctx.json:
            self.ctx.host.notify("Interrupted: handing the run to a background supervisor…")
        if self.prompting:
            raise KeyboardInterrupt


def hand_over(loaded: Loaded) -> int | None:
    """Start a background supervisor for a run left open; its pid (None when none is needed)."""
    from ..views.runstate import RunView
    from .ensure import wait_until_supervising
    from .supervisor_lock import spawn_background, supervisor_running

    view = RunView.read(loaded)
    if view.run is None or not view.active or supervisor_running(loaded.parallel_dir):
        return None
    pid = spawn_background(loaded.root, loaded.parallel_dir, run_id=view.run.id)
    wait_until_supervising(loaded, pid)
    return pid


def run_foreground(ctx: CommandContext, loaded: Loaded) -> int:
    from ..store import Store
    from .supervisor import Supervisor
    from .supervisor_lock import SupervisorLock

    printer = EventPrinter(ctx)
    live = _live_table(ctx)

    def on_tick(sup: Supervisor) -> None:
        printer(sup.store)
        if live is not None:
            live.update(_table(sup))

    def confirm(question: str) -> bool | None:
        """Ask with the live table stopped, so the prompt is not redrawn over."""
        if live is not None:
            live.stop()
        interrupt.prompting = True
        try:
            return ctx.host.confirm(question)
        except KeyboardInterrupt:
            return None  # Ctrl-C at the prompt: no answer (it awaits merge), and we leave
        finally:
            interrupt.prompting = False
            if live is not None:
                live.start()

    sup = Supervisor(loaded.root, notify=ctx.host.notify, hooks=ctx.host.hooks, on_tick=on_tick,
                     confirm=confirm)  # fmt: skip
    interrupt = Interrupt(ctx, sup.request_stop)
    try:
        if live is not None:
            live.start()
        with interrupt:
            try:
                code = sup.run()
            except KeyboardInterrupt:
                if not interrupt.count:
                    raise  # not ours (no handler in this thread): the host deals with it
                code = ExitCode.INTERRUPTED  # a second Ctrl-C: leave now, still handing the run over
    finally:
        if live is not None:
            live.stop()
    if interrupt.count:
        return ExitCode.INTERRUPTED  # the run goes on under a background supervisor
    if code == ExitCode.OK and set(sup.merger.unlanded) - set(sup.store.merged_milestones()):
        return ExitCode.FAILED  # every worker finished, but a merge conflicted or failed: not a success
    if code != ExitCode.ANOTHER_SUPERVISOR:
        return code
    # Another supervisor holds the lock: follow it until it is done.
    store = Store(layout.store_path(loaded.parallel_dir))
    with store:
        while SupervisorLock.holder(loaded.parallel_dir) is not None:
            printer(store)
            time.sleep(0.25)
        printer(store)
        run = store.active_run() or store.latest_run()
        rows = store.workers(run.id) if run else []
    return ExitCode.OK if all(w.state == "complete" for w in rows) else ExitCode.FAILED


def _live_table(ctx: CommandContext):  # type: ignore[no-untyped-def]
    if ctx.json or not ctx.host.interactive:
        return None
    from rich.console import Console
    from rich.live import Live

    return Live(console=Console(file=ctx.host.err), refresh_per_second=4, transient=True)


def _table(sup: Supervisor):  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title="gsd-parallel", expand=False)
    for column in ("milestone", "state", "unit", "units", "cost"):
        table.add_column(column)
    for w in sup.store.workers(sup.run_id):
        table.add_row(w.milestone_id, w.state, w.current_unit or "", str(w.units_done), f"${w.cost:.2f}")
    table.caption = f"total ${sup.store.run_total_cost(sup.run_id):.2f}"
    return table
