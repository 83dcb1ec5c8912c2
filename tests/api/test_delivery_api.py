"""The run resource's branch, workspace and test facts, the per-test results, and the
patch and bundle downloads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from accounts.services import token_create
from tests.api.conftest import bearer

pytestmark = pytest.mark.django_db


def test_the_run_carries_its_branch_workspace_and_test_evidence(api, delivered_run):
    run = delivered_run
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert (body["branch"], body["base_commit"], body["head_commit"]) == (
        run.branch, run.base_commit, run.head_commit,
    )  # fmt: skip
    delivery = body["delivery"]
    assert delivery["workspace"]["state"] == "present"
    assert delivery["branch_in_git"] is True and delivery["can_bundle"] is True
    assert delivery["commands"]["merge"] == f"git merge {run.branch}"
    tests = body["tests"]
    assert tests["ship"] is False and "1 test(s) newly failing" in tests["reasons"]
    assert tests["newly_failing"] == ["tests.test_app::test_mul"]
    assert tests["newly_passing"] == ["tests.test_app::test_sub"]
    assert tests["branch"]["totals"] == {
        "tests": 4, "passed": 3, "failed": 1, "errors": 0, "skipped": 0,
    }  # fmt: skip
    assert tests["changed_coverage"]["percent"] == 50.0
    listed = api.get("/api/runs/").json()["results"][0]
    assert listed["branch"] == run.branch and "delivery" not in listed


def test_tests_endpoint_gives_every_result_and_filters_by_change(api, delivered_run):
    body = api.get(f"/api/runs/{delivered_run.pk}/tests/").json()
    assert body["measured"] is True and body["count"] == 5
    assert {r["test"]: (r["base"], r["branch"]) for r in body["results"]} == {
        "tests.test_app::test_add": ("passed", "passed"),
        "tests.test_app::test_mul": ("passed", "failed"),
        "tests.test_app::test_new": (None, "passed"),
        "tests.test_app::test_old": ("passed", None),
        "tests.test_app::test_sub": ("failed", "passed"),
    }
    passing = api.get(f"/api/runs/{delivered_run.pk}/tests/?change=newly_passing").json()
    assert [r["test"] for r in passing["results"]] == ["tests.test_app::test_sub"]
    assert api.get(f"/api/runs/{delivered_run.pk}/tests/?change=better").status_code == 400


def test_patch_and_bundle_download(api, delivered_run, tmp_path, settings):
    settings.TEKTON_DATA_DIR = tmp_path / "data"
    run = delivered_run
    patch = api.get(f"/api/runs/{run.pk}/patch/")
    assert patch.status_code == 200 and patch["Content-Type"] == "text/x-diff"
    assert f'filename="{run.slug}.patch"' in patch["Content-Disposition"]
    assert b"+def sub(a: int, b: int) -> int:" in b"".join(patch.streaming_content)
    bundle = api.get(f"/api/runs/{run.pk}/bundle/")
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/octet-stream"
    data = b"".join(bundle.streaming_content)
    path = tmp_path / "b.bundle"
    path.write_bytes(data)
    verify = subprocess.run(
        ["git", "bundle", "verify", str(path)], cwd=run.repo_path, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert (
        run.branch
        in subprocess.run(
            ["git", "bundle", "list-heads", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )


def test_downloads_are_404_without_a_change_or_for_another_user(api, delivered_run, other_user):
    from tests.factories import RunFactory

    bare = RunFactory(owner=delivered_run.owner, repo_path=delivered_run.repo_path)
    for what in ("patch", "bundle"):
        response = api.get(f"/api/runs/{bare.pk}/{what}/")
        assert response.status_code == 404 and response.json()["detail"]
    mallory = bearer(token_create(user=other_user, name="t")[1])
    for what in ("tests", "patch", "bundle"):
        assert mallory.get(f"/api/runs/{delivered_run.pk}/{what}/").status_code == 404
    assert Path(delivered_run.repo_path).is_dir()


def test_a_run_request_may_name_its_test_command(api, git_repo, no_dispatch):
    from runs.models import Run

    body = {"goal": "g", "repo": str(git_repo), "test_command": "python -m pytest -q tests"}
    explained = api.post("/api/runs/", {**body, "explain": True}, format="json").json()
    assert explained["tests"]["command"] == "python -m pytest -q tests"
    assert explained["tests"]["source"] == "request" and explained["tests"]["isolation"] == "bwrap"
    created = api.post("/api/runs/", body, format="json")
    assert created.status_code == 201
    assert Run.objects.get(pk=created.json()["id"]).config["test_command"] == body["test_command"]
    detected = api.post(
        "/api/runs/", {**body, "test_command": None, "explain": True}, format="json"
    )
    assert detected.json()["tests"]["source"] == "detected"


def test_a_test_command_with_control_characters_is_refused(api, git_repo):
    response = api.post(
        "/api/runs/",
        {"goal": "g", "repo": str(git_repo), "test_command": "pytest\x1b[2J -x", "explain": True},
        format="json",
    )
    assert response.status_code == 400
    assert "control characters" in str(response.json())
