"""An invocation's progress as events and as a Server-Sent Events stream on
/api/prompts/<id>/events: what a fallback along the chain records, replay with
Last-Event-ID, the 204 at the end, ownership, and the live stream ending at
`prompt.finished` (issue 12)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from prompts.events import prompt_events_record
from prompts.execution import invocation_run, spec_build
from prompts.models import PromptEvent, PromptInvocation
from prompts.services import prompt_invocation_create, prompt_invocation_finish
from swarm.frontdoor.journal import Journal
from swarm.providers import router_build
from tests.fakes.llm_server import FakeLlmServer, ok, status
from tests.streams.test_streams import parse_sse, read_all

SSE = "text/event-stream"
KEY = "sk-ant-api03-PLANTEDsecretKEY0123456789abcdef"


@pytest.fixture
def fake_llm():
    server = FakeLlmServer().start()
    yield server
    server.stop()


async def _no_sleep(_seconds: float) -> None:
    return None


def _router(server):
    routes = [
        {
            "match": "anthropic/*",
            "backend": "anthropic",
            "base_url": server.anthropic_base_url,
            "key_env": "ANTHROPIC_API_KEY",
            "strip_prefix": True,
        },
        {
            "match": "openai/*",
            "backend": "openai",
            "base_url": server.openai_base_url,
            "key_env": "OPENAI_API_KEY",
            "strip_prefix": True,
        },
    ]
    return router_build(
        routes=routes,
        env={"ANTHROPIC_API_KEY": "sk-ant-test-key-0000", "OPENAI_API_KEY": "sk-test"},
        backend_override="auto",
        # One try each: the retries before a fallback are tested in tests/swarm.
        retry_options={"max_attempts": 1, "sleep": _no_sleep},
    )


def _kinds(invocation) -> list[tuple[int, str]]:
    return list(
        PromptEvent.objects.filter(invocation=invocation).order_by("seq").values_list("seq", "kind")
    )


@pytest.mark.django_db
def test_a_fallback_along_the_chain_is_recorded_step_by_step(fake_llm, tmp_path):
    fake_llm.script(status(500), ok(f"the second model answers; {KEY} stays hidden"))
    invocation = prompt_invocation_create(agent="prompt", prompt="fix the bug in app.py")
    invocation_run(
        spec=spec_build(kind="prompt", text="fix the bug in app.py"),
        completer=_router(fake_llm),
        journal=Journal(tmp_path / "m"),
        invocation=invocation,
        live=True,
    )
    kinds = _kinds(invocation)
    assert [seq for seq, _ in kinds] == list(range(1, len(kinds) + 1))  # no gap
    named = [k for _, k in kinds if k != "prompt.answer"]
    assert named == [
        "prompt.started",
        "prompt.step",
        "prompt.attempt",
        "prompt.fallback",
        "prompt.step",
        "prompt.attempt",
        "prompt.finished",
    ]
    events = {e.seq: e.payload for e in PromptEvent.objects.filter(invocation=invocation)}
    payloads = [events[seq] for seq, k in kinds if k != "prompt.answer"]
    assert payloads[1] == {"model": "anthropic/claude-sonnet-4.6"}
    assert payloads[2]["outcome"] == "failed" and "HTTP 500" in payloads[2]["detail"]
    assert payloads[3]["from"] == "anthropic/claude-sonnet-4.6"
    assert payloads[3]["to"] == "openai/gpt-4.1"
    assert payloads[5]["outcome"] == "ok"
    final = payloads[-1]
    assert (final["status"], final["outcome"], final["model"]) == ("ok", "OK", "openai/gpt-4.1")
    assert final["response"].startswith("the second model answers")
    stored = json.dumps(list(events.values()))
    assert KEY not in stored and "[API_KEY#1]" in stored


@pytest.mark.django_db(transaction=True)
async def test_the_stream_replays_resumes_and_ends_with_204(user, django_user_model):
    invocation = await sync_to_async(prompt_invocation_create)(
        agent="claude", prompt="hi", owner=user, status=PromptInvocation.Status.QUEUED
    )
    await sync_to_async(prompt_events_record)(
        invocation_id=invocation.pk,
        items=[("prompt.started", {}), ("prompt.answer", {"text": "hel", "offset": 0})],
    )
    await sync_to_async(prompt_invocation_finish)(
        invocation=invocation, outcome={"outcome": "OK", "response": "hello"}
    )
    client = AsyncClient()
    await client.aforce_login(user)  # the session cookie alone, as the page's EventSource
    url = f"/api/prompts/{invocation.pk}/events"

    whole = await client.get(url, headers={"accept": SSE})
    messages = [m for m in parse_sse(await read_all(whole)) if "id" in m]
    assert [(m["id"], m["event"]) for m in messages] == [
        ("1", "prompt.queued"),
        ("2", "prompt.started"),
        ("3", "prompt.answer"),
        ("4", "prompt.finished"),
    ]
    assert json.loads(messages[-1]["data"])["payload"]["response"] == "hello"

    rest = await client.get(url, headers={"accept": SSE, "last-event-id": "2"})
    assert [m["id"] for m in parse_sse(await read_all(rest)) if "id" in m] == ["3", "4"]
    done = await client.get(url, headers={"accept": SSE, "last-event-id": "4"})
    assert done.status_code == 204
    page = (await client.get(url, {"after": 3})).json()
    assert [e["kind"] for e in page["events"]] == ["prompt.finished"]
    assert page["invocation_status"] == "ok"

    other = await sync_to_async(django_user_model.objects.create_user)(
        username="eve", password="pw-for-tests-only"
    )
    await client.aforce_login(other)
    assert (await client.get(url, headers={"accept": SSE})).status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_a_live_stream_follows_the_invocation_to_its_end(user, monkeypatch):
    from runs import event_hub

    monkeypatch.setattr(event_hub, "POLL_SECONDS", 0.05)
    invocation = await sync_to_async(prompt_invocation_create)(
        agent="claude", prompt="hi", owner=user, status=PromptInvocation.Status.QUEUED
    )
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(f"/api/prompts/{invocation.pk}/events", headers={"accept": SSE})
    reading = asyncio.ensure_future(read_all(response, timeout=10))
    await asyncio.sleep(0.2)  # the stream is open and waiting
    assert not reading.done()
    await sync_to_async(prompt_events_record)(
        invocation_id=invocation.pk, items=[("prompt.step", {"model": "offline/x"})]
    )
    await sync_to_async(prompt_invocation_finish)(
        invocation=invocation, outcome={"outcome": "FAILED", "error": "no model answered"}
    )
    body = await reading
    events = [(m["id"], m["event"]) for m in parse_sse(body) if "id" in m]
    assert events == [("1", "prompt.queued"), ("2", "prompt.step"), ("3", "prompt.finished")]
    assert json.loads(parse_sse(body)[-1]["data"])["payload"]["error"] == "no model answered"
