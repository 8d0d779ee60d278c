"""Read a whole GSD project into :class:`~gsd_parallel_plugin.models.Project`.

Every rule of GSD's project format (where ``.gsd`` is, milestone IDs and order, status,
dependencies, slices and tasks) lives here or in the parsers it calls.  Reading never
raises on file contents: a malformed, unreadable or odd file becomes a ``problems``
entry on its milestone (or on the project) naming the file relative to the project
root, and the rest of the project is still analysed.

Decisions the format leaves open (documented so callers can rely on them):

* A directory whose ID prefix is not a *valid* ID (``M1-foo``, ``M0001``) is still a
  milestone, as for GSD, but carries a problem: it cannot become a path or branch.
* Two directories with one ID (``M006/`` and ``M006-item-palette/``) give one
  milestone read from the directory GSD would pick (exact name first, else the first
  sorted), with a problem naming both, plus a project problem.
* ``parked`` (a PARKED file) wins over a terminal SUMMARY; a PARKED-only directory is
  parked, not a ghost.
* Files come from every slice plan under ``slices/``, including slice directories
  the roadmap does not list (a roadmap we could not read must not hide files).
* ``has_file_plan`` is True only when some plan names at least one file.
* ``draft_only``: a CONTEXT-DRAFT, and neither CONTEXT nor ROADMAP nor SUMMARY.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ProjectError
from ..milestone_ids import is_valid_milestone_id
from ..models import Milestone, MilestoneStatus, Project, Slice
from .frontmatter import key_line, parse_frontmatter, scan_frontmatter
from .lazy_re import lazy
from .markdown import first_h1_title
from .milestone_dirs import clash_message, scan_milestone_dirs
from .paths import (
    SLICE_DIR_RE,
    Listing,
    list_dir,
    read_text,
    resolve_dir,
    resolve_file,
)
from .plans import parse_plan_info
from .roadmap import parse_roadmap
from .summary import is_terminal_summary, validation_needs_attention

_ID_TOKEN_RE = lazy(r"^(M\d+(?:-[a-z0-9]{6})?)(?:\s|\(|$)")
_BRANCH_BAD_RE = lazy(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|^-|^/|/$|\.lock$|^$")


def read_project(
    root: Path,
    *,
    default_branch: str | None = None,
    git_main_branch: str | None = None,
) -> Project:
    """Read the project whose ``.gsd`` lives in ``root``.

    The integration branch is ``git_main_branch`` (preferences ``git.main_branch``),
    else ``default_branch`` (what git says), else ``main``.  Raises
    :class:`~gsd_parallel_plugin.errors.ProjectError` only when ``root`` has no
    ``.gsd`` directory at all.
    """
    root = Path(root)
    link = root / ".gsd"
    try:
        is_project = link.is_dir()
    except OSError:
        is_project = False
    if not is_project:
        raise ProjectError(f"not a GSD project: no .gsd directory in {root}")
    gsd_dir = link.resolve()
    found = scan_milestone_dirs(gsd_dir)
    milestones = tuple(_read_milestone_safely(gsd_dir, mid, found.dirs[mid]) for mid in found.order)
    return Project(
        root=root,
        gsd_dir=gsd_dir,
        milestones=milestones,
        integration_branch=git_main_branch or default_branch or "main",
        problems=tuple(found.problems),
    )


# --------------------------------------------------------------------------- milestones


@dataclass
class _Ctx:
    """What is known while reading one milestone directory."""

    mid: str
    path: Path
    rel: str
    listing: Listing
    problems: list[str] = field(default_factory=list)

    def file(self, suffix: str, ext: str = "md") -> str | None:
        return resolve_file(self.listing, self.mid, suffix, ext)

    def read(self, name: str) -> str | None:
        got = read_text(self.path / name, f"{self.rel}/{name}")
        self.problems.extend(got.problems)
        return got.text


def _read_milestone_safely(gsd_dir: Path, mid: str, dirs: list[str]) -> Milestone:
    chosen = mid if mid in dirs else dirs[0]
    path = gsd_dir / "milestones" / chosen
    try:
        return _read_milestone(path, mid, dirs, chosen)
    except Exception as exc:  # a parser bug must cost one milestone, not the report
        return Milestone(
            id=mid,
            title=mid,
            path=path,
            status="pending",
            problems=(
                f".gsd/milestones/{chosen}: internal error while reading this milestone "
                f"({type(exc).__name__}: {exc})",
            ),
        )


def _read_milestone(path: Path, mid: str, dirs: list[str], chosen: str) -> Milestone:
    rel = f".gsd/milestones/{chosen}"
    ctx = _Ctx(mid=mid, path=path, rel=rel, listing=list_dir(path))
    if len(dirs) > 1:
        ctx.problems.append(clash_message(mid, dirs))
    if not is_valid_milestone_id(mid):
        ctx.problems.append(
            f"{rel}: '{mid}' is not a valid milestone ID (expected M + 3 digits, "
            "optionally -xxxxxx); rename the directory"
        )
    if ctx.listing.error:
        ctx.problems.append(f"{rel}: {ctx.listing.error}")
        return Milestone(id=mid, title=mid, path=path, status="pending", problems=tuple(ctx.problems))

    context_name, draft_name = ctx.file("CONTEXT"), ctx.file("CONTEXT-DRAFT")
    roadmap_name, summary_name = ctx.file("ROADMAP"), ctx.file("SUMMARY")

    depends_on: tuple[str, ...] = ()
    context_title: str | None = None
    used_context = context_name or draft_name
    if used_context:
        text = ctx.read(used_context)
        if text is not None:
            depends_on = _depends_on(text, f"{rel}/{used_context}", ctx.problems)
            context_title = first_h1_title(text)

    slices: list[Slice] = []
    roadmap_title: str | None = None
    if roadmap_name:
        text = ctx.read(roadmap_name)
        if text:
            slices = parse_roadmap(text)
            roadmap_title = first_h1_title(text)

    terminal = False
    summary_title: str | None = None
    if summary_name:
        text = ctx.read(summary_name)
        if text is not None:
            terminal = is_terminal_summary(text)
            summary_title = _summary_title(text)

    slices, files = _read_slices(ctx, slices)
    all_done = bool(slices) and all(s.done for s in slices)

    status: MilestoneStatus
    if ctx.file("PARKED"):
        status = "parked"
    elif terminal:
        status = "complete"
    elif all_done and _needs_attention(ctx):
        status = "parked"
    elif not (context_name or draft_name or roadmap_name or summary_name):
        status = "ghost"
        _explain_misread_suffix(ctx)
    else:
        status = "pending"

    return Milestone(
        id=mid,
        title=roadmap_title or context_title or summary_title or mid,
        path=path,
        status=status,
        depends_on=depends_on,
        slices=tuple(slices),
        files=frozenset(files),
        has_file_plan=bool(files),
        integration_branch=_integration_branch(ctx),
        problems=tuple(dict.fromkeys(ctx.problems)),
        draft_only=bool(draft_name) and not (context_name or roadmap_name or summary_name),
        all_slices_done=all_done,
    )


def _explain_misread_suffix(ctx: _Ctx) -> None:
    """A ghost like ``M004-render-primitives/`` holding ``M004-ROADMAP.md``: say why.

    GSD reads the ID as ``M004-render`` (a 6-letter word looks like a unique suffix)
    and so never finds ``M004-*`` files; guessing would plan what GSD will not run.
    """
    base, _, suffix = ctx.mid.partition("-")
    if not suffix:
        return
    planning = ("-CONTEXT.MD", "-CONTEXT-DRAFT.MD", "-ROADMAP.MD", "-SUMMARY.MD")
    upper_base = base.upper() + "-"
    if any(n.startswith(upper_base) and n.endswith(planning) for n in ctx.listing.upper_index()):
        ctx.problems.append(
            f"{ctx.rel}: GSD reads this directory as milestone {ctx.mid} ('-{suffix}' looks "
            f"like a unique-ID suffix), so its {base}-* files are not found; rename the "
            "directory"
        )


def _depends_on(text: str, label: str, problems: list[str]) -> tuple[str, ...]:
    """``depends_on`` from CONTEXT frontmatter; a broken block is a problem, not "none"."""
    data, _body, error = parse_frontmatter(text)
    if error:
        problems.append(f"{label} {error}")
        lenient = scan_frontmatter(text).get("depends_on")
        return _coerce_depends(lenient)[0]
    if not data or "depends_on" not in data:
        return ()
    deps, bad = _coerce_depends(data["depends_on"])
    if bad:
        line = key_line(text, "depends_on")
        where = f" line {line}" if line else ""
        problems.append(f"{label}{where}: {bad}")
    return deps


def _coerce_depends(value: Any) -> tuple[tuple[str, ...], str | None]:
    """Milestone IDs from an inline/block list or a bare scalar (``M001`` or ``M001, M002``)."""
    if value is None:
        return (), None
    if isinstance(value, str):
        items: list[Any] = [v for v in re.split(r"[,\s]+", value.strip().strip("[]")) if v]
    elif isinstance(value, list):
        items = value
    else:
        return (), f"depends_on must be a list of milestone IDs, not {type(value).__name__}"
    out: dict[str, None] = {}
    bad: str | None = None
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str) or isinstance(item, bool):
            bad = f"depends_on entry {_short(item)} is not a milestone ID"
            continue
        item = item.strip()
        if not item:
            continue
        token = _ID_TOKEN_RE.match(item)
        out.setdefault(token.group(1) if token else item)
    return tuple(out), bad


def _short(value: Any) -> str:
    if isinstance(value, (int, float, bool)):
        return repr(value)
    return f"of type {type(value).__name__}"


def _summary_title(text: str) -> str | None:
    title = scan_frontmatter(text).get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return first_h1_title(text)


def _needs_attention(ctx: _Ctx) -> bool:
    name = ctx.file("VALIDATION")
    if not name:
        return False
    text = ctx.read(name)
    return text is not None and validation_needs_attention(text)


def _integration_branch(ctx: _Ctx) -> str | None:
    """``integrationBranch`` from ``<MID>-META.json``; a malformed file is a problem."""
    name = ctx.file("META", "json")
    if not name:
        return None
    label = f"{ctx.rel}/{name}"
    text = ctx.read(name)
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.problems.append(f"{label} line {exc.lineno}: invalid JSON ({exc.msg})")
        return None
    except RecursionError:
        ctx.problems.append(f"{label}: invalid JSON (nested too deeply)")
        return None
    if not isinstance(data, dict):
        ctx.problems.append(f"{label}: expected a JSON object")
        return None
    branch = data.get("integrationBranch")
    if branch is None:
        return None
    if not isinstance(branch, str) or _BRANCH_BAD_RE.search(branch.strip()):
        ctx.problems.append(f"{label}: integrationBranch {branch!r} is not a valid branch name")
        return None
    return branch.strip()


# --------------------------------------------------------------------------- slices


def _read_slices(ctx: _Ctx, roadmap: list[Slice]) -> tuple[list[Slice], list[str]]:
    """Attach plans to the roadmap's slices; collect files from every slice plan."""
    files: dict[str, None] = {}
    if "slices" not in ctx.listing.dirs:
        return roadmap, []
    slices_path = ctx.path / "slices"
    slices_listing = list_dir(slices_path)
    if slices_listing.error:
        ctx.problems.append(f"{ctx.rel}/slices: {slices_listing.error}")
        return roadmap, []
    used_dirs: set[str] = set()
    out: list[Slice] = []
    for sl in roadmap:
        dirname = resolve_dir(slices_listing, sl.id)
        if dirname is None:
            out.append(sl)
            continue
        used_dirs.add(dirname)
        read = _read_slice_plan(ctx, slices_path / dirname, f"{ctx.rel}/slices/{dirname}", sl.id)
        if read is None:
            out.append(sl)
            continue
        tasks, plan_files = read
        files.update(dict.fromkeys(plan_files))
        out.append(replace(sl, tasks=tuple(tasks), has_plan=True))
    for dirname in sorted(slices_listing.dirs):
        m = SLICE_DIR_RE.match(dirname)
        if m is None or dirname in used_dirs:
            continue
        read = _read_slice_plan(
            ctx, slices_path / dirname, f"{ctx.rel}/slices/{dirname}", m.group(1), tasks=False
        )
        if read is not None:
            files.update(dict.fromkeys(read[1]))
    return out, list(files)


def _read_slice_plan(
    ctx: _Ctx, sdir: Path, srel: str, sid: str, *, tasks: bool = True
) -> tuple[list[Any], list[str]] | None:
    """(tasks, files) of ``<SID>-PLAN.md`` in ``sdir``, or None when there is no plan."""
    listing = list_dir(sdir)
    if listing.error:
        ctx.problems.append(f"{srel}: {listing.error}")
        return None
    plan_name = resolve_file(listing, sid, "PLAN")
    if plan_name is None:
        return None
    got = read_text(sdir / plan_name, f"{srel}/{plan_name}")
    ctx.problems.extend(got.problems)
    if got.text is None:
        return None
    info = parse_plan_info(got.text)
    task_list = info.tasks
    if tasks and any(not t.done for t in task_list) and "tasks" in listing.dirs:
        tlisting = list_dir(sdir / "tasks")
        if tlisting.error:
            ctx.problems.append(f"{srel}/tasks: {tlisting.error}")
        else:
            task_list = [
                t if t.done or not _has_task_summary(tlisting, t.id) else replace(t, done=True)
                for t in task_list
            ]
    return task_list, info.files


def _has_task_summary(listing: Listing, tid: str) -> bool:
    """``tasks/T01-SUMMARY.md`` (or legacy ``T01-*-SUMMARY.md``); a bare SUMMARY.md is no one's."""
    name = resolve_file(listing, tid, "SUMMARY")
    return name is not None and name.upper() != "SUMMARY.MD"
