"""The runs endpoints: create, explain, list, detail, actions, artifacts, transcript, limits."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.artifacts_store import artifact_write
from runs.models import Artifact, Run, RunEvent, StageRun
from swarm.stages import STAGE_NAMES
from tests.factories import ArtifactFactory, RunEventFactory, RunFactory

pytestmark = pytest.mark.django_db


def create_body(repo, **extra):
    return {"goal": "Add a /healthz endpoint", "repo": str(repo), **extra}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- create and explain ------------------------------------------------------------------


def test_create_answers_201_with_the_run_and_its_stages(api, user, git_repo, no_dispatch):
    response = api.post(
        "/api/runs/",
        create_body(
            git_repo, to="code", consensus_free=["code"], model="anthropic/claude-opus-4.1"
        ),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Run.objects.get()
    assert body["id"] == run.pk and response["Location"] == f"/api/runs/{run.pk}/"
    assert run.owner == user and body["owner"] == "ada"
    assert body["from"] == "plan" and body["to"] == "code"
    assert body["consensus_free"] == ["code"]
    assert [s["stage"] for s in body["stages"]] == ["plan", "research", "plan_update", "code"]
    assert {s["status"] for s in body["stages"]} == {"queued"}
    assert body["repo"] == str(git_repo.resolve())
    assert len(no_dispatch) == 1  # the first stage was handed to dispatch


def test_create_takes_no_server_side_path_but_the_repository(api, git_repo, no_dispatch, tmp_path):
    """A web user names no folder or file on the server: output and cassette paths in the
    body are not fields of the API, so nothing is written or recorded there."""
    target = tmp_path / "written-by-the-api"
    body = create_body(
        git_repo, output_dir=str(target), output=str(target), record_path=str(target / "c.json")
    )
    response = api.post("/api/runs/", body, format="json")
    assert response.status_code == 201, response.json()
    run = Run.objects.get()
    assert run.output_dir == "" and run.config.get("record_path") is None
    assert not target.exists()


def test_explain_answers_200_with_the_plan_and_creates_nothing(api, git_repo, no_dispatch):
    response = api.post(
        "/api/runs/",
        create_body(git_repo, explain=True, **{"from": "code", "to": "threat"}),
        format="json",
    )
    assert response.status_code == 200, response.json()
    plan = response.json()
    assert [s["stage"] for s in plan["stages"]] == ["code", "review", "threat"]
    assert plan["profile"] == "diamond-v5" and plan["rounds"] == 2
    assert plan["threshold"] == pytest.approx(0.7)
    review = plan["stages"][1]
    assert review["depends_on"] == ["code"]
    assert set(review["roles"]) == {"proponent", "skeptic", "pragmatist", "mediator"}
    assert review["roles"]["skeptic"]["model"]
    # Offline answers cost nothing, so no stage waits for the prompt cache.
    assert plan["cache_stagger"] is True and review["staggered_opening"] is False
    assert "opening round: all three debaters at once" in plan["cache_stagger_note"]
    assert Run.objects.count() == 0 and no_dispatch == []


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"from": "nope"}, "from", "not a valid choice"),
        ({"from": "review", "to": "plan"}, "to", ""),
        ({"goal": "x" * 8001}, "goal", "8000"),
        ({"goal": "   "}, "goal", "blank"),
        ({"profile": "missing-profile"}, "profile", "unknown profile"),
        ({"repo": "/etc"}, "repo", "outside the allowed roots"),
        ({"repo": "/definitely/not/here"}, "repo", "does not exist"),
        ({"consensus_free": "code"}, "consensus_free", "list"),
        ({"consensus_free": ["nope"]}, "consensus_free.0", "not a valid choice"),
        ({"model": "no-slash"}, "model", "vendor/model"),
        ({"explain": "maybe"}, "explain", "boolean"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(
    api, git_repo, no_dispatch, body, field, fragment
):
    response = api.post("/api/runs/", {**create_body(git_repo), **body}, format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert field in errors, errors
    assert fragment in " ".join(errors[field])
    assert Run.objects.count() == 0 and StageRun.objects.count() == 0


def test_create_rejects_a_repository_that_is_not_git(api, git_repo, no_dispatch):
    plain = git_repo.parent / "plain"
    plain.mkdir()
    response = api.post("/api/runs/", create_body(plain), format="json")
    assert response.status_code == 400
    assert "not a git repository" in response.json()["errors"]["repo"][0]


@pytest.mark.parametrize(
    ("repo", "fragment"),
    [
        ("/tmp/" + "a" * 300, "has a component of 300 bytes; the limit is 255"),
        ("/" + "/".join(["b" * 200] * 5), "does not exist"),
        ("/tmp/x\x00y", "Null characters are not allowed"),  # DRF's own words
        ("x" * 5000, "no more than 1024 characters"),
    ],
)
def test_create_rejects_a_path_the_filesystem_cannot_take(
    api, git_repo, no_dispatch, repo, fragment
):
    for explain in (True, False):
        body = {**create_body(git_repo), "repo": repo, "explain": explain}
        response = api.post("/api/runs/", body, format="json")
        assert response.status_code == 400, response.content
        assert fragment in " ".join(response.json()["errors"]["repo"])
    assert Run.objects.count() == 0


def test_create_rejects_missing_fields_and_malformed_json(api, no_dispatch):
    response = api.post("/api/runs/", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"goal", "repo"}
    response = api.post("/api/runs/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    response = api.post("/api/runs/", "goal=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_create_answers_429_past_the_runs_in_flight_limit(
    api, user, git_repo, no_dispatch, settings
):
    settings.TEKTON_API_MAX_RUNS_IN_FLIGHT = 2
    settings.TEKTON_API_RUNS_PER_MINUTE = 100
    for _ in range(2):
        assert api.post("/api/runs/", create_body(git_repo), format="json").status_code == 201
    response = api.post("/api/runs/", create_body(git_repo), format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["limit"] == "runs_in_flight" and response.json()["max"] == 2
    assert Run.objects.count() == 2
    # A finished run frees its slot; another user's runs never count.
    Run.objects.filter(pk=Run.objects.first().pk).update(status=Run.Status.SUCCEEDED)
    assert api.post("/api/runs/", create_body(git_repo), format="json").status_code == 201


def test_create_answers_429_past_the_runs_per_minute_limit(api, git_repo, no_dispatch, settings):
    settings.TEKTON_API_MAX_RUNS_IN_FLIGHT = 100
    settings.TEKTON_API_RUNS_PER_MINUTE = 3
    for _ in range(3):
        assert api.post("/api/runs/", create_body(git_repo), format="json").status_code == 201
    response = api.post("/api/runs/", create_body(git_repo), format="json")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["limit"] == "runs_per_minute"
    # Explain creates nothing, so it is not limited.
    explain = api.post("/api/runs/", create_body(git_repo, explain=True), format="json")
    assert explain.status_code == 200
    # Once the window has passed, creating works again.
    Run.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    assert api.post("/api/runs/", create_body(git_repo), format="json").status_code == 201


def test_create_and_resume_answer_503_when_the_broker_is_down(api, user, git_repo, settings):
    settings.TEKTON_EXECUTION = "celery"
    settings.CELERY_BROKER_URL = f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/0"
    response = api.post("/api/runs/", create_body(git_repo), format="json")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "the message broker (redis) is unreachable; no worker can run the stages",
        "service": "redis",
    }
    assert "s3cret" not in response.content.decode()
    assert Run.objects.count() == 0
    run = RunFactory(owner=user, status=Run.Status.FAILED)
    response = api.post(f"/api/runs/{run.pk}/resume/", format="json")
    assert response.status_code == 503 and response.json()["service"] == "redis"
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED


# --- list, detail and visibility ---------------------------------------------------------


def test_list_filters(api, user, other_user):
    now = timezone.now()
    a = RunFactory(
        owner=user,
        goal="Add caching to the API",
        status=Run.Status.SUCCEEDED,
        repo_path="/srv/alpha",
        profile_name="fast",
    )
    b = RunFactory(
        owner=user, goal="Fix the login bug", status=Run.Status.FAILED, repo_path="/srv/beta"
    )
    c = RunFactory(owner=user, goal="Add metrics", repo_path="/srv/alpha")
    RunFactory(owner=other_user, goal="Add caching elsewhere", repo_path="/srv/alpha")
    Run.objects.filter(pk=a.pk).update(created_at=now - timedelta(days=3))
    Run.objects.filter(pk=b.pk).update(created_at=now - timedelta(days=1))

    def ids(query):
        response = api.get("/api/runs/", query)
        assert response.status_code == 200, response.json()
        return [r["id"] for r in response.json()["results"]]

    assert ids({}) == [c.pk, b.pk, a.pk]
    assert ids({"status": "failed"}) == [b.pk]
    assert ids({"profile": "fast"}) == [a.pk]
    assert ids({"repo": "alpha"}) == [c.pk, a.pk]
    assert ids({"q": "add"}) == [c.pk, a.pk]
    assert ids({"created_after": (now - timedelta(days=2)).isoformat()}) == [c.pk, b.pk]
    assert ids({"created_before": (now - timedelta(hours=2)).isoformat()}) == [b.pk, a.pk]
    assert ids({"status": "succeeded", "q": "caching"}) == [a.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "cD1ub3QtYS1kYXRl"}, "cursor"),  # base64 of "p=not-a-date"
    ],
)
def test_list_rejects_bad_filters_naming_them(api, user, query, field):
    RunFactory(owner=user)
    response = api.get("/api/runs/", query)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_list_paginates_with_a_stable_cursor(api, user):
    runs = [RunFactory(owner=user, with_stages=False) for _ in range(60)]
    # Equal timestamps must not lose or repeat runs across pages.
    same = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk__in=[r.pk for r in runs[20:40]]).update(created_at=same)
    seen, url, pages = [], "/api/runs/", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        page = response.json()
        assert len(page["results"]) <= 25
        seen += [r["id"] for r in page["results"]]
        url, pages = page["next"], pages + 1
    expected = list(Run.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert seen == expected and pages == 3
    second = api.get(api.get("/api/runs/").json()["next"]).json()
    back = api.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == expected[:25]


def test_staff_see_everyone_and_users_only_their_own(api, staff_api, user, other_user):
    mine = RunFactory(owner=user)
    theirs = RunFactory(owner=other_user)
    assert [r["id"] for r in api.get("/api/runs/").json()["results"]] == [mine.pk]
    staff_ids = [r["id"] for r in staff_api.get("/api/runs/").json()["results"]]
    assert staff_ids == [theirs.pk, mine.pk]
    assert staff_api.get(f"/api/runs/{theirs.pk}/").status_code == 200
    cancel = staff_api.post(f"/api/runs/{theirs.pk}/cancel/", format="json")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"


def test_detail_shows_stages_and_artifacts(api, user):
    run = RunFactory(owner=user, stage_to="code")
    StageRun.objects.filter(run=run, stage="plan").update(
        status="succeeded",
        attempt=1,
        confidence=0.82,
        approval=0.9,
        reason="quorum met",
        votes=[{"role": "skeptic", "approve": True, "self_confidence": 0.7, "reason": "ok"}],
        input_tokens=120,
        cached_input_tokens=70,
        cache_write_tokens=30,
        output_tokens=40,
        cost_usd="0.0123",
    )
    Run.objects.filter(pk=run.pk).update(input_tokens=500, cached_input_tokens=400)
    artifact_write(run=run, stage="plan", kind="json", name="plan.json", data={"goals": ["x"]})
    body = api.get(f"/api/runs/{run.pk}/").json()
    plan = body["stages"][0]
    assert plan["stage"] == "plan" and plan["status"] == "succeeded" and plan["attempt"] == 1
    assert plan["confidence"] == 0.82 and plan["votes"][0]["role"] == "skeptic"
    assert plan["cost_usd"] == pytest.approx(0.0123) and plan["input_tokens"] == 120
    # How the prompt caches split the input: read / written / billed in full.
    assert (plan["cached_input_tokens"], plan["cache_write_tokens"]) == (70, 30)
    assert plan["uncached_input_tokens"] == 20
    assert (body["cached_input_tokens"], body["uncached_input_tokens"]) == (400, 100)
    assert [a["name"] for a in body["artifacts"]] == ["plan.json"]
    assert body["config"]["rounds"] == 2 and body["last_event_seq"] == 0


RUN_URLS = [
    ("get", "/api/runs/{id}/"),
    ("post", "/api/runs/{id}/cancel/"),
    ("post", "/api/runs/{id}/resume/"),
    ("post", "/api/runs/{id}/stages/plan/approve/"),
    ("post", "/api/runs/{id}/stages/plan/retry/"),
    ("post", "/api/runs/{id}/stages/plan/abort/"),
    ("get", "/api/runs/{id}/artifacts/"),
    ("get", "/api/runs/{id}/artifacts/plan.json"),
    ("get", "/api/runs/{id}/transcript/"),
    ("get", "/api/runs/{id}/events"),
]


@pytest.mark.parametrize(("method", "url"), RUN_URLS)
def test_another_users_run_is_404_everywhere(api, other_user, method, url):
    run = RunFactory(owner=other_user, status=Run.Status.BLOCKED)
    StageRun.objects.filter(run=run, stage="plan").update(status="blocked")
    artifact_write(run=run, stage="plan", kind="json", name="plan.json", data={"goals": ["x"]})
    target = url.format(id=run.pk)
    body = {"note": "try again"} if target.endswith("retry/") else {}
    response = api.get(target) if method == "get" else api.post(target, body, format="json")
    assert response.status_code == 404, response.content
    run.refresh_from_db()
    assert run.status == Run.Status.BLOCKED


# --- actions ---------------------------------------------------------------------------------


def blocked_run(owner, stage="plan", draft=None):
    run = RunFactory(owner=owner, status=Run.Status.BLOCKED, stage_to="research")
    StageRun.objects.filter(run=run, stage=stage).update(
        status=StageRun.Status.BLOCKED, reason="quorum 0.40 < 0.67", draft=draft
    )
    return run


def test_cancel_then_cancel_again_is_409(api, user):
    run = RunFactory(owner=user)
    response = api.post(f"/api/runs/{run.pk}/cancel/", format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert {s["status"] for s in response.json()["stages"]} == {"cancelled"}
    again = api.post(f"/api/runs/{run.pk}/cancel/", format="json")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_resume_requeues_a_cancelled_run(api, user, no_dispatch):
    run = RunFactory(owner=user, status=Run.Status.CANCELLED, stage_to="research")
    StageRun.objects.filter(run=run).update(status=StageRun.Status.CANCELLED)
    response = api.post(f"/api/runs/{run.pk}/resume/", format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "queued"
    assert RunEvent.objects.filter(run=run, kind="run.resumed").count() == 1
    assert api.post(f"/api/runs/{run.pk}/resume/", format="json").status_code == 409


def test_approve_a_blocked_stage(api, user, no_dispatch):
    draft = {"artifact": None, "patch": None}
    run = blocked_run(user, draft=draft)
    response = api.post(f"/api/runs/{run.pk}/stages/plan/approve/", format="json")
    assert response.status_code == 200, response.json()
    plan = response.json()["stages"][0]
    assert plan["status"] == "skipped" and "approved without artifact by ada" in plan["reason"]
    assert api.post(f"/api/runs/{run.pk}/stages/plan/approve/", format="json").status_code == 409


def test_retry_needs_a_note_and_requeues_the_stage(api, user, no_dispatch):
    run = blocked_run(user)
    missing = api.post(f"/api/runs/{run.pk}/stages/plan/retry/", {}, format="json")
    assert missing.status_code == 400 and "note" in missing.json()["errors"]
    blank = api.post(f"/api/runs/{run.pk}/stages/plan/retry/", {"note": "  "}, format="json")
    assert blank.status_code == 400 and "note" in blank.json()["errors"]
    response = api.post(
        f"/api/runs/{run.pk}/stages/plan/retry/", {"note": "cite sources"}, format="json"
    )
    assert response.status_code == 200, response.json()
    plan = response.json()["stages"][0]
    assert plan["status"] == "queued" and plan["note"] == "cite sources"


def test_abort_cancels_a_run_blocked_at_that_stage(api, user):
    run = blocked_run(user)
    wrong_stage = api.post(f"/api/runs/{run.pk}/stages/research/abort/", format="json")
    assert wrong_stage.status_code == 409
    response = api.post(f"/api/runs/{run.pk}/stages/plan/abort/", format="json")
    assert response.status_code == 200
    assert (
        response.json()["status"] == "cancelled" and "aborted by ada" in response.json()["reason"]
    )


@pytest.mark.parametrize("action", ["approve", "retry", "abort"])
def test_unknown_or_absent_stage_in_the_url_is_404(api, user, action):
    run = blocked_run(user)
    body = {"note": "n"}
    unknown = api.post(f"/api/runs/{run.pk}/stages/deploy/{action}/", body, format="json")
    assert unknown.status_code == 404 and "unknown stage" in unknown.json()["detail"]
    absent = api.post(f"/api/runs/{run.pk}/stages/release/{action}/", body, format="json")
    assert absent.status_code == 404 and "release" in absent.json()["detail"]


# --- artifacts -------------------------------------------------------------------------------


def test_artifacts_list_and_download(api, user):
    run = RunFactory(owner=user, stage_to="code")
    artifact_write(run=run, stage="plan", kind="json", name="plan.json", data={"goals": ["ship"]})
    artifact_write(
        run=run, stage="code", kind="patch", name="diff.patch", text="--- a/x\n+++ b/x\n"
    )
    listing = api.get(f"/api/runs/{run.pk}/artifacts/").json()
    assert [(a["name"], a["kind"]) for a in listing] == [
        ("plan.json", "json"),
        ("diff.patch", "patch"),
    ]
    plan = api.get(f"/api/runs/{run.pk}/artifacts/plan.json")
    assert plan.status_code == 200 and plan["Content-Type"] == "application/json"
    assert b"".join(plan.streaming_content).decode().find('"ship"') > 0
    patch = api.get(f"/api/runs/{run.pk}/artifacts/diff.patch", HTTP_ACCEPT="application/json")
    assert patch.status_code == 200 and patch["Content-Type"] == "text/x-diff"
    assert b"".join(patch.streaming_content) == b"--- a/x\n+++ b/x\n"


def test_artifact_download_refuses_anything_else(api, user, tekton_settings):
    run = RunFactory(owner=user)
    other = RunFactory(owner=user)
    artifact_write(run=other, stage="plan", kind="json", name="plan.json", data={"goals": ["x"]})
    # A row whose path escapes the artifact root (tampered) must not be served.
    ArtifactFactory(run=run, stage="research", name="research.json", path="../../../etc/passwd")
    secret = tekton_settings.TEKTON_ARTIFACT_ROOT.parent / "secret.txt"
    secret.write_text("top secret")
    for name in [
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc/passwd",
        "..%2Fsecret.txt",
        "/etc/passwd",
        "plan.json",  # exists, but belongs to the other run
        "research.json",
        f"run-{other.pk}%2Fplan.json",
    ]:
        response = api.get(f"/api/runs/{run.pk}/artifacts/{name}")
        assert response.status_code == 404, name
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()


# --- transcript ------------------------------------------------------------------------------


def progress(run, seq, stage, role, rnd, answer, attempt=1):
    return RunEventFactory(
        run=run,
        seq=seq,
        kind="stage.progress",
        stage=stage,
        payload={
            "role": role,
            "round": rnd,
            "model": "offline/m",
            "answer": answer,
            "attempt": attempt,
        },
    )


def test_transcript_round_by_round_with_votes(api, user):
    run = RunFactory(owner=user, stage_to="research")
    votes = [
        {"role": "proponent", "approve": True, "self_confidence": 0.8, "reason": "fine"},
        {"role": "skeptic", "approve": False, "self_confidence": 0.6, "reason": "risky"},
    ]
    StageRun.objects.filter(run=run, stage="plan").update(
        status="succeeded",
        attempt=1,
        approval=0.57,
        confidence=0.75,
        votes=votes,
        mediator={"rationale": "merged"},
    )
    seq = 0
    for rnd in (0, 1):
        for role in ("proponent", "skeptic", "pragmatist"):
            seq += 1
            progress(
                run,
                seq,
                "plan",
                role,
                rnd,
                {
                    "position": f"{role} r{rnd}",
                    "self_confidence": 0.5 + rnd / 10,
                    "vote": {"approve": role != "skeptic", "reason": "because"},
                },
            )
    progress(run, seq + 1, "plan", "mediator", 2, {"rationale": "merged", "confidence": 0.75})
    progress(run, seq + 2, "research", "proponent", 0, {"position": "options"})
    RunEventFactory(run=run, seq=seq + 3, kind="stage.finished", stage="plan")

    body = api.get(f"/api/runs/{run.pk}/transcript/").json()
    assert [s["stage"] for s in body["stages"]] == ["plan", "research"]
    plan = body["stages"][0]
    assert [(r["round"], r["label"]) for r in plan["rounds"]] == [
        (0, "opening"),
        (1, "debate 1"),
        (2, "mediator"),
    ]
    opening = plan["rounds"][0]["messages"]
    assert [m["role"] for m in opening] == ["proponent", "skeptic", "pragmatist"]
    assert opening[1]["vote"] == {"approve": False, "reason": "because"}
    assert plan["rounds"][1]["messages"][0]["self_confidence"] == pytest.approx(0.6)
    assert plan["rounds"][2]["messages"][0]["position"] == "merged"
    assert plan["votes"] == votes and plan["approval"] == 0.57

    only = api.get(f"/api/runs/{run.pk}/transcript/", {"stage": "research"}).json()
    assert [s["stage"] for s in only["stages"]] == ["research"]
    assert only["stages"][0]["rounds"][0]["messages"][0]["position"] == "options"
    bad = api.get(f"/api/runs/{run.pk}/transcript/", {"stage": "deploy"})
    assert bad.status_code == 400 and "stage" in bad.json()["errors"]
    absent = api.get(f"/api/runs/{run.pk}/transcript/", {"stage": "release"})
    assert absent.status_code == 404


# --- query counts ----------------------------------------------------------------------------


def count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def populate(owner, runs: int, per_run: int) -> Run:
    last = None
    for _ in range(runs):
        last = RunFactory(owner=owner)
        for i, stage in enumerate(STAGE_NAMES[:per_run]):
            ArtifactFactory(run=last, stage=stage)
            RunEventFactory(run=last, seq=i + 1, stage=stage)
    return last


def test_query_counts_do_not_grow_with_the_data(api, user):
    api.get("/api/runs/")  # first use of the token writes last_used_at once
    small = populate(user, 3, 2)
    list_small = count_queries(api, "/api/runs/")
    detail_small = count_queries(api, f"/api/runs/{small.pk}/")
    transcript_small = count_queries(api, f"/api/runs/{small.pk}/transcript/")
    artifacts_small = count_queries(api, f"/api/runs/{small.pk}/artifacts/")
    big = populate(user, 27, 9)
    assert count_queries(api, "/api/runs/") == list_small
    assert count_queries(api, f"/api/runs/{big.pk}/") == detail_small
    assert count_queries(api, f"/api/runs/{big.pk}/transcript/") == transcript_small
    assert count_queries(api, f"/api/runs/{big.pk}/artifacts/") == artifacts_small
    assert Artifact.objects.filter(run=big).count() == 9


def test_create_answers_503_when_no_worker_answers(api, git_repo, settings, monkeypatch):
    import os

    import redis

    from runs import health
    from tests.integration.harness import services_redis_url

    url = services_redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis at {url} is unreachable: {exc}")
    monkeypatch.setattr(health, "_workers_seen_at", 0.0)
    settings.TEKTON_EXECUTION = "celery"
    settings.CELERY_BROKER_URL = url  # a live broker, but no worker consumes from it
    response = api.post("/api/runs/", create_body(git_repo), format="json")
    assert response.status_code == 503, response.json()
    assert response.json()["service"] == "workers"
    assert "celery -A tekton_site worker" in response.json()["detail"]
    assert Run.objects.count() == 0
