"""`/api/system/checks/`: every check with a status, cached GET, POST re-run."""

from __future__ import annotations

import pytest

from syschecks.registry import CheckResult
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded(monkeypatch):
    """Record what the API asks checks_run for, while still running the real checks."""
    import syschecks.api

    calls = []
    real = syschecks.api.checks_run

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(syschecks.api, "checks_run", spy)
    return calls


def test_get_runs_every_check_over_the_users_repositories(
    api, user, other_user, git_repo, recorded
):
    RunFactory(owner=user, repo_path=str(git_repo))
    RunFactory(owner=user, repo_path=str(git_repo))
    RunFactory(owner=other_user, repo_path="/srv/someone-else")
    response = api.get("/api/system/checks/")
    assert response.status_code == 200
    body = response.json()
    assert recorded[0]["repo_paths"] == [str(git_repo)]
    ids = [c["id"] for c in body["checks"]]
    assert "db" in ids and "redis" in ids and any(i.startswith("sandbox.") for i in ids)
    assert any(i.startswith("repository") and str(git_repo) in i for i in ids), ids
    assert all(c["status"] in ("ok", "warn", "error") for c in body["checks"])
    assert sum(body["summary"].values()) == len(body["checks"])
    # GET within the cache window answers the same results without running the checks.
    again = api.get("/api/system/checks/").json()
    assert again["checked_at"] == body["checked_at"] and len(recorded) == 1


def test_post_reruns_and_can_select_checks(api, recorded):
    api.get("/api/system/checks/")
    response = api.post("/api/system/checks/", {"only": ["database"]}, format="json")
    assert response.status_code == 200
    assert [c["id"] for c in response.json()["checks"]] == ["db"]
    assert recorded[-1]["only"] == ["database"] and len(recorded) == 2
    full = api.post("/api/system/checks/", format="json")
    assert full.status_code == 200 and len(recorded) == 3


def test_post_rejects_an_unknown_check(api):
    response = api.post("/api/system/checks/", {"only": ["nope"]}, format="json")
    assert response.status_code == 400
    assert "nope" in response.json()["errors"]["only"][0]


def test_key_values_never_appear(api, monkeypatch):
    secret = "sk-ant-api03-" + "Q" * 40
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    response = api.post("/api/system/checks/", {"only": ["providers"]}, format="json")
    assert response.status_code == 200
    assert secret not in response.content.decode()
    assert isinstance(CheckResult(id="x").as_dict(), dict)
