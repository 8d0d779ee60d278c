"""Each name is defined once: a copy coming back (a state set, a reason text, an exit code,
a runtime path, a branch prefix, a money or ID helper) fails here, naming file and line.

The checks read the package's syntax trees (docstrings and comments are prose, not
definitions, and are skipped), so they match what the code does, not how it is worded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import gsd_parallel_plugin
from gsd_parallel_plugin.exitcodes import ExitCode, GsdExit
from gsd_parallel_plugin.models import HELD_STATES, LIVE_STATES, StateReason

PACKAGE = Path(gsd_parallel_plugin.__file__).parent


@cache
def modules() -> dict[str, ast.Module]:
    """Every module of the package, by path relative to it (``run/supervisor.py``)."""
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def prose(tree: ast.Module) -> set[int]:
    """ids of string constants that are docstrings or bare string statements."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def strings(skip: tuple[str, ...] = ()) -> Iterator[tuple[str, int, str]]:
    """(module, line, text) of every string constant in code, f-string parts included."""
    for name, tree in modules().items():
        if name in skip:
            continue
        docs = prose(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                yield name, node.lineno, node.value


def where(hits: list[tuple[str, int, str]]) -> str:
    return "\n".join(f"  {m}:{line}: {text!r}" for m, line, text in hits)


def test_the_checks_see_the_package() -> None:
    """Guard against a vacuous pass: the walk finds the modules and strings it checks."""
    assert {"models.py", "workspace/layout.py", "run/supervisor.py", "cli.py"} <= set(modules())
    assert any(text == "coordinator.db" for _m, _l, text in strings())


# --------------------------------------------------------------------------- worker states


def _literal_set(node: ast.AST) -> frozenset[str] | None:
    elements = None
    if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
        elements = node.elts
    elif (
        isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in {"set", "frozenset"}
        and node.args
        and isinstance(node.args[0], (ast.Set, ast.Tuple, ast.List))
    ):
        elements = node.args[0].elts
    if not elements or not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elements):
        return None
    return frozenset(e.value for e in elements)  # type: ignore[attr-defined]


def test_live_and_held_states_are_spelled_out_nowhere() -> None:
    """models.LIVE_STATES/HELD_STATES are the only definitions; no literal copy, no rebinding."""
    copies = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            found = _literal_set(node)
            if found in (LIVE_STATES, HELD_STATES):
                copies.append((name, node.lineno, ", ".join(sorted(found))))  # type: ignore[attr-defined]
            if isinstance(node, ast.Assign) and name != "models.py":
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in {"LIVE_STATES", "HELD_STATES"}:
                        copies.append((name, node.lineno, target.id))
    assert not copies, "state sets defined outside models.py:\n" + where(copies)


# --------------------------------------------------------------------------- reasons


def test_stored_reason_texts_never_change() -> None:
    """Old stores hold these exact texts in ``workers.state_reason``; code reads them back."""
    assert StateReason.BUDGET == "budget ceiling reached"
    assert StateReason.PAUSE_REQUESTED == "pause requested"
    assert StateReason.ENVELOPE == "milestone budget reached"
    assert f"{StateReason.BUDGET}" == "budget ceiling reached"  # written into messages as text


KEYED_REASONS = [
    StateReason.BUDGET,
    StateReason.ENVELOPE,
    StateReason.PAUSE_REQUESTED,
    StateReason.FROZEN,
    StateReason.PAUSE_CANCELLED,
    StateReason.STOPPED_WHILE_WAITING,
]


@pytest.mark.parametrize("reason", KEYED_REASONS, ids=lambda r: r.name)
def test_reason_texts_are_written_only_on_the_enum(reason: StateReason) -> None:
    hits = [h for h in strings(skip=("models.py",)) if reason.value in h[2]]
    assert not hits, f"{reason.value!r} written out instead of StateReason.{reason.name}:\n" + where(hits)


OPENING_WORDS = {"Blocked by", "Waiting for", "Dependency cycle", "waiting for a free worker slot"}
"""How the views used to recognise an eligibility reason (``reason.startswith(...)``)."""


def test_eligibility_reasons_are_not_matched_by_their_words() -> None:
    """Views compare ``Verdict.kind``/``Waiting.kind``: the reasons' opening words, as a
    prefix to match, appear nowhere (eligibility.py writes the full texts)."""
    hits = [h for h in strings(skip=("project/eligibility.py",)) if h[2].strip() in OPENING_WORDS]
    calls = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "startswith":
                args = [c.value for a in node.args for c in ast.walk(a) if isinstance(c, ast.Constant)]
                if any(isinstance(a, str) and a.startswith(tuple(OPENING_WORDS)) for a in args):
                    calls.append((name, node.lineno, "startswith(<reason words>)"))
    assert not hits + calls, "eligibility reasons matched by their words:\n" + where(hits + calls)


# --------------------------------------------------------------------------- exit codes

EXIT_NUMBERS = {int(c) for c in ExitCode} | {int(c) for c in GsdExit}
EXIT_NUMBERS.discard(0)  # 0 is everywhere (offsets, counts); the names cover it where it is a code
RETURNING_CODES = {
    "cli.py": {"main", "run", "_fail"},
    "run/supervisor.py": {"main", "run"},
    "run/foreground.py": {"run_foreground"},
    "commands/watch.py": {"watch_live"},
}


def _ints(node: ast.AST | None) -> list[int]:
    if node is None:
        return []
    return [
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and type(n.value) is int and n.value in EXIT_NUMBERS | {0}
    ]


def test_exit_codes_are_named() -> None:
    hits: list[tuple[str, int, str]] = []
    for name, tree in modules().items():
        if name == "exitcodes.py":
            continue
        for node in ast.walk(tree):
            # CommandResult(..., exit_code=2), raise SystemExit(2), sys.exit(2), _fail(msg, 2, ...)
            if isinstance(node, ast.Call):
                func = node.func
                fname = getattr(func, "id", None) or getattr(func, "attr", None)
                for kw in node.keywords:
                    if kw.arg == "exit_code" and _ints(kw.value):
                        hits.append((name, node.lineno, "exit_code=<number>"))
                if fname in {"exit", "SystemExit", "_fail"} and any(
                    isinstance(a, ast.Constant) and type(a.value) is int for a in node.args
                ):
                    hits.append((name, node.lineno, f"{fname}(<number>)"))
            # class X(Error): exit_code = 2
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(getattr(t, "id", None) == "exit_code" for t in targets) and _ints(node.value):
                    hits.append((name, node.lineno, "exit_code = <number>"))
            # code == 10, code != 3 (``exc.exit_code`` of a GitCommandError is git's own: not ours)
            if isinstance(node, ast.Compare):
                names = [getattr(n, "id", None) for n in (node.left, *node.comparators)]
                if "code" in names and any(
                    isinstance(c, ast.Constant) and c.value in EXIT_NUMBERS
                    for c in (node.left, *node.comparators)
                ):
                    hits.append((name, node.lineno, "code compared with a number"))
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef) and func.name in RETURNING_CODES.get(name, ()):
                for ret in ast.walk(func):
                    if isinstance(ret, ast.Return) and _ints(ret.value):
                        hits.append((name, ret.lineno, f"{func.name} returns a number"))
    assert not hits, "bare exit codes (use gsd_parallel_plugin.exitcodes):\n" + where(hits)


# --------------------------------------------------------------------------- paths and branches

RUNTIME_NAMES = (
    "coordinator.db",
    "supervisor.lock",
    "merge.lock",
    "start.lock",
    "session-events.jsonl",
    "session-events.state.json",
    ".stdout.log",
    ".stderr.log",
    "radar.json",
    "preview.json",
)


@pytest.mark.parametrize("text", RUNTIME_NAMES)
def test_runtime_paths_are_named_in_layout_only(text: str) -> None:
    hits = [h for h in strings(skip=("workspace/layout.py",)) if text in h[2]]
    assert not hits, f"{text!r} built outside workspace/layout.py:\n" + where(hits)


def test_our_runtime_directory_is_built_by_layout() -> None:
    """``gsd_dir / "parallel"`` is ``layout.parallel_dir(gsd_dir)`` (the fake GSD, which
    plays GSD reading its own signal file, is GSD's side of that contract)."""
    hits = []
    for name, tree in modules().items():
        if name in {"workspace/layout.py", "testing/fake_gsd.py"}:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in {"parallel", "workers", "merging"}
            ):
                hits.append((name, node.lineno, f"/ {node.right.value!r}"))
    assert not hits, "runtime directories built outside workspace/layout.py:\n" + where(hits)


def test_branch_names_come_from_layout() -> None:
    """``gsd-parallel/<MID>`` and ``refs/gsd-parallel/merged/<MID>`` are spelled in layout.py;
    GSD's own ``milestone/<MID>`` branches are never written by us."""
    hits = [
        h
        for h in strings(skip=("workspace/layout.py",))
        if h[2].startswith(("gsd-parallel/", "milestone/"))
        or "refs/heads/gsd-parallel" in h[2]
        or "refs/gsd-parallel/" in h[2]
    ]
    assert not hits, "branch or ref names spelled out:\n" + where(hits)


# --------------------------------------------------------------------------- helpers defined once


def _definitions(kind: type[ast.AST], attr: str, names: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {n: [] for n in names}
    for module, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, kind) and getattr(node, attr) in names:
                found[getattr(node, attr)].append(f"{module}:{node.lineno}")
    return found


def test_helpers_are_defined_once() -> None:
    defs = _definitions(
        ast.FunctionDef,
        "name",
        {
            "usd_to_nanos",
            "cost_to_nanos",
            "nanos_to_usd",
            "split_z",
            "_split_z",
            "validate_milestone_id",
            "is_valid_milestone_id",
        },
    )
    places = {name: [p.split(":")[0] for p in where_] for name, where_ in defs.items()}
    assert places == {
        "usd_to_nanos": ["money.py"],
        "cost_to_nanos": ["money.py"],
        "nanos_to_usd": ["money.py"],
        "split_z": ["workspace/git.py"],
        "_split_z": [],
        "validate_milestone_id": ["milestone_ids.py"],
        "is_valid_milestone_id": ["milestone_ids.py"],
    }


def test_constants_are_assigned_once() -> None:
    assigned: dict[str, list[str]] = {}
    for module, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in {
                        "NANOS_PER_USD",
                        "MILESTONE_ID_RE",
                        "BRANCH_PREFIX",
                    }:
                        assigned.setdefault(t.id, []).append(module)
    assert assigned == {
        "NANOS_PER_USD": ["money.py"],
        "MILESTONE_ID_RE": ["milestone_ids.py"],
        "BRANCH_PREFIX": ["workspace/layout.py"],
    }


def test_milestone_id_pattern_is_written_once() -> None:
    """The fake GSD keeps GSD's own (JavaScript) pattern: it plays GSD, not us."""
    skip = ("milestone_ids.py", "testing/fake_gsd.py")
    hits = [h for h in strings(skip=skip) if "M\\d{3}" in h[2] or "M[0-9]{3}" in h[2]]
    assert not hits, "milestone-ID validation outside milestone_ids.py:\n" + where(hits)


def test_no_type_is_called_just_outcome() -> None:
    """Two unrelated ``Outcome`` types were confused: each name says what it is now."""
    hits = []
    for module, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == "Outcome":
                hits.append((module, node.lineno, "class Outcome"))
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "Outcome" for t in node.targets
            ):
                hits.append((module, node.lineno, "Outcome = ..."))
    assert not hits, where(hits)
