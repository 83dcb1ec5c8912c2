"""GET /api/runs/<id>/events: the JSON page, authentication and visibility, and the SSE
stream (replay, live, heartbeats, the end, the 204) through Django's ASGI handler."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from runs.events import event_record
from runs.models import Run

SSE = "text/event-stream"


def url(run) -> str:
    return f"/api/runs/{run.pk}/events"


def parse_sse(text: str) -> list[dict]:
    """SSE messages as dicts of their fields; comment-only blocks as {"comment": ...}."""
    messages = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                fields.setdefault("comment", line[1:].strip())
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
        messages.append(fields)
    return messages


async def read_all(response, timeout: float = 10.0) -> str:
    chunks: list[bytes] = []

    async def read():
        async for chunk in response.streaming_content:
            chunks.append(chunk)

    await asyncio.wait_for(read(), timeout)
    return b"".join(chunks).decode()


# --- JSON page ------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_page_returns_events_after_seq_with_next_after(client, user, make_run):
    run = make_run(user, ["run.started", "stage.started", "stage.progress", "stage.progress"])
    client.force_login(user)

    first = client.get(url(run), {"after": 1, "limit": 2}).json()
    rest = client.get(url(run), {"after": first["next_after"]}).json()

    assert [e["seq"] for e in first["events"]] == [2, 3]
    assert first["events"][0]["kind"] == "stage.started"
    assert first["events"][0]["payload"] == {"n": 2}
    assert first["next_after"] == 3
    assert first["run_status"] == Run.Status.RUNNING
    assert [e["seq"] for e in rest["events"]] == [4]
    assert rest["next_after"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, field", [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after": -1}, "after")]
)
def test_json_page_rejects_bad_paging(client, user, make_run, query, field):
    run = make_run(user, ["run.started"])
    client.force_login(user)
    response = client.get(url(run), query)
    assert response.status_code == 400
    assert field in json.dumps(response.json())


@pytest.mark.django_db
def test_bearer_token_reads_own_run(client, user, make_run, token_for):
    run = make_run(user, ["run.started"])
    response = client.get(url(run), headers={"authorization": f"Bearer {token_for(user)}"})
    assert response.status_code == 200
    assert [e["kind"] for e in response.json()["events"]] == ["run.started"]


@pytest.mark.django_db
def test_another_users_run_is_404_and_staff_see_it(
    client, user, staff_user, django_user_model, make_run, token_for
):
    other = django_user_model.objects.create_user(username="mallory", password="x-tests-only")
    run = make_run(user, ["run.started"])

    hidden = client.get(url(run), headers={"authorization": f"Bearer {token_for(other)}"})
    hidden_sse = client.get(
        url(run), headers={"authorization": f"Bearer {token_for(other)}", "accept": SSE}
    )
    staff = client.get(url(run), headers={"authorization": f"Bearer {token_for(staff_user)}"})

    assert hidden.status_code == 404
    assert hidden_sse.status_code == 404
    assert staff.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["application/json", SSE])
def test_missing_or_wrong_token_is_401(client, user, make_run, accept):
    run = make_run(user, ["run.started"])
    missing = client.get(url(run), headers={"accept": accept})
    wrong = client.get(
        url(run), headers={"accept": accept, "authorization": "Bearer tkn_not-a-real-token"}
    )
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "tkn_not-a-real-token" not in wrong.content.decode()


# --- Server-Sent Events -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_sse_replays_a_finished_run_from_last_event_id_and_ends(user, make_run):
    kinds = ["run.started", "stage.started", "stage.progress", "stage.finished", "run.finished"]
    run = await sync_to_async(make_run)(user, kinds, Run.Status.SUCCEEDED)
    client = AsyncClient()
    await client.aforce_login(user)  # the session cookie alone, as a browser EventSource

    response = await client.get(
        url(run) + "?after=4", headers={"accept": SSE, "last-event-id": "2"}
    )
    body = await read_all(response)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(SSE)
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    blocks = parse_sse(body)
    assert blocks[0] == {"retry": "1000"}  # how long the client waits before it reconnects
    messages = [m for m in blocks if "id" in m]
    assert [(m["id"], m["event"]) for m in messages] == [
        ("3", "stage.progress"),
        ("4", "stage.finished"),
        ("5", "run.finished"),
    ]
    data = json.loads(messages[0]["data"])
    assert data == {
        "seq": 3,
        "kind": "stage.progress",
        "stage": "plan",
        "payload": {"n": 3},
        "created_at": data["created_at"],
    }
    assert data["created_at"]


@pytest.mark.django_db(transaction=True)
async def test_sse_reconnect_to_a_finished_run_with_nothing_left_is_204(user, make_run):
    run = await sync_to_async(make_run)(user, ["run.started", "run.failed"], Run.Status.FAILED)
    client = AsyncClient()
    await client.aforce_login(user)

    done = await client.get(url(run), headers={"accept": SSE, "last-event-id": "2"})
    behind = await client.get(url(run), headers={"accept": SSE, "last-event-id": "1"})

    assert done.status_code == 204
    assert behind.status_code == 200
    events = [m["event"] for m in parse_sse(await read_all(behind)) if "event" in m]
    assert events == ["run.failed"]


@pytest.mark.django_db(transaction=True)
async def test_sse_rejects_a_malformed_last_event_id(user, make_run):
    run = await sync_to_async(make_run)(user, ["run.started"])
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(url(run), headers={"accept": SSE, "last-event-id": "abc"})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_sse_follows_live_events_with_heartbeats_until_the_final_event(
    user, make_run, settings
):
    settings.TEKTON_SSE_HEARTBEAT_SECONDS = 0.1
    run = await sync_to_async(make_run)(user, ["run.started"])
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(url(run), headers={"accept": SSE})
    reader = asyncio.create_task(read_all(response, timeout=15))

    record = sync_to_async(event_record)
    await asyncio.sleep(0.3)  # silence: heartbeats
    for n in range(2, 6):
        await record(run_id=run.pk, kind="stage.progress", stage="plan", payload={"n": n})
    await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=Run.Status.SUCCEEDED)
    await record(run_id=run.pk, kind="run.finished", payload={"status": "succeeded"})
    messages = parse_sse(await reader)

    events = [m for m in messages if "id" in m]
    assert [int(m["id"]) for m in events] == [1, 2, 3, 4, 5, 6]
    assert events[-1]["event"] == "run.finished"
    assert [json.loads(m["data"])["payload"].get("n") for m in events[1:5]] == [2, 3, 4, 5]
    assert {"comment": "heartbeat"} in messages


@pytest.mark.django_db(transaction=True)
async def test_sse_ends_after_its_longest_life_and_resumes_without_loss(settings, user, make_run):
    settings.TEKTON_SSE_MAX_SECONDS = 0.3
    settings.TEKTON_SSE_HEARTBEAT_SECONDS = 0.1
    run = await sync_to_async(make_run)(user, ["run.started", "stage.started"], Run.Status.RUNNING)
    client = AsyncClient()
    await client.aforce_login(user)
    first = await client.get(url(run), headers={"accept": SSE})
    assert first.status_code == 200
    seen = [int(m["id"]) for m in parse_sse(await read_all(first)) if "id" in m]
    assert seen == [1, 2]  # a live run's stream still ended on its own
    again = await client.get(url(run), headers={"accept": SSE, "last-event-id": "2"})
    assert [m for m in parse_sse(await read_all(again)) if "id" in m] == []


async def until(check, timeout: float = 5.0) -> None:
    """Wait (polling) until check() is true: the streams have joined the run's feed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
async def test_sse_carries_deltas_only_when_asked_and_without_an_id(user, make_run):
    from runs import event_hub
    from runs.events import deltas_publish

    run = await sync_to_async(make_run)(user, ["run.started"])
    client = AsyncClient()
    await client.aforce_login(user)
    with_deltas = await client.get(url(run), {"deltas": "1"}, headers={"accept": SSE})
    plain = await client.get(url(run), headers={"accept": SSE})
    readers = [asyncio.create_task(read_all(r, timeout=15)) for r in (with_deltas, plain)]
    await until(lambda: event_hub.hub().subscriber_count(run.pk) == 2)

    piece = {"role": "skeptic", "round": 1, "call_id": "plan.1.3", "model": "m", "offset": 0}
    publish = sync_to_async(deltas_publish)
    await publish(run_id=run.pk, items=[("plan", {**piece, "text": "Rollback is "})])
    await publish(run_id=run.pk, items=[("plan", {**piece, "text": "untested", "offset": 12})])
    await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=Run.Status.SUCCEEDED)
    await sync_to_async(event_record)(run_id=run.pk, kind="run.finished", payload={})
    streamed, scripted = [parse_sse(await reader) for reader in readers]

    deltas = [m for m in streamed if m.get("event") == "stage.delta"]
    assert [json.loads(m["data"])["payload"]["text"] for m in deltas] == [
        "Rollback is ",
        "untested",
    ]
    assert all("id" not in m for m in deltas)  # the resume point stays the stored seq
    assert json.loads(deltas[0]["data"])["stage"] == "plan"
    assert [m["id"] for m in streamed if "id" in m] == ["1", "2"]
    assert not [m for m in scripted if m.get("event") == "stage.delta"]
    assert [m["id"] for m in scripted if "id" in m] == ["1", "2"]
    # Nothing of the deltas was stored.
    kinds = await sync_to_async(list)(run.events.values_list("kind", flat=True))
    assert "stage.delta" not in kinds


def test_an_event_is_encoded_once_however_many_streams_send_it(monkeypatch):
    """A feed hands every subscriber the same dict: the JSON is made once per event."""
    import json as json_module

    from runs import event_hub
    from runs.streams import sse_format

    calls = []
    real = json_module.dumps

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(event_hub.json, "dumps", counting)
    event = {"seq": 7, "kind": "stage.progress", "stage": "plan", "payload": {"n": 1}}
    frames = {sse_format(event) for _ in range(1000)}
    assert frames == {
        b"id: 7\nevent: stage.progress\ndata: "
        + real(event, separators=(",", ":")).encode()
        + b"\n\n"
    }
    assert event_hub.event_json(event) == real(event, separators=(",", ":"))
    assert len(calls) == 1
    # The SSE frame itself is built once too: every stream sends the same bytes object.
    assert sse_format(event) is sse_format(event)
    # An equal but different dict (another event) is encoded on its own.
    assert event_hub.event_json(dict(event)) == event_hub.event_json(event)
    assert len(calls) == 2
