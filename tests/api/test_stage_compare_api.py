"""GET /api/runs/{id}/stages/{stage}/attempts/ and .../compare/?with=: a stage's set-aside
attempts, what its artifact can be compared with, and the diff; only runs the user may see."""

from __future__ import annotations

import pytest

from runs.models import Run, StageAttempt, StageRun
from tests.factories import ArtifactFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db


def retried_run(owner) -> Run:
    """A run whose plan was blocked once, retried with a note, then accepted."""
    run = RunFactory(owner=owner, status=Run.Status.SUCCEEDED, stage_to="research")
    StageRun.objects.filter(run=run).update(status=StageRun.Status.SUCCEEDED)
    StageRun.objects.filter(run=run, stage="plan").update(attempt=2)
    StageAttempt.objects.create(
        run=run,
        stage="plan",
        number=1,
        status="blocked",
        reason="weighted approval 0.33 < 0.67",
        artifact={"summary": "the first draft", "risks": ["none"]},
    )
    ArtifactFactory(run=run, stage="plan", content={"summary": "the plan", "risks": ["none"]})
    return run


def test_attempts_lists_the_kept_drafts_and_what_can_be_compared(api, user):
    run = retried_run(user)
    fork = RunFactory(owner=user, parent=run, forked_from_stage="research", stage_to="research")
    ArtifactFactory(run=fork, stage="plan", content={"summary": "the plan", "risks": ["none"]})
    RunFactory(owner=UserFactory(username="eve"), parent=run, forked_from_stage="research")

    response = api.get(f"/api/runs/{run.pk}/stages/plan/attempts/")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["run"], body["stage"], body["attempt"]) == (run.pk, "plan", 2)
    [kept] = body["attempts"]
    assert (kept["number"], kept["status"], kept["reason"]) == (
        1,
        "blocked",
        "weighted approval 0.33 < 0.67",
    )
    assert kept["artifact"] == {"summary": "the first draft", "risks": ["none"]}
    assert kept["patch"] == "" and kept["created_at"]
    # Eve's fork is not listed: another user's run does not exist for ada.
    assert body["compare"] == [
        {"key": "attempt-1", "label": "attempt 1 (blocked)"},
        {"key": f"run-{fork.pk}", "label": f"fork run {fork.pk} (from research)"},
    ]
    assert api.get(f"/api/runs/{run.pk}/stages/research/attempts/").json()["attempts"] == []


def test_compare_answers_the_diff_against_an_attempt_and_a_fork(api, user):
    run = retried_run(user)
    fork = RunFactory(owner=user, parent=run, forked_from_stage="research", stage_to="research")
    ArtifactFactory(run=fork, stage="plan", content={"summary": "the plan", "risks": ["none"]})

    body = api.get(f"/api/runs/{run.pk}/stages/plan/compare/", {"with": "attempt-1"}).json()

    assert (body["key"], body["old_label"], body["new_label"]) == (
        "attempt-1",
        "attempt 1 (blocked)",
        f"run {run.pk} (now)",
    )
    assert body["same"] is False
    assert body["diff"].startswith("--- a/plan.json\n+++ b/plan.json\n")
    assert '-  "summary": "the first draft"' in body["diff"]
    assert '+  "summary": "the plan"' in body["diff"]
    # The fork reused plan: the same on both sides, seen from the fork.
    same = api.get(f"/api/runs/{fork.pk}/stages/plan/compare/", {"with": f"run-{run.pk}"}).json()
    assert (same["same"], same["diff"], same["old_label"]) == (
        True,
        "",
        f"parent run {run.pk}",
    )


def test_compare_refuses_a_missing_or_malformed_key_with_a_field_error(api, user):
    run = retried_run(user)
    for query in ({}, {"with": "attempt"}, {"with": "run-x"}, {"with": "parent"}):
        response = api.get(f"/api/runs/{run.pk}/stages/plan/compare/", query)
        assert response.status_code == 400, (query, response.json())
        assert list(response.json()["errors"]) == ["with"]


def test_compare_says_which_keys_exist_when_the_key_names_nothing(api, user):
    run = retried_run(user)
    response = api.get(f"/api/runs/{run.pk}/stages/plan/compare/", {"with": "attempt-7"})
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"no attempt-7 to compare stage plan of run {run.pk} with; the options are: attempt-1"
    )
    response = api.get(f"/api/runs/{run.pk}/stages/research/compare/", {"with": "attempt-1"})
    assert response.status_code == 404
    assert response.json()["detail"].endswith("there is none yet")


def test_a_blocked_stage_compares_its_draft_and_one_with_no_artifact_is_404(api, user):
    run = RunFactory(owner=user, status=Run.Status.BLOCKED, stage_to="plan")
    StageAttempt.objects.create(
        run=run, stage="plan", number=1, status="failed", artifact={"summary": "old"}
    )
    StageRun.objects.filter(run=run, stage="plan").update(
        status=StageRun.Status.BLOCKED, draft={"artifact": {"summary": "new"}, "patch": None}
    )
    body = api.get(f"/api/runs/{run.pk}/stages/plan/compare/", {"with": "attempt-1"}).json()
    assert '-  "summary": "old"' in body["diff"] and '+  "summary": "new"' in body["diff"]
    StageRun.objects.filter(run=run, stage="plan").update(draft=None)
    response = api.get(f"/api/runs/{run.pk}/stages/plan/compare/", {"with": "attempt-1"})
    assert response.status_code == 404
    assert response.json()["detail"] == f"run {run.pk} has no artifact of stage plan yet"


@pytest.mark.parametrize("endpoint", ["attempts/", "compare/?with=attempt-1"])
def test_a_bad_stage_or_another_users_run_is_404(api, user, endpoint):
    run = retried_run(user)
    unknown = api.get(f"/api/runs/{run.pk}/stages/deploy/{endpoint}")
    assert unknown.status_code == 404 and "unknown stage 'deploy'" in unknown.json()["detail"]
    outside = api.get(f"/api/runs/{run.pk}/stages/release/{endpoint}")
    assert outside.status_code == 404
    assert outside.json()["detail"] == f"run {run.pk} does not include stage 'release'"
    theirs = retried_run(UserFactory(username="eve"))
    response = api.get(f"/api/runs/{theirs.pk}/stages/plan/{endpoint}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"run {theirs.pk} not found"


def test_staff_see_another_users_attempts(staff_api, user):
    run = retried_run(user)
    body = staff_api.get(f"/api/runs/{run.pk}/stages/plan/attempts/").json()
    assert [a["number"] for a in body["attempts"]] == [1]


def code_artifact(new_line: str, *, also: str = "") -> dict:
    """A code artifact whose patch changes greet.py (to `new_line`) and maybe `also`."""
    diff = f"--- a/greet.py\n+++ b/greet.py\n@@ -1,2 +1,2 @@\n-hello = 1\n+{new_line}\n x = 0\n"
    if also:
        diff += f"--- a/{also}\n+++ b/{also}\n@@ -1 +1 @@\n-a\n+b\n"
    files = ["greet.py", *([also] if also else [])]
    return {"diff": diff, "files_changed": files, "risk_notes": [], "confidence": 0.8}


def test_compare_of_code_diffs_the_patches_and_leaves_the_diff_out_of_the_json(api, user):
    run = RunFactory(owner=user, status=Run.Status.SUCCEEDED, stage_to="code")
    StageAttempt.objects.create(
        run=run, stage="code", number=1, status="blocked", artifact=code_artifact("hello = 2")
    )
    ArtifactFactory(run=run, stage="code", content=code_artifact("hello = 3", also="README.md"))

    body = api.get(f"/api/runs/{run.pk}/stages/code/compare/", {"with": "attempt-1"}).json()

    assert (body["same"], body["patch_field"]) == (False, "diff")
    # The metadata: only files_changed differs, and the patch is not in it.
    assert body["diff"].startswith("--- a/code.json\n+++ b/code.json\n")
    assert '+    "README.md"' in body["diff"] and '"diff"' not in body["diff"]
    assert [(f["path"], f["change"]) for f in body["patch_files"]] == [
        ("greet.py", "differs"),
        ("README.md", "only_new"),
    ]
    assert "-+hello = 2\n++hello = 3\n" in body["patch_files"][0]["diff"]
    assert body["patch_diff"] == "".join(f["diff"] for f in body["patch_files"])

    # The same patch and metadata: nothing to show on either part.
    StageAttempt.objects.filter(run=run).update(
        artifact=code_artifact("hello = 3", also="README.md")
    )
    same = api.get(f"/api/runs/{run.pk}/stages/code/compare/", {"with": "attempt-1"}).json()
    assert (same["same"], same["diff"], same["patch_diff"], same["patch_files"]) == (
        True,
        "",
        "",
        [],
    )
    # A stage with no patch field says so and keeps the old shape.
    plan = api.get(f"/api/runs/{retried_run(user).pk}/stages/plan/compare/", {"with": "attempt-1"})
    assert (plan.json()["patch_field"], plan.json()["patch_files"]) == (None, [])
