"""The few git reads the indexer needs, through the `git` command line, read-only.

Private to swarm.retrieval until the shared helper in swarm/git.py exists; same rules as
swarm.repo: C locale, no prompt, no hooks, no fsmonitor, paths unquoted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swarm.retrieval.errors import RetrievalError

GIT_TIMEOUT_S = 60.0
_GIT_CONFIG = (
    "-c",
    "core.quotepath=off",
    "-c",
    "core.fsmonitor=",
    "-c",
    "core.hooksPath=/dev/null",
)


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return stdout; RetrievalError with git's own message on failure."""
    try:
        proc = subprocess.run(
            ["git", *_GIT_CONFIG, *args],
            cwd=str(repo),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError as exc:
        raise RetrievalError(f"cannot run git in {repo}: {exc.strerror}") from None
    except NotADirectoryError:
        raise RetrievalError(f"{repo} is not a directory") from None
    except subprocess.TimeoutExpired:
        raise RetrievalError(
            f"git {args[0]} timed out after {GIT_TIMEOUT_S:.0f}s in {repo}"
        ) from None
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RetrievalError(f"git {args[0]} in {repo}: {message}")
    return proc.stdout


def resolve_commit(repo: Path, rev: str) -> str:
    """The full sha of `rev` (a branch, tag, HEAD or sha) in `repo`."""
    if not Path(repo).is_dir():
        raise RetrievalError(f"{repo} is not a directory")
    if not rev or rev.startswith("-"):
        raise RetrievalError(f"not a revision: {rev!r}")
    try:
        out = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except RetrievalError:
        git(repo, "rev-parse", "--git-dir")  # names the real problem when it is not a repository
        raise RetrievalError(f"unknown commit {rev!r} in {repo}") from None
    return out.strip()


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob: str
    size: int


def tree_files(repo: Path, commit: str) -> list[TreeEntry]:
    """Regular files of `commit` (symlinks and submodules left out), sorted by path."""
    out = git(repo, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    entries = []
    for record in out.split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        mode, kind, blob, size = meta.split()
        if kind != "blob" or mode not in ("100644", "100755"):
            continue
        entries.append(TreeEntry(path=path, blob=blob, size=int(size)))
    entries.sort(key=lambda e: e.path)
    return entries


def read_blobs(repo: Path, blobs: list[str]) -> Iterator[tuple[str, bytes]]:
    """(sha, content) for each blob, in order, through one `git cat-file --batch`."""
    if not blobs:
        return
    proc = subprocess.Popen(
        ["git", *_GIT_CONFIG, "cat-file", "--batch"],
        cwd=str(repo),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for sha in blobs:
            # One request at a time: writing every sha first could fill the pipe both ways.
            proc.stdin.write(f"{sha}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().decode()
            parts = header.split()
            if len(parts) != 3:
                raise RetrievalError(f"git cat-file: {header.strip() or 'no answer'} for {sha}")
            size = int(parts[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after each object
            yield sha, data
    finally:
        proc.stdin.close()
        proc.stdout.close()
        try:
            proc.wait(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
