"""Fixtures of the page tests: logged-in clients and runs made by the real services."""

from __future__ import annotations

import pytest

from runs.services import run_create


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def finished_run(user, git_repo, django_capture_on_commit_callbacks):
    """A complete offline run from plan to release (executed inline, synchronously)."""
    with django_capture_on_commit_callbacks(execute=True):
        run = run_create(goal="Add a health endpoint", repo_path=str(git_repo), by=user)
    run.refresh_from_db()
    return run


@pytest.fixture
def blocked_run(user, git_repo, django_capture_on_commit_callbacks):
    """An offline run whose review stage blocks (the offline backend's block marker)."""
    with django_capture_on_commit_callbacks(execute=True):
        run = run_create(
            goal="Tighten the login flow [offline:block=review]",
            repo_path=str(git_repo),
            by=user,
        )
    run.refresh_from_db()
    return run


@pytest.fixture
def budget_blocked_run(user, git_repo, django_capture_on_commit_callbacks):
    """An offline run whose profile's token budget is too small for its first call."""
    from config_profiles.models import Profile

    default = Profile.objects.get(name="diamond-v5")
    Profile.objects.create(name="tight", stage_models=default.stage_models, budget_tokens=1000)
    with django_capture_on_commit_callbacks(execute=True):
        run = run_create(
            goal="Add a health endpoint", repo_path=str(git_repo), profile_name="tight", by=user
        )
    run.refresh_from_db()
    return run
