"""Fixtures for the system checks: real git repositories, real sockets, the local Redis."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCAL_REDIS = ("127.0.0.1", 6379)


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=Tekton Test", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@pytest.fixture
def repo_root(tmp_path: Path, settings) -> Path:
    """A folder that is the only allowed repository root."""
    root = tmp_path / "roots"
    root.mkdir()
    settings.TEKTON_REPO_ROOTS = [root.resolve()]
    return root


@pytest.fixture
def trunk_repo(repo_root: Path) -> Path:
    """A clean git repository on branch `trunk` with one commit, inside the allowed root."""
    repo = repo_root / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    (repo / "README.md").write_text("# app\n")
    (repo / "main.py").write_text("print('hi')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port with a real listening socket for the test's lifetime."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        yield s.getsockname()[1]


@pytest.fixture
def local_redis() -> str:
    """The real Redis at 127.0.0.1:6379; skips when it is down (fails under CI's
    TEKTON_REQUIRE_SERVICES=1, where a missing service must never be a silent skip)."""
    try:
        with socket.create_connection(LOCAL_REDIS, timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            answer = s.recv(16)
    except OSError as exc:
        reason = f"no Redis at {LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}: {exc}"
        if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"TEKTON_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    if not answer.startswith(b"+PONG"):
        pytest.skip(f"127.0.0.1:6379 answered {answer!r}, not a password-less Redis")
    return f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}"
