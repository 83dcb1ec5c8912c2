"""The one way Tekton runs `git`: a scrubbed environment, no prompts, no hooks, no fsmonitor.

Every caller (repository facts, repository health, system checks, workspaces) goes through
`git_run` so that the hardening below is applied everywhere:
- `GIT_*` variables of the caller are dropped, so a stray GIT_DIR or GIT_INDEX_FILE cannot
  point git at another repository; LC_ALL=C keeps messages parseable; no prompt may wait for
  a person (GIT_TERMINAL_PROMPT=0).
- `core.fsmonitor` and `core.hooksPath` are switched off on the command line: a repository
  (or a sandboxed command that rewrote a worktree's `.git` file to a planted git directory)
  could otherwise make the host's git run a program of its choosing.
- `core.quotepath=off` prints paths as they are, not octal-escaped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 30.0
_HARDENING = (
    "-c",
    "core.quotepath=off",
    "-c",
    "core.fsmonitor=",
    "-c",
    "core.hooksPath=/dev/null",
)


class GitError(Exception):
    """git could not be run, timed out, or (with check=True) exited non-zero."""


class GitMissing(GitError):
    """There is no `git` to run (or the folder to run it in is gone)."""


class GitTimeout(GitError):
    """git did not finish within the timeout."""


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment git runs with: the caller's minus GIT_*, plus the fixed settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    env.update(extra or {})
    return env


def git_run(
    path: str | Path,
    *args: str,
    stdin: str | None = None,
    check: bool = False,
    timeout: float = GIT_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in `path` and return the finished process (text mode).

    Raises GitError when git is missing or times out, and with `check` when it exits
    non-zero (the message is git's first stderr line). `env` adds variables (for example
    GIT_INDEX_FILE for a scratch index) on top of the scrubbed environment.
    """
    try:
        proc = subprocess.run(
            ["git", *_HARDENING, *args],
            cwd=str(path),
            input=stdin,
            capture_output=True,
            text=True,
            env=git_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitMissing(f"cannot run git in {path}: {exc.strerror}") from None
    except NotADirectoryError:
        raise GitMissing(f"cannot run git in {path}: not a directory") from None
    except subprocess.TimeoutExpired:
        raise GitTimeout(f"git {args[0]} timed out after {timeout:g} s in {path}") from None
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]}: {git_first_line(proc.stderr) or 'failed'}"[:400])
    return proc


def git_out(path: str | Path, *args: str, timeout: float = GIT_TIMEOUT_S) -> str:
    """stdout of a git command that must succeed (GitError otherwise)."""
    return git_run(path, *args, check=True, timeout=timeout).stdout


def git_first_line(text: str) -> str:
    """The first non-blank line of git's output, stripped."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""
