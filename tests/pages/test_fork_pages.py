"""The run page's fork form and links, and its Compare section (server-rendered)."""

from __future__ import annotations

import pytest

from runs.models import Run, StageAttempt, StageRun
from tests.factories import ArtifactFactory, RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def parent(user):
    run = RunFactory(owner=user, status=Run.Status.SUCCEEDED, stage_to="research")
    StageRun.objects.filter(run=run).update(status=StageRun.Status.SUCCEEDED)
    ArtifactFactory(run=run, stage="plan", content={"summary": "the plan"})
    ArtifactFactory(run=run, stage="research", content={"choice": "extend in place"})
    return run


def test_the_fork_form_makes_a_linked_run_and_both_pages_link(client_for, user, parent, mocker):
    mocker.patch("runs.services.stages_dispatch")
    client = client_for(user)
    page = client.get(f"/runs/{parent.pk}/").content.decode()
    assert "Fork this run from a stage" in page
    assert '<option value="research"' in page and '<option value="release"' not in page

    response = client.post(
        f"/runs/{parent.pk}/fork/", {"from_stage": "research", "model": "offline/x"}
    )

    fork = Run.objects.get(parent=parent)
    assert response.status_code == 302 and response["Location"] == f"/runs/{fork.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert f'Forked at <strong>research</strong> from <a href="/runs/{parent.pk}/">' in page
    assert f'Forks: <a href="/runs/{fork.pk}/">run #{fork.pk}</a>' in (
        client.get(f"/runs/{parent.pk}/").content.decode()
    )


def test_a_refused_fork_says_why_and_creates_nothing(client_for, user, parent, mocker):
    mocker.patch("runs.services.stages_dispatch")
    client = client_for(user)
    response = client.post(
        f"/runs/{parent.pk}/fork/", {"from_stage": "research", "model": "nope"}, follow=True
    )
    assert "model id must be vendor/model" in response.content.decode()
    assert Run.objects.count() == 1


def test_compare_shows_the_stage_against_the_parent(client_for, user, parent, mocker):
    mocker.patch("runs.services.stages_dispatch")
    from runs.services import run_fork

    fork = run_fork(parent=parent, from_stage="research", by=user)
    ArtifactFactory(run=fork, stage="research", content={"choice": "a separate module"})
    client = client_for(user)
    page = client.get(f"/runs/{fork.pk}/?stage=research").content.decode()
    assert f'<option value="run-{parent.pk}">parent run {parent.pk}</option>' in page
    page = client.get(f"/runs/{fork.pk}/?stage=research&compare=run-{parent.pk}").content.decode()
    assert '<tr class="dl dl-del">' in page and '<tr class="dl dl-add">' in page
    assert "extend in place" in page and "a separate module" in page
    same = client.get(f"/runs/{fork.pk}/?stage=plan&compare=run-{parent.pk}").content.decode()
    assert "No difference: both artifacts are the same." in same
    unknown = client.get(f"/runs/{fork.pk}/?stage=research&compare=run-999").content.decode()
    assert "Nothing to compare with" in unknown


def test_compare_of_code_shows_the_patches_per_file_and_the_rest_apart(client_for, user):
    run = RunFactory(owner=user, status=Run.Status.SUCCEEDED, stage_to="code")
    StageRun.objects.filter(run=run).update(status=StageRun.Status.SUCCEEDED)
    patch = "--- a/greet.py\n+++ b/greet.py\n@@ -1 +1 @@\n-hello = 1\n+hello = {}\n"
    StageAttempt.objects.create(
        run=run,
        stage="code",
        number=1,
        status="blocked",
        artifact={"diff": patch.format(2), "risk_notes": ["none"]},
    )
    ArtifactFactory(
        run=run, stage="code", content={"diff": patch.format(3), "risk_notes": ["slow"]}
    )

    page = client_for(user).get(f"/runs/{run.pk}/?stage=code&compare=attempt-1").content.decode()

    compare = page[page.index('<section id="compare"') : page.index('<section id="diff"')]
    assert "<h4>The change</h4>" in compare and "<h4>The rest of the artifact</h4>" in compare
    assert '<code>greet.py</code> <span class="muted">changed on both sides, differently' in (
        compare
    )
    # The patches' lines, highlighted as Python, not one line of escaped JSON.
    assert '<td class="code"><span class="gu">@@ -1,1 +1,1 @@</span></td>' in compare
    assert '<tr class="dl dl-del"><td class="code"><span class="gi">+</span>' in compare
    assert '<span class="n">hello</span>' in compare
    assert "\\n" not in compare
    # The rest: risk_notes, as JSON with line numbers; the patch is not in it again.
    assert "&quot;slow&quot;" in compare and "&quot;diff&quot;" not in compare
