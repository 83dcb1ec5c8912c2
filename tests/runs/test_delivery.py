"""runs.delivery: the branch facts, the patch and bundle a person takes, the per-test
results, and a repository's open run branches, against real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runs.delivery import (
    DeliveryUnavailable,
    repo_run_branches,
    run_bundle_open,
    run_delivery,
    run_patch_text,
    run_test_results,
)
from runs.models import Run
from runs.selectors import run_evidence_summary
from runs.stage_work import run_workspace
from tests.factories import RunFactory, UserFactory
from tests.support.delivery import FIX, deliver, head_of

pytestmark = pytest.mark.django_db


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@t.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def test_delivery_names_the_branch_its_commits_and_the_commands(delivered_run):
    run = delivered_run
    facts = run_delivery(run)
    assert facts.branch == run.name and facts.branch_in_git is True
    assert (
        facts.branch_head
        == run.head_commit
        == _git(Path(run.repo_path), "rev-parse", run.branch).strip()
    )
    assert facts.workspace_state == "present" and facts.can_bundle
    assert facts.commands["diff"] == f"git diff {run.base_commit}..{run.branch}"
    assert facts.commands["merge"] == f"git merge {run.branch}"
    run_workspace(run).remove()
    assert run_delivery(run).workspace_state == "removed"  # the branch stays
    assert run_delivery(run).branch_in_git is True


def test_the_patch_is_what_git_diff_of_the_branch_prints_and_applies(delivered_run, tmp_path):
    run = delivered_run
    text, source = run_patch_text(run)
    repo = Path(run.repo_path)
    assert source == "branch"
    assert text == _git(repo, "diff", f"{run.base_commit}..{run.branch}")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    _git(clone, "checkout", "-q", run.base_commit)
    subprocess.run(["git", "apply", "--check", "-"], cwd=clone, input=text, text=True, check=True)


def test_without_the_repository_the_patch_comes_from_the_database(delivered_run):
    run = delivered_run
    Run.objects.filter(pk=run.pk).update(repo_path="/nowhere/on/this/host")
    run.refresh_from_db()
    assert run_patch_text(run) == (FIX, "artifact")
    assert run_delivery(run).workspace_state == "unavailable"
    with pytest.raises(DeliveryUnavailable, match="not on this host"):
        run_bundle_open(run)


def test_the_bundle_brings_the_branch_into_a_clone_of_the_base(delivered_run, tmp_path, settings):
    run = delivered_run
    settings.TEKTON_DATA_DIR = tmp_path / "data"
    with run_bundle_open(run) as handle:
        data = handle.read()
    assert data.startswith(b"# v2 git bundle")
    assert list((tmp_path / "data" / "tmp").iterdir()) == []  # nothing left on disk
    bundle = tmp_path / "run.bundle"
    bundle.write_bytes(data)
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(run.repo_path), str(clone))
    _git(clone, "fetch", "-q", str(bundle), f"{run.branch}:{run.branch}")
    assert _git(clone, "rev-parse", run.branch).strip() == run.head_commit
    # The repository has no remote and no ref but the run's changed.
    assert _git(Path(run.repo_path), "remote").strip() == ""


def test_a_run_without_a_change_has_no_patch_and_no_bundle(git_repo, tmp_path, settings):
    settings.TEKTON_WORKSPACE_ROOT = tmp_path / "ws"
    run = RunFactory(repo_path=str(git_repo), base_commit=head_of(git_repo))
    with pytest.raises(DeliveryUnavailable, match="no change"):
        run_patch_text(run)
    with pytest.raises(DeliveryUnavailable, match="no branch"):
        run_bundle_open(run)
    facts = run_delivery(run)
    assert facts.branch_in_git is False and facts.commands == {} and not facts.has_change
    assert run_evidence_summary(run) is None
    assert run_test_results(run)["measured"] is False


def test_evidence_summary_and_per_test_results(delivered_run):
    summary = run_evidence_summary(delivered_run)
    assert summary["ship"] is False
    assert summary["newly_passing"] == ["tests.test_app::test_sub"]
    assert summary["newly_failing"] == ["tests.test_app::test_mul"]
    assert summary["base"]["totals"]["tests"] == 4 and summary["branch"]["totals"]["failed"] == 1
    # The change adds src/app.py lines 3-6; coverage measured 5 (ran) and 6 (missed).
    assert summary["changed_coverage"]["measurable"] == 2
    assert summary["changed_coverage"]["covered"] == 1
    results = run_test_results(delivered_run)
    changes = {r["test"]: r["change"] for r in results["results"]}
    assert changes == {
        "tests.test_app::test_add": "unchanged",
        "tests.test_app::test_mul": "newly_failing",
        "tests.test_app::test_new": "added",
        "tests.test_app::test_old": "removed",
        "tests.test_app::test_sub": "newly_passing",
    }
    failing = run_test_results(delivered_run, change="newly_failing")["results"]
    assert failing == [
        {
            "test": "tests.test_app::test_mul",
            "base": "passed",
            "branch": "failed",
            "change": "newly_failing",
            "message": "assert 5 == 6",
        }
    ]
    assert [r["kind"] for r in results["runs"]] == ["base", "branch"]


def test_open_branches_are_matched_to_runs_and_merged_ones_drop_out(delivered_run, user, git_repo):
    other = UserFactory()
    second = deliver(
        RunFactory(owner=other, repo_path=str(git_repo), base_commit=delivered_run.base_commit),
        review="ok",
    )
    # A run branch of no run here (another database, same namespace).
    _git(git_repo, "branch", "tekton/run-999-deadbeef", delivered_run.branch)
    rows, error = repo_run_branches(user, str(git_repo))
    assert error == ""
    assert [r.name for r in rows] == [delivered_run.branch]  # another user's run: not shown
    row = rows[0]
    assert row.run.pk == delivered_run.pk and row.head == delivered_run.head_commit
    assert (row.ship, row.newly_failing, row.newly_passing, row.tests) == (False, 1, 1, 4)
    assert row.review == "revise"
    staff = UserFactory(is_staff=True)
    rows, _ = repo_run_branches(staff, str(git_repo))
    assert [r.name for r in rows] == [
        second.branch,
        delivered_run.branch,
        "tekton/run-999-deadbeef",
    ]
    assert rows[0].review == "ok" and rows[2].run is None
    _git(git_repo, "merge", "-q", "--no-edit", second.branch)
    rows, _ = repo_run_branches(staff, str(git_repo))
    assert second.branch not in [r.name for r in rows]


def test_open_branches_of_a_repository_not_here(user):
    assert repo_run_branches(user, "/nowhere/on/this/host") == (
        [],
        "the repository is not on this host",
    )


def test_without_the_checkout_the_branches_are_what_the_workers_recorded(
    delivered_run, user, git_repo, tmp_path
):
    # The web host has no checkout at the recorded path (it lives on the workers' hosts).
    moved = tmp_path / "elsewhere"
    git_repo.rename(moved)
    rows, note = repo_run_branches(user, str(git_repo))
    assert [(r.name, r.head) for r in rows] == [(delivered_run.branch, delivered_run.head_commit)]
    assert rows[0].run.pk == delivered_run.pk and rows[0].tests == 4 and rows[0].review == "revise"
    assert note.startswith("the repository is not on this host: branches as the workers recorded")
    assert repo_run_branches(UserFactory(), str(git_repo)) == (
        [],
        "the repository is not on this host",
    )
