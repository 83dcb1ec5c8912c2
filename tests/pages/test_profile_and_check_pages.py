"""Profile pages (edit with inline validation, copy) and the system checks page."""

from __future__ import annotations

import re

import pytest

from config_profiles.models import Profile

pytestmark = pytest.mark.django_db


def _form_data(client, name="diamond-v5", **changes):
    form = client.get(f"/config/{name}/").context["form"]
    data = {}
    for field in form:
        value = field.value()
        if isinstance(value, list):
            data[field.html_name] = value
        elif value is not None:
            data[field.html_name] = str(value)
    data.update(changes)
    return data


def _slot(page: str, name: str) -> str:
    start = page.index(f'id="err-{name}"')
    return page[start : page.index("</div>", start)]


def test_profiles_list_shows_the_default_profile(client_for, user):
    page = client_for(user).get("/config/").content.decode()
    assert 'href="/config/diamond-v5/"' in page and "default" in page


def test_profile_edit_saves_through_the_service(client_for, user):
    client = client_for(user)
    data = _form_data(client, quorum="0.75", rounds="3", model__plan__skeptic="openai/gpt-4o")
    response = client.post("/config/diamond-v5/", data)
    assert response.status_code == 302
    profile = Profile.objects.get(name="diamond-v5")
    assert profile.quorum == 0.75 and profile.rounds == 3
    assert profile.stage_models["stages"]["plan"]["skeptic"] == "openai/gpt-4o"
    assert "Profile diamond-v5 saved." in client.get("/config/diamond-v5/").content.decode()


def test_profile_edit_turns_the_staggered_opening_round_off_and_on(client_for, user):
    client = client_for(user)
    page = client.get("/config/diamond-v5/").content.decode()
    box = re.search(r'<input[^>]*name="cache_stagger"[^>]*>', page).group(0)
    assert 'type="checkbox"' in box and " checked" in box
    assert "+1 call of latency per debate stage" in page
    data = _form_data(client)
    del data["cache_stagger"]  # a browser posts nothing for an unticked box
    assert client.post("/config/diamond-v5/", data).status_code == 302
    assert Profile.objects.get(name="diamond-v5").cache_stagger is False
    page = client.get("/config/diamond-v5/").content.decode()
    box = re.search(r'<input[^>]*name="cache_stagger"[^>]*>', page).group(0)
    assert " checked" not in box
    client.post("/config/diamond-v5/", {**data, "cache_stagger": "on"})
    assert Profile.objects.get(name="diamond-v5").cache_stagger is True


def test_profile_edit_refuses_a_bad_quorum_beside_its_field(client_for, user):
    client = client_for(user)
    before = Profile.objects.get(name="diamond-v5").quorum
    response = client.post("/config/diamond-v5/", _form_data(client, quorum="1.5"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "quorum must be in (0, 1], got 1.5" in _slot(page, "quorum")
    assert _slot(page, "threshold").endswith('aria-live="polite">')
    assert Profile.objects.get(name="diamond-v5").quorum == before


def test_profile_edit_refuses_a_bad_model_beside_its_matrix_cell(client_for, user):
    client = client_for(user)
    response = client.post(
        "/config/diamond-v5/", _form_data(client, model__code__skeptic="no slash here")
    )
    assert response.status_code == 200
    assert "model id must be vendor/model" in _slot(
        response.content.decode(), "model__code__skeptic"
    )


def test_inline_validation_answers_for_the_field_that_changed(client_for, user):
    client = client_for(user)
    data = _form_data(client, threshold="abc")
    response = client.post(
        "/config/diamond-v5/validate/",
        data,
        HTTP_HX_REQUEST="true",
        HTTP_HX_TRIGGER_NAME="threshold",
    )
    assert response.status_code == 200
    assert response.content.decode().strip() == (
        "<p>threshold must be a number in (0, 1], got &#x27;abc&#x27;</p>"
    )
    fine = client.post(
        "/config/diamond-v5/validate/",
        _form_data(client),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TRIGGER_NAME="quorum",
    )
    assert fine.content.decode().strip() == ""
    assert Profile.objects.get(name="diamond-v5").threshold == 0.7


def test_copy_creates_a_profile_and_refuses_a_taken_name(client_for, user):
    client = client_for(user)
    response = client.post("/config/diamond-v5/copy/", {"name": "fast"})
    assert response.status_code == 302 and response["Location"] == "/config/fast/"
    copy = Profile.objects.get(name="fast")
    assert copy.stage_models == Profile.objects.get(name="diamond-v5").stage_models
    again = client.post("/config/diamond-v5/copy/", {"name": "fast"}, follow=True)
    assert "a profile named &#x27;fast&#x27; already exists" in again.content.decode()


def test_checks_page_lists_checks_with_hints_and_rerun(client_for, user):
    client = client_for(user)
    page = client.get("/system/checks/")
    assert page.status_code == 200
    results = page.context["results"]
    assert results and {r.status for r in results} <= {"ok", "warn", "error"}
    html = page.content.decode()
    for result in results:
        assert result.title in html
    assert 'hx-get="/system/checks/"' in html and "Re-run checks" in html
    partial = client.get("/system/checks/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="checks")
    assert partial.content.decode().lstrip().startswith('<section id="checks"')


def test_repo_page_shows_health_and_outstanding_reviews(client_for, user, blocked_run, git_repo):
    (git_repo / "src" / "app.py").write_text("def add(a, b):\n    return a - b\n")
    page = client_for(user).get("/repo/").content.decode()
    assert str(git_repo) in page
    assert "dirty: 1 changed" in page and "src/app.py" in page
    assert "Initial commit" in page and "main" in page
    assert f'href="/runs/{blocked_run.pk}/?stage=review"' in page
    assert "blocked, waits for a person" in page
