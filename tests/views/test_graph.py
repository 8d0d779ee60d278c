"""``graph``: states, critical path, file overlaps; tree, Mermaid and DOT, the last two
checked by the real parsers (mermaid's own, Graphviz compiled to wasm) from npm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gsd_parallel_plugin.project import read_project
from gsd_parallel_plugin.store import Store
from gsd_parallel_plugin.testing.builder import BuiltProject, build_project
from gsd_parallel_plugin.views.graph import build_graph, critical_path, milestone_states

NPM_PACKAGES = ("mermaid@11.17.2", "jsdom@29.1.1", "@hpcc-js/wasm-graphviz@1.29.2")
CHECK_SCRIPT = r"""
import fs from 'fs';
const [mode] = process.argv.slice(2);
const text = fs.readFileSync(0, 'utf8');
try {
  if (mode === 'mermaid') {
    const { JSDOM } = await import('jsdom');
    const dom = new JSDOM('<!doctype html><html><body></body></html>');
    globalThis.window = dom.window;
    globalThis.document = dom.window.document;
    const { default: mermaid } = await import('mermaid');
    const result = await mermaid.parse(text);
    console.log(JSON.stringify({ ok: true, type: result.diagramType }));
  } else {
    const { Graphviz } = await import('@hpcc-js/wasm-graphviz');
    const svg = (await Graphviz.load()).dot(text);
    console.log(JSON.stringify({ ok: true, svg }));
  }
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String((e && e.message) || e) }));
  process.exit(1);
}
"""


@pytest.fixture(scope="session")
def node_check(request: pytest.FixtureRequest):
    """Run text through the real Mermaid / Graphviz parser; installs them once per machine.

    The packages live in ``$GSD_PARALLEL_TEST_NPM_CACHE`` (default
    ``~/.cache/gsd-parallel/test-npm``), so later sessions and CI on the same machine reuse
    them. Skipped only when node/npm are missing or the npm registry cannot be reached.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Mermaid/Graphviz parser check")
    cache = Path(
        os.environ.get("GSD_PARALLEL_TEST_NPM_CACHE") or Path.home() / ".cache" / "gsd-parallel" / "test-npm"
    )
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "installed.json"
    if not stamp.exists() or json.loads(stamp.read_text()) != list(NPM_PACKAGES):
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--no-save",
             "--loglevel=error", *NPM_PACKAGES],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(
                "could not install the parsers from the npm registry (unreachable?): "
                + done.stderr.strip()[-300:]
            )
        stamp.write_text(json.dumps(list(NPM_PACKAGES)))
    script = cache / "check.mjs"
    script.write_text(CHECK_SCRIPT)

    def check(mode: str, text: str) -> dict:
        done = subprocess.run(
            [node, str(script), mode], input=text, capture_output=True, text=True,
            timeout=120, cwd=cache,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        assert lines, done.stderr
        return json.loads(lines[-1])

    return check


@pytest.fixture
def dag(tmp_path: Path) -> BuiltProject:
    return build_project(
        tmp_path / "proj",
        {
            "M001": {"title": "Core API", "complete": True,
                     "slices": {"S01": {"T01": ["src/a.py"], "T02": ["src/b.py"]}}},
            "M002": {"title": 'Auth "System"', "depends_on": ["M001"],
                     "slices": {"S01": {"T01": ["src/auth.py"], "T02": ["src/app.py"], "T03": []}}},
            "M003": {"title": "Search <fast> & #1", "slices": {"S01": {"T01": ["src/app.py"]}}},
            "M004": {"title": "API Integration", "depends_on": ["M002", "M003", "M009"],
                     "slices": {"S01": {"T01": ["src/api.py"]}}},
            "M005": {"title": "Admin", "parked": True},
            "M006": {},
            "M007-abc123": {"title": "Loop A", "depends_on": ["M008"]},
            "M008": {"title": "Loop B", "depends_on": ["M007-abc123"]},
        },
        preferences={"enabled": True},
    )  # fmt: skip


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gsd_parallel_plugin", *map(str, args)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_states_from_plan_files_and_store(dag: BuiltProject) -> None:
    project = read_project(dag.root)
    plain = milestone_states(project)
    assert plain == {
        "M001": "complete", "M002": "ready", "M003": "ready", "M004": "blocked",
        "M005": "parked", "M006": "no plan", "M007-abc123": "cycle", "M008": "cycle",
    }  # fmt: skip
    with_run = milestone_states(
        project, workers={"M002": "running", "M003": "complete"}, completed={"M003"}, merged={"M001"}
    )
    assert with_run["M001"] == "merged"
    assert with_run["M002"] == "running"
    assert with_run["M003"] == "complete"


def test_critical_path_is_the_chain_with_most_planned_tasks(tmp_path: Path) -> None:
    project = build_project(
        tmp_path / "p",
        {
            "M001": {"slices": {"S01": {"T01": [], "T02": []}}},                 # 2
            "M002": {"depends_on": ["M001"], "slices": {"S01": {"T01": []}}},     # 1
            "M003": {"slices": {"S01": {"T01": [], "T02": [], "T03": [], "T04": []}}},  # 4
            "M004": {"depends_on": ["M002", "M003"], "slices": {"S01": {"T01": []}}},   # 1
            "M005": {"depends_on": ["M004"]},                                     # 0 tasks
        },
        git_init=False,
    )  # fmt: skip
    path, tasks = critical_path(read_project(project.root))
    # M003 (4) -> M004 -> M005 beats M001 (2) -> M002 (1) -> M004 -> M005.
    assert path == ("M003", "M004", "M005") and tasks == 5


def test_critical_path_ties_prefer_more_milestones_then_queue_order(tmp_path: Path) -> None:
    project = build_project(
        tmp_path / "p",
        {
            "M001": {"slices": {"S01": {"T01": [], "T02": []}}},
            "M002": {"slices": {"S01": {"T01": []}}},
            "M003": {"depends_on": ["M002"], "slices": {"S01": {"T01": []}}},
            "M004": {"slices": {"S01": {"T01": [], "T02": []}}},
        },
        git_init=False,
    )  # fmt: skip
    assert critical_path(read_project(project.root)) == (("M002", "M003"), 2)


def test_tree(dag: BuiltProject) -> None:
    done = cli("--project", dag.root, "graph")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# Milestone graph (8 milestone(s))"
    assert "M001 Core API — complete · 2/2 tasks ★" in lines
    assert '└── M002 Auth "System" — ready · 0/3 tasks ★' in lines
    assert "    └── M004 API Integration — blocked · 0/1 tasks ★ (needs unknown M009)" in lines
    assert "M003 Search <fast> & #1 — ready · 0/1 tasks" in lines
    assert "└── M004 (see above)" in lines
    assert "M005 Admin — parked · no tasks planned" in lines
    assert "M006 — no plan · no tasks planned" in lines
    assert "    └── M007-abc123 (see above)" in lines
    assert "★ Critical path: M001 → M002 → M004 (6 planned task(s))" in lines
    assert "  M002 ┄┄ M003 — src/app.py" in lines
    assert "  M007-abc123 → M008 → M007-abc123" in lines
    assert sum("★" in line for line in lines) == 4  # three nodes and the legend


def test_tree_shows_run_states_from_the_store(dag: BuiltProject) -> None:
    from gsd_parallel_plugin.workspace.worktrees import ensure_worktree

    wt = ensure_worktree(dag.root, "M002", "main").path
    tasks = wt / ".gsd" / "milestones" / "M002" / "slices" / "S01" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "T01-SUMMARY.md").write_text("# done\n")  # progress lives in the worktree
    with Store(dag.gsd / "parallel" / "coordinator.db") as store:
        run = store.create_run()
        store.add_worker(run.id, "M002", "Auth", wt, "gsd-parallel/M002")
        store.set_state("M002", run.id, "running")
        store.add_worker(run.id, "M003", "Search", dag.root, "gsd-parallel/M003")
        store.set_state("M003", run.id, "running")
        store.set_state("M003", run.id, "crashed", "exit code 1")
        store.add_worker(run.id, "M004", "API", dag.root, "gsd-parallel/M004")
        store.set_state("M004", run.id, "complete")
    out = cli("--project", dag.root, "graph").stdout
    assert '└── M002 Auth "System" — running · 1/3 tasks ★' in out
    assert "M003 Search <fast> & #1 — crashed · 0/1 tasks" in out
    assert "M004 API Integration — complete · 1/1 tasks" in out  # complete: all its tasks done


def test_json(dag: BuiltProject) -> None:
    data = json.loads(cli("--project", dag.root, "--json", "graph").stdout)
    assert data["critical_path"] == ["M001", "M002", "M004"] and data["critical_tasks"] == 6
    assert {"from": "M003", "to": "M004"} in data["edges"]
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["M004"]["unknown_deps"] == ["M009"] and nodes["M004"]["critical"]
    assert data["overlaps"] == [{"milestones": ["M002", "M003"], "files": ["src/app.py"]}]
    assert data["cycles"] == [["M007-abc123", "M008"]] or data["cycles"] == [["M008", "M007-abc123"]]


def test_mermaid_parses_with_mermaid(dag: BuiltProject, node_check) -> None:
    done = cli("--project", dag.root, "graph", "--format", "mermaid")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("flowchart TD\n")
    assert "    M001 ==> M002" in text and "    M002 ==> M004" in text  # critical: thick
    assert "    M003 --> M004" in text
    assert '    M002 -. "1 shared file(s)" .- M003' in text  # overlap: dotted, undirected
    assert "M007_abc123" in text and "M007-abc123: Loop A" in text
    assert "#quot;System#quot;" in text and "#lt;fast#gt;" in text
    assert "    class M001,M002,M004 critical" in text
    assert node_check("mermaid", text) == {"ok": True, "type": "flowchart-v2"}
    # The check is real: a broken diagram is refused.
    assert node_check("mermaid", text.replace("==> M002", "==> [M002"))["ok"] is False


def test_dot_renders_with_graphviz(dag: BuiltProject, node_check) -> None:
    text = cli("--project", dag.root, "graph", "--format", "dot").stdout
    assert text.startswith("digraph milestones {")
    assert '"M002" -> "M003" [style=dashed, dir=none' in text
    assert '"M001" -> "M002" [color="#d9480f", penwidth=2.5];' in text
    assert '"M003" -> "M004";' in text
    assert 'label="M002: Auth \\"System\\"\\nready · 0/3 tasks"' in text
    result = node_check("dot", text)
    assert result["ok"], result
    svg = result["svg"]
    for mid in ("M001", "M002", "M003", "M004", "M007&#45;abc123", "M009"):
        assert f"<title>{mid}</title>" in svg
    assert "<title>M001&#45;&gt;M002</title>" in svg
    assert 'stroke-dasharray="5,2"' in svg  # the overlap edge is drawn dashed
    assert node_check("dot", text.replace("->", "-> ->", 1))["ok"] is False


def test_graph_on_a_project_without_dependencies(tmp_path: Path) -> None:
    project = build_project(tmp_path / "p", {"M001": {"title": "Solo"}}, git_init=False)
    graph = build_graph(read_project(project.root))
    assert graph.critical_path == ("M001",) and graph.edges == ()


def test_bad_format_is_a_one_line_error(dag: BuiltProject) -> None:
    done = cli("--project", dag.root, "graph", "--format", "png")
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr


def test_critical_path_counts_the_tasks_its_nodes_show_during_a_run(tmp_path: Path) -> None:
    """Issue 13, item 6: a worker's checkout plans more tasks than the root shows; the
    critical path is weighed with the nodes' (fresh) task counts, and its count is theirs."""
    root = build_project(
        tmp_path / "root",
        {
            "M001": {"slices": {"S01": {"T01": [], "T02": []}}},
            "M002": {"slices": {"S01": {"T01": []}}},
            "M003": {"depends_on": ["M002"], "slices": {"S01": {"T01": []}}},
        },
        git_init=False,
    )
    checkout = build_project(  # M002 as its checkout sees it after planning one more slice
        tmp_path / "checkout",
        {"M002": {"slices": {"S01": {"T01": []}, "S02": {"T01": [], "T02": []}}}},
        git_init=False,
    )
    project = read_project(root.root)
    fresh = read_project(checkout.root).get("M002")
    assert fresh is not None and len(fresh.tasks) == 3
    graph = build_graph(project, plans={"M002": fresh})
    nodes = {n.id: n for n in graph.nodes}
    assert graph.critical_path == ("M002", "M003")
    assert graph.critical_tasks == sum(nodes[m].tasks_total for m in graph.critical_path) == 4
    assert [n.id for n in graph.nodes if n.critical] == ["M002", "M003"]
