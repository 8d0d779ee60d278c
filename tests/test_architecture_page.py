"""docs/ARCHITECTURE.md matches the tree (the import rules it states: tests/test_architecture.py).

A folder or module renamed, added or removed without a doc update fails here, as does a
module over 550 lines without its reason, or a
docstring naming a module path that no longer exists.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "gsd_parallel_plugin"
PAGE = REPO / "docs" / "ARCHITECTURE.md"
README = REPO / "README.md"

LONG_MODULE_LINES = 550
WHY_ONE_MODULE = "Why one module:"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def package_folders() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")


def top_level_modules() -> list[str]:
    return sorted(p.name for p in PACKAGE.glob("*.py"))


def modules() -> Iterator[tuple[str, Path]]:
    """(path relative to the package, path) of every module."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path


# --------------------------------------------------------------------------- the page


def test_the_page_is_linked_from_the_readme_development_section():
    development = README.read_text(encoding="utf-8").split("## Development", 1)[1]
    assert "(docs/ARCHITECTURE.md)" in development


def test_every_package_folder_is_named_on_the_page():
    text = page()
    assert "run" in package_folders()  # the tree is where we think it is
    missing = [name for name in package_folders() if f"`{name}/`" not in text]
    assert missing == [], f"docs/ARCHITECTURE.md does not name these folders: {missing}"


def test_every_top_level_module_is_named_on_the_page():
    text = page()
    assert "cli.py" in top_level_modules()
    missing = [name for name in top_level_modules() if f"`{name}`" not in text]
    assert missing == [], f"docs/ARCHITECTURE.md does not name these modules: {missing}"


def named_paths(text: str) -> set[str]:
    """Paths the page names: ``gsd_parallel_plugin/...`` and ``<folder>/<module>.py``."""
    folders = "|".join(map(re.escape, package_folders()))
    full = re.findall(r"gsd_parallel_plugin/[\w./]*\w", text)
    short = re.findall(rf"(?<![\w/.])(?:{folders})/[\w/]*\.(?:py|js|json)\b", text)
    return set(full) | {f"gsd_parallel_plugin/{p}" for p in short}


def test_every_path_the_page_names_exists():
    paths = named_paths(page())
    assert "gsd_parallel_plugin/hookspecs.py" in paths and "gsd_parallel_plugin/run/workers.py" in paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == [], f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_a_renamed_module_would_fail_the_page_check():
    """The check itself can fail: a path to a module that is gone is reported."""
    stale = page() + "\nSee `merge/merge_steps.py` and `gsd_parallel_plugin/ndjson.py`.\n"
    missing = sorted(p for p in named_paths(stale) if not (REPO / p).exists())
    assert missing == ["gsd_parallel_plugin/merge/merge_steps.py", "gsd_parallel_plugin/ndjson.py"]


def test_the_subcommand_table_the_page_points_to_exists():
    from gsd_parallel_plugin.commands import SUBCOMMANDS
    from gsd_parallel_plugin.models import WorkerState
    from gsd_parallel_plugin.preferences import VALIDATORS, ParallelPreferences

    text = page()
    assert "`SUBCOMMANDS`" in text and "start" in SUBCOMMANDS
    assert "`WorkerState`" in text and "RUNNING" in WorkerState.__members__
    assert "`VALIDATORS`" in text and "`ParallelPreferences`" in text
    assert set(VALIDATORS) <= set(ParallelPreferences.__dataclass_fields__)


# --------------------------------------------------------------------------- dependency rules


def imported_modules(path: Path, rel: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, lazy ones included."""
    package = ["gsd_parallel_plugin", *rel.split("/")[:-1]]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # ``from .. import run`` imports the room itself
                yield node.lineno, f"{module}.{alias.name}"


def test_commands_are_leaves():
    """Only the package's table is imported from outside; subcommand modules import no sibling."""
    offenders = []
    for rel, path in modules():
        for line, module in imported_modules(path, rel):
            if not module.startswith("gsd_parallel_plugin.commands."):
                continue
            if module.count(".") == 2 and module.rsplit(".", 1)[1] in {"SUBCOMMANDS", "lazy_handler"}:
                continue
            if rel == "commands/__init__.py":
                continue
            offenders.append(f"{rel}:{line} imports {module}")
    assert offenders == []


# --------------------------------------------------------------------------- module size


def test_every_long_module_says_why_it_is_one_module():
    unexplained = []
    for rel, path in modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines <= LONG_MODULE_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        paragraphs = [p.strip() for p in doc.split("\n\n")]
        if not any(p.startswith(WHY_ONE_MODULE) for p in paragraphs):
            unexplained.append(f"{rel} ({lines} lines)")
    assert unexplained == [], (
        f"modules over {LONG_MODULE_LINES} lines need a docstring paragraph starting "
        f"{WHY_ONE_MODULE!r} (or a split): {unexplained}"
    )


# --------------------------------------------------------------------------- docstrings

REFERENCE = re.compile(r":(?:mod|func|class|data|attr|meth|exc):`~?((?:\.+|gsd_parallel_plugin\.)[\w.]*)`")
MISSING_DOCS = ("DESIGN.md", "GSD-FORMAT.md", "FINDINGS.md")


def resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docstring_references_to_modules_resolve():
    """``:mod:`..merge.steps``` and ``:func:`gsd_parallel_plugin.x.y``` name what exists."""
    broken = []
    for rel, path in modules():
        package = ["gsd_parallel_plugin", *rel.split("/")[:-1]]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in REFERENCE.findall(line):
                if target.startswith("."):
                    dots = len(target) - len(target.lstrip("."))
                    name = ".".join([*package[: len(package) - dots + 1], target.lstrip(".")])
                else:
                    name = target
                if not resolves(name):
                    broken.append(f"{rel}:{number} {target}")
    assert broken == []


def test_docstrings_cite_no_document_the_repository_lacks():
    cited = [
        f"{rel}:{number}"
        for rel, path in modules()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(doc in line for doc in MISSING_DOCS)
    ]
    assert all(not (REPO / doc).exists() for doc in MISSING_DOCS)
    assert cited == []
