"""One identity per run: uid, namespace, base commit, and folders that belong to one run."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from runs.artifacts_store import (
    FolderTaken,
    artifact_bytes,
    artifact_dir,
    artifact_write,
    folder_claim,
)
from runs.models import Artifact, Run
from runs.services import run_create, run_plan
from tekton_site.errors import FieldError

pytestmark = pytest.mark.django_db


def _head(repo) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_new_run_gets_a_uid_the_namespace_and_its_base_commit(git_repo, settings):
    settings.TEKTON_NAMESPACE = "team_a"
    run = run_create(goal="g", repo_path=git_repo, stage_to="plan", dispatch=False)
    assert isinstance(run.uid, uuid.UUID)
    assert run.base_commit == _head(git_repo)
    assert run.name == f"team_a/run-{run.pk}-{run.uid.hex[:8]}"
    assert artifact_dir(run).relative_to(settings.TEKTON_ARTIFACT_ROOT).as_posix() == run.name


def test_explain_shows_the_base_commit_it_would_freeze(git_repo):
    plan = run_plan(goal="g", repo_path=git_repo)
    assert plan.explain()["base_commit"] == _head(git_repo)


def test_the_base_commit_stays_when_the_checkout_moves_on(git_repo):
    run = run_create(goal="g", repo_path=git_repo, stage_to="plan", dispatch=False)
    first = run.base_commit
    (git_repo / "later.txt").write_text("later\n")
    for args in (["add", "."], ["-c", "user.name=T", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=git_repo, check=True)
    run.refresh_from_db()
    assert run.base_commit == first != _head(git_repo)


def test_two_runs_with_the_same_id_write_to_different_folders(git_repo):
    mine = run_create(goal="g", repo_path=git_repo, stage_to="plan", dispatch=False)
    artifact_write(run=mine, stage="plan", kind="json", name="plan.json", data={"mine": True})
    # Run 1 of another database sharing this data directory: same id, another uid.
    theirs = Run(pk=mine.pk, uid=uuid.uuid4(), namespace=mine.namespace, config=mine.config)
    assert artifact_dir(theirs) != artifact_dir(mine)
    with pytest.raises(FolderTaken, match="another run"):
        folder_claim(artifact_dir(mine), theirs)
    stored = Artifact.objects.get(run=mine)
    assert (artifact_dir(mine) / "plan.json").read_bytes() == artifact_bytes(stored)


def test_an_output_folder_holding_another_runs_artifacts_is_refused(git_repo, tmp_path):
    out = tmp_path / "out"
    first = run_create(
        goal="g", repo_path=git_repo, stage_to="plan", output_dir=out, dispatch=False
    )
    artifact_write(run=first, stage="plan", kind="json", name="plan.json", data={"first": 1})
    with pytest.raises(FieldError, match="already holds the artifacts of another run") as err:
        run_create(goal="g", repo_path=git_repo, stage_to="plan", output_dir=out, dispatch=False)
    assert err.value.field == "output_dir"
    assert Run.objects.count() == 1
    assert (out / "plan.json").read_text().find('"first"') > 0


def test_the_patch_text_is_in_the_database_and_the_file_is_a_copy(git_repo):
    run = run_create(goal="g", repo_path=git_repo, stage_to="code", dispatch=False)
    patch = "--- /dev/null\n+++ b/a.md\n@@ -0,0 +1 @@\n+token sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123\n"
    row, created = artifact_write(
        run=run, stage="code", kind="patch", name="diff.patch", text=patch
    )
    assert created and "sk-ant" not in row.text and row.text.startswith("--- /dev/null")
    (artifact_dir(run) / "diff.patch").unlink()
    assert artifact_bytes(row) == row.text.encode()
