"""`tekton ask diamond`: the staged run, journaled like the other agents (issue 12).
Transactional: in inline mode the command runs the stages in a worker thread."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps

from prompts.models import PromptInvocation
from runs.models import Run
from tests.cli import tekton

pytestmark = pytest.mark.django_db(transaction=True)
migration = importlib.import_module("config_profiles.migrations.0002_default_profile")


def test_ask_diamond_runs_the_stages_and_journals_the_run(git_repo, tmp_path):
    migration.create_default(apps, None)
    memory = tmp_path / "mem"
    code, out, err = tekton(
        "ask", "diamond", "Add a health endpoint", "--repo", str(git_repo), "--to", "plan",
        "--memory", str(memory),
    )  # fmt: skip
    assert code == 0, err
    run = Run.objects.get()
    assert run.status == Run.Status.SUCCEEDED
    row = PromptInvocation.objects.get()
    assert (row.agent, row.status, row.run_id) == ("diamond", "ok", run.pk)
    assert row.tokens_in == run.input_tokens > 0
    meta = json.loads((memory / "latest" / "metadata.json").read_text())
    assert meta["run"] == run.pk and meta["outcome"] == "OK" and meta["git_branch"] == "main"
    assert "· ask diamond · OK" in (memory / "journal.md").read_text()
