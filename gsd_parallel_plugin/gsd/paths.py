"""GSD's own runtime paths, as GSD 3.0.0 lists them (one copy, no imports: the fake worker uses it).

``RUNTIME_EXCLUSION_PATHS`` is ``git-service.ts``'s list (paths GSD never stages);
``GSD_RUNTIME_PATTERNS`` is ``gitignore.ts``'s (the same plus continue files), the canonical list
a project that commits ``.gsd/`` ignores. ``WORKER_RUNTIME_FILES`` are what runs of the real
worker wrote besides (measured: docs/ARCHITECTURE.md, *The GSD adapter*).
"""

from __future__ import annotations

RUNTIME_EXCLUSION_PATHS: tuple[str, ...] = (
    ".gsd/activity/",
    ".gsd/audit/",
    ".gsd/forensics/",
    ".gsd/runtime/",
    ".gsd/worktrees/",
    ".gsd/parallel/",
    ".gsd/auto.lock",
    ".gsd/metrics.json",
    ".gsd/completed-units*.json",
    ".gsd/state-manifest.json",
    ".gsd/STATE.md",
    ".gsd/gsd.db*",
    ".gsd/journal/",
    ".gsd/doctor-history.jsonl",
    ".gsd/event-log.jsonl",
    ".gsd/DISCUSSION-MANIFEST.json",
)

GSD_RUNTIME_PATTERNS: tuple[str, ...] = (
    *RUNTIME_EXCLUSION_PATHS,
    ".gsd/milestones/**/*-CONTINUE.md",
    ".gsd/milestones/**/continue.md",
)

WORKER_RUNTIME_FILES: tuple[str, ...] = (
    ".gsd/auto-*.lock",
    ".gsd/notifications.jsonl",
    ".gsd/audit-log.jsonl",
    ".gsd/graphs/",  # each branch writes its own graph.json: two would conflict on merge
    ".bg-shell/",
    ".gsd-id",
    ".mcp.json",
)
