"""The one definition of a valid milestone ID (``M001``, ``M012-x7k2pq``).

Checked before an ID becomes a path or a branch name, so ``../M001`` or ``M001; rm -rf /``
can never reach the filesystem or git. ASCII digits only, and no trailing newline (``$``
would accept ``"M001\\n"``). Parsing GSD's files by ID prefix (``M004-render-primitives``)
is :data:`gsd_parallel_plugin.project.MILESTONE_DIR_RE`, a different question.
"""

from __future__ import annotations

import re

from .errors import ProjectError

MILESTONE_ID_RE = re.compile(r"^M[0-9]{3}(?:-[a-z0-9]{6})?\Z", re.ASCII)
"""The valid shape of a milestone ID; ``match`` and ``fullmatch`` agree on it."""


def is_valid_milestone_id(value: object) -> bool:
    """True for ``M001`` / ``M012-x7k2pq``: safe to use in a path or branch name."""
    return isinstance(value, str) and MILESTONE_ID_RE.match(value) is not None


def invalid_milestone_id(value: object) -> str:
    """The one message for an ID that is not one (tests match its opening words)."""
    return f"invalid milestone ID {value!r}: expected M001 or M001-abc123"


def validate_milestone_id(mid: str) -> str:
    """Return *mid* unchanged when it is a GSD milestone ID, else raise ProjectError (exit 2)."""
    if not is_valid_milestone_id(mid):
        raise ProjectError(invalid_milestone_id(mid))
    return mid
