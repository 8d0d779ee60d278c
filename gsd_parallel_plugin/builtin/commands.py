"""Builtin plugin: the ``/gsd parallel`` subcommands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import hookimpl
from ..commands import SUBCOMMANDS, lazy_handler
from ..models import SlashCommand

if TYPE_CHECKING:
    from ..host import HostSession


@hookimpl(trylast=True)
def register_slash_commands(host: HostSession) -> Sequence[SlashCommand]:
    return [
        SlashCommand(name=name, summary=summary, handler=lazy_handler(name), usage=usage)
        for name, (_module, usage, summary) in SUBCOMMANDS.items()
    ]
