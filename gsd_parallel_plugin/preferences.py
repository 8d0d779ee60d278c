"""Preferences: ``~/.gsd/PREFERENCES.md`` overlaid by ``<project>/.gsd/PREFERENCES.md``.

Both are YAML frontmatter. Top-level keys belong to GSD and are kept untouched; the
``parallel:`` block is ours, merged key by key (project wins) and validated strictly:
an invalid value stops the command with one line naming file, key, value and what is
allowed, never a silent fallback.

Commands that stop or inspect a run (``stop``, ``pause``, ``status``, ``watch``,
``doctor``) read them with ``strict=False``: a typo made during a run must not keep
anyone from stopping workers that spend money. There each bad value (or unreadable
file) is left out, the rest still applies, and a warning names the file.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import PreferencesError

PREFERENCES_FILE = "PREFERENCES.md"
WORKER_COMMAND_ENV = "GSD_PARALLEL_WORKER_COMMAND"
DEFAULT_WORKER_COMMAND = ("gsd", "headless", "--json", "auto")


@dataclass(frozen=True)
class ParallelPreferences:
    """The effective ``parallel:`` block (defaults filled in)."""

    enabled: bool = False
    max_workers: int = 2
    budget_ceiling: float | None = None
    merge_strategy: str = "per-milestone"
    auto_merge: str = "confirm"
    worker_model: str | None = None
    merge_order: str = "sequential"
    overlap: str = "serialize"
    max_restarts: int = 1
    stop_grace_seconds: float = 5.0
    merge_check: tuple[str, ...] | None = None
    worker_command: tuple[str, ...] = DEFAULT_WORKER_COMMAND
    milestone_budget: float | None = None
    stall_minutes: float = 15.0
    provider_grace_seconds: float = 120.0
    """After GSD gives up on the provider (``auto_retry_end`` failed), stop and block after this."""
    startup_grace_seconds: float = 300.0
    """A worker that has not talked to the model this long after its launch is stopped, blocked."""
    sync_with_integration: str = "unit"
    """``unit``: when the integration branch moves, each running worker merges it at its next
    unit boundary (the drift guard); ``never``: branches meet only at the final merge."""
    preview_minutes: float | None = None
    """Every this many minutes of a run (when a branch or the integration branch moved since
    the last one) the supervisor computes the integration preview (``merge --preview``) in
    the background; None: never. Fractions are allowed (``0.5``: every 30 seconds)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("merge_check", "worker_command"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@dataclass(frozen=True)
class Preferences:
    parallel: ParallelPreferences
    git_main_branch: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    """The merged top-level mapping, GSD's keys included, for plugins that want them."""
    warnings: tuple[str, ...] = ()
    sources: tuple[Path, ...] = ()
    worker_command_error: str | None = None
    """A bad ``GSD_PARALLEL_WORKER_COMMAND``: raised by :meth:`require_worker_command` only
    where a worker is launched, so it cannot block ``status`` or ``stop``."""

    def require_worker_command(self) -> tuple[str, ...]:
        """The worker command, or the one-line error when the environment variable is bad."""
        if self.worker_command_error is not None:
            raise PreferencesError(self.worker_command_error)
        return self.parallel.worker_command


# --------------------------------------------------------------------------- validators
# Each returns the normalised value or raises ValueError("what is allowed").


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("true or false")


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
            return value
        raise ValueError(f"a whole number from {lo} to {hi}")

    return check


def _number(*, minimum: float, inclusive: bool, maximum: float) -> Callable[[Any], float]:
    """A finite number: ``.inf`` would make a deadline never come (``stop`` never returns)."""

    def check(value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            above = number >= minimum if inclusive else number > minimum
            if math.isfinite(number) and above and number <= maximum:
                return number
        raise ValueError(f"a number {'>=' if inclusive else '>'} {minimum:g} and at most {maximum:g}")

    return check


MIN_USD = 1e-9
MAX_USD = 1e9
"""Amounts the store can hold: it keeps integer nano-USD (a smaller one would round to $0)."""


def usd_amount(value: Any) -> float:
    """An amount of USD the budget can enforce: finite, at least one nano-dollar, at most 1e9."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and MIN_USD <= number <= MAX_USD:
            return number
    raise ValueError("a number > 0 (USD, from 0.000000001 to 1000000000)")


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, or null") from None

    return wrapped


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError("one of " + ", ".join(choices))

    return check


def _non_empty_string(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError("a non-empty string")


def _command(value: Any) -> tuple[str, ...]:
    """A command as a list of strings; a plain string is split shell-style, never run by a shell."""
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError:
            raise ValueError("a command: a list of strings such as [pytest, -q]") from None
    if isinstance(value, list) and value and all(isinstance(part, str) and part for part in value):
        return tuple(value)
    raise ValueError("a command: a list of strings such as [pytest, -q]")


_seconds = _number(minimum=0, inclusive=False, maximum=600)  # `stop` waits this long at most

VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "enabled": _bool,
    "max_workers": _int_range(1, 4),
    "budget_ceiling": _optional(usd_amount),
    "merge_strategy": _choice("per-milestone", "per-slice"),
    "auto_merge": _choice("auto", "confirm", "manual"),
    "worker_model": _optional(_non_empty_string),
    "merge_order": _choice("sequential", "by-completion"),
    "overlap": _choice("serialize", "warn"),
    "max_restarts": _int_range(0, 10),
    "stop_grace_seconds": _seconds,
    "merge_check": _optional(_command),
    "worker_command": _command,
    "milestone_budget": _optional(usd_amount),
    "stall_minutes": _number(minimum=0, inclusive=True, maximum=7 * 24 * 60),
    "provider_grace_seconds": _number(minimum=0, inclusive=True, maximum=7 * 24 * 3600),
    "startup_grace_seconds": _number(minimum=0, inclusive=True, maximum=7 * 24 * 3600),
    "sync_with_integration": _choice("unit", "never"),
    "preview_minutes": _optional(_number(minimum=0, inclusive=False, maximum=7 * 24 * 60)),
}

GLOBAL_ONLY = frozenset({"worker_command"})


def global_gsd_home() -> Path:
    home = os.environ.get("GSD_HOME")
    return Path(home).expanduser() if home else Path.home() / ".gsd"


def _read_frontmatter(path: Path) -> dict[str, Any]:
    from .project import parse_frontmatter

    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise PreferencesError(f"{path}: cannot read preferences ({exc.strerror})") from None
    data, _body, error = parse_frontmatter(text)
    if error:
        raise PreferencesError(f"{path}: {error}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PreferencesError(f"{path}: frontmatter must be a mapping of keys to values")
    return data


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


LENIENT_SUFFIX = "; ignored by this command (fix it before the next start)"


def load_preferences(
    project_gsd_dir: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    strict: bool = True,
) -> Preferences:
    """Read, merge and validate preferences; raise PreferencesError on the first bad value.

    ``strict=False`` (commands that stop or inspect a run) turns each error into a warning
    and leaves the bad value (or the unreadable file) out instead.
    """
    env = os.environ if environ is None else environ
    layers: list[tuple[Path, dict[str, Any], bool]] = []
    warnings: list[str] = []

    def fail(message: str) -> None:
        if strict:
            raise PreferencesError(message)
        warnings.append(message + LENIENT_SUFFIX)

    def read(path: Path) -> dict[str, Any]:
        try:
            return _read_frontmatter(path)
        except PreferencesError as exc:
            fail(str(exc))
            return {}

    home = Path(env["GSD_HOME"]).expanduser() if env.get("GSD_HOME") else global_gsd_home()
    global_file = home / PREFERENCES_FILE
    if global_file.is_file():
        layers.append((global_file, read(global_file), True))
    if project_gsd_dir is not None:
        project_file = project_gsd_dir / PREFERENCES_FILE
        if project_file.is_file() and (not global_file.is_file() or not project_file.samefile(global_file)):
            layers.append((project_file, read(project_file), False))

    raw: dict[str, Any] = {}
    parallel: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path, data, is_global in layers:
        for key, value in data.items():
            if key != "parallel":
                raw[key] = value
        block = data.get("parallel")
        if block is None:
            continue
        if not isinstance(block, dict):
            fail(
                f"{path}: parallel = {_format_value(block)} is invalid: expected a mapping of "
                "parallel settings (e.g. `parallel: {enabled: true}`)"
            )
            continue
        for key, value in block.items():
            name = f"parallel.{key}"
            if key not in VALIDATORS:
                warnings.append(f"{path}: unknown preference {name} (ignored)")
                continue
            if key in GLOBAL_ONLY and not is_global:
                fail(
                    f"{path}: {name} cannot be set in a project's preferences; set it in "
                    f"{global_file} or with {WORKER_COMMAND_ENV}"
                )
                continue
            try:
                parallel[key] = VALIDATORS[key](value)
            except ValueError as exc:
                fail(f"{path}: {name} = {_format_value(value)} is invalid: expected {exc}")
                continue
            origin[key] = path

    override = env.get(WORKER_COMMAND_ENV)
    worker_command_error = None
    if override is not None:
        try:
            parallel["worker_command"] = _command(override)
        except ValueError as exc:
            worker_command_error = (
                f"{WORKER_COMMAND_ENV} = {override!r} is invalid: expected {exc}; set it to a "
                "command or unset it"
            )
    raw["parallel"] = dict(parallel)

    git_block = raw.get("git")
    main_branch = git_block.get("main_branch") if isinstance(git_block, dict) else None
    return Preferences(
        parallel=ParallelPreferences(**parallel),
        git_main_branch=main_branch if isinstance(main_branch, str) and main_branch else None,
        raw=raw,
        warnings=tuple(warnings),
        sources=tuple(path for path, _data, _g in layers),
        worker_command_error=worker_command_error,
    )
