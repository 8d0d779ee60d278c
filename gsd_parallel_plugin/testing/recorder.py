"""Record hook calls made through a :class:`~gsd_parallel_plugin.plugins.Hooks` facade.

The recorder listens on ``Hooks.listeners``, so it sees every call the coordinator makes,
whether or not any plugin implements the hook, with the exact keyword arguments::

    with HookRecorder().attach(host) as rec:
        host.dispatch("/gsd parallel start --wait")
    rec.assert_fired("spawn_worker", "on_milestone_complete")
    assert rec.getcall("on_milestone_complete")["milestone_id"] == "M001"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from ..plugins import Hooks


class HasHooks(Protocol):
    """Anything carrying a facade: a ``HostSession`` or a ``Supervisor``."""

    @property
    def hooks(self) -> Hooks | None: ...


def hooks_of(target: Hooks | HasHooks) -> Hooks:
    """The facade of ``target`` (a ``Hooks``, or an object with a ``hooks`` attribute)."""
    if isinstance(target, Hooks):
        return target
    hooks = target.hooks
    if not isinstance(hooks, Hooks):
        raise TypeError(f"{type(target).__name__} has no Hooks facade to record")
    return hooks


@dataclass(frozen=True)
class HookCall:
    """One hook call: its name and keyword arguments (``call["milestone_id"]``)."""

    name: str
    kwargs: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.kwargs[key]


class HookRecorder:
    """Keeps every hook call, in order, of each facade it is attached to."""

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        self._attached: list[Hooks] = []

    # ------------------------------------------------------------------ wiring
    def __call__(self, name: str, kwargs: Mapping[str, Any]) -> None:
        self.calls.append(HookCall(name, dict(kwargs)))

    def attach(self, target: Hooks | HasHooks) -> HookRecorder:
        """Start recording ``target``'s calls; returns self (also a context manager)."""
        hooks = hooks_of(target)
        if not any(listener is self for listener in hooks.listeners):
            hooks.listeners.append(self)
        if not any(attached is hooks for attached in self._attached):
            self._attached.append(hooks)
        return self

    def detach(self) -> None:
        """Stop recording everywhere; the calls seen so far are kept."""
        for hooks in self._attached:
            hooks.listeners[:] = [lst for lst in hooks.listeners if lst is not self]
        self._attached.clear()

    def __enter__(self) -> HookRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    # ------------------------------------------------------------------ reading
    @property
    def names(self) -> list[str]:
        """Hook names in call order, repeats included."""
        return [call.name for call in self.calls]

    def fired(self) -> set[str]:
        return {call.name for call in self.calls}

    def calls_of(self, name: str) -> list[HookCall]:
        return [call for call in self.calls if call.name == name]

    def getcall(self, name: str) -> HookCall:
        """The one call of ``name``; fails when there were none or several."""
        found = self.calls_of(name)
        if len(found) != 1:
            raise AssertionError(f"expected exactly one call of {name}, got {len(found)}")
        return found[0]

    def clear(self) -> None:
        self.calls.clear()

    # ------------------------------------------------------------------ assertions
    def assert_fired(self, *names: str) -> None:
        missing = [name for name in names if name not in self.fired()]
        if missing:
            raise AssertionError(
                f"never fired: {', '.join(missing)}; fired: {', '.join(sorted(self.fired()))}"
            )

    def assert_not_fired(self, *names: str) -> None:
        present = [name for name in names if name in self.fired()]
        if present:
            raise AssertionError(f"fired but should not have been: {', '.join(present)}")

    def assert_sequence(self, expected: Sequence[str | tuple[str, Mapping[str, Any]]]) -> None:
        """Each expected call occurs after the previous one (other calls may sit between).

        An item is a hook name, or ``(name, {param: value, ...})`` to match arguments too.
        """
        position = 0
        for item in expected:
            name, wanted = (item, {}) if isinstance(item, str) else item
            for index in range(position, len(self.calls)):
                if _matches(self.calls[index], name, wanted):
                    position = index + 1
                    break
            else:
                shown = ", ".join(self._describe(self.calls[position:]))
                raise AssertionError(
                    f"no call {name}{dict(wanted) or ''} after position {position}; "
                    f"calls from there: {shown or 'none'}"
                )

    @staticmethod
    def _describe(calls: Iterable[HookCall]) -> list[str]:
        return [
            call.name + ("(" + call.kwargs["milestone_id"] + ")" if "milestone_id" in call.kwargs else "")
            for call in calls
        ]


def _matches(call: HookCall, name: str, wanted: Mapping[str, Any]) -> bool:
    return call.name == name and all(call.kwargs.get(k) == v for k, v in wanted.items())
