"""Running the real GSD binary in tests: finding it, isolating it, giving it a project.

The real ``gsd`` (GSD-2, Node) is not a dependency: a test that needs it asks for the
``real_gsd`` fixture, which skips with :data:`REAL_GSD_HINT` when :func:`find_real_gsd` finds
nothing. Pair it with :class:`~gsd_parallel_plugin.testing.scripted_model.ScriptedModel` (the
``scripted_model`` fixture) so the binary runs offline against a scripted model.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ..gsd.paths import GSD_RUNTIME_PATTERNS, WORKER_RUNTIME_FILES
from ..milestone_ids import validate_milestone_id

ENV_REAL_GSD = "GSD_PARALLEL_REAL_GSD"
"""Path of a runnable ``gsd``; overrides the search of the build cache."""

REAL_GSD_HINT = "real GSD not found: set GSD_PARALLEL_REAL_GSD or run ../shared/real-gsd/build.sh"
"""Why a ``real_gsd`` test was skipped (one line, as pytest shows it)."""

CLOSED_OLLAMA_HOST = "http://127.0.0.1:1"
"""Where GSD's Ollama probe is sent: a loopback port nothing listens on (refused at once)."""

GIT_NAME = "gsd-test"
GIT_EMAIL = "gsd@test.invalid"

GSD_RUNTIME_IGNORES: tuple[str, ...] = (*GSD_RUNTIME_PATTERNS, ".gsd/notifications.jsonl")
"""GSD's own runtime list (``GSD_RUNTIME_PATTERNS`` in its ``gitignore.ts``) plus
``notifications.jsonl``: what a project that commits ``.gsd/`` ignores."""

WORKER_EXCLUDES: tuple[str, ...] = WORKER_RUNTIME_FILES
"""What else a worker writes and must not find untracked at completion (else it refuses with
``uncommitted changes remain after the pre-completion commit``); for ``.git/info/exclude``."""

REAL_GSD_CLEARED_VARIABLES: tuple[str, ...] = (
    # Would steer the worker to another milestone, project, state dir or binary.
    "GSD_MILESTONE_LOCK",
    "GSD_SLICE_LOCK",
    "GSD_PARALLEL_WORKER",
    "GSD_PROJECT_ROOT",
    "GSD_PROJECT_ID",
    "GSD_STATE_DIR",
    "GSD_WORKTREE",
    "GSD_CLI_WORKTREE",
    "GSD_CLI_WORKTREE_BASE",
    "GSD_RTK_PATH",
    "GSD_ENGINE_BYPASS",
    "GSD_DEBUG",
    "PI_TOKEN_TELEMETRY",
    "PI_PACKAGE_DIR",
    # Real provider credentials: with one set, GSD could reach a real model or search API.
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_OAUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "CEREBRAS_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "AI_GATEWAY_API_KEY",
    "ZAI_API_KEY",
    "MISTRAL_API_KEY",
    "MINIMAX_API_KEY",
    "MINIMAX_CN_API_KEY",
    "OPENCODE_API_KEY",
    "KIMI_API_KEY",
    "ALIBABA_API_KEY",
    "DASHSCOPE_API_KEY",
    "OLLAMA_API_KEY",
    "OLLAMA_HOST",
    "CUSTOM_OPENAI_API_KEY",
    "COPILOT_GITHUB_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "BRAVE_API_KEY",
    "TAVILY_API_KEY",
    "JINA_API_KEY",
    "CONTEXT7_API_KEY",
)
"""Variables a test's real GSD must not inherit from the developer's shell."""

_NO_DEPENDS: Mapping[str, Sequence[str]] = MappingProxyType({})


class RealGsdError(RuntimeError):
    """``GSD_PARALLEL_REAL_GSD`` names something that is not a runnable file."""


def find_real_gsd(environ: Mapping[str, str] | None = None) -> Path | None:
    """The real ``gsd`` to test with, or None. Never builds one.

    ``$GSD_PARALLEL_REAL_GSD`` wins (a value naming a missing or non-executable file raises
    :class:`RealGsdError`: a typo must not silently skip the tier); else the newest
    ``${XDG_CACHE_HOME:-~/.cache}/gsd-parallel/real-gsd/*/bin/gsd`` that is executable.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_REAL_GSD, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise RealGsdError(f"{ENV_REAL_GSD}={explicit}: no such file")
        if not os.access(path, os.X_OK):
            raise RealGsdError(f"{ENV_REAL_GSD}={explicit}: not executable")
        return path
    cache_home = env.get("XDG_CACHE_HOME", "").strip()
    cache = (Path(cache_home) if cache_home else Path.home() / ".cache") / "gsd-parallel" / "real-gsd"
    found = [p for p in cache.glob("*/bin/gsd") if p.is_file() and os.access(p, os.X_OK)]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime)


def real_gsd_env(gsd_home: Path, *, home: Path | None = None) -> dict[str, str]:
    """The variables a real GSD needs in a test: isolated, quiet, offline (set on top of yours).

    - ``GSD_HOME``: all of GSD's global state (agent dir, sessions, ``projects/``, preferences).
      The agent dir is ``$GSD_HOME/agent``: GSD's loader overwrites ``GSD_CODING_AGENT_DIR``
      with that, so it is set to the same here. Create *gsd_home* before running GSD, or its
      loader prints a first-run banner.
    - ``HOME`` (default ``<gsd_home>/user-home``): GSD copies its bundled skills into
      ``~/.agents/skills`` on every start and reads ``~/.pi/agent/models.json``,
      ``~/.pi/agent/auth.json``, ``~/.pi/agent/extensions`` and ``~/.claude/skills``: none of
      that may be the developer's.
    - ``GSD_RTK_DISABLED``, ``GSD_SKIP_RTK_INSTALL``, ``RTK_TELEMETRY_DISABLED``: no RTK
      download from GitHub at start, no RTK telemetry.
    - ``PI_OFFLINE``, ``PI_SKIP_VERSION_CHECK``: no update check, no package or tool (fd, rg)
      downloads. Headless mode skips GSD's own update check and onboarding already.
    - ``OLLAMA_HOST`` on a closed loopback port: GSD's Ollama extension probes it at every
      session start and would otherwise find (and offer) a developer's local Ollama models.
    - A fixed git identity, and no credential prompt: GSD commits in the checkout.

    Also remove :data:`REAL_GSD_CLEARED_VARIABLES` from the inherited environment
    (:func:`real_gsd_environ` does both).
    """
    return {
        "GSD_HOME": str(gsd_home),
        "GSD_CODING_AGENT_DIR": str(gsd_home / "agent"),
        "HOME": str(home if home is not None else gsd_home / "user-home"),
        "GSD_RTK_DISABLED": "1",
        "GSD_SKIP_RTK_INSTALL": "1",
        "RTK_TELEMETRY_DISABLED": "1",
        "PI_OFFLINE": "1",
        "PI_SKIP_VERSION_CHECK": "1",
        "OLLAMA_HOST": CLOSED_OLLAMA_HOST,
        "GIT_AUTHOR_NAME": GIT_NAME,
        "GIT_AUTHOR_EMAIL": GIT_EMAIL,
        "GIT_COMMITTER_NAME": GIT_NAME,
        "GIT_COMMITTER_EMAIL": GIT_EMAIL,
        "GIT_TERMINAL_PROMPT": "0",
    }


def real_gsd_environ(
    gsd_home: Path, *, home: Path | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A whole environment for ``subprocess``: *base* (default ``os.environ``) without
    :data:`REAL_GSD_CLEARED_VARIABLES`, plus :func:`real_gsd_env`."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k not in REAL_GSD_CLEARED_VARIABLES}
    env.update(real_gsd_env(gsd_home, home=home))
    return env


def make_gsd_project(
    root: Path,
    milestones: Sequence[str],
    *,
    track_gsd: bool = True,
    depends: Mapping[str, Sequence[str]] = _NO_DEPENDS,
    files: Mapping[str, Sequence[str]] | None = None,
    tasks: Mapping[str, int] | None = None,
) -> Path:
    """A git repository (branch ``main``, one commit) with a ``.gsd/`` plan the real GSD runs.

    Each milestone has one slice ``S01`` with one task ``T01`` whose files are
    ``files[mid]`` (default ``src/<mid>.txt``): they are on the slice plan's ``- Files:`` line
    and under the task plan's ``## Expected Output``, where the scripted model reads what to
    write. ``depends[mid]`` becomes ``depends_on`` in the CONTEXT frontmatter, the only place
    GSD reads milestone dependencies from. ``tasks[mid]`` (default 1) gives ``S01`` that many
    tasks: ``T02``, ``T03``… each write ``src/<mid>_t02.txt``…, so a milestone can be made
    longer (more units) than its siblings (GSD's ``reactive_execution`` is then turned off:
    the scripted model runs tasks one at a time). ``track_gsd=False`` ignores ``.gsd`` entirely
    (GSD's own default) instead of committing the plan with GSD's runtime files ignored.

    The markdown is not GSD's state yet: run ``gsd headless recover`` in a checkout first to
    import it into that checkout's ``.gsd/gsd.db``.
    """
    ids = [validate_milestone_id(mid) for mid in milestones]
    for mid, needs in depends.items():
        validate_milestone_id(mid)
        for dep in needs:
            validate_milestone_id(dep)
    task_files = {mid: list((files or {}).get(mid) or [f"src/{mid.lower()}.txt"]) for mid in ids}
    root.mkdir(parents=True, exist_ok=True)
    ignored = GSD_RUNTIME_IGNORES if track_gsd else (".gsd", ".gsd/")
    _write(root / ".gitignore", "".join(f"{line}\n" for line in ("node_modules/", "dist/", *ignored)))
    _write(root / "README.md", "# tiny\n")
    # Three ready tasks in a slice make GSD dispatch them together ("reactive-execute"), a
    # unit the scripted model has no script for: one task after another, as with one task.
    reactive = "reactive_execution:\n  enabled: false\n" if any(n > 1 for n in (tasks or {}).values()) else ""
    _write(root / ".gsd" / "PREFERENCES.md", f"---\nversion: 1\n{reactive}---\n\n# GSD Preferences\n")
    sequence = "\n".join(f"- [ ] {mid}: Greeting {mid} — write its files" for mid in ids)
    _write(
        root / ".gsd" / "PROJECT.md",
        "# Project\n\n## What This Is\n\ntiny is a throwaway project for GSD auto-mode tests.\n\n"
        f"## Core Value\n\nGreeting files exist.\n\n## Milestone Sequence\n\n{sequence}\n",
    )
    for mid in ids:
        count = (tasks or {}).get(mid, 1)
        if count < 1:
            raise ValueError(f"tasks[{mid}] must be >= 1, not {count}")
        more = [[f"src/{mid.lower()}_t{k:02d}.txt"] for k in range(2, count + 1)]
        _write_milestone(
            root / ".gsd" / "milestones" / mid, mid, [task_files[mid], *more], depends.get(mid, ())
        )
    identity = ["-c", f"user.name={GIT_NAME}", "-c", f"user.email={GIT_EMAIL}", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True, env=_git_env())
    return root


def _write_milestone(
    folder: Path, mid: str, task_paths: Sequence[Sequence[str]], needs: Sequence[str]
) -> None:
    """One milestone, one slice ``S01``, one task per entry of *task_paths* (its files)."""
    paths = [p for each in task_paths for p in each]
    bullets = "".join(f"- {p}\n" for p in paths)
    verify = " && ".join(f"test -f {p}" for p in paths)
    front = f"---\ndepends_on: [{', '.join(needs)}]\n---\n\n" if needs else ""
    _write(
        folder / f"{mid}-CONTEXT.md",
        f"{front}# {mid}: Greeting {mid}\n\n**Gathered:** 2026-05-08\n**Status:** Ready for planning\n\n"
        f"## Project Description\n\nWrite {', '.join(paths)}.\n\n## Scope\n\n### In Scope\n\n{bullets}\n"
        "### Out of Scope / Non-Goals\n\n- Everything else\n",
    )
    _write(
        folder / f"{mid}-ROADMAP.md",
        f"# {mid}: Greeting {mid}\n\n**Vision:** {', '.join(paths)} exist.\n\n## Success Criteria\n\n"
        f"{bullets}\n## Slices\n\n"
        "- [ ] **S01: Greeting file** `risk:low` `depends:[]`\n"
        f"  > After this: {', '.join(paths)} exist.\n",
    )
    task_lines = ""
    for n, files in enumerate(task_paths, start=1):
        tid = f"T{n:02d}"
        listed = ", ".join(f"`{p}`" for p in files)
        check = " && ".join(f"test -f {p}" for p in files)
        title = "Write greeting" if n == 1 else f"Write greeting part {n}"
        task_lines += f"- [ ] **{tid}: {title}** `est:5m`\n  Write {', '.join(files)}.\n"
        task_lines += f"  - Files: {listed}\n  - Verify: {check}\n\n"
        code_bullets = "".join(f"- `{p}`\n" for p in files)
        _write(
            folder / "slices" / "S01" / "tasks" / f"{tid}-PLAN.md",
            f"---\nestimated_steps: 1\nestimated_files: {len(files)}\nskills_used: []\n---\n\n"
            f"# {tid}: {title}\n\nWrite {', '.join(files)}.\n\n## Inputs\n\n- none\n\n"
            f"## Expected Output\n\n{code_bullets}\n## Verification\n\n{check}\n",
        )
    _write(
        folder / "slices" / "S01" / "S01-PLAN.md",
        f"# S01: Greeting file\n\n**Goal:** Write the greeting files.\n**Demo:** cat {' '.join(paths)}\n\n"
        f"## Must-Haves\n\n{bullets}\n## Verification\n\n- {verify}\n\n"
        f"## Tasks\n\n{task_lines}"
        f"## Files Likely Touched\n\n{bullets}",
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    # The identity comes from ``-c``: these would override it, the others redirect git.
    for who in ("AUTHOR", "COMMITTER"):
        for what in ("NAME", "EMAIL", "DATE"):
            env.pop(f"GIT_{who}_{what}", None)
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    return env


class GsdRpcSession:
    """A real GSD session driven like an editor drives it: ``gsd --mode rpc`` in *cwd*.

    Prompts go in as ``{"type": "prompt", "message": ...}`` lines on stdin; every event
    GSD prints on stdout is kept (``events``), so a test can wait for the notification or
    session message a ``/parallel …`` command shows. ``close()`` ends the session the way
    a user does (GSD's ``session_shutdown`` runs); ``kill()`` does not.
    """

    def __init__(self, gsd: Path | str, cwd: Path, env: Mapping[str, str]) -> None:
        import threading

        self.cwd = cwd
        self.events: list[dict[str, object]] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [str(gsd), "--mode", "rpc"], cwd=cwd, env=dict(env), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        import json

        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") != "message_update":
                with self._lock:
                    self.events.append(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr.append(line.rstrip("\n"))

    def send(self, command: Mapping[str, object]) -> None:
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(dict(command)) + "\n")
        self.proc.stdin.flush()

    def prompt(self, message: str) -> int:
        """Type *message*; returns the index of the first event that can answer it."""
        with self._lock:
            mark = len(self.events)
        self.send({"type": "prompt", "message": message})
        return mark

    def texts(self, since: int = 0) -> list[tuple[str, str]]:
        """``(kind, text)`` shown to the user since event *since*: ``notify:<level>`` for a
        notification, ``message:<customType>`` for a session message."""
        shown: list[tuple[str, str]] = []
        with self._lock:
            events = self.events[since:]
        for event in events:
            if event.get("type") == "extension_ui_request" and event.get("method") == "notify":
                shown.append((f"notify:{event.get('notifyType')}", str(event.get("message"))))
            message = event.get("message")
            custom = isinstance(message, dict) and message.get("role") == "custom"
            if event.get("type") == "message_end" and custom and isinstance(message, dict):
                shown.append((f"message:{message.get('customType')}", str(message.get("content"))))
        return shown

    def wait_for_text(self, needle: str, *, since: int = 0, timeout: float = 120) -> tuple[str, str]:
        """The first ``(kind, text)`` since *since* that contains *needle*; raises on timeout."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [t for t in self.texts(since) if needle in t[1]]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RealGsdError(
            f"GSD showed no text with {needle!r} (exit {self.proc.poll()}); it showed: "
            f"{self.texts(since)}; stderr: {self.stderr[-10:]}"
        )

    def close(self, timeout: float = 60) -> int:
        """End the session as a user does; GSD's exit code."""
        if self.proc.poll() is None:
            self.send({"type": "shutdown"})
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> GsdRpcSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
