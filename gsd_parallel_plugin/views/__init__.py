"""Read-only views of a project and its run: dashboard, graph, activity log, ETA.

Nothing in here writes to the store or the project; ``watch``, ``graph`` and ``logs``
can run next to a live supervisor without disturbing it.
"""

NO_RUN = "No parallel orchestration is currently active."
"""What a view says when no run exists (here, so ``status`` with no run need not import one)."""
