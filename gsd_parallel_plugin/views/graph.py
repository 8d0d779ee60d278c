"""The milestone dependency graph: states, file overlaps, the critical path, three drawings.

Edges run from a dependency to the milestone that needs it. File overlaps (milestones
whose plans touch the same files, among those not complete) are undirected and drawn
dashed. The critical path is the dependency chain with the most planned tasks (ties:
more milestones, then queue order); milestones in a dependency cycle are left out of it.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..models import Milestone, Overlap, Project, VerdictKind
from ..project.eligibility import analyse, file_overlaps, find_cycles

STATE_COLORS = {
    "complete": "#d3f9d8",
    "merged": "#b2f2bb",
    "starting": "#d0ebff",
    "running": "#a5d8ff",
    "pausing": "#fff3bf",
    "paused": "#ffec99",
    "stopping": "#fff3bf",
    "stopped": "#e9ecef",
    "blocked": "#ffe8cc",
    "crashed": "#ffc9c9",
    "failed": "#ffa8a8",
    "cycle": "#ffa8a8",
    "ready": "#ffffff",
    "waiting": "#f1f3f5",
    "parked": "#dee2e6",
    "no plan": "#dee2e6",
}
CRITICAL_COLOR = "#d9480f"
OVERLAP_COLOR = "#868e96"


@dataclass(frozen=True)
class GraphNode:
    id: str
    title: str
    state: str
    tasks_done: int
    tasks_total: int
    depends_on: tuple[str, ...]
    """Dependencies that exist in the project."""
    unknown_deps: tuple[str, ...]
    """Dependencies on milestones that do not exist (never satisfied)."""
    critical: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "depends_on": list(self.depends_on),
            "unknown_deps": list(self.unknown_deps),
        }


@dataclass(frozen=True)
class MilestoneGraph:
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]
    """(dependency, dependent), in queue order of the dependent."""
    overlaps: tuple[Overlap, ...]
    critical_path: tuple[str, ...]
    critical_tasks: int
    cycles: tuple[tuple[str, ...], ...]

    def node(self, mid: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == mid)

    @property
    def critical_edges(self) -> set[tuple[str, str]]:
        path = self.critical_path
        return set(itertools.pairwise(path))

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [{"from": a, "to": b} for a, b in self.edges],
            "overlaps": [{"milestones": list(o.milestones), "files": list(o.files)} for o in self.overlaps],
            "critical_path": list(self.critical_path),
            "critical_tasks": self.critical_tasks,
            "cycles": [list(c) for c in self.cycles],
        }


def milestone_states(
    project: Project,
    *,
    workers: Mapping[str, str] | None = None,
    merged: Collection[str] = (),
    completed: Collection[str] = (),
) -> dict[str, str]:
    """One word per milestone: what the plan files and the latest run say about it.

    ``merged``/``completed`` come from the store, ``workers`` maps a milestone to its
    worker's state in the latest run. Order of precedence: no plan, merged, complete,
    the worker's state, parked, cycle, then ``ready``/``waiting`` (for a merge)/``blocked``.
    """
    workers = workers or {}
    awaiting = set(completed) - set(merged)
    report = analyse(project, max_workers=1, awaiting_merge=awaiting)
    kinds = {v.id: v.kind for v in (*report.eligible, *report.ineligible)}
    eligible = {v.id for v in report.eligible}
    in_cycle = {mid for cycle in report.cycles for mid in cycle}
    states: dict[str, str] = {}
    for m in project.milestones:
        if m.status == "ghost":
            state = "no plan"
        elif m.id in merged:
            state = "merged"
        elif m.complete or m.id in completed:
            state = "complete"
        elif m.id in workers:
            state = workers[m.id]
        elif m.status == "parked":
            state = "parked"
        elif m.id in in_cycle:
            state = "cycle"
        elif m.id in eligible:
            state = "ready"
        elif kinds.get(m.id) == VerdictKind.WAITING_FOR_MERGE:
            state = "waiting"
        else:
            state = "blocked"
        states[m.id] = state
    return states


def critical_path(
    project: Project, task_counts: Mapping[str, int] | None = None
) -> tuple[tuple[str, ...], int]:
    """The dependency chain with the most planned tasks, and that number of tasks.

    ``task_counts`` overrides a milestone's planned tasks (its worktree has planned more
    than the root shows during a run): the path is weighed with what the nodes show.
    """
    in_cycle = {mid for cycle in find_cycles(project) for mid in cycle}
    nodes = [m for m in project.milestones if m.id not in in_cycle]
    ids = {m.id for m in nodes}
    deps = {m.id: [d for d in m.depends_on if d in ids and d != m.id] for m in nodes}
    counts = task_counts or {}
    weight = {m.id: counts.get(m.id, len(m.tasks)) for m in nodes}
    # Kahn's algorithm in queue order: dependencies before dependents.
    dependents: dict[str, list[str]] = defaultdict(list)
    indegree = {mid: len(set(ds)) for mid, ds in deps.items()}
    for mid, ds in deps.items():
        for d in set(ds):
            dependents[d].append(mid)
    ready = [m.id for m in nodes if indegree[m.id] == 0]
    order: list[str] = []
    while ready:
        mid = ready.pop(0)
        order.append(mid)
        for nxt in dependents[mid]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    best: dict[str, tuple[int, int, tuple[str, ...]]] = {}
    for mid in order:
        chain: tuple[int, int, tuple[str, ...]] = (0, 0, ())
        for d in deps[mid]:
            if d in best and best[d][:2] > chain[:2]:
                chain = best[d]
        best[mid] = (chain[0] + weight[mid], chain[1] + 1, (*chain[2], mid))
    top: tuple[int, int, tuple[str, ...]] = (0, 0, ())
    for mid in order:
        if best[mid][:2] > top[:2]:
            top = best[mid]
    return top[2], top[0]


def build_graph(
    project: Project,
    states: Mapping[str, str] | None = None,
    plans: Mapping[str, Milestone] | None = None,
) -> MilestoneGraph:
    """The graph of ``project`` with ``states`` (default: from the plan files alone).

    ``plans`` gives fresher copies of some milestones (their worktrees' plan files) for
    the task counts; a complete or merged milestone counts all its tasks done.
    """
    states = states if states is not None else milestone_states(project)
    fresh_plans = plans or {}
    totals = {m.id: len((fresh_plans.get(m.id) or m).tasks) for m in project.milestones}
    path, tasks = critical_path(project, totals)
    on_path = set(path)
    known = set(project.ids)
    nodes = []
    edges = []
    for m in project.milestones:
        deps = tuple(dict.fromkeys(d for d in m.depends_on if d in known))
        unknown = tuple(dict.fromkeys(d for d in m.depends_on if d not in known))
        state = states.get(m.id, "?")
        fresh = fresh_plans.get(m.id) or m
        total = totals[m.id]
        finished = m.complete or state in ("complete", "merged")
        done = total if finished else sum(1 for t in fresh.tasks if t.done)
        nodes.append(GraphNode(m.id, m.title, state, done, total, deps, unknown, m.id in on_path))
        edges += [(d, m.id) for d in deps]
    overlaps = file_overlaps([m for m in project.milestones if not m.complete])
    cycles = tuple(tuple(c) for c in find_cycles(project))
    return MilestoneGraph(tuple(nodes), tuple(edges), tuple(overlaps), path, tasks, cycles)


# --------------------------------------------------------------------------- drawings


def _tasks(n: GraphNode) -> str:
    return f"{n.tasks_done}/{n.tasks_total} tasks" if n.tasks_total else "no tasks planned"


def _name(n: GraphNode, sep: str) -> str:
    """``M002 Auth`` (the ID alone when the milestone has no title of its own)."""
    return n.id if n.title in ("", n.id) else f"{n.id}{sep}{n.title}"


def _files(files: tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(files[:limit])
    return shown + (f" and {len(files) - limit} more" if len(files) > limit else "")


def render_tree(graph: MilestoneGraph) -> str:
    """A terminal tree: each milestone under what it depends on; shared ones once in full."""
    children: dict[str, list[str]] = defaultdict(list)
    for dep, mid in graph.edges:
        children[dep].append(mid)
    lines = [f"# Milestone graph ({len(graph.nodes)} milestone(s))", ""]
    seen: set[str] = set()

    def label(n: GraphNode) -> str:
        star = " ★" if n.critical else ""
        unknown = f" (needs unknown {', '.join(n.unknown_deps)})" if n.unknown_deps else ""
        return f"{_name(n, ' ')} — {n.state} · {_tasks(n)}{star}{unknown}"

    def walk(mid: str, prefix: str, last: bool, root: bool) -> None:
        n = graph.node(mid)
        branch = "" if root else ("└── " if last else "├── ")
        if mid in seen:
            lines.append(f"{prefix}{branch}{n.id} (see above)")
            return
        seen.add(mid)
        lines.append(prefix + branch + label(n))
        kids = children[mid]
        inner = prefix + ("" if root else ("    " if last else "│   "))
        for i, kid in enumerate(kids):
            walk(kid, inner, i == len(kids) - 1, False)

    for n in graph.nodes:
        if not n.depends_on:
            walk(n.id, "", True, True)
    for n in graph.nodes:  # only reachable through a cycle
        if n.id not in seen:
            walk(n.id, "", True, True)
    if graph.critical_path:
        lines += [
            "",
            f"★ Critical path: {' → '.join(graph.critical_path)} ({graph.critical_tasks} planned task(s))",
        ]
    if graph.overlaps:
        lines += ["", "File overlaps (dashed in mermaid and dot):"]
        lines += [f"  {a} ┄┄ {b} — {_files(o.files)}" for o in graph.overlaps for a, b in [o.milestones]]
    if graph.cycles:
        lines += ["", "Dependency cycles:"]
        lines += ["  " + " → ".join((*c, c[0])) for c in graph.cycles]
    return "\n".join(lines) + "\n"


def _mermaid_id(mid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", mid)


def _mermaid_text(text: str) -> str:
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def render_mermaid(graph: MilestoneGraph, direction: str = "TD") -> str:
    """A Mermaid ``flowchart``: critical edges thick (``==>``), overlaps dotted (``-.-``)."""
    lines = [f"flowchart {direction}"]
    unknown: list[str] = []
    for n in graph.nodes:
        text = _mermaid_text(_name(n, ": ")) + "<br/>" + _mermaid_text(f"{n.state} · {_tasks(n)}")
        lines.append(f'    {_mermaid_id(n.id)}["{text}"]')
        unknown += [d for d in n.unknown_deps if d not in unknown]
    for mid in unknown:
        lines.append(f'    {_mermaid_id(mid)}["{_mermaid_text(mid)}: unknown milestone"]')
    critical = graph.critical_edges
    for dep, mid in graph.edges:
        arrow = "==>" if (dep, mid) in critical else "-->"
        lines.append(f"    {_mermaid_id(dep)} {arrow} {_mermaid_id(mid)}")
    for n in graph.nodes:
        for dep in n.unknown_deps:
            lines.append(f"    {_mermaid_id(dep)} -.-> {_mermaid_id(n.id)}")
    for o in graph.overlaps:
        a, b = o.milestones
        files = _mermaid_text(f"{len(o.files)} shared file(s)")
        lines.append(f'    {_mermaid_id(a)} -. "{files}" .- {_mermaid_id(b)}')
    by_state: dict[str, list[str]] = defaultdict(list)
    for n in graph.nodes:
        by_state[n.state].append(_mermaid_id(n.id))
    for state, ids in by_state.items():
        cls = "st_" + re.sub(r"\W", "_", state)
        lines.append(f"    classDef {cls} fill:{STATE_COLORS.get(state, '#ffffff')},stroke:#495057")
        lines.append(f"    class {','.join(ids)} {cls}")
    if unknown:
        lines.append("    classDef unknown fill:#ffffff,stroke:#e03131,stroke-dasharray:4 3")
        lines.append(f"    class {','.join(_mermaid_id(m) for m in unknown)} unknown")
    if graph.critical_path:
        lines.append(f"    classDef critical stroke:{CRITICAL_COLOR},stroke-width:3px")
        lines.append(f"    class {','.join(_mermaid_id(m) for m in graph.critical_path)} critical")
    return "\n".join(lines) + "\n"


def _dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_dot(graph: MilestoneGraph) -> str:
    """Graphviz DOT: critical nodes and edges bold orange, overlaps dashed and undirected."""
    lines = [
        "digraph milestones {",
        '    graph [rankdir=LR, fontname="Helvetica"];',
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    unknown: list[str] = []
    for n in graph.nodes:
        attrs = [
            f'label="{_dot(_name(n, ": "))}\\n{_dot(f"{n.state} · {_tasks(n)}")}"',
            f'fillcolor="{STATE_COLORS.get(n.state, "#ffffff")}"',
        ]
        if n.critical:
            attrs += [f'color="{CRITICAL_COLOR}"', "penwidth=2.5"]
        lines.append(f'    "{_dot(n.id)}" [{", ".join(attrs)}];')
        unknown += [d for d in n.unknown_deps if d not in unknown]
    for mid in unknown:
        lines.append(
            f'    "{_dot(mid)}" [label="{_dot(mid)}: unknown milestone", style="dashed", color="#e03131"];'
        )
    critical = graph.critical_edges
    for dep, mid in graph.edges:
        style = f' [color="{CRITICAL_COLOR}", penwidth=2.5]' if (dep, mid) in critical else ""
        lines.append(f'    "{_dot(dep)}" -> "{_dot(mid)}"{style};')
    for n in graph.nodes:
        for dep in n.unknown_deps:
            lines.append(f'    "{_dot(dep)}" -> "{_dot(n.id)}" [style=dotted, color="#e03131"];')
    for o in graph.overlaps:
        a, b = o.milestones
        tip = _dot(_files(o.files))
        lines.append(
            f'    "{_dot(a)}" -> "{_dot(b)}" [style=dashed, dir=none, constraint=false,'
            f' color="{OVERLAP_COLOR}", label="{len(o.files)} file(s)", tooltip="{tip}"];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
