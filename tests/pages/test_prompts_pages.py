"""The Prompts page: ask, history with filters, one invocation, ask again; redacted and
owned (issue 12)."""

from __future__ import annotations

import pytest

from prompts.models import PromptInvocation
from prompts.services import prompt_invocation_create

pytestmark = pytest.mark.django_db

KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


def test_ask_from_the_page_runs_it_and_shows_it_redacted(
    client_for, user, django_capture_on_commit_callbacks
):
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/prompts/ask/",
            {"agent": "prompt", "prompt": f"fix the bug, key {KEY}", "memory": "on"},
        )
    invocation = PromptInvocation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/prompts/{invocation.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "Prompt #" in page and "intent code" in page and "[API_KEY#1]" in page
    assert "Ask again" in page and KEY not in page
    listing = client.get("/prompts/?agent=prompt").content.decode()
    assert f"prompt-row-{invocation.pk}" in listing and KEY not in listing
    assert (
        f"prompt-row-{invocation.pk}" not in client.get("/prompts/?agent=claude").content.decode()
    )


def test_an_empty_prompt_comes_back_beside_the_field(client_for, user):
    response = client_for(user).post("/prompts/ask/", {"agent": "claude", "prompt": "   "})
    assert response.status_code == 400
    assert "the prompt is empty" in response.content.decode()
    assert not PromptInvocation.objects.exists()


def _ask_form_html(client) -> str:
    return client.get("/prompts/").content.decode().split('aria-label="Filter prompts"')[0]


def test_codex_is_not_offered_unless_enabled_for_staff(client_for, user, staff_user, settings):
    assert 'value="codex"' not in _ask_form_html(client_for(user))
    settings.TEKTON_PROMPT_CODEX_ENABLED = True
    assert 'value="codex"' in _ask_form_html(client_for(staff_user))
    response = client_for(user).post("/prompts/ask/", {"agent": "codex", "prompt": "x"})
    assert response.status_code == 400 and not PromptInvocation.objects.exists()


def test_another_users_invocation_is_404(client_for, user, django_user_model):
    other_user = django_user_model.objects.create_user(username="mallory", password="pw-x")
    theirs = prompt_invocation_create(agent="claude", prompt="x", owner=other_user)
    assert client_for(user).get(f"/prompts/{theirs.pk}/").status_code == 404


def test_the_admin_lists_and_shows_invocations_read_only(admin_client):
    invocation = prompt_invocation_create(agent="claude", prompt=f"key {KEY}", who="ada")
    listing = admin_client.get("/admin/prompts/promptinvocation/")
    assert listing.status_code == 200 and "ask claude" in listing.content.decode()
    page = admin_client.get(f"/admin/prompts/promptinvocation/{invocation.pk}/change/")
    assert page.status_code == 200 and KEY not in page.content.decode()
    assert admin_client.get("/admin/prompts/promptinvocation/add/").status_code == 403
