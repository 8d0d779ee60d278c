"""Which milestones may run now, why the others may not, and which would start.

GSD's rules (ghost, complete, parked, unmet dependencies) plus plugin vetoes, file
overlaps through an inverted index (file -> milestones; never all pairs), dependency
cycles by name, and a start plan that never drops a milestone silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import combinations

from ..models import (
    EligibilityReport,
    Milestone,
    Overlap,
    Plan,
    Project,
    Verdict,
    VerdictKind,
    Waiting,
    WaitKind,
)

ALL_SATISFIED = "All dependencies satisfied."
ALREADY_COMPLETE = "Already complete."
AWAITING_MERGE = "Already complete (awaiting merge)."
PARKED = "Milestone is parked."
GHOST = "Milestone has no planning data — cannot determine eligibility."
OVERLAP_WARNING = " WARNING: has file overlap with another eligible milestone."
AWAITING_COMPLETION = " (all slices done — awaiting completion)"

Veto = Callable[[Milestone], Sequence[str]]
"""Returns the reasons plugins give to refuse a milestone (empty: no veto)."""


def find_cycles(project: Project) -> list[tuple[str, ...]]:
    """Dependency cycles among milestones that are not complete (Tarjan's SCC, iterative)."""
    pending = {m.id: m for m in project.milestones if not m.complete}
    graph = {mid: [d for d in m.depends_on if d in pending] for mid, m in pending.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[tuple[str, ...]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_i = work.pop()
            if child_i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if child_i < len(children):
                work.append((node, child_i + 1))
                child = children[child_i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycles.append(tuple(_order(project, component)))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(cycles, key=lambda c: _position(project)[c[0]])


def _position(project: Project) -> dict[str, int]:
    return {mid: i for i, mid in enumerate(project.ids)}


def _order(project: Project, ids: Iterable[str]) -> list[str]:
    pos = _position(project)
    return sorted(ids, key=lambda mid: pos.get(mid, len(pos)))


def rule_verdict(
    milestone: Milestone,
    project: Project,
    cycle_of: dict[str, tuple[str, ...]],
    awaiting_merge: Collection[str] = (),
) -> tuple[VerdictKind, str] | None:
    """GSD's own verdict for one milestone, its kind and text: None when it may run."""
    if milestone.problems:
        return VerdictKind.PROBLEMS, "; ".join(milestone.problems)
    if milestone.status == "ghost":
        return VerdictKind.GHOST, GHOST
    if milestone.complete:
        return VerdictKind.COMPLETE, ALREADY_COMPLETE
    if milestone.id in awaiting_merge:
        # Complete in its checkout, not yet on the integration branch (which is what the
        # root's .gsd shows): never started again, only merged.
        return VerdictKind.AWAITING_MERGE, AWAITING_MERGE
    if milestone.status == "parked":
        return VerdictKind.PARKED, PARKED
    if milestone.id in cycle_of:
        chain = cycle_of[milestone.id]
        return VerdictKind.CYCLE, "Dependency cycle: " + " -> ".join((*chain, chain[0])) + "."
    unmet: list[str] = []
    notes: list[str] = []
    unmerged: list[str] = []
    for dep in milestone.depends_on:
        target = project.get(dep)
        if target is None:
            unmet.append(dep)
            notes.append(f"unknown milestone {dep}")
        elif not target.complete and dep not in awaiting_merge:
            unmet.append(dep)
        elif dep in awaiting_merge:
            unmerged.append(dep)
    if unmet:
        reason = "Blocked by incomplete dependencies: " + ", ".join(unmet) + "."
        if notes:
            reason = reason[:-1] + " (" + "; ".join(notes) + ")."
        return VerdictKind.BLOCKED, reason
    if unmerged:
        return VerdictKind.WAITING_FOR_MERGE, "Waiting for " + ", ".join(unmerged) + " to merge."
    return None


def file_overlaps(milestones: Sequence[Milestone]) -> list[Overlap]:
    """Pairs of milestones whose planned files intersect; a directory covers what is under it."""
    by_path: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(milestones):
        for path in m.files:
            by_path[path].append(i)
    dirs = {path for path in by_path if path.endswith("/")}
    shared: dict[tuple[int, int], set[str]] = defaultdict(set)
    for path, owners in by_path.items():
        for a, b in combinations(owners, 2):
            shared[(a, b)].add(path)
        if not dirs:
            continue
        # A file (or directory) inside a directory another milestone touches.
        parts = path.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth]) + "/"
            if ancestor in dirs:
                for a in owners:
                    for b in by_path[ancestor]:
                        if a != b:
                            shared[(min(a, b), max(a, b))].add(path)
    return [
        Overlap(milestones=(milestones[a].id, milestones[b].id), files=tuple(sorted(files)))
        for (a, b), files in sorted(shared.items())
    ]


def analyse(
    project: Project,
    *,
    max_workers: int,
    overlap_policy: str = "serialize",
    veto: Veto | None = None,
    running: Collection[str] = (),
    awaiting_merge: Collection[str] = (),
    held: Collection[str] = (),
    uncommitted: Mapping[str, str] | None = None,
    actual_changes: Mapping[str, Collection[str]] | None = None,
) -> EligibilityReport:
    """The eligibility report and start plan for ``project``.

    ``running`` milestones are already being worked on: they take slots and are
    not planned again. ``awaiting_merge`` milestones are complete but not yet on the
    integration branch, so their dependents wait (their code is not there yet).
    ``held`` milestones are never planned to start (paused, stopped, failed in this run).
    ``uncommitted`` maps milestones whose planning files are not committed to the reason:
    held back before any plugin veto (whose reasons follow it).
    ``actual_changes`` (milestone -> files its checkout has changed, from the overlap radar)
    counts, for the plan, with what running and unmerged milestones' plans say: with
    ``serialize`` a waiting milestone whose planned files meet them waits too.
    """
    cycles = find_cycles(project)
    cycle_of = {mid: cycle for cycle in cycles for mid in cycle}
    eligible: list[Milestone] = []
    verdicts: dict[str, Verdict] = {}
    for m in project.milestones:
        refused = rule_verdict(m, project, cycle_of, awaiting_merge)
        if refused is None:
            own = [uncommitted[m.id]] if uncommitted and m.id in uncommitted else []
            vetoes = [*own, *(r for r in (veto(m) if veto is not None else ()) if r)]
            if vetoes:
                kind = VerdictKind.UNCOMMITTED_PLANS if own else VerdictKind.VETOED
                refused = kind, "; ".join(vetoes)
        if refused is None:
            eligible.append(m)
            reason = ALL_SATISFIED + (AWAITING_COMPLETION if m.all_slices_done else "")
            verdicts[m.id] = Verdict(m.id, m.title, True, reason, VerdictKind.ELIGIBLE)
        else:
            kind, reason = refused
            verdicts[m.id] = Verdict(m.id, m.title, False, reason, kind)

    overlaps = file_overlaps(eligible)
    overlapping = {mid for o in overlaps for mid in o.milestones}
    for mid in overlapping:
        v = verdicts[mid]
        verdicts[mid] = Verdict(v.id, v.title, True, v.reason + OVERLAP_WARNING, v.kind)

    plannable = [m for m in eligible if m.id not in held]
    # For the plan, overlaps also count against milestones that run or wait for their
    # merge: starting beside them would only trade parallelism for a merge conflict.
    others = [
        other
        for mid in dict.fromkeys((*running, *awaiting_merge))
        if (other := project.get(mid)) is not None and other not in eligible
    ]
    plan_overlaps = file_overlaps([*eligible, *others]) if others else overlaps
    if actual_changes:
        busy = set(running) | set(awaiting_merge)
        widened = [
            replace(m, files=m.files | frozenset(actual_changes[m.id]))
            if m.id in busy and m.id in actual_changes
            else m
            for m in [*eligible, *others]
        ]
        plan_overlaps = file_overlaps(widened)
    plan = plan_starts(plannable, plan_overlaps, max_workers, overlap_policy, running, awaiting_merge)
    ordered = [verdicts[m.id] for m in project.milestones]
    return EligibilityReport(
        eligible=tuple(v for v in ordered if v.eligible),
        ineligible=tuple(v for v in ordered if not v.eligible),
        overlaps=tuple(overlaps),
        plan=plan,
        cycles=tuple(cycles),
    )


def plan_starts(
    eligible: Sequence[Milestone],
    overlaps: Sequence[Overlap],
    max_workers: int,
    overlap_policy: str,
    running: Collection[str] = (),
    unmerged: Collection[str] = (),
) -> Plan:
    """Fill free slots in queue order; serialize overlapping milestones when asked.

    With ``serialize``, a milestone waits while one it overlaps runs, is planned to start,
    or is complete but not merged yet (its worktree would start without that code).
    """
    neighbours: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
    for o in overlaps:
        a, b = o.milestones
        neighbours[a][b] = o.files
        neighbours[b][a] = o.files
    busy = [mid for mid in running]
    free = max(0, max_workers - len(busy))
    start: list[str] = []
    waiting: list[Waiting] = []
    for m in eligible:
        if m.id in running:
            continue
        if overlap_policy == "serialize":
            blockers = (*busy, *start, *unmerged)
            clash = next((other for other in blockers if other in neighbours[m.id]), None)
            if clash is not None:
                files = neighbours[m.id][clash]
                shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                until = "is merged" if clash in unmerged else "finishes"
                reason = f"overlaps {clash} ({shown}); starts after {clash} {until}"
                waiting.append(Waiting(m.id, reason, WaitKind.OVERLAP))
                continue
        if len(start) < free:
            start.append(m.id)
        else:
            waiting.append(
                Waiting(
                    m.id,
                    f"waiting for a free worker slot (max_workers: {max_workers})",
                    WaitKind.SLOT,
                )
            )
    return Plan(start=tuple(start), waiting=tuple(waiting))


def render_report(report: EligibilityReport, project: Project) -> str:
    """GSD's ``# Parallel Eligibility Report`` text (GSD's own headings), plus the start plan."""
    lines = ["# Parallel Eligibility Report", ""]
    lines.append(f"## Eligible for Parallel Execution ({len(report.eligible)})")
    lines.append("")
    for v in report.eligible:
        lines += [f"- **{v.id}** — {v.title}", f"  {v.reason}", ""]
    lines.append(f"## Ineligible ({len(report.ineligible)})")
    lines.append("")
    for v in report.ineligible:
        lines += [f"- **{v.id}** — {v.title}", f"  {v.reason}", ""]
    if report.overlaps:
        lines.append(f"## File Overlap Warnings ({len(report.overlaps)})")
        lines.append("")
        for o in report.overlaps:
            a, b = o.milestones
            lines.append(f"- **{a}** <-> **{b}** — {len(o.files)} shared file(s):")
            lines += [f"  - `{f}`" for f in o.files]
            lines.append("")
    unplanned = [
        v.id for v in report.eligible if (m := project.get(v.id)) is not None and not m.has_file_plan
    ]
    if unplanned:
        lines.append("No file plan yet (overlap unknown): " + ", ".join(unplanned) + ".")
        lines.append("")
    lines.append("## Plan")
    lines.append("")
    if report.plan.start:
        lines.append("Would start now: " + ", ".join(report.plan.start) + ".")
    else:
        lines.append("Nothing can start now.")
    for w in report.plan.waiting:
        lines.append(f"- **{w.id}** waits: {w.reason}")
    return "\n".join(lines).rstrip() + "\n"


def report_json(report: EligibilityReport) -> dict[str, object]:
    def verdict(v: Verdict) -> dict[str, str]:
        return {"id": v.id, "title": v.title, "reason": v.reason}

    return {
        "eligible": [verdict(v) for v in report.eligible],
        "ineligible": [verdict(v) for v in report.ineligible],
        "overlaps": [{"milestones": list(o.milestones), "files": list(o.files)} for o in report.overlaps],
        "plan": {
            "start": list(report.plan.start),
            "waiting": [{"id": w.id, "reason": w.reason} for w in report.plan.waiting],
        },
        "cycles": [list(c) for c in report.cycles],
    }
