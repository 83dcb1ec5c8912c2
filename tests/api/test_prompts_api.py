"""/api/prompts/: ask, list, detail; ownership, codex gating, limits, redaction (issue 12)."""

from __future__ import annotations

import json

import pytest

from prompts.models import PromptInvocation

pytestmark = pytest.mark.django_db

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


def ask(api, capture, **body):
    with capture(execute=True):
        return api.post("/api/prompts/", {"prompt": "hello", **body}, format="json")


def test_post_runs_the_invocation_and_the_detail_shows_it_redacted(
    api, user, django_capture_on_commit_callbacks, settings
):
    response = ask(
        api,
        django_capture_on_commit_callbacks,
        agent="claude",
        prompt=f"is {KEY} valid?",
        context=f"key={KEY}",
    )
    assert response.status_code == 201, response.content
    assert KEY not in response.content.decode()
    detail = api.get(response["Location"])
    data = detail.json()
    assert data["status"] == "ok" and data["provider"] == "offline"
    assert data["owner"] == user.username and data["source"] == "api"
    assert "[API_KEY#1]" in data["prompt"]
    assert KEY not in detail.content.decode()
    listing = api.get("/api/prompts/")
    assert [r["id"] for r in listing.json()["results"]] == [data["id"]]
    assert KEY not in listing.content.decode()
    journal = settings.TEKTON_MEMORY_DIR / "web" / user.username
    assert (journal / "invocations" / data["journal_id"] / "metadata.json").exists()
    assert KEY not in "".join(p.read_text() for p in journal.rglob("*") if p.is_file())


def test_prompt_agent_picks_the_intent_chain(api, django_capture_on_commit_callbacks):
    response = ask(api, django_capture_on_commit_callbacks, prompt="fix the bug in app.py")
    data = api.get(response["Location"]).json()
    assert data["intent"] == "code" and data["chain"][0].startswith("anthropic/")
    assert [a["outcome"] for a in data["attempts"]] == ["ok"]


def test_another_users_invocation_is_404(api, other_user, django_capture_on_commit_callbacks):
    from prompts.services import prompt_invocation_create

    theirs = prompt_invocation_create(agent="claude", prompt="x", owner=other_user)
    assert api.get(f"/api/prompts/{theirs.pk}/").status_code == 404
    assert api.get("/api/prompts/").json()["results"] == []


def test_bad_input_is_a_field_error_and_nothing_is_stored(api, django_capture_on_commit_callbacks):
    response = ask(api, django_capture_on_commit_callbacks, prompt="   ")
    assert response.status_code == 400
    assert "prompt" in response.json()["errors"]
    response = ask(api, django_capture_on_commit_callbacks, model="not a model id")
    assert response.status_code == 400
    assert response.json()["errors"]["model"] == ["a model id is vendor/model"]
    # A boolean is not a number (DRF's FloatField would take `true` for 1.0).
    response = ask(api, django_capture_on_commit_callbacks, temperature=True)
    assert response.status_code == 400
    assert "temperature" in response.json()["errors"]
    assert not PromptInvocation.objects.exists()


def test_codex_is_off_by_default_and_staff_only_when_on(
    api, staff_api, settings, django_capture_on_commit_callbacks
):
    response = ask(staff_api, django_capture_on_commit_callbacks, agent="codex")
    assert response.status_code == 403 and "off on this server" in response.json()["detail"]
    settings.TEKTON_PROMPT_CODEX_ENABLED = True
    response = ask(api, django_capture_on_commit_callbacks, agent="codex")
    assert response.status_code == 403 and "staff only" in response.json()["detail"]
    assert not PromptInvocation.objects.exists()


def test_per_minute_limit_is_429(api, settings, django_capture_on_commit_callbacks):
    settings.TEKTON_API_RUNS_PER_MINUTE = 1
    assert ask(api, django_capture_on_commit_callbacks).status_code == 201
    response = ask(api, django_capture_on_commit_callbacks)
    assert response.status_code == 429
    assert response.json()["limit"] == "prompts_per_minute"


def test_unauthenticated_is_401(client):
    response = client.post(
        "/api/prompts/", json.dumps({"prompt": "x"}), content_type="application/json"
    )
    assert response.status_code == 401


def test_a_repo_under_the_roots_gives_the_git_facts_and_one_outside_is_refused(
    api, git_repo, tmp_path, django_capture_on_commit_callbacks
):
    response = ask(api, django_capture_on_commit_callbacks, repo=str(git_repo))
    assert response.status_code == 201, response.content
    data = api.get(response["Location"]).json()
    assert data["git_branch"] == "main" and len(data["git_sha"]) == 40
    assert data["repo_path"] == str(git_repo)
    response = ask(api, django_capture_on_commit_callbacks, repo=str(tmp_path))
    assert response.status_code == 400
    assert "outside the allowed roots" in response.json()["errors"]["repo"][0]
