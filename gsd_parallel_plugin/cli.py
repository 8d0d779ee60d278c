"""``gsd-parallel``: the command-line host, a thin wrapper over :class:`HostSession`.

``gsd-parallel [--project DIR] [--json] <subcommand> [args]``. ``--help`` and
``--version`` answer without loading plugins or any heavy module.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .commands import SUBCOMMANDS
from .exitcodes import ExitCode

PROG = "gsd-parallel"
#: subcommands whose own ``--project`` (a scope, optionally with a directory) follows them
OWN_PROJECT_OPTION = frozenset({"gsd-extension"})


def help_text(invoked_as: str = PROG) -> str:
    """The top-level help; its usage line names the command the way the user called it."""
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        f"usage: {invoked_as} [--project DIR] [--json] <subcommand> [args]",
        "",
        "Run several GSD milestones at once, each in its own worktree and worker.",
        "The same commands work inside GSD as /parallel <subcommand> once the extension is",
        f"installed: `{PROG} gsd-extension install`.",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_m, _u, summary) in SUBCOMMANDS.items()]
    lines += [
        "",
        "options:",
        "  --project DIR  the GSD project (default: walk up from the current directory)",
        "  --json         print one JSON document instead of text",
        "  --version      print the version",
        "",
        f"Plugins can add subcommands: run `{invoked_as} plugins` to see what is loaded.",
    ]
    return "\n".join(lines)


def _split_globals(argv: Sequence[str]) -> tuple[Path | None, bool, str, list[str]]:
    """Pull ``--project``, ``--json`` and ``--invoked-as`` out of argv wherever they stand.

    ``--invoked-as=/parallel`` is how the GSD extension says hints should name its command.
    """
    project: Path | None = None
    invoked_as = PROG
    as_json = "--json" in argv  # known before any error, so that one is JSON too
    rest: list[str] = []
    it = iter(argv)
    for word in it:
        if rest and rest[0] in OWN_PROJECT_OPTION and word.split("=", 1)[0] == "--project":
            rest.append(word)  # ``gsd-extension install --project [DIR]``: its own option
        elif word == "--project":
            value = next(it, None)
            if value is None or value.startswith("--"):
                raise SystemExit(_fail("--project needs a directory", ExitCode.USER_ERROR, as_json))
            project = Path(value)
        elif word.startswith("--project="):
            project = Path(word.split("=", 1)[1])
        elif word == "--json":
            as_json = True
        elif word.startswith("--invoked-as="):
            invoked_as = word.split("=", 1)[1] or PROG
        else:
            rest.append(word)
    return project, as_json, invoked_as, rest


def _fail(message: str, code: int, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message}))
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    project, as_json, invoked_as, rest = _split_globals(args)
    if not rest and as_json:
        return _fail(f"no subcommand given; see `{PROG} --help`", ExitCode.USER_ERROR, as_json)
    if not rest or rest[0] in {"-h", "--help", "help"}:
        print(help_text(invoked_as))
        return ExitCode.OK if rest else ExitCode.USER_ERROR
    if rest[0] == "--version":
        print(json.dumps({"version": __version__}) if as_json else f"{PROG} {__version__}")
        return ExitCode.OK
    name = rest[0]
    if name in SUBCOMMANDS and ("-h" in rest[1:] or "--help" in rest[1:]):
        _module, usage, summary = SUBCOMMANDS[name]
        print(f"usage: {invoked_as} {name} {usage}\n\n{summary}")
        return ExitCode.OK
    if name.startswith("-"):
        return _fail(f"unknown option {name}; see `{PROG} --help`", ExitCode.USER_ERROR, as_json)

    from .errors import GsdParallelError
    from .host import HostSession

    try:
        host = HostSession(project, invoked_as=invoked_as)
        result = host.dispatch(["parallel", *rest], json=as_json)
    except GsdParallelError as exc:
        return _fail(str(exc), exc.exit_code, as_json)
    except BrokenPipeError:  # the reader went away (`| head`): not a bug, see run()
        raise
    except KeyboardInterrupt:  # still one line, or one JSON document for a script
        return _fail("interrupted", ExitCode.INTERRUPTED, as_json)
    except Exception as exc:  # a traceback is a bug: say so in one line, keep it for reports
        if os.environ.get("GSD_PARALLEL_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set GSD_PARALLEL_DEBUG=1 for the "
            "traceback and please report it)",
            ExitCode.FAILED,
            as_json,
        )
    is_error = isinstance(result.data, dict) and set(result.data) == {"error"}
    if is_error:
        return _fail(result.text, result.exit_code or ExitCode.USER_ERROR, as_json)
    if as_json:
        print(json.dumps(result.data, indent=2, default=str))
    elif result.text:
        print(result.text, end="" if result.text.endswith("\n") else "\n")
    return result.exit_code


def run() -> None:
    """Console-script entry point.

    Output into a closed pipe (``gsd-parallel --json status | head -1``) ends quietly, as
    ``cat`` or ``git log`` do: exit 141 (128 + SIGPIPE), no traceback. Flushing here, inside
    the ``try``, is what catches a pipe closed after the last ``print``.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would flush stdout again at exit and complain: point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        code = ExitCode.BROKEN_PIPE
    sys.exit(code)
