"""The run page's change card and the repository page's outstanding reviews (open run
branches), through the Django test client against real repositories."""

from __future__ import annotations

import subprocess

import pytest

from runs.models import Run
from tests.factories import RunFactory, UserFactory
from tests.support.delivery import deliver

pytestmark = pytest.mark.django_db


def test_run_page_shows_the_branch_the_commands_and_the_evidence(client_for, user, delivered_run):
    run = delivered_run
    page = client_for(user).get(f"/runs/{run.pk}/").content.decode()
    assert 'id="delivery"' in page and f"<code>{run.branch}</code>" in page
    assert run.base_commit[:12] in page and run.head_commit[:12] in page
    assert f"git diff {run.base_commit}..{run.branch}" in page
    assert f"git merge {run.branch}" in page
    assert f'href="/api/runs/{run.pk}/patch/"' in page
    assert f'href="/api/runs/{run.pk}/bundle/"' in page
    assert f"git fetch {run.slug}.bundle {run.branch}:{run.branch}" in page
    assert "no ship" in page and "1 test(s) newly failing" in page
    assert "tests.test_app::test_mul" in page and "assert 5 == 6" in page  # newly failing
    assert "tests.test_app::test_sub" in page  # newly passing
    assert "1 of 2 changed lines ran" in page
    assert 'hx-trigger="every 5s"' not in page  # finished: nothing to poll


def test_run_page_of_a_running_run_polls_the_change_card(
    client_for, user, git_repo, settings, tmp_path
):
    settings.TEKTON_WORKSPACE_ROOT = tmp_path / "ws"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=git_repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    run = RunFactory(
        owner=user, repo_path=str(git_repo), base_commit=head, status=Run.Status.RUNNING
    )
    client = client_for(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "No change committed yet" in page and "Not measured yet" in page
    assert 'hx-trigger="every 5s"' in page
    part = client.get(f"/runs/{run.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="delivery")
    body = part.content.decode()
    assert body.lstrip().startswith('<section id="delivery"') and "Timeline" not in body


def test_run_page_without_the_repository_still_offers_the_patch(client_for, user, delivered_run):
    Run.objects.filter(pk=delivered_run.pk).update(repo_path="/nowhere/on/this/host")
    page = client_for(user).get(f"/runs/{delivered_run.pk}/").content.decode()
    assert "repository not on this host" in page
    assert f'href="/api/runs/{delivered_run.pk}/patch/"' in page
    assert f"/api/runs/{delivered_run.pk}/bundle/" not in page


def test_repository_page_lists_open_run_branches_as_outstanding_reviews(
    client_for, user, delivered_run, git_repo
):
    other = deliver(
        RunFactory(
            owner=UserFactory(), repo_path=str(git_repo), base_commit=delivered_run.base_commit
        ),
        review="ok",
    )
    page = client_for(user).get("/repo/").content.decode()
    assert 'id="open-branches-1"' in page
    assert f"<code>{delivered_run.branch}</code>" in page
    assert f'href="/runs/{delivered_run.pk}/"' in page
    assert "no ship" in page and "review: revise" in page
    assert other.branch not in page  # another user's run does not exist for them


def test_launcher_takes_a_test_command_and_explain_shows_it(client_for, user, git_repo):
    client = client_for(user)
    form = {"goal": "g", "repo_path": str(git_repo), "stage_from": "plan", "stage_to": "release"}
    page = client.post(
        "/runs/new/", {**form, "test_command": "make check", "action": "explain"}
    ).content.decode()
    assert 'name="test_command"' in page
    assert "Tests: <code>make check</code>" in page and "(request)" in page
    response = client.post("/runs/new/", {**form, "test_command": "make check"})
    assert response.status_code == 302
    assert Run.objects.get().config["test_command"] == "make check"
