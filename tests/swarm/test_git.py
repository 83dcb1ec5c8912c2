"""swarm.git: the one git runner, and the hardening every caller gets from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from swarm.git import GitError, GitMissing, git_out, git_run


def _repo(path: Path) -> Path:
    path.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "t@tekton.invalid"],
        ["config", "user.name", "T"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=path, check=True)
    return path


def test_a_callers_git_dir_cannot_redirect_git(tmp_path, monkeypatch):
    repo = _repo(tmp_path / "repo")
    other = _repo(tmp_path / "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert git_out(repo, "rev-parse", "--show-toplevel").strip() == str(repo.resolve())


def test_a_configured_fsmonitor_is_never_run(tmp_path):
    repo = _repo(tmp_path / "repo")
    canary = tmp_path / "fsmonitor-ran"
    hook = tmp_path / "monitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {canary}\n")
    hook.chmod(0o755)
    subprocess.run(["git", "config", "core.fsmonitor", str(hook)], cwd=repo, check=True)
    git_run(repo, "status", "--porcelain")
    assert not canary.exists()
    # Plain git does run it: the test would notice if the hardening stopped mattering.
    subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True)
    assert canary.exists()


def test_hooks_are_never_run(tmp_path):
    repo = _repo(tmp_path / "repo")
    canary = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {canary}\n")
    hook.chmod(0o755)
    (repo / "b.txt").write_text("b\n")
    git_run(repo, "add", "b.txt", check=True)
    git_run(
        repo, "-c", "user.name=T", "-c", "user.email=t@tekton.invalid", "commit", "-qm", "two",
        check=True,
    )  # fmt: skip
    assert not canary.exists()


def test_check_raises_with_gits_first_line(tmp_path):
    with pytest.raises(GitError, match=r"^git rev-parse: fatal: not a git repository"):
        git_run(tmp_path, "rev-parse", "--show-toplevel", check=True)


def test_a_missing_folder_is_a_git_missing_error(tmp_path):
    with pytest.raises(GitMissing):
        git_run(tmp_path / "gone", "status")
