"""POST /api/runs/{id}/fork/: a fork of a visible run, its field errors, and the links
between parent and fork in both runs' details."""

from __future__ import annotations

import pytest

from runs.models import Run, StageRun
from tests.factories import ArtifactFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db


def finished_run(owner) -> Run:
    run = RunFactory(
        owner=owner, status=Run.Status.SUCCEEDED, stage_to="research", base_commit="a" * 40
    )
    StageRun.objects.filter(run=run).update(status=StageRun.Status.SUCCEEDED)
    ArtifactFactory(run=run, stage="plan", content={"summary": "the plan"})
    return run


def test_fork_creates_a_linked_run_from_the_stage(api, user, no_dispatch):
    parent = finished_run(user)
    response = api.post(
        f"/api/runs/{parent.pk}/fork/",
        {"from": "research", "model": "offline/other-model"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"] == f"/api/runs/{body['id']}/"
    assert (body["parent"], body["forked_from_stage"]) == (parent.pk, "research")
    assert body["base_commit"] == "a" * 40 and body["status"] == "queued"
    assert [(s["stage"], s["status"]) for s in body["stages"]] == [
        ("plan", "skipped"),
        ("research", "queued"),
    ]
    assert [a["name"] for a in body["artifacts"]] == ["plan.json"]
    assert no_dispatch == [[StageRun.objects.get(run_id=body["id"], stage="research").pk]]
    shown = api.get(f"/api/runs/{parent.pk}/").json()
    assert (shown["forks"], shown["parent"], shown["forked_from_stage"]) == ([body["id"]], None, "")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "from"),
        ({"from": "deploy"}, "from"),
        ({"from": "release"}, "from"),  # not one of the parent's stages
        ({"from": "plan", "model": "nope"}, "model"),
        ({"from": "plan", "profile": "nope"}, "profile"),
    ],
)
def test_fork_refuses_bad_input_with_field_errors(api, user, no_dispatch, payload, field):
    parent = finished_run(user)
    response = api.post(f"/api/runs/{parent.pk}/fork/", payload, format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["errors"]) == [field]
    assert Run.objects.count() == 1 and no_dispatch == []


def test_another_users_run_cannot_be_forked_nor_its_forks_seen(api, user, no_dispatch):
    other = UserFactory(username="eve")
    theirs = finished_run(other)
    assert (
        api.post(f"/api/runs/{theirs.pk}/fork/", {"from": "plan"}, format="json").status_code == 404
    )
    mine = finished_run(user)
    RunFactory(owner=other, parent=mine, forked_from_stage="plan")
    assert api.get(f"/api/runs/{mine.pk}/").json()["forks"] == []
