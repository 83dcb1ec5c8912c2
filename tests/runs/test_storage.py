"""Artifacts through Django's storage API: the filesystem by default and an S3-compatible
server (moto, on loopback), a folder (prefix) that belongs to one run, downloads streamed
from the storage with the path checks kept, and --output copies downloaded from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accounts.services import token_create
from runs.artifacts_store import (
    OWNER_FILE,
    FolderTaken,
    artifact_write,
    artifacts_export,
    run_file_put,
    run_folder_key,
)
from runs.dispatch import run_inline
from runs.models import Artifact, Run
from tests.api.conftest import bearer
from tests.factories import RunFactory, frozen_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3_storage(s3_bucket, settings):
    endpoint, bucket, client = s3_bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint,
                "addressing_style": "path",
                "file_overwrite": True,
                "default_acl": None,
            },
        },
    }

    def keys() -> dict[str, bytes]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed
        }

    return keys


def download(user, run, name):
    api = bearer(token_create(user=user, name="t")[1])
    return api.get(f"/api/runs/{run.pk}/artifacts/{name}")


def body(answer) -> bytes:
    return b"".join(answer.streaming_content)


def test_filesystem_files_under_the_run_folder_and_downloads_from_them(user, settings):
    run = RunFactory(owner=user)
    artifact, created = artifact_write(
        run=run, stage="plan", kind="json", name="plan.json", data={"a": 1}
    )
    folder = Path(settings.TEKTON_ARTIFACT_ROOT) / run_folder_key(run)
    assert created and (folder / "plan.json").exists()
    assert (folder / OWNER_FILE).read_text().strip() == str(run.uid)
    # The download streams the stored file (what a worker wrote), not a rendering of the row.
    (folder / "plan.json").write_bytes(b'{"from": "the storage"}\n')
    answer = download(user, run, "plan.json")
    assert answer.status_code == 200 and body(answer) == b'{"from": "the storage"}\n'
    assert answer["Content-Disposition"].startswith("attachment")
    # A file gone from the storage: the database record is the artifact.
    (folder / "plan.json").unlink()
    assert json.loads(body(download(user, run, "plan.json"))) == {"a": 1}


def test_a_recorded_path_outside_the_root_is_never_served(user):
    run = RunFactory(owner=user)
    artifact, _ = artifact_write(run=run, stage="plan", kind="json", name="plan.json", data={})
    for bad in ("../../../etc/passwd", "/etc/passwd", "tekton/./x/../../y"):
        Artifact.objects.filter(pk=artifact.pk).update(path=bad, content=None, text="")
        assert download(user, run, "plan.json").status_code == 404, bad
    assert download(user, run, "../plan.json").status_code == 404


def test_s3_holds_every_file_under_the_runs_prefix_and_the_api_serves_it(
    s3_storage, user, git_repo, monkeypatch
):
    from tests.runs.fake_engine import FakeEngine

    monkeypatch.setattr("runs.engine_bridge.stage_run", FakeEngine())
    run = RunFactory(owner=user, repo_path=str(git_repo), stage_from="plan", stage_to="code")
    run_inline(run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    objects = s3_storage()
    folder = run_folder_key(run)
    assert objects[f"{folder}/{OWNER_FILE}"].decode().strip() == str(run.uid)
    names = {k.split("/")[-1] for k in objects if k.startswith(folder + "/")}
    assert {
        "plan.json",
        "research.json",
        "code.json",
        "diff.patch",
        "diamond_summary.json",
    } <= names
    for artifact in Artifact.objects.filter(run=run):
        answer = download(user, run, artifact.name)
        assert answer.status_code == 200
        assert body(answer) == objects[artifact.path], artifact.name
    patch = Artifact.objects.get(run=run, kind="patch")
    assert objects[patch.path].decode() == patch.text


def test_a_profile_artifact_root_is_a_key_prefix_in_the_bucket(s3_storage, user, settings):
    root = Path(settings.TEKTON_DATA_DIR) / "team-a"
    run = RunFactory(owner=user, config={**frozen_config(["plan"]), "artifact_root": str(root)})
    key = run_file_put(run=run, name="plan.json", content=b"{}")
    assert key == f"team-a/{run_folder_key(run)}/plan.json"
    assert f"team-a/{run_folder_key(run)}/{OWNER_FILE}" in s3_storage()


def test_a_prefix_of_another_run_is_never_written_into(s3_storage, user, s3_bucket):
    _, bucket, client = s3_bucket
    mine = RunFactory(owner=user)
    client.put_object(
        Bucket=bucket, Key=f"{run_folder_key(mine)}/{OWNER_FILE}", Body=b"someone-else\n"
    )
    with pytest.raises(FolderTaken, match="another run"):
        run_file_put(run=mine, name="plan.json", content=b"{}")
    other = RunFactory(owner=user)
    client.put_object(Bucket=bucket, Key=f"{run_folder_key(other)}/plan.json", Body=b"{}")
    with pytest.raises(FolderTaken, match="already holds artifact files"):
        run_file_put(run=other, name="research.json", content=b"{}")
    assert f"{run_folder_key(mine)}/plan.json" not in s3_storage()


def test_output_copies_are_downloaded_from_the_storage(s3_storage, user, tmp_path, settings):
    # A worker wrote these on another machine: nothing is in the output folder yet.
    settings.TEKTON_EXECUTION = "celery"
    settings.CELERY_BROKER_URL = "memory://"
    out = tmp_path / "out"
    run = RunFactory(owner=user, output_dir=str(out))
    artifact_write(run=run, stage="plan", kind="json", name="plan.json", data={"p": 1})
    artifact_write(run=run, stage="code", kind="patch", name="diff.patch", text="diff --git a b\n")
    assert not out.exists()
    written = artifacts_export(run=run, folder=out)
    assert sorted(p.name for p in written) == ["diff.patch", "plan.json"]
    assert json.loads((out / "plan.json").read_text()) == {"p": 1}
    assert (out / OWNER_FILE).read_text().strip() == str(run.uid)
    artifacts_export(run=run, folder=out)  # again: rewritten, still the run's
    with pytest.raises(FolderTaken):
        artifacts_export(run=RunFactory(owner=user), folder=out)
