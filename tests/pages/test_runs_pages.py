"""The run pages through the Django test client: access, the launcher, actions, escaping,
keyset pagination, and the number of SQL queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.models import Artifact, Run, RunEvent, StageRun
from tests.factories import ArtifactFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db

XSS_SCRIPT = "<script>window.__pwned = 1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned = 2">'


# --- access --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/runs/{run}/", "/runs/{run}/?stage=code", "/repo/", "/config/", "/system/checks/"],
)
def test_anonymous_is_sent_to_login(client, user, path):
    url = path.format(run=RunFactory(owner=user, status=Run.Status.SUCCEEDED).pk)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_logs_in_and_logout_needs_post(client, user):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content
    response = client.post("/accounts/login/", {"username": "ada", "password": "pw-for-tests-only"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_owner_sees_every_page_of_their_finished_run(client_for, user, finished_run):
    client = client_for(user)
    listing = client.get("/").content.decode()
    assert f'href="/runs/{finished_run.pk}/"' in listing
    assert "Add a health endpoint" in listing
    detail = client.get(f"/runs/{finished_run.pk}/").content.decode()
    assert "succeeded" in detail
    for stage in ("plan", "research", "code", "release"):
        assert f'id="stage-row-{stage}"' in detail
    code = client.get(f"/runs/{finished_run.pk}/?stage=code").content.decode()
    assert 'id="transcript"' in code and "Opening" in code and "Mediator" in code
    assert 'id="diff"' in code and 'class="dl dl-add"' in code
    assert "code.json" in code and f"/api/runs/{finished_run.pk}/artifacts/diff.patch" in code


def test_another_users_run_is_404_and_staff_sees_all(client_for, user, staff_user):
    # Access is the run's owner, whatever the run holds: a made run is enough.
    finished_run = RunFactory(owner=user, status=Run.Status.SUCCEEDED)
    other = UserFactory(username="mallory")
    client = client_for(other)
    assert client.get(f"/runs/{finished_run.pk}/").status_code == 404
    assert client.post(f"/runs/{finished_run.pk}/cancel/").status_code == 404
    assert f'href="/runs/{finished_run.pk}/"' not in client.get("/").content.decode()
    staff = client_for(staff_user)
    assert staff.get(f"/runs/{finished_run.pk}/").status_code == 200
    assert f'href="/runs/{finished_run.pk}/"' in staff.get("/").content.decode()


def test_unknown_stage_is_said_plainly(client_for, user):
    run = RunFactory(owner=user, status=Run.Status.SUCCEEDED)
    page = client_for(user).get(f"/runs/{run.pk}/?stage=nonsense").content.decode()
    assert "This run has no stage “nonsense”." in page


# --- launcher ------------------------------------------------------------------------------


def _launch_data(git_repo, **overrides):
    data = {
        "goal": "Add a health endpoint",
        "repo_path": str(git_repo),
        "profile": "diamond-v5",
        "stage_from": "plan",
        "stage_to": "release",
        "model": "",
        "action": "launch",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"goal": "  "}, "goal", "the goal is empty"),
        ({"repo_path": "/etc"}, "repo_path", "outside the allowed roots"),
        ({"stage_from": "review", "stage_to": "plan"}, "stage_to", "before"),
        ({"model": "not-a-model-id"}, "model", "vendor/model"),
    ],
)
def test_launcher_shows_service_errors_beside_the_field(
    client_for, user, git_repo, overrides, field, message
):
    response = client_for(user).post("/runs/new/", _launch_data(git_repo, **overrides))
    assert response.status_code == 200
    page = response.content.decode()
    start = page.index(f'id="err-{field}"')
    slot = page[start : page.index("</div>", start)]
    assert message in slot
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("/tmp/" + "a" * 300, "has a component of 300 bytes; the limit is 255"),
        ("x" * 5000, "the repository path is 5,000 bytes; the limit is 4,095"),
        ("/tmp/x\x00y", "Null characters are not allowed"),
    ],
)
@pytest.mark.parametrize("action", ["launch", "explain"])
def test_launcher_says_why_a_path_the_filesystem_cannot_take_is_refused(
    client_for, user, git_repo, repo, message, action
):
    data = _launch_data(git_repo, repo_path=repo, action=action)
    response = client_for(user).post("/runs/new/", data)
    assert response.status_code == 200
    page = response.content.decode()
    start = page.index('id="err-repo_path"')
    assert message in page[start : page.index("</div>", start)]
    assert Run.objects.count() == 0


def test_launcher_offers_the_recent_repositories_then_the_roots_ones_defaulting_to_the_last(
    client_for, user, settings, tmp_path
):
    for repo in ("alpha", "team/beta", "team/gamma", ".hidden/delta", "deep/er/epsilon"):
        (tmp_path / repo / ".git").mkdir(parents=True)
    settings.TEKTON_REPO_ROOTS = [tmp_path]
    page = client_for(user).get("/").content.decode()
    datalist = page[page.index('<datalist id="known-repos">') : page.index("</datalist>")]
    offered = [line.split('"')[1] for line in datalist.split("<option value=")[1:]]
    assert offered == [str(tmp_path / r) for r in ("alpha", "team/beta", "team/gamma")]
    assert f'value="{tmp_path / "alpha"}"' in page.split('name="repo_path"')[1][:400]

    RunFactory(owner=user, repo_path=str(tmp_path / "team/gamma"))
    RunFactory(owner=UserFactory(), repo_path=str(tmp_path / "team/beta"))  # not this user's
    page = client_for(user).get("/").content.decode()
    datalist = page[page.index('<datalist id="known-repos">') : page.index("</datalist>")]
    offered = [line.split('"')[1] for line in datalist.split("<option value=")[1:]]
    assert offered[0] == str(tmp_path / "team/gamma") and 'label="used recently"' in datalist
    assert sorted(offered[1:]) == [str(tmp_path / "alpha"), str(tmp_path / "team/beta")]
    assert f'value="{tmp_path / "team/gamma"}"' in page.split('name="repo_path"')[1][:400]


def test_explain_shows_the_plan_and_creates_nothing(client_for, user, git_repo):
    response = client_for(user).post(
        "/runs/new/",
        _launch_data(git_repo, action="explain", stage_from="code", stage_to="review"),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="launcher",
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "What will run" in page and "Nothing has been created" in page
    assert "<strong>code</strong>" in page and "<strong>review</strong>" in page
    assert "<strong>plan</strong>" not in page
    assert "quorum 0.67" in page and "threshold 0.70" in page  # as the stage reasons say them
    assert "Expected for the run: <strong>" in page and "no history of this profile yet" in page
    assert "<html" not in page  # the launcher partial only
    assert Run.objects.count() == 0 and StageRun.objects.count() == 0


def test_launch_creates_the_run_and_goes_to_its_page(
    client_for, user, git_repo, django_capture_on_commit_callbacks
):
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/runs/new/", _launch_data(git_repo, stage_to="research", consensus_free=["code"])
        )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.owner == user and run.stage_to == "research"
    assert run.config["consensus_free"] == ["code"]
    htmx = client.post("/runs/new/", _launch_data(git_repo), HTTP_HX_REQUEST="true")
    assert htmx.status_code == 200 and htmx["HX-Redirect"].startswith("/runs/")


# --- actions -------------------------------------------------------------------------------


def test_approve_form_unblocks_and_the_run_finishes(
    client_for, user, blocked_run, django_capture_on_commit_callbacks
):
    client = client_for(user)
    page = client.get(f"/runs/{blocked_run.pk}/").content.decode()
    assert "This stage is blocked and waits for you" in page
    assert f'action="/runs/{blocked_run.pk}/stages/review/approve/"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/runs/{blocked_run.pk}/stages/review/approve/")
    assert response.status_code == 302
    blocked_run.refresh_from_db()
    assert blocked_run.status == Run.Status.SUCCEEDED
    review = StageRun.objects.get(run=blocked_run, stage="review")
    assert review.approved_by == user and "approved by ada" in review.reason


def test_retry_form_passes_the_note(client_for, user, blocked_run, mocker):
    # The retried stage would block again the same way; the note is what is checked here.
    mocker.patch("runs.services.stages_dispatch")
    client_for(user).post(
        f"/runs/{blocked_run.pk}/stages/review/retry/", {"note": "cover the error path"}
    )
    review = StageRun.objects.get(run=blocked_run, stage="review")
    assert review.status == StageRun.Status.QUEUED and review.note == "cover the error path"
    assert RunEvent.objects.filter(run=blocked_run, kind="stage.retried").exists()


def test_abort_form_cancels_and_resume_form_restarts(client_for, user, blocked_run, mocker):
    dispatch = mocker.patch("runs.services.stages_dispatch")
    client = client_for(user)
    client.post(f"/runs/{blocked_run.pk}/stages/review/abort/")
    blocked_run.refresh_from_db()
    assert blocked_run.status == Run.Status.CANCELLED and "aborted by ada" in blocked_run.reason
    page = client.get(f"/runs/{blocked_run.pk}/").content.decode()
    assert "Resume run" in page and "Cancel run" not in page
    client.post(f"/runs/{blocked_run.pk}/resume/")
    blocked_run.refresh_from_db()
    assert blocked_run.status == Run.Status.QUEUED
    dispatch.assert_called()


def test_cancel_form_cancels_and_a_refused_action_says_why(client_for, user):
    run = RunFactory(owner=user)
    client = client_for(user)
    client.post(f"/runs/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    response = client.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert "already cancelled; nothing to cancel" in response.content.decode()
    response = client.post(f"/runs/{run.pk}/stages/plan/approve/", follow=True)
    assert "only a blocked stage can be approved" in response.content.decode()


# --- untrusted text ------------------------------------------------------------------------


def test_llm_text_with_markup_is_rendered_escaped(client_for, user, settings, tmp_path):
    run = RunFactory(owner=user, goal=f"Goal {XSS_SCRIPT}", status=Run.Status.SUCCEEDED)
    StageRun.objects.filter(run=run, stage="code").update(
        status="succeeded",
        reason=XSS_IMG,
        votes=[{"role": "skeptic", "approve": False, "self_confidence": 0.5, "reason": XSS_SCRIPT}],
    )
    content = {
        "diff": "",
        "files_changed": [],
        "commands_run": [XSS_SCRIPT],
        "tests_executed": [XSS_IMG],
        "risk_notes": [],
        "confidence": 0.8,
        XSS_IMG: XSS_SCRIPT,
    }
    ArtifactFactory(run=run, stage="code", content=content)
    patch_dir = settings.TEKTON_ARTIFACT_ROOT / f"run-{run.pk}"
    patch_dir.mkdir(parents=True)
    (patch_dir / "diff.patch").write_text(
        f"--- a/x.html\n+++ b/x.html\n@@ -1 +1 @@\n-{XSS_IMG}\n+{XSS_SCRIPT}\n"
    )
    ArtifactFactory(run=run, stage="code", kind=Artifact.Kind.PATCH, name="diff.patch")
    RunEvent.objects.create(
        run=run,
        seq=1,
        kind="stage.progress",
        stage="code",
        payload={
            "role": "proponent",
            "round": 0,
            "model": XSS_IMG,
            "attempt": 1,
            "answer": {"position": XSS_SCRIPT, "risks": [XSS_IMG], "self_confidence": 0.7},
        },
    )
    page = client_for(user).get(f"/runs/{run.pk}/?stage=code").content.decode()
    assert "<script>window" not in page
    assert "<img src=x" not in page
    assert page.count("&lt;script&gt;window.__pwned = 1&lt;/script&gt;") >= 5
    assert "&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;" in page
    listing = client_for(user).get("/").content.decode()
    assert "<script>window" not in listing and "&lt;script&gt;" in listing


def test_a_stage_reads_one_confidence_one_quorum_and_the_mediators_dissent_once(client_for, user):
    run = RunFactory(owner=user, status=Run.Status.BLOCKED)
    dissent = "skeptic: the rollback is unclear"
    StageRun.objects.filter(run=run, stage="plan").update(
        status="blocked",
        confidence=0.55,
        approval=0.45,
        reason="quorum 0.45 < 0.67",
        mediator={"status": "pass", "rationale": "merged", "dissent": [dissent]},
    )
    ArtifactFactory(run=run, stage="plan", content={"goals": ["g"], "confidence": 0.55})
    for seq, (role, rnd, answer) in enumerate(
        [
            ("skeptic", 0, {"position": "risky", "dissent": "my own doubt"}),
            ("mediator", 1, {"rationale": "merged", "dissent": [dissent], "confidence": 0.55}),
        ],
        start=1,
    ):
        RunEvent.objects.create(
            run=run, seq=seq, kind="stage.progress", stage="plan",
            payload={"role": role, "round": rnd, "model": "m/x", "attempt": 1, "answer": answer},
        )  # fmt: skip
    page = client_for(user).get(f"/runs/{run.pk}/?stage=plan").content.decode()
    assert page.count(dissent) == 1  # in the verdict, not again in the mediator's card
    assert "my own doubt" in page  # a debater's dissent is its own
    row = page[page.index('id="stage-row-plan"') :][:2000]
    text = " ".join(re.sub(r"<[^>]+>", " ", row).split())
    assert "conf. 0.55 below 0.70" in text and "quorum 0.45 of 0.67 missed" in text
    assert "%" not in text
    # The artifact shows the same confidence the timeline checked.
    artifact = page[page.index('id="artifact"') :]
    assert re.search(r'<meter[^>]*value="0\.55"', artifact), artifact[:1500]


def test_pages_carry_a_strict_content_security_policy(client_for, user):
    response = client_for(user).get("/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self' ws: wss:" in policy
    assert "<script>" not in response.content.decode()  # scripts only by src


# --- list: filters and keyset pages ----------------------------------------------------------


def _runs(owner, n, **kwargs):
    base = timezone.now()
    runs = []
    for i in range(n):
        run = RunFactory(owner=owner, goal=f"Goal number {i}", **kwargs)
        Run.objects.filter(pk=run.pk).update(created_at=base - timedelta(minutes=i))
        runs.append(run)
    return runs


def test_keyset_pages_cover_every_run_once(client_for, user):
    _runs(user, 30)
    client = client_for(user)
    first = client.get("/")
    rows = first.context["rows"]
    assert len(rows) == 25
    second = client.get(first.context["next_url"])
    more = second.context["rows"]
    assert len(more) == 5 and second.context["next_url"] == ""
    seen = [r["run"].pk for r in rows + more]
    assert len(set(seen)) == 30
    assert "Newest" in second.content.decode()


def test_bad_cursor_is_refused_with_a_message(client_for, user):
    _runs(user, 2)
    page = client_for(user).get("/?before=yesterday,abc").content.decode()
    assert "invalid page cursor" in page


def test_filters_and_search(client_for, user):
    _runs(user, 3)
    RunFactory(owner=user, goal="Rotate the signing keys", status=Run.Status.FAILED)
    client = client_for(user)
    found = client.get("/?q=signing").context["rows"]
    assert [r["run"].goal for r in found] == ["Rotate the signing keys"]
    failed = client.get("/?status=failed").context["rows"]
    assert [r["run"].status for r in failed] == ["failed"]
    assert client.get("/?profile=nope").context["filters"].errors["profile"]


def test_live_runs_table_polls_and_htmx_gets_the_table_only(client_for, user):
    RunFactory(owner=user, status=Run.Status.RUNNING)
    client = client_for(user)
    assert 'hx-trigger="every 2s"' in client.get("/").content.decode()
    partial = client.get("/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs-table")
    assert partial.content.decode().lstrip().startswith('<div id="runs-table"')


# --- query counts ----------------------------------------------------------------------------


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_runs_page_queries_do_not_grow_with_runs(client_for, user, staff_user):
    client = client_for(user)
    _runs(user, 3, status=Run.Status.SUCCEEDED)
    few = _queries(client, "/")
    _runs(user, 27, status=Run.Status.SUCCEEDED)
    for run in Run.objects.all():
        StageRun.objects.filter(run=run).update(status="succeeded")
    assert _queries(client, "/") == few
    staff = client_for(staff_user)
    assert _queries(staff, "/") == few


def _progress(run, stage, n, start=1):
    RunEvent.objects.bulk_create(
        RunEvent(
            run=run,
            seq=start + i,
            kind="stage.progress",
            stage=stage,
            payload={
                "role": ("proponent", "skeptic", "pragmatist")[i % 3],
                "round": i // 3,
                "model": "offline/x",
                "attempt": 1,
                "answer": {"position": f"point {i}", "self_confidence": 0.8},
            },
        )
        for i in range(n)
    )


def test_run_page_queries_do_not_grow_with_events_or_stages(client_for, user):
    client = client_for(user)
    small = RunFactory(owner=user, stage_from="plan", stage_to="research")
    _progress(small, "plan", 3)
    big = RunFactory(owner=user)
    for i, stage in enumerate(("plan", "research", "plan_update", "code")):
        _progress(big, stage, 60, start=1 + i * 60)
    assert _queries(client, f"/runs/{small.pk}/?stage=plan") == _queries(
        client, f"/runs/{big.pk}/?stage=plan"
    )


def test_run_page_splits_input_into_cached_and_uncached_for_the_run_and_each_stage(
    client_for, user
):
    run = RunFactory(owner=user, stage_from="plan", stage_to="research")
    split = {"input_tokens": 52_000, "cached_input_tokens": 41_200, "cache_write_tokens": 5_300}
    Run.objects.filter(pk=run.pk).update(**split)
    StageRun.objects.filter(run=run, stage="plan").update(status="succeeded", **split)
    StageRun.objects.filter(run=run, stage="research").update(input_tokens=900)
    page = client_for(user).get(f"/runs/{run.pk}/").content.decode()
    header = page.split('id="stage-list"')[0]
    assert "41k cached</span> / 5.5k uncached" in header and "(+ 5.3k cache writes)" in header
    plan = page.split('id="stage-row-plan"')[1].split("</li>")[0]
    assert "in 41k cached / 5.5k uncached" in plan and "+ 5.3k written to it" in plan
    research = page.split('id="stage-row-research"')[1].split("</li>")[0]
    assert "in 0 cached / 900 uncached" in research and "written to it" not in research
    # A stage that sent nothing yet says nothing about caching.
    Run.objects.filter(pk=run.pk).update(input_tokens=0, cached_input_tokens=0)
    StageRun.objects.filter(run=run).update(input_tokens=0, cached_input_tokens=0)
    assert "cached" not in client_for(user).get(f"/runs/{run.pk}/").content.decode()


def test_run_page_shows_the_newest_messages_of_a_long_transcript(client_for, user):
    from runs.views import TRANSCRIPT_LIMIT

    client = client_for(user)
    run = RunFactory(owner=user)
    _progress(run, "plan", TRANSCRIPT_LIMIT + 30)
    page = client.get(f"/runs/{run.pk}/?stage=plan").content.decode()
    assert f"Only the newest {TRANSCRIPT_LIMIT} messages" in page
    assert f"point {TRANSCRIPT_LIMIT + 29}" in page  # the newest
    assert "point 29<" not in page and "point 30<" in page  # the oldest 30 are cut
    assert _queries(client, f"/runs/{run.pk}/?stage=plan") == _queries(
        client, f"/runs/{RunFactory(owner=user).pk}/?stage=plan"
    )


def test_repo_page_shows_what_runs_recorded_without_a_checkout_here(client_for, user, settings):
    # The workers had the repository; this web host does not.
    path = str(settings.TEKTON_REPO_ROOTS[0] / "elsewhere")
    run = RunFactory(owner=user, repo_path=path, base_commit="a1b2c3d4e5f6a7b8", status="succeeded")
    Artifact.objects.create(
        run=run, stage="test_debug", kind="json", name="test_report.json", path="x", sha256="0",
        size=1, content={"ship": False, "summary": "2 tests newly failing"},
    )  # fmt: skip
    page = client_for(user).get("/repo/").content.decode()
    assert "No checkout of this repository on the web host" in page
    assert run.name in page and "a1b2c3d4e5f6" in page
    assert "no ship" in page and "2 tests newly failing" in page


def test_budget_form_raises_the_budget_and_the_stage_runs_again(
    client_for, user, budget_blocked_run, django_capture_on_commit_callbacks
):
    run = budget_blocked_run
    plan = StageRun.objects.get(run=run, stage="plan")
    assert run.status == Run.Status.BLOCKED and plan.reason.startswith(
        "budget reached: 0 of 1,000 tokens"
    )
    client = client_for(user)
    page = client.get(f"/runs/{run.pk}/?stage=plan").content.decode()
    assert "The run's budget is reached" in page
    assert f'action="/runs/{run.pk}/budget/"' in page and 'value="1000"' in page
    assert "1,000 tokens" in page  # the header's Budget
    assert "The run's budget is reached: raise it and retry" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/runs/{run.pk}/budget/", {"tokens": "0", "retry": "plan"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.config["budget_tokens"] == 0
    assert RunEvent.objects.filter(run=run, kind="run.budget").get().payload["by"] == "ada"


def test_budget_form_refuses_a_bad_value_and_says_why(client_for, user, budget_blocked_run):
    run = budget_blocked_run
    client = client_for(user)
    response = client.post(f"/runs/{run.pk}/budget/", {"tokens": "-3"}, follow=True)
    assert "greater than or equal to 0" in response.content.decode()
    run.refresh_from_db()
    assert run.config["budget_tokens"] == 1000 and run.status == Run.Status.BLOCKED


def test_launcher_shows_a_cost_budget_without_prices_beside_the_profile(
    client_for, user, git_repo, monkeypatch
):
    from config_profiles.models import Profile

    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    Profile.objects.create(
        name="capped", stage_models={"default": "x-ai/grok-new"}, budget_cost_usd=1
    )
    response = client_for(user).post("/runs/new/", _launch_data(git_repo, profile="capped"))
    page = response.content.decode()
    start = page.index('id="err-profile"')
    assert "x-ai/grok-new has none" in page[start : page.index("</div>", start)]
    assert Run.objects.count() == 0
