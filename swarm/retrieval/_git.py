"""The few git reads the indexer needs, read-only, through swarm.git."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swarm.git import GitError, git_env, git_out, git_run
from swarm.retrieval.errors import RetrievalError

GIT_TIMEOUT_S = 60.0
# swarm.git's hardening, for the one call it cannot make: a binary `cat-file --batch` stream.
_HARDENING = ("-c", "core.quotepath=off", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null")


def resolve_commit(repo: Path, rev: str) -> str:
    """The full sha of `rev` (a branch, tag, HEAD or sha) in `repo`."""
    if not Path(repo).is_dir():
        raise RetrievalError(f"{repo} is not a directory")
    if not rev or rev.startswith("-"):
        raise RetrievalError(f"not a revision: {rev!r}")
    try:
        if git_run(repo, "rev-parse", "--git-dir").returncode != 0:
            raise RetrievalError(f"{repo} is not a git repository")
        proc = git_run(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        )
    except GitError as exc:
        raise RetrievalError(str(exc)) from None
    if proc.returncode != 0:
        raise RetrievalError(f"unknown commit {rev!r} in {repo}")
    return proc.stdout.strip()


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob: str
    size: int


def tree_files(repo: Path, commit: str) -> list[TreeEntry]:
    """Regular files of `commit` (symlinks and submodules left out), sorted by path."""
    try:
        out = git_out(
            repo, "ls-tree", "-r", "-l", "-z", "--full-tree", commit, timeout=GIT_TIMEOUT_S
        )
    except GitError as exc:
        raise RetrievalError(str(exc)) from None
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
        ["git", *_HARDENING, "cat-file", "--batch"],
        cwd=str(repo),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=git_env(),
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
            data = proc.stdout.read(int(parts[2]))
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
