"""`manage.py tekton fork`: a fork followed like `run`, its usage errors, and the links
`show` prints. The real engine with the offline backend, as in test_cli.py."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps

from runs.models import Run, StageRun
from tests.cli import tekton
from tests.factories import ArtifactFactory, RunFactory
from tests.support.delivery import head_of

pytestmark = pytest.mark.django_db(transaction=True)
migration = importlib.import_module("config_profiles.migrations.0002_default_profile")


@pytest.fixture(autouse=True)
def default_profile():
    migration.create_default(apps, None)


def test_fork_runs_from_the_stage_and_show_links_both_runs(git_repo):
    parent = RunFactory(
        repo_path=str(git_repo),
        base_commit=head_of(git_repo),
        status=Run.Status.SUCCEEDED,
        stage_to="research",
    )
    StageRun.objects.filter(run=parent).update(status=StageRun.Status.SUCCEEDED)
    ArtifactFactory(run=parent, stage="plan", content={"summary": "the plan"})

    code, out, err = tekton("fork", str(parent.pk), "--from", "research", "--model", "offline/x")

    assert code == 0, err
    fork = Run.objects.get(parent=parent)
    assert out.splitlines()[0] == (
        f"run {fork.pk} forked from run {parent.pk} at research (1 stage(s) reused, 1 to run)"
    )
    assert f"run.forked research from run {parent.pk}, reusing plan" in out
    assert out.splitlines()[-1].startswith(f"run {fork.pk} succeeded; artifacts in ")
    assert fork.status == Run.Status.SUCCEEDED
    assert fork.config["models"]["research"]["proponent"] == "offline/x"
    code, shown, _ = tekton("show", str(fork.pk))
    assert code == 0 and f"forked from run {parent.pk} at research" in shown
    code, shown, _ = tekton("show", str(parent.pk), "--json")
    data = json.loads(shown)
    assert (data["forks"], data["parent"]) == ([fork.pk], None)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--from", "deploy"], "error: unknown stage 'deploy'"),
        (["--from", "release"], "release is not one of its stages"),
    ],
)
def test_fork_refuses_a_bad_stage_in_one_line_with_exit_2(args, text):
    parent = RunFactory(status=Run.Status.SUCCEEDED, stage_to="research")
    code, out, err = tekton("fork", str(parent.pk), *args)
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1
    assert Run.objects.count() == 1


def test_fork_of_a_missing_run_is_a_usage_error():
    code, _, err = tekton("fork", "999", "--from", "plan")
    assert (code, err.strip()) == (2, "error: no run with id 999")
