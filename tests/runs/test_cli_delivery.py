"""`manage.py tekton run --test-command` and `manage.py tekton workspaces prune`."""

from __future__ import annotations

import pytest

from runs.models import Run
from runs.stage_work import run_workspace
from tests.cli import tekton
from tests.factories import RunFactory
from tests.support.delivery import head_of

pytestmark = pytest.mark.django_db


def test_explain_shows_the_test_command_given_instead_of_the_detected_one(git_repo):
    code, out, err = tekton("run", "--goal", "g", "--repo", str(git_repo), "--explain")
    assert code == 0, err
    assert "(from detected)" in out and "isolation: bwrap" in out
    code, out, err = tekton(
        "run", "--goal", "g", "--repo", str(git_repo), "--explain",
        "--test-command", "python -m pytest -x tests",
    )  # fmt: skip
    assert code == 0, err
    assert "tests: python -m pytest -x tests (from request)" in " ".join(out.split())
    assert not Run.objects.exists()


def test_a_run_keeps_the_test_command_it_was_given(git_repo, monkeypatch):
    from runs import cli_process

    # Detached in celery mode: the run is created and its id printed, nothing executes.
    monkeypatch.setattr(cli_process, "is_inline", lambda: False)
    monkeypatch.setattr("runs.services.stages_dispatch", lambda stages: None)
    code, out, err = tekton(
        "run", "--goal", "g", "--repo", str(git_repo), "--detach", "--test-command", "make check",
    )  # fmt: skip
    assert code == 0, err
    run = Run.objects.get(pk=int(out.strip()))
    assert run.config["test_command"] == "make check"


def test_a_typed_test_command_is_refused_when_the_sandbox_is_off(git_repo, settings):
    settings.TEKTON_SANDBOX = "none"  # then a typed test command is never accepted
    code, _, err = tekton(
        "run", "--goal", "g", "--repo", str(git_repo), "--explain", "--test-command", "pytest",
    )  # fmt: skip
    assert code == 2 and "test command" in err


def test_workspaces_prune_removes_orphans_and_keeps_live_runs(git_repo, tmp_path, settings):
    settings.TEKTON_WORKSPACE_ROOT = tmp_path / "ws"
    base = head_of(git_repo)
    live = RunFactory(repo_path=str(git_repo), base_commit=base, status=Run.Status.BLOCKED)
    done = RunFactory(repo_path=str(git_repo), base_commit=base, status=Run.Status.SUCCEEDED)
    for run in (live, done):
        run_workspace(run).create()
    orphan = run_workspace(done).path

    code, out, err = tekton("workspaces", "prune", "--dry-run")
    assert code == 0, err
    assert f"would remove {orphan}" in out and orphan.is_dir()
    assert str(run_workspace(live).path) not in out

    code, out, err = tekton("workspaces", "prune")
    assert code == 0, err
    assert f"removed {orphan}" in out and "removed 1 path(s)" in out
    assert not orphan.exists() and run_workspace(live).exists()
    code, out, _ = tekton("workspaces", "prune")
    assert "nothing to prune" in out


def test_show_gives_the_branch_how_to_take_it_and_the_test_evidence(delivered_run):
    import json

    run = delivered_run
    code, out, err = tekton("show", str(run.pk))
    assert code == 0, err
    flat = " ".join(out.split())
    assert f"branch {run.branch} (base {run.base_commit[:12]}, head {run.head_commit[:12]})" in flat
    assert f"git merge {run.branch}" in flat and f"git diff {run.base_commit}..{run.branch}" in flat
    assert "tests: no ship (1 test(s) newly failing)" in flat
    assert "newly failing: tests.test_app::test_mul" in flat
    assert "changed lines covered: 1 of 2 (50.0%)" in flat
    code, out, _ = tekton("show", str(run.pk), "--json")
    data = json.loads(out)
    assert data["branch"] == run.branch and data["head_commit"] == run.head_commit
    assert data["tests"]["newly_passing"] == ["tests.test_app::test_sub"]
