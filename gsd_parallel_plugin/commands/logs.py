"""Placeholder until this subcommand lands."""

from __future__ import annotations

from ..models import CommandContext, CommandResult
from .common import not_implemented


def run(name: str, ctx: CommandContext) -> CommandResult:
    not_implemented(name)
