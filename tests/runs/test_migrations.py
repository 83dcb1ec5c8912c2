"""Existing runs migrate to one identity per run (0004): a uid each, the patch text read
back from its file into the database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db(transaction=True)
def test_existing_runs_get_uids_and_their_patch_text(settings):
    executor = MigrationExecutor(connection)
    executor.migrate([("runs", "0003_llmcall_ended_at")])
    old = executor.loader.project_state([("runs", "0003_llmcall_ended_at")]).apps
    Run, Artifact = old.get_model("runs", "Run"), old.get_model("runs", "Artifact")
    root = settings.TEKTON_ARTIFACT_ROOT
    runs = [
        Run.objects.create(
            goal="g",
            repo_path="/r",
            profile_name="p",
            config={},
            stage_from="code",
            stage_to="code",
        )
        for _ in range(2)
    ]
    (root / f"run-{runs[0].pk}").mkdir(parents=True)
    (root / f"run-{runs[0].pk}" / "diff.patch").write_text("--- a/x\n+++ b/x\n")
    for run in runs:
        Artifact.objects.create(
            run=run, stage="code", kind="patch", name="diff.patch", path=f"run-{run.pk}/diff.patch",
            sha256="0" * 64, size=0,
        )  # fmt: skip
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([("runs", "0004_run_identity")])
        new = executor.loader.project_state([("runs", "0004_run_identity")]).apps
        NewRun, NewArtifact = new.get_model("runs", "Run"), new.get_model("runs", "Artifact")
        uids = {r.uid for r in NewRun.objects.all()}
        assert len(uids) == 2 and None not in uids
        texts = dict(NewArtifact.objects.values_list("run_id", "text"))
        assert texts == {runs[0].pk: "--- a/x\n+++ b/x\n", runs[1].pk: ""}  # its file is gone
    finally:
        MigrationExecutor(connection).migrate(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        )
