"""The demo repository up.sh's first run works on: created once, a git repository whose
tests pass and whose test command Tekton detects with a runner, quickly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from swarm.testing import test_command_resolve
from tekton_site.demo_repo import demo_repo_ensure, main


def test_it_is_a_committed_repository_whose_own_tests_pass(tmp_path):
    repo = demo_repo_ensure(tmp_path / "demo")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""  # everything committed; the .venv link is ignored
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TEKTON_"))},
    )
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout
    command = test_command_resolve(repo, None)
    assert command.source == "detected" and command.runner == "pytest"


def test_a_second_call_reuses_it_and_a_foreign_folder_is_refused(tmp_path, capsys):
    repo = demo_repo_ensure(tmp_path / "demo")
    (repo / "shop" / "orders.py").write_text("# changed by a person\n")
    assert demo_repo_ensure(repo) == repo
    assert (repo / "shop" / "orders.py").read_text() == "# changed by a person\n"

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    assert main([str(foreign)]) == 2
    assert "is not the demo repository" in capsys.readouterr().err
    assert (foreign / "todo.txt").read_text() == "keep me"
    with pytest.raises(ValueError):
        demo_repo_ensure(foreign)
