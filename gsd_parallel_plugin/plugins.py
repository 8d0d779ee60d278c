"""The plugin manager: discovery, load warnings, and the typed hook facade.

Discovery order (later registrations are called first by pluggy, and builtins are
``trylast``, so third parties always win):

1. builtin plugins (``gsd_parallel_plugin.builtin.*``);
2. entry points in group ``gsd_parallel`` unless ``GSD_PARALLEL_DISABLE_PLUGIN_AUTOLOAD``
   (``importlib.metadata`` is imported only when an installed distribution's
   ``entry_points.txt`` has that section: see :func:`may_have_entry_points`);
3. modules named in ``GSD_PARALLEL_PLUGINS`` (comma separated);
4. modules named in the project's ``pyproject.toml`` under ``[tool.gsd-parallel] plugins``.

``GSD_PARALLEL_DISABLED_PLUGINS`` (comma separated names) blocks plugins by name.
A plugin that fails to import, or implements a hook that does not exist, is dropped
with a warning naming it and its distribution; it never takes the host down.

Internal code calls hooks only through :class:`Hooks` (one typed method per hook), never
``pm.hook.<name>(...)`` directly: a test enforces it, so every call site is type-checked and
every call is seen by :attr:`Hooks.listeners` (the test recorder).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import PROJECT_NAME, hookspecs
from .errors import GsdParallelError, PluginError

if TYPE_CHECKING:
    from .host import HostSession
    from .models import Milestone, Project, SlashCommand, WorkerHandle, WorkerSpec

BUILTIN_PLUGINS = (
    "gsd_parallel_plugin.builtin.commands",
    "gsd_parallel_plugin.builtin.workers",
    "gsd_parallel_plugin.builtin.merging",
)
ENV_PLUGINS = "GSD_PARALLEL_PLUGINS"
ENV_DISABLE_AUTOLOAD = "GSD_PARALLEL_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLED = "GSD_PARALLEL_DISABLED_PLUGINS"
BUILTIN_PREFIX = "gsd_parallel."

WRAPPERLESS_KINDS = frozenset({"broadcast", "collect"})
"""Kinds whose implementations :class:`Hooks` calls one by one, so wrappers never run."""


@dataclass
class PluginInfo:
    """What ``gsd-parallel plugins`` shows for one registered plugin."""

    name: str
    hooks: list[str]
    distribution: str | None = None
    version: str | None = None
    source: str = "builtin"
    module: str | None = None
    """Where the plugin's code lives (its module name), when it is a module or class."""


@dataclass
class LoadedPlugins:
    pm: pluggy.PluginManager
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    """plugin name -> (source, distribution, version)."""

    def info(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted({caller.name for caller in self.pm.get_hookcallers(plugin) or []})
            source, dist, version = self.sources.get(name, ("builtin", None, None))
            module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", None)
            if isinstance(plugin, ModuleType):
                module = plugin.__name__
            infos.append(PluginInfo(name, hooks, dist, version, source, module))
        return infos

    def blocked(self) -> list[str]:
        """Names blocked by ``GSD_PARALLEL_DISABLED_PLUGINS`` (whether or not they exist)."""
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is None]


def _split_env(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _spec_names() -> set[str]:
    marker = PROJECT_NAME + "_spec"
    return {name for name, obj in vars(hookspecs).items() if hasattr(obj, marker)}


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations in ``plugin`` that name no spec (usually a misspelling)."""
    known = _spec_names()
    unknown = []
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        name = opts.get("specname") or attr
        if name not in known and not opts.get("optionalhook"):
            unknown.append(name)
    return unknown


def plugin_problems(pm: pluggy.PluginManager, plugin: object) -> tuple[list[str], list[str]]:
    """(errors, notes) about ``plugin`` before it is registered.

    Errors make it unusable (a hook name that matches no spec). Notes are harmless but
    surprising: a wrapper on a hook whose implementations are called one by one never runs.
    """
    unknown = _unknown_hooks(pm, plugin)
    errors = [_describe_unknown(unknown)] if unknown else []
    notes = []
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if not opts or not (opts.get("wrapper") or opts.get("hookwrapper")):
            continue
        name = opts.get("specname") or attr
        if hookspecs.HOOK_KINDS.get(name) in WRAPPERLESS_KINDS:
            notes.append(
                f"wrapper on {hookspecs.HOOK_KINDS[name]} hook '{name}' never runs "
                "(each implementation is called on its own); use a plain hookimpl"
            )
    return errors, notes


def _describe_unknown(names: Sequence[str]) -> str:
    import difflib

    known = sorted(_spec_names())
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return "unknown hook " + ", ".join(parts)


def read_project_plugin_list(project_root: Path | None) -> tuple[list[str], list[str]]:
    """``[tool.gsd-parallel] plugins`` from the project's pyproject.toml: (modules, warnings)."""
    if project_root is None:
        return [], []
    path = project_root / "pyproject.toml"
    if not path.is_file():
        return [], []
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], [f"{path}: cannot read [tool.gsd-parallel] ({exc}); project plugins not loaded"]
    table = data.get("tool", {}).get("gsd-parallel", {})
    plugins = table.get("plugins", []) if isinstance(table, dict) else []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        return [], [f"{path}: [tool.gsd-parallel] plugins must be a list of module names"]
    return plugins, []


def may_have_entry_points(group: str) -> bool:
    """Whether some distribution on ``sys.path`` may declare an entry point in ``group``.

    Importing ``importlib.metadata`` and scanning every distribution costs more than the
    rest of ``status``, and almost always finds nothing. This reads the ``entry_points.txt``
    files directly, looking for the section header the way ``importlib.metadata`` parses it.
    What it cannot judge cheaply (a zip or an egg on ``sys.path``, another distribution
    finder on ``sys.meta_path``) counts as a yes, so the real discovery decides.
    """
    from importlib.machinery import PathFinder

    if any(hasattr(finder, "find_distributions") and finder is not PathFinder for finder in sys.meta_path):
        return True
    for entry in sys.path:
        base = entry or "."
        if base.lower().endswith(".egg") or os.path.isfile(base):
            return True
        try:
            children = os.listdir(base)
        except OSError:
            continue
        for child in children:
            if not child.lower().endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(base, child, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            except UnicodeDecodeError:
                return True
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]") and line.strip("[]") == group:
                    return True
    return False


def create_plugin_manager(
    project_root: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    extra_plugins: Sequence[object] = (),
) -> LoadedPlugins:
    """Build a plugin manager with every plugin the environment asks for."""
    env = os.environ if environ is None else environ
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    loaded = LoadedPlugins(pm)
    for blocked in _split_env(env.get(ENV_DISABLED)):
        pm.set_blocked(blocked)

    def register(plugin: object, name: str, source: str, dist: str | None, version: str | None) -> None:
        label = f"plugin '{name}'" + (f" (from {dist} {version})" if dist else "")
        if pm.is_blocked(name):
            return
        errors, notes = plugin_problems(pm, plugin)
        if errors:
            loaded.warnings.append(f"{label} ignored: {'; '.join(errors)}")
            return
        loaded.warnings.extend(f"{label}: {note}" for note in notes)
        try:
            pm.register(plugin, name=name)
        except ValueError:
            return  # already registered under this name or object: loading twice is harmless
        except pluggy.PluginValidationError as exc:
            loaded.warnings.append(f"{label} ignored: {exc}")
            return
        loaded.sources[name] = (source, dist, version)

    for module_name in BUILTIN_PLUGINS:
        register(
            importlib.import_module(module_name),
            BUILTIN_PREFIX + module_name.rsplit(".", 1)[1],
            "builtin",
            None,
            None,
        )

    if not env.get(ENV_DISABLE_AUTOLOAD) and may_have_entry_points(PROJECT_NAME):
        from importlib.metadata import entry_points

        for ep in entry_points(group=PROJECT_NAME):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not stop the host
                label = f"plugin '{ep.name}'" + (f" (from {dist} {version})" if dist else "")
                loaded.warnings.append(f"{label} failed to load: {type(exc).__name__}: {exc}")
                continue
            register(plugin, ep.name, "entry point", dist, version)

    project_modules, project_warnings = read_project_plugin_list(project_root)
    loaded.warnings.extend(project_warnings)
    for module_name, source in [
        *((m, ENV_PLUGINS) for m in _split_env(env.get(ENV_PLUGINS))),
        *((m, "pyproject.toml") for m in project_modules),
    ]:
        if pm.is_blocked(module_name):
            continue
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            loaded.warnings.append(f"plugin '{module_name}' (from {source}) failed to load: {reason}")
            continue
        register(module, module_name, source, None, None)

    for plugin in extra_plugins:
        register(plugin, getattr(plugin, "__name__", None) or repr(plugin), "explicit", None, None)
    return loaded


def plugin_name_for(pm: pluggy.PluginManager, tb: TracebackType | None) -> str | None:
    """Which registered plugin's hook function raised, judged from the traceback."""
    owners: dict[Any, str] = {}
    for name, plugin in pm.list_name_plugin():
        for caller in pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    owners[getattr(impl.function, "__code__", None)] = name
    blamed = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code in owners:
            blamed = owners[code]
        tb = tb.tb_next
    return blamed


CallListener = Callable[[str, Mapping[str, Any]], None]


def _log_warning(message: str) -> None:
    """The default :attr:`Hooks.warn`: the ``gsd_parallel`` logger (imported when used)."""
    import logging

    logging.getLogger("gsd_parallel").warning(message)


class Hooks:
    """Typed facade over ``pm.hook``: one method per hook, so a type checker sees each call.

    Broadcast events call each implementation on its own so that one raising plugin is
    named in a warning and the others still run. Decision and veto hooks fail the
    operation with a :class:`PluginError` naming the plugin.

    ``listeners`` are called with ``(hook_name, kwargs)`` before every hook call (the
    test recorder uses this). ``warn`` receives each broadcast failure once per distinct
    message (a plugin failing on every cost update is reported once, counted in
    :attr:`broadcast_errors`); the default logs it on the ``gsd_parallel`` logger.
    """

    def __init__(self, pm: pluggy.PluginManager, *, warn: Callable[[str], None] | None = None) -> None:
        self.pm = pm
        self.listeners: list[CallListener] = []
        self.broadcast_errors: list[str] = []
        self.warn: Callable[[str], None] = warn or _log_warning

    # -- plumbing
    def implementers(self, name: str) -> list[str]:
        """Names of the plugins implementing hook ``name``, in the order pluggy calls them."""
        return [impl.plugin_name for impl in reversed(getattr(self.pm.hook, name).get_hookimpls())]

    def _notify(self, name: str, kwargs: Mapping[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(name, kwargs)

    def _report(self, message: str) -> None:
        if message not in self.broadcast_errors:
            self.warn(message)
        self.broadcast_errors.append(message)

    def _decide(self, name: str, **kwargs: Any) -> Any:
        self._notify(name, kwargs)
        try:
            return getattr(self.pm.hook, name)(**kwargs)
        except GsdParallelError:
            raise  # a deliberate, user-facing error (e.g. worker command not found)
        except Exception as exc:
            plugin = plugin_name_for(self.pm, exc.__traceback__) or "unknown plugin"
            raise PluginError(f"plugin '{plugin}' failed in {name}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _plain(caller: pluggy.HookCaller) -> list[pluggy.HookImpl]:
        """Non-wrapper implementations in call order (wrappers cannot run one by one)."""
        impls = reversed(caller.get_hookimpls())
        return [impl for impl in impls if not (impl.wrapper or impl.hookwrapper)]

    def _broadcast(self, name: str, **kwargs: Any) -> None:
        self._notify(name, kwargs)
        for impl in self._plain(getattr(self.pm.hook, name)):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                self._report(f"plugin '{impl.plugin_name}' raised in {name}: {type(exc).__name__}: {exc}")

    # -- session
    def register_slash_commands(self, host: HostSession) -> list[tuple[str, SlashCommand]]:
        """Every plugin's commands, each paired with the name of the plugin that gave it."""
        self._notify("register_slash_commands", {"host": host})
        pairs: list[tuple[str, SlashCommand]] = []
        kwargs = {"host": host}
        for impl in self._plain(self.pm.hook.register_slash_commands):
            try:
                commands = cast(
                    "Sequence[SlashCommand] | None",
                    impl.function(*[kwargs[arg] for arg in impl.argnames]),
                )
            except Exception as exc:
                raise PluginError(
                    f"plugin '{impl.plugin_name}' failed in register_slash_commands: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            pairs.extend((impl.plugin_name, c) for c in commands or ())
        return pairs

    def on_session_start(self, host: HostSession) -> None:
        self._notify("on_session_start", {"host": host})
        try:
            self.pm.hook.on_session_start.call_historic(kwargs={"host": host})
        except Exception as exc:
            plugin = plugin_name_for(self.pm, exc.__traceback__) or "unknown plugin"
            self._report(f"plugin '{plugin}' raised in on_session_start: {type(exc).__name__}: {exc}")

    # -- eligibility
    def check_eligibility(
        self, milestone: Milestone, project: Project, preferences: Mapping[str, Any]
    ) -> list[str]:
        results = self._decide(
            "check_eligibility", milestone=milestone, project=project, preferences=preferences
        )
        return [str(r) for r in results if r]

    # -- workers
    def spawn_worker(self, spec: WorkerSpec) -> WorkerHandle | None:
        result: WorkerHandle | None = self._decide("spawn_worker", spec=spec)
        return result

    def on_worker_state_change(
        self, milestone_id: str, old_state: str | None, new_state: str, reason: str | None
    ) -> None:
        self._broadcast(
            "on_worker_state_change",
            milestone_id=milestone_id,
            old_state=old_state,
            new_state=new_state,
            reason=reason,
        )

    def on_milestone_complete(self, milestone_id: str, branch: str, worktree: Path) -> None:
        self._broadcast("on_milestone_complete", milestone_id=milestone_id, branch=branch, worktree=worktree)

    def on_gsd_session_start(self, session_id: str, cwd: Path) -> None:
        self._broadcast("on_gsd_session_start", session_id=session_id, cwd=cwd)

    def on_gsd_session_end(self, session_id: str, cwd: Path, cost_usd: float) -> None:
        self._broadcast("on_gsd_session_end", session_id=session_id, cwd=cwd, cost_usd=cost_usd)

    # -- budget
    def on_cost_update(
        self,
        milestone_id: str,
        delta_usd: float,
        worker_total_usd: float,
        run_total_usd: float,
        budget_ceiling: float | None,
        source: str = "worker",
    ) -> None:
        self._broadcast(
            "on_cost_update",
            milestone_id=milestone_id,
            delta_usd=delta_usd,
            worker_total_usd=worker_total_usd,
            run_total_usd=run_total_usd,
            budget_ceiling=budget_ceiling,
            source=source,
        )

    def on_budget_exceeded(self, run_total_usd: float, budget_ceiling: float) -> None:
        self._broadcast("on_budget_exceeded", run_total_usd=run_total_usd, budget_ceiling=budget_ceiling)

    # -- overlaps
    def on_overlap_detected(
        self,
        milestone_ids: Sequence[str],
        files: Sequence[str],
        would_conflict: bool,
        conflict_files: Sequence[str],
    ) -> None:
        self._broadcast(
            "on_overlap_detected", milestone_ids=list(milestone_ids), files=list(files),
            would_conflict=would_conflict, conflict_files=list(conflict_files),
        )  # fmt: skip

    # -- merge
    def choose_merge_order(
        self, candidates: Sequence[str], project: Project, preferences: Mapping[str, Any]
    ) -> list[str]:
        order = self._decide(
            "choose_merge_order", candidates=candidates, project=project, preferences=preferences
        )
        wanted = set(candidates)
        result: list[str] = []
        for mid in order if order is not None else candidates:
            if mid in wanted and mid not in result:
                result.append(mid)
        return result

    def resolve_merge_conflict(self, milestone_id: str, files: Sequence[str], worktree: Path) -> bool:
        return bool(
            self._decide("resolve_merge_conflict", milestone_id=milestone_id, files=files, worktree=worktree)
        )

    def before_merge(
        self, milestone_id: str, worktree: Path, changed_files: Sequence[str], commit: str
    ) -> list[str]:
        results = self._decide(
            "before_merge",
            milestone_id=milestone_id,
            worktree=worktree,
            changed_files=changed_files,
            commit=commit,
        )
        return [str(r) for r in results if r]

    def on_merge_complete(self, milestone_id: str, commit: str, branch: str) -> None:
        self._broadcast("on_merge_complete", milestone_id=milestone_id, commit=commit, branch=branch)
