"""The OpenAPI document describes each Server-Sent Event (id, kind, data shape), and the
stream keeps to it: schemathesis parses the real stream and checks every event."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application

from runs.models import Run


@pytest.fixture(autouse=True)
def whole_api(settings):
    settings.ROOT_URLCONF = "tekton_site.urls"  # the schema endpoint with the events one


@pytest.fixture
def sse_events_op():
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    return schema["/api/runs/{run_id}/events"]["GET"]


@pytest.mark.django_db(transaction=True)
def test_every_event_of_a_stream_keeps_to_the_documented_event_schema(
    user, make_run, token_for, sse_events_op, settings
):
    settings.TEKTON_SSE_MAX_SECONDS = 1
    run = make_run(
        user,
        ["run.started", "stage.started", "stage.finished", "run.finished"],
        Run.Status.SUCCEEDED,
    )
    headers = {"Authorization": f"Bearer {token_for(user)}", "Accept": "text/event-stream"}
    response = sse_events_op.Case(path_parameters={"run_id": run.pk}).call_and_validate(
        headers=headers
    )
    assert response.status_code == 200
    assert response.content.count(b"\nevent: ") == 4 and b"event: run.finished" in response.content
    # DRF's own refusals come as one `event: error`, documented too.
    missing = sse_events_op.Case(path_parameters={"run_id": run.pk + 1000})
    assert missing.call_and_validate(headers=headers).status_code == 404


def test_the_stream_is_documented_per_event_not_as_a_string(sse_events_op):
    media = sse_events_op.definition.raw["responses"]["200"]["content"]["text/event-stream"]
    regular, error = media["schema"]["oneOf"]
    assert regular["required"] == ["id", "event", "data"]
    assert regular["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/RunEvent"
    }
    assert error["properties"]["event"]["enum"] == ["error"]


@pytest.mark.django_db(transaction=True)
def test_every_event_of_a_prompt_stream_keeps_to_its_documented_schema(user, token_for, settings):
    from prompts.models import PromptInvocation
    from prompts.services import prompt_invocation_create, prompt_invocation_finish

    settings.TEKTON_SSE_MAX_SECONDS = 1
    invocation = prompt_invocation_create(
        agent="claude", prompt="hi", owner=user, status=PromptInvocation.Status.QUEUED
    )
    prompt_invocation_finish(invocation=invocation, outcome={"outcome": "OK", "response": "hi"})
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    op = schema["/api/prompts/{invocation_id}/events"]["GET"]
    media = op.definition.raw["responses"]["200"]["content"]["text/event-stream"]
    assert media["schema"]["oneOf"][0]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/PromptEvent"
    }
    headers = {"Authorization": f"Bearer {token_for(user)}", "Accept": "text/event-stream"}
    case = op.Case(path_parameters={"invocation_id": invocation.pk})
    response = case.call_and_validate(headers=headers)
    assert response.status_code == 200
    assert b"event: prompt.queued" in response.content
    assert (
        response.content.count(b"\nevent: ") == 2 and b"event: prompt.finished" in response.content
    )
