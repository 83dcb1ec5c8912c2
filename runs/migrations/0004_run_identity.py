"""Every run gets a uid (unique across databases), the namespace it lives in and its base
commit; every artifact's text is in the database. Existing runs get a fresh uid; patches
written before are read back from their files where those still exist."""

import uuid
from pathlib import Path

from django.conf import settings
from django.db import migrations, models


def _uids_and_patches(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    Artifact = apps.get_model("runs", "Artifact")
    for run in Run.objects.filter(uid__isnull=True).only("pk"):
        Run.objects.filter(pk=run.pk).update(uid=uuid.uuid4())
    for artifact in Artifact.objects.filter(kind="patch", text="").select_related("run"):
        root = (artifact.run.config or {}).get("artifact_root") or settings.TEKTON_ARTIFACT_ROOT
        root = Path(root).expanduser().resolve()
        path = (root / artifact.path).resolve()
        if not path.is_relative_to(root):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue  # the file is gone; the row keeps its hash and size
        Artifact.objects.filter(pk=artifact.pk).update(text=text)


class Migration(migrations.Migration):
    dependencies = [("runs", "0003_llmcall_ended_at")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="uid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="namespace",
            field=models.CharField(default="tekton", editable=False, max_length=40),
        ),
        migrations.AddField(
            model_name="run",
            name="base_commit",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="artifact",
            name="text",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.RunPython(_uids_and_patches, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="run",
            name="uid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
