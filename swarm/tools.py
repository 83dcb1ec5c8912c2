"""The tools the debaters call through native tool calling, and the layer that runs them.

Read-only tools for every role (read_file, list_files, search_code, git_log, git_show,
git_diff) and, where the profile grants them, run_command and run_tests, which execute
through a sandbox (any object with the `run` method of `swarm.sandbox.Sandbox`).

The layer is the only thing between a model and the repository, so:
- every call of a stage gets the same definitions (the union of the stage's grants, so
  the prompt prefix stays identical and cacheable), and a call the role is not granted is
  refused with an error result the model sees;
- an unknown tool, arguments that are not JSON, missing or extra arguments, too many
  calls in one turn: error results, never exceptions; one result per call id;
- every path resolves inside the workspace (realpath + is_relative_to, never a string
  prefix check); `..`, absolute paths, `.git` and symbolic links that leave it are refused
  and never followed;
- tool output is data: it is redacted and bounded, and nothing in it changes what the
  layer allows (a file that says "ignore your instructions" is just text).

Calls are synchronous (git and the sandbox are subprocesses); an async caller runs them
with `asyncio.to_thread`. One StageTools may serve several debaters at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from swarm.git import GitError, git_run
from swarm.providers.base import ToolCall, ToolSpec
from swarm.providers.base import ToolResult as ProviderToolResult
from swarm.redact import redact
from swarm.stages import DEBATER_ROLES, ROLES, STAGE_NAMES
from swarm.workspace import Workspace

log = logging.getLogger("tekton.swarm.tools")

MAX_CALLS_PER_TURN = 8
MAX_TEST_RUNS_PER_STAGE = 3
READ_MAX_LINES = 400
READ_MAX_BYTES = 4 << 20
LINE_MAX_CHARS = 2_000
LIST_MAX_FILES = 500
SEARCH_MAX_LINES = 200
INDEX_HIT_LINES = 12  # lines of each indexed passage search_code shows; read_file reads on
SEARCH_LINE_CHARS = 300
OUTPUT_MAX_CHARS = 24_000  # any one result, head and tail kept
STREAM_MAX_CHARS = 8_000  # each of a command's stdout and stderr
SUMMARY_CHARS = 160
BINARY_SNIFF_BYTES = 8_192
_GIT_TIMEOUT_S = 20.0
_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./^~@{}-]{0,199}$")


# --- shapes -------------------------------------------------------------------------------


# A tool as the model sees it and a call the model made are the provider interface's own
# ToolSpec and ToolCall (a call's `arguments` may also arrive as raw JSON text here).
ToolDef = ToolSpec


@dataclass(frozen=True)
class ToolResult:
    """The answer to one call, and what becomes its `stage.tool` event."""

    call_id: str
    content: str  # what the model reads: redacted and bounded
    is_error: bool
    summary: str  # one short line for the transcript
    duration_s: float
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)  # redacted

    def block(self) -> ProviderToolResult:
        """The result as the provider interface sends it back to the model."""
        return ProviderToolResult(
            call_id=self.call_id, content=self.content, is_error=self.is_error
        )

    def event_payload(self) -> dict[str, Any]:
        """The `stage.tool` event's payload (the caller adds stage, role and round)."""
        return {
            "call_id": self.call_id,
            "tool": self.tool,
            "arguments": self.arguments,
            "summary": self.summary,
            "duration_s": round(self.duration_s, 4),
            "ok": not self.is_error,
        }


class SandboxLike(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        stdin: str | None = None,
        limits: Any = None,
    ) -> Any: ...


class ToolFailure(Exception):
    """A call that cannot be done; the message is what the model reads."""


# --- definitions --------------------------------------------------------------------------


def _schema(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_PATH = {"type": "string", "description": "A path relative to the repository root."}
_REV_ARG = {"type": "string", "description": "A commit, branch or range (a..b)."}

TOOL_DEFS: dict[str, ToolDef] = {
    d.name: d
    for d in (
        ToolDef(
            "read_file",
            "Read a text file of the repository, with line numbers. At most "
            f"{READ_MAX_LINES} lines per call; give start_line/end_line to read on.",
            _schema(
                {
                    "path": _PATH,
                    "start_line": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                },
                ["path"],
            ),
        ),
        ToolDef(
            "list_files",
            "List the repository's files (tracked and new, not ignored) under a folder, "
            "optionally matching a glob such as '*.py' ('*' also matches '/').",
            _schema(
                {
                    "path": {"type": "string", "description": "A folder; default the root."},
                    "glob": {"type": "string"},
                }
            ),
        ),
        ToolDef(
            "search_code",
            "Search the repository. `query` (words, a question, code): the passages of the "
            "run's base commit that the retrieval index ranks best (by meaning and by "
            "words), with path:lines and score. `pattern`: git grep over the workspace "
            "(extended regular expression, or a fixed string), answering path:line:text. "
            "Give one or both.",
            _schema(
                {
                    "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                    "pattern": {"type": "string", "minLength": 1},
                    "path_glob": {
                        "type": "string",
                        "description": "Limit to paths like 'src/*.py'.",
                    },
                    "fixed_string": {"type": "boolean"},
                    "ignore_case": {"type": "boolean"},
                },
            ),
        ),
        ToolDef(
            "git_log",
            "The commit history of the workspace (or of one path): short sha, date, author, "
            "subject.",
            _schema(
                {
                    "path": _PATH,
                    "rev": _REV_ARG,
                    "max_count": {"type": "integer", "minimum": 1, "maximum": 100},
                }
            ),
        ),
        ToolDef(
            "git_show",
            "Show one commit: message, changed files and its diff (optionally one path).",
            _schema({"rev": _REV_ARG, "path": _PATH}, ["rev"]),
        ),
        ToolDef(
            "git_diff",
            "The workspace's changes against the run's base commit (or against rev), "
            "optionally for one path.",
            _schema({"rev": _REV_ARG, "path": _PATH}),
        ),
        ToolDef(
            "run_command",
            "Run a shell command in the workspace inside the sandbox (no network, no "
            "secrets, time and memory limits). Answers the exit code and output.",
            _schema(
                {
                    "command": {"type": "string", "minLength": 1},
                    "cwd": {"type": "string", "description": "A folder; default the root."},
                },
                ["command"],
            ),
        ),
        ToolDef(
            "run_tests",
            "Run the repository's test command inside the sandbox, optionally limited to "
            "some test files or folders. Answers the exit code and output.",
            _schema({"paths": {"type": "array", "items": {"type": "string"}, "maxItems": 50}}),
        ),
    )
}
READ_ONLY_TOOLS: tuple[str, ...] = (
    "read_file",
    "list_files",
    "search_code",
    "git_log",
    "git_show",
    "git_diff",
)
TOOL_NAMES: tuple[str, ...] = tuple(TOOL_DEFS)
# The architecture note gives roles capabilities; these are the tools each one means.
# Tekton's git tools only read, so every role has them with the read-only tools anyway.
CAPABILITY_TOOLS: dict[str, tuple[str, ...]] = {
    "git": ("git_log", "git_show", "git_diff"),
    "python": ("run_tests",),
    "shell": ("run_command",),
}
_DEFAULT_CAPABILITIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("code", "proponent"): ("git", "python", "shell"),
    ("code", "pragmatist"): ("git", "shell"),
    **{("review", role): ("git", "shell") for role in DEBATER_ROLES},
    **{("test_debug", role): ("python", "shell") for role in DEBATER_ROLES},
}

ToolGrants = Mapping[str, Mapping[str, Sequence[str]]]


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    wanted = set(names)
    return tuple(n for n in TOOL_NAMES if n in wanted)


def default_tool_grants() -> dict[str, dict[str, list[str]]]:
    """{stage: {role: [tool, ...]}} for every stage and role: the read-only tools for all,
    plus the architecture note's capabilities (code proponent: git, python, shell; code
    pragmatist: git, shell; review: git, shell; test_debug: python, shell)."""
    table: dict[str, dict[str, list[str]]] = {}
    for stage in STAGE_NAMES:
        table[stage] = {}
        for role in ROLES:
            extra = [
                t
                for cap in _DEFAULT_CAPABILITIES.get((stage, role), ())
                for t in CAPABILITY_TOOLS[cap]
            ]
            table[stage][role] = list(_ordered([*READ_ONLY_TOOLS, *extra]))
    return table


DEFAULT_TOOL_GRANTS = default_tool_grants()


def tool_grants_check(grants: ToolGrants | None) -> dict[str, dict[str, list[str]]]:
    """The full grants table: the defaults with each (stage, role) that `grants` names
    replaced by its list. Raises ValueError (one line) for an unknown stage, role or tool."""
    table = default_tool_grants()
    for stage, roles in (grants or {}).items():
        if stage not in table:
            raise ValueError(f"tool grants: unknown stage {stage!r}")
        if not isinstance(roles, Mapping):
            raise ValueError(f"tool grants: {stage} must map roles to lists of tools")
        for role, tools in roles.items():
            if role not in ROLES:
                raise ValueError(f"tool grants: unknown role {role!r} in {stage}")
            if isinstance(tools, str) or not isinstance(tools, Sequence):
                raise ValueError(f"tool grants: {stage}.{role} must be a list of tool names")
            unknown = [t for t in tools if t not in TOOL_DEFS]
            if unknown:
                raise ValueError(
                    f"tool grants: unknown tool {unknown[0]!r} for {stage}.{role} "
                    f"(known: {', '.join(TOOL_NAMES)})"
                )
            table[stage][role] = list(_ordered(tools))
    return table


@dataclass(frozen=True)
class ToolSet:
    definitions: tuple[ToolDef, ...]  # the stage's union: the same for every role
    allowed: frozenset[str]  # what this role may call


def tools_for(stage: str, role: str, grants: ToolGrants | None = None) -> ToolSet:
    """The tool definitions every call of `stage` carries (the union of its roles' grants,
    in a fixed order) and the tools `role` may call. ValueError for an unknown stage/role."""
    table = tool_grants_check(grants)
    if stage not in table:
        raise ValueError(f"unknown stage {stage!r}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    union = _ordered(t for tools in table[stage].values() for t in tools)
    return ToolSet(
        definitions=tuple(TOOL_DEFS[t] for t in union),
        allowed=frozenset(table[stage][role]),
    )


# --- paths and output bounds --------------------------------------------------------------


def path_inside(root: Path, rel: str, *, must_exist: bool = True) -> Path:
    """The real path of `rel` inside `root`, or ToolFailure. Refuses absolute paths, `..`,
    `.git`, and anything whose real path (symbolic links resolved) is not inside the real
    root; a sibling such as `/ws-evil` is not inside `/ws`."""
    if not isinstance(rel, str) or "\0" in rel:
        raise ToolFailure("the path must be a string")
    rel = rel.strip() or "."
    if rel.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise ToolFailure(
            f"{rel!r} is an absolute path; give a path relative to the repository root"
        )
    parts = PurePosixPath(rel).parts
    if ".." in parts:
        raise ToolFailure(f"{rel!r}: '..' is not allowed; paths stay inside the repository")
    if any(p.lower() == ".git" for p in parts):
        raise ToolFailure(f"{rel!r}: .git is not readable through the tools")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / rel))
    if not real.is_relative_to(real_root):
        raise ToolFailure(f"{rel!r} leads outside the repository (a symbolic link); not followed")
    if must_exist and not os.path.lexists(real):
        raise ToolFailure(f"{rel!r} does not exist in the repository")
    return real


def read_regular(root: Path, real: Path, max_bytes: int) -> tuple[bytes, int]:
    """(the first `max_bytes` of the regular file `real`, its size), or ToolFailure.

    Opened without following a final symbolic link and without blocking (a FIFO a
    command left would hang the call), then checked again through the descriptor: a link
    swapped in after `path_inside` looked is refused too."""
    rel = _relative(root, real)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise ToolFailure(f"cannot read {rel!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ToolFailure(f"{rel!r} is a folder; use list_files")
        if not stat.S_ISREG(st.st_mode):
            raise ToolFailure(f"{rel!r} is not a regular file")
        proc_path = f"/proc/self/fd/{fd}"
        if os.path.exists(proc_path):
            opened = Path(os.readlink(proc_path))
            if not opened.is_relative_to(os.path.realpath(root)):
                raise ToolFailure(f"{rel!r} leads outside the repository; not followed")
        chunks, left = [], max_bytes
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st.st_size
    finally:
        os.close(fd)


def _relative(root: Path, real: Path) -> str:
    rel = real.relative_to(os.path.realpath(root)).as_posix()
    return rel or "."


def bound(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters keeping head and tail, with the count of what
    was dropped in between (a cut at the tail alone hides the failure at the end)."""
    if len(text) <= limit:
        return text
    head = text[: limit * 2 // 3]
    tail = text[-(limit - len(head)) :]
    dropped = len(text) - len(head) - len(tail)
    return f"{head}\n[... {dropped} characters dropped ...]\n{tail}"


def _short(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args_error(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing argument {missing!r}"
    if error.validator == "additionalProperties":
        return f"unexpected argument: {error.message.split('(', 1)[-1].rstrip(')')}"
    return f"argument {where!r}: {error.message}" if where else error.message


_VALIDATORS = {name: Draft202012Validator(d.input_schema) for name, d in TOOL_DEFS.items()}


# --- the layer ----------------------------------------------------------------------------


class StageTools:
    """The tools of one stage over one workspace.

    `workspace` is a Workspace that exists (its path, base commit and git directory are
    used, so git never reads the worktree's own `.git` file) or a plain checkout folder;
    `sandbox` runs run_command/run_tests (None: those answer that no sandbox is
    available); `sandbox_root` is where the workspace appears inside the sandbox (default
    its own path); `test_command` is the repository's test command (argv list, or one
    shell string); `limits` is passed to `sandbox.run` as it is.
    """

    def __init__(
        self,
        *,
        workspace: Workspace | str | Path,
        stage: str,
        grants: ToolGrants | None = None,
        base: str | None = None,
        sandbox: SandboxLike | None = None,
        sandbox_root: str | None = None,
        test_command: Sequence[str] | str | None = None,
        limits: Any = None,
        max_calls_per_turn: int = MAX_CALLS_PER_TURN,
        max_test_runs: int = MAX_TEST_RUNS_PER_STAGE,
        index_search: Callable[[str, int], Any] | None = None,
    ) -> None:
        if isinstance(workspace, Workspace):
            if not workspace.exists():
                raise ValueError(
                    f"the workspace {workspace.path} is missing or its .git file was changed; "
                    "create or rebuild it first"
                )
            self.root = workspace.path
            self.base = base or workspace.base
            self.git_dir = workspace.git_dir()
        else:
            self.root = Path(workspace)
            self.base = base
            self.git_dir = None
        self.stage = stage
        self.grants = tool_grants_check(grants)
        if stage not in self.grants:
            raise ValueError(f"unknown stage {stage!r}")
        self.definitions = tools_for(stage, ROLES[0], self.grants).definitions
        self.sandbox = sandbox
        self.sandbox_root = sandbox_root or str(self.root)
        self.test_command = test_command
        self.limits = limits
        self.max_calls_per_turn = max_calls_per_turn
        self.max_test_runs = max_test_runs
        # query, k -> a swarm.retrieval.CodeSearch over the run's base commit (the caller
        # binds repository and commit); None: no index here, search_code greps only.
        self.index_search = index_search
        self.test_runs = 0
        self._lock = threading.Lock()
        self._sandbox_lock = threading.Lock()  # one command at a time in one workspace

    def turn(self, role: str) -> ToolTurn:
        """A debater's turn: its own call counter and its role's grants."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return ToolTurn(self, role)

    # -- git inside the workspace --

    def _git(self, *args: str, timeout: float = _GIT_TIMEOUT_S):
        where = (f"--git-dir={self.git_dir}", f"--work-tree={self.root}") if self.git_dir else ()
        try:
            return git_run(self.root, *where, *args, timeout=timeout)
        except GitError as exc:
            raise ToolFailure(str(exc)) from None

    def _git_ok(self, *args: str) -> str:
        proc = self._git(*args)
        if proc.returncode != 0:
            raise ToolFailure(
                " ".join(proc.stderr.split())[:400] or f"git exited {proc.returncode}"
            )
        return proc.stdout

    def _rev(self, rev: str | None, default: str | None) -> str:
        rev = (rev or default or "HEAD").strip()
        if not _REV.match(rev):
            raise ToolFailure(f"{rev!r} is not a revision this tool accepts")
        return rev

    def _pathspec(self, path: str | None) -> list[str]:
        if not path:
            return []
        real = path_inside(self.root, path, must_exist=False)
        return ["--", _relative(self.root, real)]

    # -- the tools: each returns (content, summary) or raises ToolFailure --

    def _read_file(self, path: str, start_line: int | None = None, end_line: int | None = None):
        real = path_inside(self.root, path)
        rel = _relative(self.root, real)
        data, size = read_regular(self.root, real, READ_MAX_BYTES)
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            raise ToolFailure(f"{rel!r} is a binary file ({size} bytes); not shown")
        lines = data.decode("utf-8", errors="replace").splitlines()
        total = len(lines)
        start = start_line or 1
        if total == 0:
            return f"{rel} is empty", f"{rel}: empty"
        if start > total:
            raise ToolFailure(f"start_line {start} is past the end of {rel!r} ({total} lines)")
        end = min(end_line or total, total)
        if end < start:
            raise ToolFailure(f"end_line {end_line} is before start_line {start}")
        end = min(end, start + READ_MAX_LINES - 1)
        width = len(str(end))
        body = []
        for n in range(start, end + 1):
            line = lines[n - 1]
            if len(line) > LINE_MAX_CHARS:
                line = line[:LINE_MAX_CHARS] + f" [... {len(line) - LINE_MAX_CHARS} characters cut]"
            body.append(f"{n:>{width}}  {line}")
        text = "\n".join(body)
        if size > len(data):
            text += f"\n[the file is {size} bytes; only the first {len(data)} are readable]"
        if end < total or start > 1:
            text += f"\n[lines {start}-{end} of {total} shown"
            text += f"; read on with start_line={end + 1}]" if end < total else "]"
        return text, f"{rel} lines {start}-{end} of {total}"

    def _list_files(self, path: str = ".", glob: str | None = None):
        real = path_inside(self.root, path)
        if not real.is_dir():
            raise ToolFailure(f"{path!r} is not a folder")
        folder = _relative(self.root, real)
        spec: list[str] = []
        if glob:
            if glob.startswith((":", "/", "~")) or ".." in PurePosixPath(glob).parts:
                raise ToolFailure(f"glob {glob!r} must be relative, without '..' or ':'")
            spec = [glob if folder == "." else f"{folder}/{glob}"]
        elif folder != ".":
            spec = [f"{folder}/"]
        out = self._git_ok(
            "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--deduplicate",
            "--", *spec,
        )  # fmt: skip
        files = sorted(f for f in set(out.split("\0")) if f and os.path.lexists(self.root / f))
        shown = files[:LIST_MAX_FILES]
        text = "\n".join(shown) if shown else "no files match"
        if len(files) > len(shown):
            text += f"\n[{len(files) - len(shown)} more files not shown; narrow the folder or glob]"
        return text, f"{len(files)} files under {folder}" + (f" matching {glob}" if glob else "")

    def _search_code(
        self,
        pattern: str | None = None,
        path_glob: str | None = None,
        fixed_string: bool = False,
        ignore_case: bool = False,
        query: str | None = None,
        limit: int = 8,
    ):
        if not pattern and not query:
            raise ToolFailure("give query (search by meaning) or pattern (git grep), or both")
        if not query:
            return self._grep(pattern, path_glob, fixed_string, ignore_case)
        found = self._index_search(query, limit, must=pattern is None)
        if not pattern:
            return found
        grep_text, grep_summary = self._grep(pattern, path_glob, fixed_string, ignore_case)
        return f"{found[0]}\n\ngit grep {pattern!r}:\n{grep_text}", f"{found[1]}; {grep_summary}"

    def _index_search(self, query: str, limit: int, *, must: bool) -> tuple[str, str]:
        if self.index_search is None:
            if must:
                raise ToolFailure("no retrieval index here; search with pattern (git grep) instead")
            return "no retrieval index here", "no index"
        result = self.index_search(query, limit)
        if not result.hits:
            why = f" (the index could not answer: {result.warning})" if result.warning else ""
            return f"no indexed passages match {query!r}{why}", "no passages"
        parts = []
        for hit in result.hits:
            symbol = f" {hit.symbol}" if hit.symbol else ""
            lines = hit.text.splitlines()
            body = "\n".join(lines[:INDEX_HIT_LINES])
            more = (
                f"\n[... {len(lines) - INDEX_HIT_LINES} more lines: read_file]"
                if len(lines) > INDEX_HIT_LINES
                else ""
            )
            parts.append(f"{hit.location} score {hit.score:.3f}{symbol}\n{body}{more}")
        text = "As of the run's base commit, best first:\n\n" + "\n\n".join(parts)
        return text, f"{len(result.hits)} passages for {_short(query, 60)!r}"

    def _grep(
        self,
        pattern: str,
        path_glob: str | None,
        fixed_string: bool,
        ignore_case: bool,
    ):
        spec: list[str] = []
        if path_glob:
            if path_glob.startswith((":", "/", "~")) or ".." in PurePosixPath(path_glob).parts:
                raise ToolFailure(f"path_glob {path_glob!r} must be relative, without '..' or ':'")
            spec = ["--", path_glob]
        flags = ["-F" if fixed_string else "-E"] + (["-i"] if ignore_case else [])
        proc = self._git(
            "grep", "-n", "-I", "--no-color", "--untracked", *flags, "-e", pattern, *spec
        )
        if proc.returncode == 1 and not proc.stderr.strip():
            return f"no matches for {pattern!r}", "no matches"
        if proc.returncode != 0:
            raise ToolFailure(
                " ".join(proc.stderr.split())[:400] or f"git grep exited {proc.returncode}"
            )
        lines = proc.stdout.splitlines()
        shown = [
            ln if len(ln) <= SEARCH_LINE_CHARS else ln[:SEARCH_LINE_CHARS] + " [...]"
            for ln in lines[:SEARCH_MAX_LINES]
        ]
        text = "\n".join(shown)
        if len(lines) > len(shown):
            text += f"\n[{len(lines) - len(shown)} more matches not shown; narrow the pattern or path_glob]"
        files = len({ln.split(":", 1)[0] for ln in lines})
        return text, f"{len(lines)} matches in {files} files"

    def _git_log(self, path: str | None = None, rev: str | None = None, max_count: int = 20):
        out = self._git_ok(
            "--literal-pathspecs", "log", "--no-color", "--date=short",
            "--format=%h %ad %an: %s", f"-n{max_count}", "--end-of-options",
            self._rev(rev, "HEAD"), *self._pathspec(path),
        )  # fmt: skip
        count = len(out.splitlines())
        return out.strip() or "no commits", f"{count} commits" + (
            f" touching {path}" if path else ""
        )

    def _git_show(self, rev: str, path: str | None = None):
        out = self._git_ok(
            "--literal-pathspecs", "show", "--no-color", "--no-ext-diff", "--no-textconv",
            "--stat", "-p", "--end-of-options", self._rev(rev, None), *self._pathspec(path),
        )  # fmt: skip
        first = out.splitlines()[0] if out else ""
        return out, _short(f"{rev}: {first}")

    def _git_diff(self, rev: str | None = None, path: str | None = None):
        against = self._rev(rev, self.base)
        out = self._git_ok(
            "--literal-pathspecs", "diff", "--no-color", "--no-ext-diff", "--no-textconv",
            "--end-of-options", against, *self._pathspec(path),
        )  # fmt: skip
        files = sum(1 for ln in out.splitlines() if ln.startswith("diff --git "))
        return (
            out or f"no changes against {against}",
            f"{files} files changed against {against[:12]}",
        )

    def _sandbox_run(self, argv: list[str], cwd: str):
        if self.sandbox is None:
            raise ToolFailure("no sandbox is available on this stage: commands cannot run")
        with self._sandbox_lock:
            try:
                result = self.sandbox.run(argv, cwd=cwd, limits=self.limits)
            except Exception as exc:  # the model reads why; the run goes on
                raise ToolFailure(f"the sandbox could not run the command: {exc}") from None
        parts = [
            f"exit code: {result.exit_code}" + (" (timed out)" if result.timed_out else ""),
            f"duration: {result.duration_s:.2f} s",
            f"isolation: {result.isolation}",
        ]
        if getattr(result, "reason", ""):
            parts.append(f"reason: {result.reason}")
        for name in ("stdout", "stderr"):
            text = bound(getattr(result, name) or "", STREAM_MAX_CHARS)
            dropped = getattr(result, f"{name}_dropped", 0)
            note = f" ({dropped} bytes dropped by the sandbox)" if dropped else ""
            parts.append(f"--- {name}{note} ---\n{text}")
        failed = result.exit_code is None or result.timed_out
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        summary = f"{status} in {result.duration_s:.1f} s"
        if result.exit_code is None and getattr(result, "reason", ""):
            summary = _short(f"not run: {result.reason}")
        return "\n".join(parts), summary, failed

    def _inside(self, rel: str) -> str:
        return str(PurePosixPath(self.sandbox_root) / rel) if rel != "." else self.sandbox_root

    def _run_command(self, command: str, cwd: str = "."):
        real = path_inside(self.root, cwd)
        if not real.is_dir():
            raise ToolFailure(f"cwd {cwd!r} is not a folder")
        content, summary, failed = self._sandbox_run(
            ["/bin/sh", "-c", command], self._inside(_relative(self.root, real))
        )
        return content, _short(f"{command}: {summary}"), failed

    def _run_tests(self, paths: Sequence[str] = ()):
        if not self.test_command:
            raise ToolFailure("this repository has no test command (.tekton.toml or detection)")
        rels = [_relative(self.root, path_inside(self.root, p)) for p in paths]
        with self._lock:
            if self.test_runs >= self.max_test_runs:
                raise ToolFailure(
                    f"run_tests limit reached: at most {self.max_test_runs} runs in this stage"
                )
            self.test_runs += 1
        if isinstance(self.test_command, str):
            argv = ["/bin/sh", "-c", " ".join([self.test_command, *map(shlex.quote, rels)])]
        else:
            argv = [*self.test_command, *rels]
        content, summary, failed = self._sandbox_run(argv, self.sandbox_root)
        return content, f"tests: {summary}", failed


class ToolTurn:
    """One debater's turn: at most `max_calls_per_turn` calls, each answered with a
    ToolResult (never an exception)."""

    def __init__(self, tools: StageTools, role: str) -> None:
        self.tools = tools
        self.role = role
        self.allowed = frozenset(tools.grants[tools.stage][role])
        self.calls = 0

    def call(self, call: ToolCall) -> ToolResult:
        started = time.monotonic()
        name = call.name if isinstance(call.name, str) else str(call.name)
        args: Any = call.arguments
        shown_args: dict[str, Any] = {}
        try:
            self.calls += 1
            if self.calls > self.tools.max_calls_per_turn:
                raise ToolFailure(
                    f"tool call limit reached: at most {self.tools.max_calls_per_turn} calls "
                    "per turn; answer with what you have"
                )
            if name not in TOOL_DEFS:
                raise ToolFailure(
                    f"unknown tool {name!r}; available: {', '.join(d.name for d in self.tools.definitions)}"
                )
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except ValueError as exc:
                    raise ToolFailure(f"the arguments are not valid JSON: {exc}") from None
            if not isinstance(args, Mapping):
                raise ToolFailure("the arguments must be a JSON object")
            args = dict(args)
            shown_args = redact(_bounded_args(args))
            if name not in self.allowed:
                raise ToolFailure(
                    f"{name} is not granted to the {self.tools.stage} {self.role}; "
                    f"you may call: {', '.join(_ordered(self.allowed)) or 'no tools'}"
                )
            errors = sorted(
                _VALIDATORS[name].iter_errors(args), key=lambda e: list(e.absolute_path)
            )
            if errors:
                raise ToolFailure(f"{name}: {_args_error(errors[0])}")
            content, summary, *failed = getattr(self.tools, f"_{name}")(**args)
            is_error = bool(failed and failed[0])
        except ToolFailure as exc:
            content, summary, is_error = f"error: {exc}", _short(f"error: {exc}"), True
        except OSError as exc:  # the file system changed under the call
            content, summary, is_error = f"error: {exc.strerror or exc}", "error: file system", True
        except Exception:  # a bug here must not end the debate; the log keeps it
            log.exception("tool %s failed", name)
            content, summary, is_error = (
                f"error: {name} failed inside Tekton",
                "error: internal",
                True,
            )
        content = redact(bound(content, OUTPUT_MAX_CHARS))
        result = ToolResult(
            call_id=str(call.id),
            content=content,
            is_error=is_error,
            summary=redact(summary),
            duration_s=time.monotonic() - started,
            tool=name,
            arguments=shown_args,
        )
        log.debug("tool %s by %s: %s", name, self.role, result.summary)
        return result

    def call_all(self, calls: Iterable[ToolCall]) -> list[ToolResult]:
        """One result per call, in order (a provider needs every call id answered)."""
        return [self.call(c) for c in calls]


def _bounded_args(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in list(args.items())[:20]:
        if isinstance(value, str) and len(value) > 500:
            value = value[:500] + "…"
        out[str(key)[:100]] = value
    return out


# --- the code stage's prompt --------------------------------------------------------------


@dataclass(frozen=True)
class PromptFiles:
    text: str  # the files, each under a "=== path ===" header, redacted
    included: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why): missing, unsafe, binary, over budget


def files_for_prompt(
    workspace: Workspace | str | Path, paths: Iterable[str], budget_chars: int = 60_000
) -> PromptFiles:
    """The contents of `paths` (the files the code stage's backlog names) for its prompt,
    in order, within `budget_chars`; the file that crosses the budget is cut with a notice
    and the rest are skipped. Only safe paths inside the workspace are read."""
    root = workspace.path if isinstance(workspace, Workspace) else Path(workspace)
    parts: list[str] = []
    included: list[str] = []
    skipped: list[tuple[str, str]] = []
    used = 0
    for path in dict.fromkeys(p.strip() for p in paths if isinstance(p, str) and p.strip()):
        try:
            real = path_inside(root, path)
        except ToolFailure as exc:
            reason = str(exc)
            skipped.append(
                (path, "not in the repository yet" if "does not exist" in reason else reason)
            )
            continue
        rel = _relative(root, real)
        try:
            data, _ = read_regular(root, real, budget_chars * 4 + 1)
        except ToolFailure as exc:
            skipped.append((path, str(exc)))
            continue
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            skipped.append((path, "binary file"))
            continue
        text = data.decode("utf-8", errors="replace")
        header = f"=== {rel} ===\n"
        room = budget_chars - used - len(header)
        if room <= 200:
            skipped.append((path, "over the size budget"))
            continue
        if len(text) > room:
            cut = text[:room]
            cut = cut[: cut.rfind("\n") + 1] or cut
            text = cut + f"[... {rel} cut here: over the size budget; read_file shows the rest]\n"
        elif not text.endswith("\n"):
            text += "\n"
        parts.append(header + text)
        used += len(header) + len(text)
        included.append(rel)
    return PromptFiles(
        text=redact("".join(parts)), included=tuple(included), skipped=tuple(skipped)
    )
